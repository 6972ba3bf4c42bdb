//! The step function: a lead's journey through one campaign. Pure: given the campaign version,
//! the enrollment, the facts its conditions need and `now`, it returns the next state of the
//! enrollment, the effects to carry out (send, tag, score, hand off, enroll) and the journey log
//! that explains each step. No I/O here; the runner, simulation and tests all call it.

use chrono::format::{Item, Numeric, Pad};
use chrono::{DateTime, Utc};
use petgraph::graph::NodeIndex;
use serde::Serialize;
use sha2::Digest;
use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use crate::condition::{Condition, EventFact, Facts, MessageQuestion, Segments};
use crate::lead::{Lead, LeadId};
use crate::pacing::{Ask, Gate, Pacer};
use crate::playbook::{Action, Campaign, Channel, Edge, OnCap, Reentry, Step, Wait};

mod outcome;
pub use outcome::Outcome;

/// Where an enrollment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Due to run its current step now.
    Active,
    /// At a wait step until `wake_at`, or until its condition holds.
    Waiting,
    /// Reached an `exit` step or the end of the flow.
    Completed,
    /// The `exit_when` goal held.
    Exited,
    /// A `handoff` step gave the lead to a queue.
    HandedOff,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Waiting => "waiting",
            Status::Completed => "completed",
            Status::Exited => "exited",
            Status::HandedOff => "handed_off",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "active" => Status::Active,
            "waiting" => Status::Waiting,
            "completed" => Status::Completed,
            "exited" => Status::Exited,
            "handed_off" => Status::HandedOff,
            _ => return None,
        })
    }

    /// Whether the enrollment is still running (at most one such per campaign and lead).
    pub fn is_open(self) -> bool {
        matches!(self, Status::Active | Status::Waiting)
    }
}

impl TryFrom<String> for Status {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Status::parse(&text).ok_or_else(|| format!("enrollment status {text:?}"))
    }
}

/// One lead in one campaign version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub id: i64,
    pub campaign: String,
    pub version: String,
    pub lead: LeadId,
    /// The step the enrollment is at.
    pub step: String,
    pub status: Status,
    pub wake_at: Option<DateTime<Utc>>,
    /// How it ended (`returned_to_pool`, `goal`, `handed_off`, …).
    pub outcome: Option<String>,
    /// Steps taken so far; each message is keyed by the enrollment and this count, so a step
    /// that runs again after a crash cannot send twice.
    pub transitions: i64,
    pub entered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Enrollment {
    /// A new enrollment at the campaign's start, due now.
    pub fn start(id: i64, campaign: &Campaign, lead: LeadId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            campaign: campaign.id.clone(),
            version: campaign.version.clone(),
            lead,
            step: campaign.graph[campaign.start].id.clone(),
            status: Status::Active,
            wake_at: None,
            outcome: None,
            transitions: 0,
            entered_at: now,
            updated_at: now,
        }
    }
}

/// What is known of the messages this enrollment sent, by step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFact {
    pub step: String,
    pub id: i64,
    /// Opened by a person (automated opens do not count).
    pub opened: bool,
    /// Opened by an image proxy or prefetcher, not (or not known to be) a person.
    pub opened_automated: bool,
    /// Links clicked by a person, by name (an unnamed link counts as `""`).
    pub clicked: Vec<String>,
    /// Links fetched by scanners.
    pub clicked_automated: Vec<String>,
    /// Any response: a click, a reply, or an event carrying the message id.
    pub responded: bool,
}

/// What the step function may ask: the lead as the journey has changed it so far, its tags,
/// its events, and its messages in this enrollment.
#[derive(Debug, Clone)]
pub struct JourneyFacts<'a> {
    /// Borrowed from the batch's state; copied only when a step changes it (a score step).
    pub lead: std::borrow::Cow<'a, Lead>,
    pub tags: BTreeSet<String>,
    pub events: &'a [EventFact],
    pub messages: &'a [MessageFact],
    /// The event that enrolled the lead into this enrollment's campaign, where one did.
    pub enrolling_event: Option<&'a EventFact>,
}

impl Facts for JourneyFacts<'_> {
    fn lead(&self) -> &Lead {
        &self.lead
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.contains(tag)
    }
    fn events(&self) -> &[EventFact] {
        self.events
    }
    fn message(&self, question: MessageQuestion<'_>) -> bool {
        let of = |step: &str, m: &MessageFact| m.step == step;
        let mut messages = self.messages.iter();
        match question {
            MessageQuestion::Opened { step, automated } => {
                messages.any(|m| of(step, m) && (m.opened || (automated && m.opened_automated)))
            }
            MessageQuestion::Clicked { step, link, automated } => messages.any(|m| {
                let clicks = m.clicked.iter().chain(m.clicked_automated.iter().filter(|_| automated));
                of(step, m)
                    && match link {
                        Some(link) => clicks.clone().any(|c| c == link),
                        None => clicks.count() > 0,
                    }
            }),
            MessageQuestion::Responded { step } => {
                messages.any(|m| of(step, m) && (m.responded || !m.clicked.is_empty()))
            }
        }
    }
}

/// Why a condition came out as it did, for the journey log. Message conditions name the
/// message they looked at (`no human open of message 8812 by 2026-11-26T09:00Z`); others say
/// what was asked and when.
pub fn explain(condition: &Condition, facts: &JourneyFacts<'_>, held: bool, now: DateTime<Utc>) -> String {
    let mut notes = Vec::new();
    message_notes(condition, facts, now, &mut notes);
    if notes.is_empty() {
        format!("{}? {held} at {}", condition.label(), now.to_rfc3339())
    } else {
        notes.join("; ")
    }
}

/// `%Y-%m-%dT%H:%MZ`, parsed once rather than on every note: what [`Minute`] falls back to.
const TO_THE_MINUTE: [Item<'static>; 10] = [
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
    Item::Literal("T"),
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Literal("Z"),
];

/// A time to the minute as [`TO_THE_MINUTE`] writes it, its digits written into a fixed buffer
/// for the years of four digits: every message condition explained writes one, and chrono's
/// item formatting (or `write!` with padded numbers) costs several times more.
struct Minute(DateTime<Utc>);

impl std::fmt::Display for Minute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        let year = match u32::try_from(t.year()) {
            Ok(year) if year <= 9999 => year,
            _ => return t.format_with_items(TO_THE_MINUTE.iter()).fmt(f),
        };
        let mut text = *b"0000-00-00T00:00Z";
        let mut put = |at: usize, digits: usize, mut value: u32| {
            for i in (at..at + digits).rev() {
                text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

fn message_notes(condition: &Condition, facts: &JourneyFacts<'_>, now: DateTime<Utc>, notes: &mut Vec<String>) {
    let by = Minute(now);
    // The step's latest message in this enrollment.
    let message = |step: &str| facts.messages.iter().filter(|m| m.step == step).max_by_key(|m| m.id);
    let note = match condition {
        Condition::All(parts) | Condition::Any(parts) => {
            for part in parts {
                message_notes(part, facts, now, notes);
            }
            return;
        }
        Condition::Not(inner) => return message_notes(inner, facts, now, notes),
        Condition::Opened(test) => match message(test.value.step()) {
            None => format!("no message from step {}", test.value.step()),
            Some(m) if m.opened => format!("human open of message {}", m.id),
            Some(m) if m.opened_automated && test.value.include_automated() => {
                format!("automated open of message {} (include_automated)", m.id)
            }
            Some(m) if m.opened_automated => {
                format!("no human open of message {} by {by} (automated opens only)", m.id)
            }
            Some(m) => format!("no human open of message {} by {by}", m.id),
        },
        Condition::Clicked(test) => {
            let (step, link) = (test.value.step(), test.value.link());
            let what = link.map_or_else(|| "a link".to_owned(), |l| format!("link {l:?}"));
            let hit = |clicks: &[String]| link.map_or(!clicks.is_empty(), |l| clicks.iter().any(|c| c == l));
            match message(step) {
                None => format!("no message from step {step}"),
                Some(m) if hit(&m.clicked) => format!("click on {what} in message {}", m.id),
                Some(m) if hit(&m.clicked_automated) && test.value.include_automated() => {
                    format!("automated click on {what} in message {} (include_automated)", m.id)
                }
                Some(m) if hit(&m.clicked_automated) => {
                    format!(
                        "no human click on {what} in message {} by {by} (automated clicks only)",
                        m.id
                    )
                }
                Some(m) => format!("no click on {what} in message {} by {by}", m.id),
            }
        }
        Condition::Responded(step) => match message(&step.value) {
            None => format!("no message from step {}", step.value),
            Some(m) if m.responded || !m.clicked.is_empty() => format!("response to message {}", m.id),
            Some(m) => format!("no response to message {} by {by}", m.id),
        },
        _ => return,
    };
    notes.push(note);
}

/// Something the runner must carry out for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create a message (rendered and sent later by the dispatcher). `seq` is the transition
    /// number: (enrollment, seq) is unique, so a replayed step cannot send twice. `skipped`:
    /// the lead cannot get the channel; the message is recorded as skipped, with this reason.
    Send {
        step: String,
        channel: Channel,
        template: String,
        seq: i64,
        skipped: Option<String>,
    },
    Tag {
        step: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
    Score {
        step: String,
        points: i64,
    },
    Handoff {
        step: String,
        queue: String,
        reason: String,
        priority: u8,
    },
    Enroll {
        step: String,
        campaign: String,
    },
}

/// One line of the journey log: what a step did and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JourneyEntry {
    pub step: String,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    /// Why, in words: `branch opened_insight: no (no human open of message 8812 by 2026-11-26T09:00Z)`.
    pub detail: String,
    /// The enrollment arrived at the step with this line (not: it left a wait, or a goal
    /// ended it there). Per-step `entered` counts these.
    pub arrived: bool,
    /// On the line that leaves a wait step the enrollment had been waiting at: how long it
    /// waited there, in seconds (for the report's time spent waiting).
    #[serde(skip)]
    pub waited: Option<i64>,
}

/// How many enrollments took each edge of a campaign's graph, `(from, to)` by step id, from
/// the journey lines counted per step and outcome: a branch's `yes` and `no` lines, a split's
/// arm lines, and for a `next` edge every line that went on from the step.
pub fn edge_counts<'a>(
    campaign: &Campaign,
    lines: impl IntoIterator<Item = (&'a str, Outcome, i64)>,
) -> crate::playbook::draw::EdgeCounts {
    let mut by_step: HashMap<&str, Vec<(Outcome, i64)>> = HashMap::new();
    for (step, outcome, n) in lines {
        by_step.entry(step).or_default().push((outcome, n));
    }
    let mut out = crate::playbook::draw::EdgeCounts::new();
    for (from, lines) in by_step {
        let Some(node) = campaign.node(from) else {
            continue;
        };
        let count = |wanted: &dyn Fn(Outcome) -> bool| lines.iter().filter(|(o, _)| wanted(*o)).map(|(_, n)| n).sum();
        let arms = campaign.arms(node);
        for edge in campaign.graph.edges(node) {
            let to = campaign.graph[petgraph::visit::EdgeRef::target(&edge)].id.clone();
            let n: i64 = match edge.weight() {
                Edge::Yes => count(&|o| o == Outcome::Yes),
                Edge::No => count(&|o| o == Outcome::No),
                Edge::Split { .. } => match arms.iter().position(|(_, t)| *t == to) {
                    Some(i) => count(&|o| o == Outcome::Arm(i as u32 + 1)),
                    None => 0,
                },
                Edge::Next => count(&|o| o.goes_on()),
            };
            out.insert((from.to_owned(), to), n.max(0) as u64);
        }
    }
    out
}

/// The result of advancing an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub enrollment: Enrollment,
    pub effects: Vec<Effect>,
    pub journey: Vec<JourneyEntry>,
}

impl Advance {
    /// Whether anything happened (otherwise nothing needs writing).
    pub fn moved(&self) -> bool {
        !self.journey.is_empty()
    }
}

/// Validation refuses loops without a wait, so a journey always stops at a wait or an end;
/// this bound only guards against a bug there.
const MAX_STEPS_PER_ADVANCE: usize = 10_000;

/// Runs the enrollment from where it stands until it waits or ends.
///
/// Before each send the `pacer` says whether it goes now: a deferred send waits at its step
/// (status `Waiting`, `wake_at` when it may go) and is asked again then.
///
/// An `Active` enrollment runs its current step. A `Waiting` one moves on only when its wait is
/// over at `now` (the time has come, or its `until` condition holds); otherwise nothing happens.
/// The `exit_when` goal is checked before every step. Tag and score effects are also applied
/// to `facts`, so later conditions in the same run see them.
pub fn advance(
    campaign: &Campaign,
    enrollment: Enrollment,
    facts: &mut JourneyFacts<'_>,
    segments: &Segments,
    pacer: &mut dyn Pacer,
    now: DateTime<Utc>,
) -> Advance {
    let mut run = Run {
        campaign,
        enrollment,
        facts,
        segments,
        pacer,
        now,
        effects: Vec::new(),
        journey: Vec::new(),
    };
    for _ in 0..MAX_STEPS_PER_ADVANCE {
        if run.step().is_break() {
            break;
        }
    }
    let Run {
        mut enrollment,
        effects,
        journey,
        ..
    } = run;
    if !journey.is_empty() {
        enrollment.updated_at = now;
    }
    Advance {
        enrollment,
        effects,
        journey,
    }
}

/// An advance in progress: the enrollment as it moves, and what it did so far.
struct Run<'a, 'f> {
    campaign: &'a Campaign,
    enrollment: Enrollment,
    facts: &'a mut JourneyFacts<'f>,
    segments: &'a Segments,
    pacer: &'a mut dyn Pacer,
    now: DateTime<Utc>,
    effects: Vec<Effect>,
    journey: Vec<JourneyEntry>,
}

impl Run<'_, '_> {
    fn log(&mut self, step: &str, outcome: Outcome, detail: String) {
        self.journey.push(JourneyEntry {
            step: step.to_owned(),
            at: self.now,
            outcome,
            detail,
            arrived: outcome.arrives(),
            waited: None,
        })
    }

    /// Whether the last line is an arrival: not when a deferred send goes on from its wait.
    fn arrive(&mut self, arrived: bool) {
        if let Some(line) = self.journey.last_mut() {
            line.arrived = arrived;
        }
    }

    /// The step an edge of this kind leads to from `node`.
    fn next(&self, node: NodeIndex, edge: Edge) -> Option<String> {
        let campaign = self.campaign;
        campaign.follow(node, edge).map(|n| campaign.graph[n].id.clone())
    }

    /// Moves on to `to`, or completes at the end of the flow.
    fn go(&mut self, to: Option<String>) {
        let enrollment = &mut self.enrollment;
        enrollment.transitions += 1;
        enrollment.status = Status::Active;
        enrollment.wake_at = None;
        match to {
            Some(to) => enrollment.step = to,
            None => {
                enrollment.status = Status::Completed;
                enrollment.outcome.get_or_insert_with(|| "completed".into());
            }
        }
    }

    /// Ends the enrollment here with this status and outcome.
    fn end(&mut self, status: Status, outcome: String) {
        self.enrollment.transitions += 1;
        self.enrollment.status = status;
        self.enrollment.outcome = Some(outcome);
        self.enrollment.wake_at = None;
    }

    /// Runs the enrollment's current step (after its goal); breaks when it stays where it
    /// is (a wait) or has ended. Longer than most: one short arm per kind of step, so that
    /// what each kind does reads in one place (sends and waits have their own methods).
    fn step(&mut self) -> ControlFlow<()> {
        if !self.enrollment.status.is_open() {
            return ControlFlow::Break(());
        }
        let (campaign, now) = (self.campaign, self.now);
        let Some(node) = campaign.node(&self.enrollment.step) else {
            // The version's graph lacks the step (it cannot, for a stored version): end safely.
            self.enrollment.status = Status::Completed;
            self.enrollment.outcome = Some("step_missing".into());
            let at = self.enrollment.step.clone();
            self.log(
                &at,
                Outcome::Completed,
                "the step is not in this campaign version".into(),
            );
            return ControlFlow::Break(());
        };
        if let Some(goal) = &campaign.exit_when {
            if goal.eval(self.facts, self.segments, now) {
                self.enrollment.status = Status::Exited;
                self.enrollment.outcome = Some("goal".into());
                self.enrollment.wake_at = None;
                let at = self.enrollment.step.clone();
                self.log(&at, Outcome::Goal, format!("exit_when held: {}", goal.label()));
                return ControlFlow::Break(());
            }
        }
        let step = &campaign.graph[node];
        match &step.action {
            Action::Send {
                channel,
                template,
                variants,
                on_cap,
            } => return self.send(node, step, *channel, template, variants, *on_cap),
            Action::Wait(wait) => return self.wait(node, step, wait),
            Action::Branch(condition) => {
                let yes = condition.eval(self.facts, self.segments, now);
                let answer = if yes { Outcome::Yes } else { Outcome::No };
                let why = explain(condition, self.facts, yes, now);
                self.log(&step.id, answer, format!("branch {}: {answer} ({why})", step.id));
                let to = self.next(node, if yes { Edge::Yes } else { Edge::No });
                self.go(to);
            }
            Action::Split => {
                let arms = campaign.arms(node);
                let (arm, to) = pick_arm(&arms, self.enrollment.lead, &campaign.id, &step.id);
                let detail = format!("split {}: arm {} of {} ({to})", step.id, arm + 1, arms.len());
                self.log(&step.id, Outcome::Arm(arm as u32 + 1), detail);
                self.go(Some(to));
            }
            Action::Tag { add, remove } => {
                for tag in add {
                    self.facts.tags.insert(tag.clone());
                }
                for tag in remove {
                    self.facts.tags.remove(tag);
                }
                self.effects.push(Effect::Tag {
                    step: step.id.clone(),
                    add: add.clone(),
                    remove: remove.clone(),
                });
                let mut words: Vec<String> = add.iter().map(|t| format!("+{t}")).collect();
                words.extend(remove.iter().map(|t| format!("-{t}")));
                self.log(&step.id, Outcome::Tagged, words.join(" "));
                self.go(self.next(node, Edge::Next));
            }
            Action::Score(points) => {
                let lead = self.facts.lead.to_mut();
                lead.score = crate::lead::bounded_score(lead.score, *points);
                self.effects.push(Effect::Score {
                    step: step.id.clone(),
                    points: *points,
                });
                let detail = format!("{points:+} (now {})", self.facts.lead.score);
                self.log(&step.id, Outcome::Scored, detail);
                self.go(self.next(node, Edge::Next));
            }
            Action::Handoff {
                queue,
                reason,
                priority,
            } => {
                self.effects.push(Effect::Handoff {
                    step: step.id.clone(),
                    queue: queue.clone(),
                    reason: reason.clone(),
                    priority: *priority,
                });
                self.log(&step.id, Outcome::HandedOff, format!("to queue {queue}: {reason}"));
                self.end(Status::HandedOff, "handed_off".into());
            }
            Action::Enroll { campaign: other } => {
                self.effects.push(Effect::Enroll {
                    step: step.id.clone(),
                    campaign: other.clone(),
                });
                self.log(&step.id, Outcome::Enrolled, format!("into {other}"));
                let to = self.next(node, Edge::Next);
                if to.is_none() {
                    self.enrollment.outcome = Some(format!("enrolled:{other}"));
                }
                self.go(to);
            }
            Action::Exit { outcome } => {
                self.log(&step.id, Outcome::Completed, format!("exit: {outcome}"));
                self.end(Status::Completed, outcome.clone());
            }
        }
        ControlFlow::Continue(())
    }

    /// A send step: through the pacer, then on (or waiting here when deferred).
    fn send(
        &mut self,
        node: NodeIndex,
        step: &Step,
        channel: Channel,
        template: &str,
        variants: &[(Condition, String)],
        on_cap: OnCap,
    ) -> ControlFlow<()> {
        let (campaign, now) = (self.campaign, self.now);
        let waiting_here = self.enrollment.status == Status::Waiting;
        // A send deferred by pacing waits here until its time, whatever events come.
        if waiting_here && self.enrollment.wake_at.is_some_and(|w| now < w) {
            return ControlFlow::Break(());
        }
        let ask = Ask {
            campaign: &campaign.id,
            step: &step.id,
            channel,
            window: campaign.send_window.as_ref(),
            on_cap,
        };
        let gate = self.pacer.gate(ask, now);
        // The variant is chosen only for a message that is made (sent, or skipped unreachable).
        let chosen = |run: &Self| {
            variants
                .iter()
                .find(|(when, _)| when.eval(run.facts, run.segments, now))
                .map_or(template, |(_, t)| t.as_str())
                .to_owned()
        };
        let via = channel.as_str();
        let send = |chosen: &str, skipped: Option<String>| Effect::Send {
            step: step.id.clone(),
            channel,
            template: chosen.to_owned(),
            seq: self.enrollment.transitions,
            skipped,
        };
        match gate {
            Gate::Defer { until, why } => {
                self.enrollment.status = Status::Waiting;
                self.enrollment.wake_at = Some(until);
                let detail = format!("send {via} deferred to {}: {why}", until.to_rfc3339());
                self.log(&step.id, Outcome::Deferred, detail);
                self.arrive(!waiting_here);
                return ControlFlow::Break(());
            }
            Gate::Skip { why } => {
                self.log(&step.id, Outcome::Skipped, format!("send {via} skipped: {why}"));
            }
            Gate::Unreachable { why } => {
                let chosen = chosen(self);
                let effect = send(&chosen, Some(why.clone()));
                self.effects.push(effect);
                self.log(
                    &step.id,
                    Outcome::Skipped,
                    format!("send {via}: {chosen} skipped: {why}"),
                );
            }
            Gate::Go => {
                let chosen = chosen(self);
                let effect = send(&chosen, None);
                self.effects.push(effect);
                self.log(&step.id, Outcome::Sent, format!("send {via}: {chosen}"));
            }
        }
        self.arrive(!waiting_here);
        self.go(self.next(node, Edge::Next));
        ControlFlow::Continue(())
    }

    /// A wait step: arriving starts the wait (or passes an `until` that already holds); a
    /// waiting enrollment goes on when its time has come or its condition holds.
    fn wait(&mut self, node: NodeIndex, step: &Step, wait: &Wait) -> ControlFlow<()> {
        let now = self.now;
        if self.enrollment.status != Status::Waiting {
            let (wake_at, already) = match wait {
                Wait::For(span) => (now + span.to_chrono(), false),
                Wait::Until { condition, timeout } => (
                    now + timeout.to_chrono(),
                    condition.eval(self.facts, self.segments, now),
                ),
                Wait::At(moment) => {
                    match moment.resolve(self.facts.lead(), self.facts.enrolling_event, self.pacer.timezone()) {
                        Ok(at) if at > now => (at, false),
                        gone => {
                            let why = match gone {
                                Ok(at) => format!("{} had passed", at.to_rfc3339()),
                                Err(why) => why,
                            };
                            let line = format!("until {moment}: {why}; going on at once");
                            self.log(&step.id, Outcome::Waited, line);
                            self.arrive(true);
                            self.go(self.next(node, Edge::Next));
                            return ControlFlow::Continue(());
                        }
                    }
                }
            };
            if already {
                self.log(&step.id, Outcome::Waited, "until held on arrival".into());
                self.arrive(true);
                self.go(self.next(node, Edge::Next));
                return ControlFlow::Continue(());
            }
            self.enrollment.status = Status::Waiting;
            self.enrollment.wake_at = Some(wake_at);
            self.log(&step.id, Outcome::Waiting, format!("until {}", wake_at.to_rfc3339()));
            return ControlFlow::Break(());
        }
        let due = self.enrollment.wake_at.is_none_or(|w| now >= w);
        let detail = match wait {
            Wait::Until { condition, .. } if condition.eval(self.facts, self.segments, now) => {
                format!("until held: {}", explain(condition, self.facts, true, now))
            }
            _ if due => {
                let at = self.enrollment.wake_at.unwrap_or(now).to_rfc3339();
                match wait {
                    Wait::For(span) => format!("wait {span} passed at {at}"),
                    Wait::Until { timeout, .. } => format!("timeout {timeout} passed at {at}"),
                    Wait::At(moment) => format!("until {moment}: reached at {at}"),
                }
            }
            _ => return ControlFlow::Break(()),
        };
        self.log(&step.id, Outcome::Waited, detail);
        // It has waited here since its last move.
        let waited = (now - self.enrollment.updated_at).num_seconds().max(0);
        if let Some(line) = self.journey.last_mut() {
            line.waited = Some(waited);
        }
        self.go(self.next(node, Edge::Next));
        ControlFlow::Continue(())
    }
}

/// The split arm for a lead: the same lead at the same step always takes the same arm.
fn pick_arm(arms: &[(u32, String)], lead: LeadId, campaign: &str, step: &str) -> (usize, String) {
    let total: u64 = arms.iter().map(|(w, _)| u64::from(*w)).sum::<u64>().max(1);
    let digest = sha2::Sha256::digest(format!("{campaign}/{step}/{}", lead.0).as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let mut point = u64::from_le_bytes(bytes) % total;
    for (i, (weight, to)) in arms.iter().enumerate() {
        if point < u64::from(*weight) {
            return (i, to.clone());
        }
        point -= u64::from(*weight);
    }
    (
        arms.len().saturating_sub(1),
        arms.last().map(|(_, t)| t.clone()).unwrap_or_default(),
    )
}

/// Whether a lead may enter a campaign, given its enrollments there (any version): never while
/// one is open; after one has ended, as `reentry` says.
pub fn may_enter(reentry: Reentry, past: &[&Enrollment], now: DateTime<Utc>) -> bool {
    if past.iter().any(|e| e.status.is_open()) {
        return false;
    }
    match (reentry, past.iter().map(|e| e.updated_at).max()) {
        (_, None) => true,
        (Reentry::Never, Some(_)) => false,
        (Reentry::Always, Some(_)) => true,
        (Reentry::After(span), Some(last)) => now - last >= span.to_chrono(),
    }
}

/// Whether a lead's new state and events make it enter the campaign (ignoring past
/// enrollments): for `segment`, the condition holds; for `event`, one of `events` has the type
/// and the condition (if any) holds.
pub fn entry_matches(
    campaign: &Campaign,
    facts: &dyn Facts,
    segments: &Segments,
    new_events: &[&str],
    now: DateTime<Utc>,
) -> bool {
    use crate::playbook::Trigger;
    let holds = |when: &Option<Condition>| when.as_ref().is_none_or(|c| c.eval(facts, segments, now));
    match campaign.entry.trigger {
        Trigger::Segment => campaign.entry.when.is_some() && holds(&campaign.entry.when),
        Trigger::Event => {
            campaign.entry.event.as_deref().is_some_and(|e| new_events.contains(&e)) && holds(&campaign.entry.when)
        }
        Trigger::Manual => false,
    }
}

#[cfg(test)]
mod tests;
