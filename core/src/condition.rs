//! The one condition language of the playbook (campaign entry, branches, waits, exits, rules,
//! MQL) and its pure evaluator. Nothing here touches storage: callers hand in the facts.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;

use crate::diagnostic::{Issue, Position};
use crate::duration::Span;
use crate::lead::{ConsentStatus, Lead, Stage};
use crate::tag::normalize_tag;

/// A condition as written in YAML. Each is a one-key map: `{ tag: … }`, `{ all: [...] }`, ….
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    #[schemars(with = "String")]
    Tag(Spanned<String>),
    #[schemars(with = "Vec<String>")]
    AnyTag(Vec<Spanned<String>>),
    #[schemars(with = "Vec<String>")]
    AllTags(Vec<Spanned<String>>),
    Score(ScoreTest),
    Stage(Vec<Stage>),
    Field(FieldTest),
    Event(EventTest),
    #[schemars(with = "OpenedTest")]
    Opened(Spanned<OpenedTest>),
    #[schemars(with = "ClickedTest")]
    Clicked(Spanned<ClickedTest>),
    #[schemars(with = "String")]
    Responded(Spanned<String>),
    #[schemars(with = "String")]
    Segment(Spanned<String>),
    Unsubscribed(bool),
    /// `inactive: 90d`: no behaviour event for at least this long (counted from when the lead
    /// was created if it has none). An extension of the playbook format.
    Inactive(Span),
    /// `visited: { url: /pricing*, within: 7d, times: 2 }`: page views of matching pages by a
    /// person (not a bot), at least `times` (1 when absent) in the window (all time when
    /// absent).
    Visited(VisitedTest),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

/// `score: { gte: 60 }`; every comparison given must hold.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreTest {
    pub gte: Option<i64>,
    pub gt: Option<i64>,
    pub lte: Option<i64>,
    pub lt: Option<i64>,
    pub eq: Option<i64>,
}

/// `field: { name: industry, in: [finance, energy] }`, or `eq:`, or `exists:`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldTest {
    pub name: String,
    #[serde(rename = "in")]
    pub one_of: Option<Vec<Value>>,
    pub eq: Option<Value>,
    pub exists: Option<bool>,
}

/// `event: { type: webinar_attended, within: 14d, where: { topic: iot } }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTest {
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    pub within: Option<Span>,
    #[serde(rename = "where")]
    pub properties: Option<Map<String, Value>>,
}

/// `visited: { url: /pricing*, within: 7d, times: 2 }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitedTest {
    /// A glob over the path (`/pricing*`) or the whole address, as page rules take it.
    #[schemars(with = "String")]
    pub url: crate::pages::UrlPattern,
    pub within: Option<Span>,
    #[schemars(range(min = 1))]
    pub times: Option<u32>,
}

impl VisitedTest {
    /// How many matching page views the lead needs.
    pub fn times(&self) -> usize {
        self.times.unwrap_or(1).max(1) as usize
    }
}

/// `opened: step_id`, or `opened: { step: step_id, include_automated: true }` to count opens
/// by image proxies and scanners too.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OpenedTest {
    Step(String),
    Detailed {
        step: String,
        #[serde(default)]
        include_automated: bool,
    },
}

impl OpenedTest {
    pub fn step(&self) -> &str {
        match self {
            OpenedTest::Step(step) | OpenedTest::Detailed { step, .. } => step,
        }
    }

    pub fn include_automated(&self) -> bool {
        matches!(
            self,
            OpenedTest::Detailed {
                include_automated: true,
                ..
            }
        )
    }
}

/// `clicked: step_id` or `clicked: { step: step_id, link: demo }`; `include_automated: true`
/// counts clicks by link scanners too.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ClickedTest {
    Step(String),
    Link {
        step: String,
        #[serde(default)]
        link: Option<String>,
        #[serde(default)]
        include_automated: bool,
    },
}

impl ClickedTest {
    pub fn step(&self) -> &str {
        match self {
            ClickedTest::Step(step) | ClickedTest::Link { step, .. } => step,
        }
    }

    pub fn link(&self) -> Option<&str> {
        match self {
            ClickedTest::Step(_) => None,
            ClickedTest::Link { link, .. } => link.as_deref(),
        }
    }

    pub fn include_automated(&self) -> bool {
        matches!(
            self,
            ClickedTest::Link {
                include_automated: true,
                ..
            }
        )
    }
}

/// A message-level question (`opened`, `clicked`, `responded`) about one step's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageQuestion<'a> {
    /// `automated`: opens by image proxies and prefetchers count too.
    Opened {
        step: &'a str,
        automated: bool,
    },
    Clicked {
        step: &'a str,
        link: Option<&'a str>,
        automated: bool,
    },
    Responded {
        step: &'a str,
    },
}

/// A behaviour event as conditions see it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFact {
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub properties: Map<String, Value>,
}

impl EventFact {
    pub fn view(&self) -> EventView<'_> {
        EventView {
            kind: &self.kind,
            occurred_at: self.occurred_at,
            properties: &self.properties,
        }
    }
}

impl EventView<'_> {
    /// Made by a machine (an image proxy, a link scanner, a crawler): `automated: true`.
    pub fn by_machine(&self) -> bool {
        self.properties.get("automated").and_then(Value::as_bool) == Some(true)
    }
}

/// A borrowed behaviour event, so that a batch can be evaluated without copying its properties.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventView<'a> {
    pub kind: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub properties: &'a Map<String, Value>,
}

/// What a condition may ask about a lead. Rules evaluation supplies the lead, its tags and
/// recent events; the campaign engine adds answers about the messages of an enrollment.
pub trait Facts {
    fn lead(&self) -> &Lead;
    fn has_tag(&self, tag: &str) -> bool;
    /// Events known for this lead; must include every type and window the condition names.
    fn events(&self) -> &[EventFact];
    fn message(&self, _question: MessageQuestion<'_>) -> bool {
        false
    }
}

/// The lead's events of type `kind` up to `now`, in the window `within` before it (all of them
/// when it is `None`).
fn events_in<'f>(
    facts: &'f dyn Facts,
    kind: &'f str,
    within: Option<Span>,
    now: DateTime<Utc>,
) -> impl Iterator<Item = &'f EventFact> {
    let since = within.map(|w| now - w.to_chrono());
    facts
        .events()
        .iter()
        .filter(move |e| e.kind == kind && e.occurred_at <= now && since.is_none_or(|s| e.occurred_at >= s))
}

/// Named segments, by id.
pub type Segments = HashMap<String, Condition>;

/// Deeper nesting than this through segments is refused by validation; evaluation stops
/// there as well so that no input can exhaust the stack.
const MAX_DEPTH: usize = 32;

impl Condition {
    /// Evaluates the condition at `now`.
    pub fn eval(&self, facts: &dyn Facts, segments: &Segments, now: DateTime<Utc>) -> bool {
        self.eval_at(facts, segments, now, 0)
    }

    fn eval_at(&self, facts: &dyn Facts, segments: &Segments, now: DateTime<Utc>, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let lead = facts.lead();
        match self {
            Condition::Tag(tag) => facts.has_tag(&tag.value),
            Condition::AnyTag(tags) => tags.iter().any(|t| facts.has_tag(&t.value)),
            Condition::AllTags(tags) => tags.iter().all(|t| facts.has_tag(&t.value)),
            Condition::Score(test) => test.holds(lead.score),
            Condition::Stage(stages) => stages.contains(&lead.stage),
            Condition::Field(test) => test.holds(lead.field(&test.name).as_ref()),
            Condition::Event(test) => events_in(facts, &test.kind.value, test.within, now).any(|e| {
                test.properties
                    .as_ref()
                    .is_none_or(|w| properties_match(w, &e.properties))
            }),
            Condition::Opened(test) => facts.message(MessageQuestion::Opened {
                step: test.value.step(),
                automated: test.value.include_automated(),
            }),
            Condition::Clicked(test) => facts.message(MessageQuestion::Clicked {
                step: test.value.step(),
                link: test.value.link(),
                automated: test.value.include_automated(),
            }),
            Condition::Responded(step) => facts.message(MessageQuestion::Responded { step: &step.value }),
            Condition::Segment(id) => segments
                .get(&id.value)
                .is_some_and(|c| c.eval_at(facts, segments, now, depth + 1)),
            Condition::Unsubscribed(wanted) => (lead.consent.email.status == ConsentStatus::OptedOut) == *wanted,
            Condition::Inactive(span) => now - lead.last_activity_at.unwrap_or(lead.created_at) >= span.to_chrono(),
            Condition::Visited(test) => {
                events_in(facts, crate::pages::PAGE_VIEW, test.within, now)
                    .filter(|e| !e.view().by_machine() && test.url.matches(&e.properties))
                    .take(test.times())
                    .count()
                    >= test.times()
            }
            Condition::All(items) => items.iter().all(|c| c.eval_at(facts, segments, now, depth + 1)),
            Condition::Any(items) => items.iter().any(|c| c.eval_at(facts, segments, now, depth + 1)),
            Condition::Not(inner) => !inner.eval_at(facts, segments, now, depth + 1),
        }
    }

    /// Why the condition holds for these facts, as the conditions that made it hold, each as
    /// the playbook writes it: every part of an `all`, the parts of an `any` that hold, a
    /// segment's own reasons under its name. Empty when it does not hold.
    pub fn reasons(&self, facts: &dyn Facts, segments: &Segments, now: DateTime<Utc>) -> Vec<String> {
        let mut out = Vec::new();
        if self.eval(facts, segments, now) {
            self.reasons_at(facts, segments, now, 0, "", &mut out);
        }
        out
    }

    fn reasons_at(
        &self,
        facts: &dyn Facts,
        segments: &Segments,
        now: DateTime<Utc>,
        depth: usize,
        under: &str,
        out: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        match self {
            Condition::All(items) => {
                for item in items {
                    item.reasons_at(facts, segments, now, depth + 1, under, out);
                }
            }
            Condition::Any(items) => {
                for item in items.iter().filter(|c| c.eval_at(facts, segments, now, depth + 1)) {
                    item.reasons_at(facts, segments, now, depth + 1, under, out);
                }
            }
            Condition::Segment(id) => match segments.get(&id.value) {
                Some(inner) => {
                    let under = format!("{under}segment {}: ", id.value);
                    inner.reasons_at(facts, segments, now, depth + 1, &under, out);
                }
                None => out.push(format!("{under}{self}")),
            },
            // What the lead has, rather than what the condition asks for.
            Condition::AnyTag(tags) | Condition::AllTags(tags) => {
                let held: Vec<&str> = tags
                    .iter()
                    .map(|t| t.value.as_str())
                    .filter(|t| facts.has_tag(t))
                    .collect();
                out.push(format!("{under}tagged {}", held.join(", ")));
            }
            Condition::Field(test) => match facts.lead().field(&test.name) {
                Some(serde_json::Value::String(value)) => out.push(format!("{under}{} is {value:?}", test.name)),
                Some(value) => out.push(format!("{under}{} is {value}", test.name)),
                None => out.push(format!("{under}{self}")),
            },
            leaf => out.push(format!("{under}{leaf}")),
        }
    }

    /// The event types this condition looks at (through segments too) and the longest window
    /// for each (`None`: all time), so callers can load exactly the events it needs.
    pub fn event_needs(&self, segments: &Segments, out: &mut HashMap<String, Option<Span>>) {
        self.event_needs_at(segments, out, 0);
    }

    fn event_needs_at(&self, segments: &Segments, out: &mut HashMap<String, Option<Span>>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        // The widest window asked of a type wins; all time over any window.
        let mut need = |kind: &str, within: Option<Span>| {
            let slot = out.entry(kind.to_owned()).or_insert(within);
            *slot = match (*slot, within) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        };
        match self {
            Condition::Event(test) => need(&test.kind.value, test.within),
            Condition::Visited(test) => need(crate::pages::PAGE_VIEW, test.within),
            Condition::Segment(id) => {
                if let Some(c) = segments.get(&id.value) {
                    c.event_needs_at(segments, out, depth + 1);
                }
            }
            Condition::All(items) | Condition::Any(items) => {
                items.iter().for_each(|c| c.event_needs_at(segments, out, depth + 1))
            }
            Condition::Not(inner) => inner.event_needs_at(segments, out, depth + 1),
            _ => {}
        }
    }

    /// Normalises tags in place and reports what is wrong, with positions. `segment_ids` are the
    /// segments that exist. Message conditions (`opened`, `clicked`, `responded`) are collected
    /// into `messages` where a campaign step holds the condition, so the campaign can check that
    /// the step they name precedes it; where `messages` is `None` (rules, segments, goals) there
    /// is no send step to name and they are refused.
    pub fn check(
        &mut self,
        file: &str,
        segment_ids: &crate::diagnostic::KnownIds<'_>,
        mut messages: Option<&mut Vec<MessageRef>>,
        issues: &mut Vec<Issue>,
    ) {
        let tag = |t: &mut Spanned<String>, issues: &mut Vec<Issue>| match normalize_tag(&t.value) {
            Ok(n) => t.value = n,
            Err(message) => issues.push(Issue::at(file, Position::of(&t.referenced), message)),
        };
        match self {
            Condition::Tag(t) => tag(t, issues),
            Condition::AnyTag(ts) | Condition::AllTags(ts) => ts.iter_mut().for_each(|t| tag(t, issues)),
            Condition::Segment(id) => {
                if !segment_ids.contains(&id.value) {
                    let hint = segment_ids.hint(&id.value, "; define it in a `kind: Segment` file");
                    issues.push(Issue::at(
                        file,
                        Position::of(&id.referenced),
                        format!("segment {:?} does not exist{hint}", id.value),
                    ));
                }
            }
            Condition::Opened(test) => note_message(
                file,
                messages,
                MessageKind::Opened,
                test.value.step(),
                &test.referenced,
                issues,
            ),
            Condition::Responded(step) => note_message(
                file,
                messages,
                MessageKind::Responded,
                &step.value,
                &step.referenced,
                issues,
            ),
            Condition::Clicked(test) => note_message(
                file,
                messages,
                MessageKind::Clicked,
                test.value.step(),
                &test.referenced,
                issues,
            ),
            Condition::All(items) => items
                .iter_mut()
                .for_each(|c| c.check(file, segment_ids, messages.as_deref_mut(), issues)),
            // The message conditions of one `any` may each name a send on its own path: they
            // are checked as a group (`MessageRef::any_of`).
            Condition::Any(items) => match messages {
                Some(out) => {
                    let first = out.len();
                    for item in items.iter_mut() {
                        item.check(file, segment_ids, Some(&mut *out), issues);
                    }
                    let mut steps: Vec<String> = out[first..].iter().map(|r| r.step.clone()).collect();
                    steps.sort();
                    steps.dedup();
                    if steps.len() > 1 {
                        out[first..].iter_mut().for_each(|r| r.any_of = steps.clone());
                    }
                }
                None => items.iter_mut().for_each(|c| c.check(file, segment_ids, None, issues)),
            },
            Condition::Not(inner) => inner.check(file, segment_ids, messages, issues),
            Condition::Event(test) => {
                if let Err(message) = crate::event::check_event_type(&test.kind.value) {
                    issues.push(Issue::at(file, Position::of(&test.kind.referenced), message));
                }
            }
            Condition::Score(_)
            | Condition::Stage(_)
            | Condition::Field(_)
            | Condition::Unsubscribed(_)
            | Condition::Inactive(_)
            | Condition::Visited(_) => {}
        }
    }

    /// The segments this condition names directly.
    pub fn segment_refs(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_segment_refs(&mut out);
        out
    }

    fn collect_segment_refs<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Condition::Segment(id) => out.push(&id.value),
            Condition::All(items) | Condition::Any(items) => items.iter().for_each(|c| c.collect_segment_refs(out)),
            Condition::Not(inner) => inner.collect_segment_refs(out),
            _ => {}
        }
    }
}

fn note_message(
    file: &str,
    messages: Option<&mut Vec<MessageRef>>,
    question: MessageKind,
    step: &str,
    at: &serde_saphyr::Location,
    issues: &mut Vec<Issue>,
) {
    match messages {
        Some(out) => out.push(MessageRef {
            question,
            step: step.to_owned(),
            position: Position::of(at),
            any_of: Vec::new(),
        }),
        None => issues.push(Issue::at(
            file,
            Position::of(at),
            format!(
                "`{}: {step}` asks about the message of a campaign step; use it in a campaign's steps, not in rules, segments, entry or exit_when",
                question.as_str()
            ),
        )),
    }
}

/// Which question a message condition asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Opened,
    Clicked,
    Responded,
}

/// The condition in words ("tag industry:saas and score ≥ 40"), as graphs and the journey log
/// say it.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Condition::Tag(t) => format!("tag {}", t.value),
            Condition::AnyTag(ts) => format!("any tag of {}", join(ts.iter().map(|t| t.value.as_str()))),
            Condition::AllTags(ts) => format!("all tags {}", join(ts.iter().map(|t| t.value.as_str()))),
            Condition::Score(test) => {
                let mut parts = Vec::new();
                for (op, v) in [
                    ("≥", test.gte),
                    ("above", test.gt),
                    ("≤", test.lte),
                    ("below", test.lt),
                    ("=", test.eq),
                ] {
                    if let Some(v) = v {
                        parts.push(format!("score {op} {v}"));
                    }
                }
                parts.join(" and ")
            }
            Condition::Stage(stages) => format!("stage {}", join(stages.iter().map(|s| s.as_str()))),
            Condition::Field(test) => format!("{} matches", test.name),
            Condition::Event(test) => match test.within {
                Some(w) => format!("{} within {w}", test.kind.value),
                None => test.kind.value.clone(),
            },
            Condition::Opened(test) => format!("opened {}", test.value.step()),
            Condition::Clicked(test) => match test.value.link() {
                Some(link) => format!("clicked {link} in {}", test.value.step()),
                None => format!("clicked {}", test.value.step()),
            },
            Condition::Responded(step) => format!("responded to {}", step.value),
            Condition::Segment(id) => format!("in {}", id.value),
            Condition::Unsubscribed(true) => "unsubscribed".to_owned(),
            Condition::Unsubscribed(false) => "subscribed".to_owned(),
            Condition::Inactive(span) => format!("inactive {span}"),
            Condition::Visited(test) => {
                let mut words = format!("visited {}", test.url);
                if test.times() > 1 {
                    words.push_str(&format!(" {} times", test.times()));
                }
                if let Some(w) = test.within {
                    words.push_str(&format!(" within {w}"));
                }
                words
            }
            Condition::All(items) => items.iter().map(Condition::to_string).collect::<Vec<_>>().join(" and "),
            Condition::Any(items) => items.iter().map(Condition::to_string).collect::<Vec<_>>().join(" or "),
            Condition::Not(inner) => format!("not ({inner})"),
        };
        f.write_str(&text)
    }
}

impl Condition {
    /// [`Condition`]'s words cut to 60 characters, for graph labels and log lines.
    pub fn label(&self) -> String {
        let text = self.to_string();
        if text.chars().count() > 60 {
            let cut: String = text.chars().take(57).collect();
            format!("{cut}…")
        } else {
            text
        }
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Opened => "opened",
            MessageKind::Clicked => "clicked",
            MessageKind::Responded => "responded",
        }
    }
}

/// A message condition found in a campaign step: which step's message it asks about, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub question: MessageKind,
    pub step: String,
    pub position: Position,
    /// The steps the message conditions of the same `any` name (this one's included): the
    /// condition is sound when every path passes one of them. Empty outside an `any`.
    pub any_of: Vec<String>,
}

impl ScoreTest {
    pub fn holds(&self, score: i64) -> bool {
        self.gte.is_none_or(|v| score >= v)
            && self.gt.is_none_or(|v| score > v)
            && self.lte.is_none_or(|v| score <= v)
            && self.lt.is_none_or(|v| score < v)
            && self.eq.is_none_or(|v| score == v)
    }
}

impl FieldTest {
    pub fn holds(&self, value: Option<&Value>) -> bool {
        if let Some(wanted) = self.exists {
            if value.is_some() != wanted {
                return false;
            }
        }
        if let Some(eq) = &self.eq {
            if !value.is_some_and(|v| scalar_eq(v, eq)) {
                return false;
            }
        }
        if let Some(options) = &self.one_of {
            if !value.is_some_and(|v| options.iter().any(|o| scalar_eq(v, o))) {
                return false;
            }
        }
        true
    }
}

/// Compares two scalars the way marketers expect: text case-insensitively and trimmed,
/// numbers by value, and a number equal to its decimal text.
pub fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => match (scalar_text(a), scalar_text(b)) {
            (Some(x), Some(y)) => x.trim().to_lowercase() == y.trim().to_lowercase(),
            _ => false,
        },
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Matches an event's properties against a `where:` map. A key `K` is an equality test (a list
/// means any of its values); a key `K_prefix` tests that property `K` starts with the value.
pub fn properties_match(tests: &Map<String, Value>, properties: &Map<String, Value>) -> bool {
    tests.iter().all(|(key, wanted)| {
        if let Some(prop) = key.strip_suffix("_prefix") {
            let (Some(have), Some(prefix)) = (properties.get(prop).and_then(scalar_text), scalar_text(wanted)) else {
                return false;
            };
            return have.trim().to_lowercase().starts_with(&prefix.trim().to_lowercase());
        }
        let Some(have) = properties.get(key) else {
            return false;
        };
        match wanted {
            Value::Array(options) => options.iter().any(|o| scalar_eq(have, o)),
            other => scalar_eq(have, other),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::LeadId;
    use std::collections::BTreeSet;

    struct Known {
        lead: Lead,
        tags: BTreeSet<String>,
        events: Vec<EventFact>,
    }

    impl Facts for Known {
        fn lead(&self) -> &Lead {
            &self.lead
        }
        fn has_tag(&self, tag: &str) -> bool {
            self.tags.contains(tag)
        }
        fn events(&self) -> &[EventFact] {
            &self.events
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-20T08:00:00Z".parse().unwrap()
    }

    fn facts() -> Known {
        let mut lead = Lead::new(LeadId(1), now());
        lead.score = 65;
        lead.stage = Stage::Nurturing;
        lead.fields.insert("industry", "Finance".into());
        lead.fields.insert("company_size", "200-1000".into());
        lead.attributes.insert("employees".into(), Value::from(250));
        Known {
            lead,
            tags: ["industry:finance".to_string(), "source:website".into()].into(),
            events: vec![EventFact {
                kind: "webinar_attended".into(),
                occurred_at: now() - chrono::Duration::days(10),
                properties: serde_json::json!({"topic": "IoT", "path": "/pricing/enterprise"})
                    .as_object()
                    .unwrap()
                    .clone(),
            }],
        }
    }

    fn check(yaml: &str, expect: bool) {
        let mut segments = Segments::new();
        let icp: Condition =
            serde_saphyr::from_str("{ field: { name: company_size, in: [\"200-1000\", \"1000+\"] } }").unwrap();
        segments.insert("icp".into(), icp);
        let cond: Condition = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(cond.eval(&facts(), &segments, now()), expect, "{yaml}");
    }

    #[test]
    fn visited_counts_a_persons_views_of_matching_pages_in_the_window() {
        let view = |days_ago: i64, path: &str, automated: bool| EventFact {
            kind: "page_view".into(),
            occurred_at: now() - chrono::Duration::days(days_ago),
            properties: serde_json::json!({"path": path, "automated": automated})
                .as_object()
                .unwrap()
                .clone(),
        };
        let known = Known {
            events: vec![
                view(1, "/pricing", false),
                view(10, "/pricing/enterprise", false),
                view(2, "/pricing", true),
                view(3, "/blog/pricing", false),
            ],
            ..facts()
        };
        let holds = |yaml: &str| {
            let cond: Condition = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            cond.eval(&known, &Segments::new(), now())
        };
        assert!(holds("{ visited: { url: /pricing* } }"));
        assert!(holds("{ visited: { url: /pricing*, times: 2 } }"));
        assert!(
            !holds("{ visited: { url: /pricing*, times: 3 } }"),
            "the bot's view does not count"
        );
        assert!(
            !holds("{ visited: { url: /pricing*, within: 7d, times: 2 } }"),
            "one in the week"
        );
        assert!(holds("{ visited: { url: /pricing*, within: 7d } }"));
        assert!(holds("{ visited: { url: \"/blog/*\" } }"));
        assert!(!holds("{ visited: { url: /docs* } }"));
        let cond: Condition = serde_saphyr::from_str("{ visited: { url: /pricing*, within: 7d, times: 2 } }").unwrap();
        assert_eq!(cond.to_string(), "visited /pricing* 2 times within 1w");
        let mut needs = HashMap::new();
        cond.event_needs(&Segments::new(), &mut needs);
        assert_eq!(
            needs.get("page_view").copied().flatten().map(|s| s.to_string()),
            Some("1w".into())
        );
    }

    #[test]
    fn tags() {
        check("{ tag: industry:finance }", true);
        check("{ tag: industry:energy }", false);
        check("{ any_tag: [industry:energy, source:website] }", true);
        check("{ all_tags: [industry:energy, source:website] }", false);
    }

    #[test]
    fn scores_and_stages() {
        check("{ score: { gte: 60 } }", true);
        check("{ score: { gte: 60, lt: 65 } }", false);
        check("{ score: { eq: 65 } }", true);
        check("{ stage: [nurturing, recycled] }", true);
        check("{ stage: [mql] }", false);
    }

    #[test]
    fn fields() {
        check("{ field: { name: industry, in: [finance, energy] } }", true);
        check("{ field: { name: industry, eq: energy } }", false);
        check("{ field: { name: title, exists: true } }", false);
        check("{ field: { name: title, exists: false } }", true);
        check("{ field: { name: employees, eq: 250 } }", true);
        check("{ field: { name: attributes.employees, in: [\"250\"] } }", true);
    }

    #[test]
    fn events() {
        check("{ event: { type: webinar_attended } }", true);
        check("{ event: { type: webinar_attended, within: 14d } }", true);
        check("{ event: { type: webinar_attended, within: 7d } }", false);
        check("{ event: { type: webinar_attended, where: { topic: iot } } }", true);
        check(
            "{ event: { type: webinar_attended, where: { topic: [ai, iot] } } }",
            true,
        );
        check("{ event: { type: webinar_attended, where: { topic: ai } } }", false);
        check(
            "{ event: { type: webinar_attended, where: { path_prefix: /pricing } } }",
            true,
        );
        check("{ event: { type: page_view } }", false);
    }

    #[test]
    fn combinations_and_segments() {
        check("{ all: [ { score: { gte: 60 } }, { segment: icp } ] }", true);
        check("{ any: [ { tag: nope }, { not: { segment: icp } } ] }", false);
        check("{ not: { unsubscribed: true } }", true);
        check("{ opened: whitepaper }", false);
    }

    #[test]
    fn inactivity() {
        // The lead was created at now() and its last event was 10 days ago.
        check("{ inactive: 7d }", false);
        let mut facts = facts();
        facts.lead.last_activity_at = Some(now() - chrono::Duration::days(10));
        let cond: Condition = serde_saphyr::from_str("{ inactive: 7d }").unwrap();
        assert!(cond.eval(&facts, &Segments::new(), now()));
        let cond: Condition = serde_saphyr::from_str("{ inactive: 14d }").unwrap();
        assert!(!cond.eval(&facts, &Segments::new(), now()));
    }

    #[test]
    fn event_needs_take_the_widest_window() {
        let cond: Condition = serde_saphyr::from_str(
            "{ any: [ { event: { type: a, within: 3d } }, { event: { type: a, within: 14d } }, { event: { type: b } } ] }",
        )
        .unwrap();
        let mut needs = HashMap::new();
        cond.event_needs(&Segments::new(), &mut needs);
        assert_eq!(needs["a"], Some("14d".parse().unwrap()));
        assert_eq!(needs["b"], None);
    }
}
