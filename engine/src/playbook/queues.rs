//! `kind: Queues`: where handed-off leads wait for an SDR or a salesperson, how long they may
//! wait (the SLA) and how they are handed out.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

use super::{schema, Issue, Position};
use crate::duration::Span;

/// `kind: Queues`, as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuesSpec {
    /// Always `Queues`.
    #[schemars(schema_with = "schema::kind_queues")]
    pub kind: String,
    /// Queues by name (`[a-z0-9_-]`), e.g. `sdr` and `sales`.
    #[schemars(with = "BTreeMap<String, QueueSpec>")]
    queues: IndexMap<Spanned<String>, QueueSpec>,
}

/// One queue, as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    #[serde(default)]
    description: Option<String>,
    /// An open handoff unclaimed this long breaches the SLA (emitted as `handoff.sla_breached`).
    #[serde(default)]
    sla: Option<Span>,
    /// `claim` (SDRs pull; the default) or `round_robin` (assigned to members in turn).
    #[serde(default)]
    #[schemars(with = "Option<Routing>")]
    routing: Option<Spanned<Routing>>,
    /// Who works the queue (their e-mail addresses); `round_robin` needs at least one.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    members: Vec<Spanned<String>>,
    /// A rejected-and-recycled lead rests this long before campaigns may enroll it again.
    #[serde(default)]
    cooldown: Option<Span>,
    /// What happens when the SLA is breached, besides the webhook event.
    #[serde(default)]
    on_breach: Option<OnBreachSpec>,
}

/// How new handoffs reach people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// SDRs pull the next handoff themselves.
    Claim,
    /// Each new handoff is assigned to the next available member.
    RoundRobin,
}

/// `on_breach: { move_to: sales }`: escalate to another queue.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnBreachSpec {
    #[schemars(with = "String")]
    move_to: Spanned<String>,
}

/// The validated queues.
#[derive(Debug, Clone, Default)]
pub struct Queues {
    pub queues: BTreeMap<String, Queue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub name: String,
    pub description: Option<String>,
    pub sla: Option<Span>,
    pub routing: Routing,
    pub members: Vec<String>,
    pub cooldown: Option<Span>,
    /// Queue an open handoff moves to when its SLA is breached.
    pub move_on_breach: Option<String>,
}

impl Queues {
    /// The queues that exist, said so that an error message can end with it.
    pub fn known(&self) -> String {
        if self.queues.is_empty() {
            "define it in a `kind: Queues` file".to_owned()
        } else {
            let names: Vec<&str> = self.queues.keys().map(String::as_str).collect();
            format!("the queues are {}", names.join(", "))
        }
    }
}

/// Queue names: `[a-z0-9_-]`, as they appear in URLs (`/v1/queues/sdr`).
fn is_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(crate) fn build_queues(file: &str, spec: QueuesSpec, issues: &mut Vec<Issue>) -> Queues {
    let mut queues = Queues::default();
    let names: Vec<String> = spec.queues.keys().map(|k| k.value.clone()).collect();
    for (name, queue) in spec.queues {
        let at = Position::of(&name.referenced);
        if !is_queue_name(&name.value) {
            issues.push(Issue::at(
                file,
                at,
                format!(
                    "queue name {:?} must be 1 to 64 lower-case letters, digits, '-' or '_'",
                    name.value
                ),
            ));
        }
        let routing = queue.routing.as_ref().map(|r| r.value).unwrap_or(Routing::Claim);
        if routing == Routing::RoundRobin && queue.members.is_empty() {
            let at = queue
                .routing
                .as_ref()
                .map(|r| Position::of(&r.referenced))
                .unwrap_or(at);
            issues.push(Issue::at(
                file,
                at,
                "round_robin routing needs `members` to assign handoffs to; list them, or use `routing: claim`",
            ));
        }
        let mut members = Vec::new();
        for member in &queue.members {
            match crate::lead::EmailAddress::parse(&member.value) {
                Ok(email) => {
                    if members.contains(&email.as_str().to_owned()) {
                        issues.push(Issue::at(
                            file,
                            Position::of(&member.referenced),
                            format!("member {:?} is listed twice", member.value),
                        ));
                    }
                    members.push(email.as_str().to_owned());
                }
                Err(_) => issues.push(Issue::at(
                    file,
                    Position::of(&member.referenced),
                    format!(
                        "member {:?} is not an e-mail address; members are named by e-mail",
                        member.value
                    ),
                )),
            }
        }
        let move_on_breach = queue.on_breach.map(|b| {
            if !names.contains(&b.move_to.value) {
                issues.push(Issue::at(
                    file,
                    Position::of(&b.move_to.referenced),
                    format!(
                        "on_breach moves to queue {:?}, which does not exist; the queues are {}",
                        b.move_to.value,
                        names.join(", ")
                    ),
                ));
            } else if b.move_to.value == name.value {
                issues.push(Issue::at(
                    file,
                    Position::of(&b.move_to.referenced),
                    "on_breach cannot move a handoff to the queue it is in; name another queue",
                ));
            }
            b.move_to.value
        });
        queues.queues.insert(
            name.value.clone(),
            Queue {
                name: name.value,
                description: queue.description,
                sla: queue.sla,
                routing,
                members,
                cooldown: queue.cooldown,
                move_on_breach,
            },
        );
    }
    queues
}
