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
    #[schemars(with = "Option<OnBreachSpec>")]
    on_breach: Option<Spanned<OnBreachSpec>>,
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

/// `on_breach: { move_to: sales, notify: [lead@corp.example] }`: escalate to another queue,
/// e-mail people, or both.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnBreachSpec {
    /// The queue the handoff moves to (its own SLA starts then).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    move_to: Option<Spanned<String>>,
    /// Who is e-mailed about the breach (team leads, the sales manager).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    notify: Vec<Spanned<String>>,
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
    /// Who is e-mailed when a handoff breaches this queue's SLA.
    pub notify_on_breach: Vec<String>,
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
        let (move_on_breach, notify_on_breach) = match queue.on_breach {
            Some(b) => on_breach(file, &name.value, &names, queue.sla.is_some(), b, issues),
            None => (None, Vec::new()),
        };
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
                notify_on_breach,
            },
        );
    }
    queues
}

/// Checks `on_breach` of queue `queue`: a queue to move to that exists and is another one,
/// people to notify named by e-mail, at least one of the two, and an `sla` to breach.
fn on_breach(
    file: &str,
    queue: &str,
    names: &[String],
    has_sla: bool,
    spec: Spanned<OnBreachSpec>,
    issues: &mut Vec<Issue>,
) -> (Option<String>, Vec<String>) {
    let at = Position::of(&spec.referenced);
    let spec = spec.value;
    if spec.move_to.is_none() && spec.notify.is_empty() {
        issues.push(Issue::at(
            file,
            at,
            "on_breach says nothing to do; give `move_to: QUEUE`, `notify: [E-MAIL, …]`, or both",
        ));
    } else if !has_sla {
        issues.push(
            Issue::at(
                file,
                at,
                "on_breach never happens: the queue has no `sla` to breach; add e.g. `sla: 4h`",
            )
            .warning(),
        );
    }
    let move_to = spec.move_to.map(|to| {
        if !names.contains(&to.value) {
            issues.push(Issue::at(
                file,
                Position::of(&to.referenced),
                format!(
                    "on_breach moves to queue {:?}, which does not exist{}",
                    to.value,
                    crate::diagnostic::KnownIds::new(names)
                        .hint(&to.value, &format!("; the queues are {}", names.join(", ")))
                ),
            ));
        } else if to.value == queue {
            issues.push(Issue::at(
                file,
                Position::of(&to.referenced),
                "on_breach cannot move a handoff to the queue it is in; name another queue",
            ));
        }
        to.value
    });
    let mut notify: Vec<String> = Vec::new();
    for person in spec.notify {
        match crate::lead::EmailAddress::parse(&person.value) {
            Ok(email) if notify.iter().any(|n| n == email.as_str()) => issues.push(Issue::at(
                file,
                Position::of(&person.referenced),
                format!("{:?} is listed twice in on_breach.notify", person.value),
            )),
            Ok(email) => notify.push(email.as_str().to_owned()),
            Err(_) => issues.push(Issue::at(
                file,
                Position::of(&person.referenced),
                format!(
                    "on_breach.notify: {:?} is not an e-mail address; list the people to e-mail",
                    person.value
                ),
            )),
        }
    }
    (move_to, notify)
}
