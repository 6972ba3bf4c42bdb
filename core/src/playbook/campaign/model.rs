//! A campaign as the engine runs it: a petgraph graph of steps, and how to read it.

use super::*;
use chrono::{NaiveTime, Weekday};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::{BTreeSet, HashMap};

use crate::channel::Channel;
use crate::condition::Condition;
use crate::duration::Span;
use crate::playbook::{Issue, Position, Queues};
use crate::template::Templates;

// ---- Runtime types. ----

/// A campaign's step ids to their nodes.
pub(super) type StepIndex = HashMap<String, NodeIndex, rustc_hash::FxBuildHasher>;

/// A validated campaign: its graph of steps and what the engine needs to run it.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub campaign_type: CampaignType,
    pub description: Option<String>,
    /// A hash of the campaign's canonical content: formatting and comments do not change it.
    pub version: String,
    /// The canonical content (JSON, keys sorted) that `version` hashes; kept with each
    /// deployed version.
    pub definition: String,
    pub file: String,
    pub id_position: Position,
    pub entry: Entry,
    pub exit_when: Option<Condition>,
    pub send_window: Option<SendWindow>,
    pub priority: u8,
    pub graph: DiGraph<Step, Edge>,
    pub start: NodeIndex,
    /// Step ids to nodes, asked for every step an enrollment takes. FxHash: the keys are the
    /// playbook's own step ids, validated on deploy, not anything a request sends, so SipHash's
    /// resistance to chosen keys would be paid for on every step for nothing.
    pub(super) index: StepIndex,
    pub(super) enrolls: Vec<(String, Position)>,
    /// A step reads the event that enrolled the lead (a wait until one of its properties):
    /// the engine loads that event for the campaign's running enrollments.
    pub reads_event: bool,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub trigger: Trigger,
    pub when: Option<Condition>,
    pub event: Option<String>,
    pub reentry: Reentry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    pub days: BTreeSet<u32>,
    pub from: NaiveTime,
    pub to: NaiveTime,
    /// Sends deferred to the opening go out over this long after it.
    pub spread: Span,
}

impl SendWindow {
    /// Whether the window is open on `day` (0 = Monday).
    pub fn has_day(&self, day: Weekday) -> bool {
        self.days.contains(&day.num_days_from_monday())
    }
}

/// One step of the graph.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub position: Position,
    pub description: Option<String>,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    Send {
        channel: Channel,
        template: String,
        variants: Vec<(Condition, String)>,
        on_cap: OnCap,
    },
    Wait(Wait),
    Branch(Condition),
    /// The arms are the outgoing `Edge::Split` edges.
    Split,
    Tag {
        add: Vec<String>,
        remove: Vec<String>,
    },
    Score(i64),
    Handoff {
        queue: String,
        reason: String,
        priority: u8,
    },
    Enroll {
        campaign: String,
    },
    Exit {
        outcome: String,
    },
}

impl Action {
    /// The step kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Send { .. } => "send",
            Action::Wait(_) => "wait",
            Action::Branch(_) => "branch",
            Action::Split => "split",
            Action::Tag { .. } => "tag",
            Action::Score(_) => "score",
            Action::Handoff { .. } => "handoff",
            Action::Enroll { .. } => "enroll",
            Action::Exit { .. } => "exit",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Wait {
    For(Span),
    Until {
        condition: Condition,
        timeout: Span,
    },
    /// Until a moment: a fixed one, or one a lead's date attribute names.
    At(Moment),
}

/// A moment a wait ends at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moment {
    /// With its offset (`2026-12-10T09:00:00+08:00`).
    Fixed(chrono::DateTime<chrono::Utc>),
    /// A wall time in the lead's time zone (`2026-12-10 09:00`).
    Local(chrono::NaiveDateTime),
    /// The date attribute `name` of the lead, moved by `offset` (negative: earlier).
    Attribute { name: String, offset: chrono::Duration },
    /// The date property `name` of the event that enrolled the lead, moved by `offset`.
    EventProperty { name: String, offset: chrono::Duration },
}

impl Moment {
    /// The instant for a lead whose time zone is `tz`, or why there is none. A wall time in a
    /// DST gap is the moment clocks jump; in an overlap, the first (as send windows read it).
    pub fn resolve(
        &self,
        lead: &crate::lead::Lead,
        event: Option<&crate::condition::EventFact>,
        tz: chrono_tz::Tz,
    ) -> Result<chrono::DateTime<chrono::Utc>, String> {
        use chrono::Timelike;
        match self {
            Moment::Fixed(at) => Ok(*at),
            Moment::Local(wall) => Ok(crate::pacing::local_instant(
                tz,
                wall.date(),
                wall.time().num_seconds_from_midnight(),
            )),
            Moment::Attribute { name, offset } => {
                let value = lead.field(name).ok_or_else(|| format!("the lead has no {name}"))?;
                let text = value.as_str().ok_or_else(|| format!("{name} is {value}, not a date"))?;
                let at = parse_moment(text)
                    .ok_or_else(|| format!("{name} is {text:?}, not a date or a date and time"))?
                    .resolve(lead, None, tz)?;
                Ok(at + *offset)
            }
            Moment::EventProperty { name, offset } => {
                let event = event.ok_or("no event enrolled the lead")?;
                let value = event
                    .properties
                    .get(name)
                    .ok_or_else(|| format!("the {} event has no {name}", event.kind))?;
                let text = value
                    .as_str()
                    .ok_or_else(|| format!("event.{name} is {value}, not a date"))?;
                let at = parse_moment(text)
                    .ok_or_else(|| format!("event.{name} is {text:?}, not a date or a date and time"))?
                    .resolve(lead, None, tz)?;
                Ok(at + *offset)
            }
        }
    }
}

/// `2026-12-10T09:00:00+08:00` (fixed); `2026-12-10 09:00`, `2026-12-10T09:00:00` or
/// `2026-12-10` (midnight) in the lead's time zone.
pub fn parse_moment(text: &str) -> Option<Moment> {
    let text = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(Moment::Fixed(at.with_timezone(&chrono::Utc)));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(wall) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(Moment::Local(wall));
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|day| Moment::Local(day.and_time(chrono::NaiveTime::MIN)))
}

impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Moment::Fixed(at) => write!(f, "{}", at.to_rfc3339()),
            Moment::Local(wall) => write!(f, "{} in the lead's time zone", wall.format("%Y-%m-%d %H:%M")),
            Moment::Attribute { name, offset } => write_offset(f, name, *offset),
            Moment::EventProperty { name, offset } => write_offset(f, &format!("event.{name}"), *offset),
        }
    }
}

/// `name`, or `name - 1d`.
fn write_offset(f: &mut std::fmt::Formatter<'_>, name: &str, offset: chrono::Duration) -> std::fmt::Result {
    if offset.is_zero() {
        return write!(f, "{name}");
    }
    let span = Span::from_secs(offset.num_seconds().abs());
    let sign = if offset < chrono::Duration::zero() { "-" } else { "+" };
    write!(f, "{name} {sign} {span}")
}

/// How one step leads to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Next,
    Yes,
    No,
    Split { weight: u32 },
}

/// One arm of a split step (see [`Campaign::split_arms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitArm {
    /// 1 for the first arm written; the journey logs `arm N`.
    pub number: u32,
    pub weight: u32,
    /// The step the arm leads to.
    pub first: String,
    /// The steps only this arm's leads reach (the first among them), in no order.
    pub steps: Vec<String>,
}

/// What a campaign may refer to outside itself.
pub struct BuildContext<'a> {
    pub segments: &'a crate::diagnostic::KnownIds<'a>,
    pub campaigns: &'a crate::diagnostic::KnownIds<'a>,
    pub queues: &'a Queues,
    pub templates: &'a Templates,
}

/// Step kinds in the order they are listed in messages.
pub(super) const KINDS: &str = "send, wait, branch, split, tag, score, handoff, enroll or exit";

impl Campaign {
    /// Builds the runtime graph from the spec, or returns every error found. `text` is the
    /// file's source, whose canonical form gives the version. On success, the warnings.
    pub fn build(
        file: &str,
        spec: CampaignSpec,
        text: &str,
        context: &BuildContext<'_>,
    ) -> Result<(Campaign, Vec<Issue>), Vec<Issue>> {
        Builder {
            file,
            context,
            issues: Vec::new(),
            missing_next: false,
        }
        .build(spec, text)
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.index.get(id).map(|&n| &self.graph[n])
    }

    pub fn node(&self, id: &str) -> Option<NodeIndex> {
        self.index.get(id).copied()
    }

    /// Steps in the order they are written.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.graph.node_indices().map(|n| &self.graph[n])
    }

    /// The step an edge of this kind leads to from `from`.
    pub fn follow(&self, from: NodeIndex, edge: Edge) -> Option<NodeIndex> {
        self.graph.edges(from).find(|e| *e.weight() == edge).map(|e| e.target())
    }

    /// A split step's arms in written order: each one's weight and the step it leads to.
    pub fn arms(&self, split: NodeIndex) -> Vec<(u32, String)> {
        let mut arms: Vec<(u32, String)> = self
            .graph
            .edges(split)
            .filter_map(|e| match e.weight() {
                Edge::Split { weight } => Some((*weight, self.graph[e.target()].id.clone())),
                _ => None,
            })
            .collect();
        // petgraph lists a node's edges newest first.
        arms.reverse();
        arms
    }

    /// Each split step's arms (its step id, then the arms in written order), each arm with the
    /// steps that only its leads reach: what a report compares arm by arm.
    pub fn split_arms(&self) -> Vec<(String, Vec<SplitArm>)> {
        let reach = |from: NodeIndex| {
            let mut seen = BTreeSet::new();
            let mut dfs = petgraph::visit::Dfs::new(&self.graph, from);
            while let Some(n) = dfs.next(&self.graph) {
                seen.insert(n);
            }
            seen
        };
        self.graph
            .node_indices()
            .filter(|n| matches!(self.graph[*n].action, Action::Split))
            .map(|split| {
                let arms = self.arms(split);
                let reached: Vec<BTreeSet<NodeIndex>> = arms
                    .iter()
                    .map(|(_, first)| self.node(first).map(&reach).unwrap_or_default())
                    .collect();
                let arms = arms
                    .into_iter()
                    .enumerate()
                    .map(|(i, (weight, first))| {
                        let others: BTreeSet<NodeIndex> = reached
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .flat_map(|(_, r)| r.iter().copied())
                            .collect();
                        SplitArm {
                            number: i as u32 + 1,
                            weight,
                            first,
                            steps: reached[i]
                                .difference(&others)
                                .map(|n| self.graph[*n].id.clone())
                                .collect(),
                        }
                    })
                    .collect();
                (self.graph[split].id.clone(), arms)
            })
            .collect()
    }

    /// Every condition the campaign evaluates: entry, goal, branches, waits and variants.
    pub fn conditions(&self) -> Vec<&Condition> {
        let mut out: Vec<&Condition> = self.entry.when.iter().chain(self.exit_when.iter()).collect();
        for step in self.steps() {
            match &step.action {
                Action::Branch(c) => out.push(c),
                Action::Wait(Wait::Until { condition, .. }) => out.push(condition),
                Action::Send { variants, .. } => out.extend(variants.iter().map(|(c, _)| c)),
                _ => {}
            }
        }
        out
    }

    /// The campaigns this one enrolls leads into.
    pub fn enrolled_campaigns(&self) -> Vec<String> {
        self.enrolls.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Where this campaign's `enroll` into `campaign` is written.
    pub fn enroll_position(&self, campaign: &str) -> Option<Position> {
        self.enrolls.iter().find(|(c, _)| c == campaign).map(|(_, p)| *p)
    }
}
