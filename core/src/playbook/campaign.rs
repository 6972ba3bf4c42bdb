//! `kind: Campaign`: a campaign graph as written (`CampaignSpec`) and as run (`Campaign`, a
//! petgraph graph of steps). `Campaign::build` checks everything a marketer can get wrong and
//! reports all of it, each with file, line and column.

use chrono::{NaiveTime, Weekday};
use indexmap::IndexMap;
use petgraph::algo::{dominators, tarjan_scc};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, EdgeRef, NodeFiltered};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{schema, HandoffSpec, Issue, Position, Queues};
use crate::channel::Channel;
use crate::condition::{Condition, MessageKind, MessageRef};
use crate::duration::Span;
use crate::tag::normalize_tag;
use crate::template::Templates;

// ---- Spec types: the YAML as written. ----

/// `kind: Campaign`, as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// Always `Campaign`.
    #[schemars(schema_with = "schema::kind_campaign")]
    pub kind: String,
    /// `[a-z0-9-]`, unique in the playbook, stable across versions.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub campaign_type: CampaignType,
    #[serde(default)]
    pub description: Option<String>,
    pub entry: EntrySpec,
    /// The goal: checked after every step and on every event; the lead leaves at once.
    #[serde(default)]
    pub exit_when: Option<Condition>,
    /// Sends happen only inside this window, in the lead's time zone.
    #[serde(default)]
    pub send_window: Option<SendWindowSpec>,
    /// 0-100 (default 50): when frequency caps force a choice, the higher priority sends.
    #[serde(default)]
    #[schemars(with = "Option<u8>", range(max = 100))]
    pub priority: Option<Spanned<i64>>,
    /// The first step.
    #[schemars(with = "String")]
    pub start: Spanned<String>,
    /// Steps by id (`[a-z0-9_-]`); each does one thing.
    #[schemars(with = "BTreeMap<String, StepSpec>")]
    pub steps: IndexMap<Spanned<String>, StepSpec>,
}

/// What kind of programme a campaign is, from the nurture method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignType {
    Drip,
    Activation,
    Welcome,
    Custom,
}

impl CampaignType {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignType::Drip => "drip",
            CampaignType::Activation => "activation",
            CampaignType::Welcome => "welcome",
            CampaignType::Custom => "custom",
        }
    }
}

/// How leads enter.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    pub trigger: Trigger,
    /// `segment`: leads matching this are enrolled as soon as they match. `event`: a further
    /// condition on the lead. `manual`: optional guard.
    #[serde(default)]
    pub when: Option<Condition>,
    /// `event` trigger: the event type that enrolls the lead (e.g. `registered`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub event: Option<Spanned<String>>,
    /// What happens when an enrolled-before lead matches again. Default `never`.
    #[serde(default)]
    pub reentry: Option<Reentry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Segment,
    Event,
    Manual,
}

/// `never | always | { after: 30d }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    Never,
    Always,
    After(Span),
}

/// `send_window: { days: [mon, tue, …], from: "09:00", to: "18:00" }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindowSpec {
    /// Weekdays as `mon` … `sun`; every day when absent.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub days: Vec<Spanned<String>>,
    /// `HH:MM` in the lead's time zone.
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    #[schemars(with = "String")]
    pub to: Spanned<String>,
    /// Sends held back until the window opens go out over this long after it opens
    /// (default 15m), so the relay does not get them all in one second.
    #[serde(default)]
    pub spread: Option<Span>,
}

/// One step, as written: exactly one of the kinds, and `next` where the kind goes on.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub send: Option<SendSpec>,
    #[serde(default)]
    pub wait: Option<WaitSpec>,
    #[serde(default)]
    pub branch: Option<BranchSpec>,
    /// Arms chosen by weight, deterministically per lead and step.
    #[serde(default)]
    pub split: Option<Vec<SplitArmSpec>>,
    #[serde(default)]
    pub tag: Option<TagStepSpec>,
    /// Points to add (negative to take away).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub score: Option<Spanned<i64>>,
    /// Ends the enrollment: the lead goes to a queue.
    #[serde(default)]
    pub handoff: Option<HandoffSpec>,
    #[serde(default)]
    pub enroll: Option<EnrollSpec>,
    /// Ends the enrollment with this outcome, e.g. `returned_to_pool`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub exit: Option<Spanned<String>>,
    /// The step that follows.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub next: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSpec {
    pub channel: Channel,
    /// `templates/NAME.hbs` (+ `.subject.hbs`, optional `.txt.hbs`) for e-mail,
    /// `templates/NAME.wechat.yaml` for WeChat, `templates/NAME.json.hbs` for a webhook.
    #[schemars(with = "String")]
    pub template: Spanned<String>,
    /// First match wins, else `template`.
    #[serde(default)]
    pub variants: Vec<VariantSpec>,
    /// When the send would break a frequency cap of the Rules: `defer` (the default) sends at
    /// the first moment the cap allows; `skip` goes on without it.
    #[serde(default)]
    pub on_cap: Option<OnCap>,
}

/// What a send does at a frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnCap {
    #[default]
    Defer,
    Skip,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    pub when: Condition,
    #[schemars(with = "String")]
    pub template: Spanned<String>,
}

/// Either `for: DURATION`, or `until: CONDITION` with a `timeout`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitSpec {
    #[serde(default, rename = "for")]
    #[schemars(with = "Option<Span>")]
    pub wait_for: Option<Spanned<String>>,
    /// Wakes as soon as it holds.
    #[serde(default)]
    pub until: Option<Condition>,
    #[serde(default)]
    #[schemars(with = "Option<Span>")]
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    #[serde(rename = "if")]
    pub condition: Condition,
    #[schemars(with = "String")]
    pub then: Spanned<String>,
    #[serde(rename = "else")]
    #[schemars(with = "String")]
    pub otherwise: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitArmSpec {
    #[schemars(with = "u32", range(min = 1))]
    pub weight: Spanned<i64>,
    #[schemars(with = "String")]
    pub next: Spanned<String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagStepSpec {
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub add: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub remove: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollSpec {
    #[schemars(with = "String")]
    pub campaign: Spanned<String>,
}

// ---- Runtime types. ----

/// A campaign's step ids to their nodes.
type StepIndex = HashMap<String, NodeIndex, rustc_hash::FxBuildHasher>;

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
    /// playbook's own step ids, validated on deploy, not anything a request sends; SipHash was
    /// 0.6% of the instructions of a W2 step in `bench engine`.
    index: StepIndex,
    enrolls: Vec<(String, Position)>,
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
    Until { condition: Condition, timeout: Span },
}

/// How one step leads to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Next,
    Yes,
    No,
    Split { weight: u32 },
}

/// What a campaign may refer to outside itself.
pub struct BuildContext<'a> {
    pub segment_exists: &'a dyn Fn(&str) -> bool,
    pub campaign_exists: &'a dyn Fn(&str) -> bool,
    pub queues: &'a Queues,
    pub templates: &'a Templates,
}

/// Step kinds in the order they are listed in messages.
const KINDS: &str = "send, wait, branch, split, tag, score, handoff, enroll or exit";

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

struct Builder<'a> {
    file: &'a str,
    context: &'a BuildContext<'a>,
    issues: Vec<Issue>,
}

/// A step's outgoing reference before it is resolved: the edge and the step id it names.
struct Link {
    from: NodeIndex,
    edge: Edge,
    target: Spanned<String>,
    field: &'static str,
}

impl Builder<'_> {
    fn error(&mut self, at: &serde_saphyr::Location, message: impl Into<String>) {
        self.issues.push(Issue::at(self.file, Position::of(at), message));
    }

    fn span(&mut self, text: &Spanned<String>) -> Option<Span> {
        match text.value.parse::<Span>() {
            Ok(span) => Some(span),
            Err(e) => {
                self.error(&text.referenced, e.to_string());
                None
            }
        }
    }

    fn condition(&mut self, condition: &mut Condition, messages: Option<&mut Vec<MessageRef>>) {
        condition.check(self.file, self.context.segment_exists, messages, &mut self.issues);
    }

    fn template(&mut self, channel: Channel, name: &Spanned<String>) {
        if let Err(message) = self.context.templates.check(channel, &name.value) {
            self.error(&name.referenced, message);
        }
    }

    fn tags(&mut self, tags: &[Spanned<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for tag in tags {
            match normalize_tag(&tag.value) {
                Ok(t) => out.push(t),
                Err(message) => self.error(&tag.referenced, message),
            }
        }
        out
    }

    fn build(mut self, mut spec: CampaignSpec, text: &str) -> Result<(Campaign, Vec<Issue>), Vec<Issue>> {
        let id_position = Position::of(&spec.id.referenced);
        if spec.name.trim().is_empty() {
            self.error(&spec.id.referenced, "the campaign needs a `name` people will recognise");
        }
        let priority = match &spec.priority {
            Some(p) if !(0..=100).contains(&p.value) => {
                self.error(&p.referenced, "priority must be between 0 and 100");
                50
            }
            Some(p) => p.value as u8,
            None => 50,
        };
        let entry = self.entry(&mut spec.entry, &spec.id);
        if let Some(goal) = spec.exit_when.as_mut() {
            self.condition(goal, None);
        }
        let send_window = spec.send_window.as_ref().and_then(|w| self.send_window(w));

        // Nodes first, in the order written, so that edges can name any of them.
        let mut graph: DiGraph<Step, Edge> = DiGraph::new();
        let mut index = StepIndex::default();
        let mut links = Vec::new();
        let mut messages: Vec<(NodeIndex, MessageRef)> = Vec::new();
        let mut enrolls = Vec::new();
        for (id, _) in &spec.steps {
            if !is_step_id(&id.value) {
                self.error(
                    &id.referenced,
                    format!(
                        "step id {:?} must be 1 to 64 lower-case letters, digits, '_' or '-'",
                        id.value
                    ),
                );
            }
            let node = graph.add_node(Step {
                id: id.value.clone(),
                position: Position::of(&id.referenced),
                description: None,
                action: Action::Exit { outcome: String::new() },
            });
            index.insert(id.value.clone(), node);
        }
        // A step that could not be built has no edges; checks of the whole graph would then
        // report what is only a consequence, so they wait until every step builds.
        let mut complete = true;
        for (node, (id, step)) in spec.steps.iter_mut().enumerate() {
            let node = NodeIndex::new(node);
            let mut found = Vec::new();
            let action = self.step(id, step, node, &mut links, &mut found, &mut enrolls);
            messages.extend(found.into_iter().map(|m| (node, m)));
            graph[node].description = step.description.clone();
            match action {
                Some(action) => graph[node].action = action,
                None => complete = false,
            }
        }

        // Resolve the links; a dangling one is reported with the nearest existing step id.
        let mut resolved = true;
        for link in links {
            match index.get(&link.target.value) {
                Some(&to) => {
                    graph.add_edge(link.from, to, link.edge);
                }
                None => {
                    resolved = false;
                    let message = format!(
                        "`{}` names step {:?}, which does not exist{}",
                        link.field,
                        link.target.value,
                        suggest(&link.target.value, index.keys())
                    );
                    self.error(&link.target.referenced, message);
                }
            }
        }
        let start = match index.get(&spec.start.value) {
            Some(&start) => Some(start),
            None => {
                let message = format!(
                    "`start` names step {:?}, which does not exist{}",
                    spec.start.value,
                    suggest(&spec.start.value, index.keys())
                );
                self.error(&spec.start.referenced, message);
                None
            }
        };

        if let (Some(start), true, true) = (start, resolved, complete) {
            self.check_graph(&graph, &index, start, &spec.start.value, &messages);
        }

        if self.issues.iter().any(Issue::is_error) {
            return Err(self.issues);
        }
        let definition = canonical_definition(self.file, text).map_err(|issue| vec![issue])?;
        let version = version_of(&definition);
        let campaign = Campaign {
            id: spec.id.value,
            name: spec.name,
            campaign_type: spec.campaign_type,
            description: spec.description,
            version,
            definition,
            file: self.file.to_owned(),
            id_position,
            entry,
            exit_when: spec.exit_when,
            send_window,
            priority,
            graph,
            start: start.unwrap_or_default(),
            index,
            enrolls,
        };
        Ok((campaign, self.issues))
    }

    fn entry(&mut self, spec: &mut EntrySpec, id: &Spanned<String>) -> Entry {
        if let Some(when) = spec.when.as_mut() {
            self.condition(when, None);
        }
        match spec.trigger {
            Trigger::Segment if spec.when.is_none() => self.error(
                &id.referenced,
                "entry trigger `segment` needs `when`: the condition that enrolls a lead as soon as it holds",
            ),
            Trigger::Event if spec.event.is_none() => self.error(
                &id.referenced,
                "entry trigger `event` needs `event`: the event type that enrolls the lead (e.g. `event: registered`)",
            ),
            _ => {}
        }
        if let Some(event) = &spec.event {
            if spec.trigger != Trigger::Event {
                self.error(
                    &event.referenced,
                    "`event` is only used with `trigger: event`; remove it or change the trigger",
                );
            } else if let Err(message) = crate::event::check_event_type(&event.value) {
                self.error(&event.referenced, message);
            }
        }
        Entry {
            trigger: spec.trigger,
            when: spec.when.clone(),
            event: spec.event.as_ref().map(|e| e.value.clone()),
            reentry: spec.reentry.unwrap_or(Reentry::Never),
        }
    }

    fn send_window(&mut self, spec: &SendWindowSpec) -> Option<SendWindow> {
        let mut days = BTreeSet::new();
        let mut ok = true;
        for day in &spec.days {
            match parse_weekday(&day.value) {
                Some(d) => {
                    days.insert(d.num_days_from_monday());
                }
                None => {
                    ok = false;
                    self.error(
                        &day.referenced,
                        format!(
                            "{:?} is not a weekday; write mon, tue, wed, thu, fri, sat or sun",
                            day.value
                        ),
                    );
                }
            }
        }
        if spec.days.is_empty() {
            days = (0..7).collect();
        }
        let mut time = |t: &Spanned<String>| match parse_time(&t.value) {
            Some(time) => Some(time),
            None => {
                self.error(
                    &t.referenced,
                    format!(
                        "{:?} is not a time of day; write HH:MM on a 24-hour clock, e.g. \"09:00\"",
                        t.value
                    ),
                );
                None
            }
        };
        let (from, to) = (time(&spec.from), time(&spec.to));
        let (from, to) = (from?, to?);
        if from >= to {
            self.error(
                &spec.to.referenced,
                format!(
                    "the window closes ({}) before it opens ({}); `to` must be later than `from`",
                    spec.to.value, spec.from.value
                ),
            );
            return None;
        }
        ok.then_some(SendWindow {
            days,
            from,
            to,
            spread: spec.spread.unwrap_or_else(super::default_spread),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        id: &Spanned<String>,
        step: &mut StepSpec,
        node: NodeIndex,
        links: &mut Vec<Link>,
        messages: &mut Vec<MessageRef>,
        enrolls: &mut Vec<(String, Position)>,
    ) -> Option<Action> {
        let kinds: Vec<&str> = [
            ("send", step.send.is_some()),
            ("wait", step.wait.is_some()),
            ("branch", step.branch.is_some()),
            ("split", step.split.is_some()),
            ("tag", step.tag.is_some()),
            ("score", step.score.is_some()),
            ("handoff", step.handoff.is_some()),
            ("enroll", step.enroll.is_some()),
            ("exit", step.exit.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(kind, _)| kind)
        .collect();
        match kinds.as_slice() {
            [] => {
                self.error(
                    &id.referenced,
                    format!("step {:?} does nothing; give it one of {KINDS}", id.value),
                );
                return None;
            }
            [_] => {}
            [first, second, ..] => {
                self.error(
                    &id.referenced,
                    format!(
                        "step {:?} has both `{first}` and `{second}`; a step does one thing: split it into steps joined by `next`",
                        id.value
                    ),
                );
                return None;
            }
        }
        let kind = kinds[0];
        let mut link = |edge, target: &Spanned<String>, field| {
            links.push(Link {
                from: node,
                edge,
                target: target.clone(),
                field,
            })
        };
        // Where the lead goes next: required, optional, or not allowed.
        match (kind, &step.next) {
            ("branch" | "split" | "handoff" | "exit", Some(next)) => {
                let how = match kind {
                    "branch" => "a branch goes on by `then` and `else`",
                    "split" => "a split goes on by the `next` of each arm",
                    "handoff" => "a handoff ends the enrollment",
                    _ => "an exit ends the enrollment",
                };
                self.error(&next.referenced, format!("{how}; remove this `next`"));
            }
            ("branch" | "split" | "handoff" | "exit" | "enroll", None) => {}
            (_, None) => self.error(
                &id.referenced,
                format!(
                    "step {:?} ({kind}) has no `next`; say which step follows, or end the flow with an `exit` step",
                    id.value
                ),
            ),
            (_, Some(next)) => link(Edge::Next, next, "next"),
        }

        let action = if let Some(send) = step.send.as_mut() {
            let channel = send.channel;
            let template = send.template.clone();
            let mut variants = Vec::new();
            for variant in send.variants.iter_mut() {
                self.condition(&mut variant.when, Some(messages));
                self.template(channel, &variant.template);
                variants.push((variant.when.clone(), variant.template.value.clone()));
            }
            self.template(channel, &template);
            Action::Send {
                channel,
                template: template.value,
                variants,
                on_cap: send.on_cap.unwrap_or_default(),
            }
        } else if let Some(wait) = step.wait.as_mut() {
            let wait_for = wait.wait_for.clone();
            let timeout = wait.timeout.clone();
            match (&wait_for, wait.until.as_mut(), &timeout) {
                (Some(f), None, None) => Action::Wait(Wait::For(self.span(f)?)),
                (None, Some(until), Some(t)) => {
                    self.condition(until, Some(messages));
                    Action::Wait(Wait::Until {
                        condition: until.clone(),
                        timeout: self.span(t)?,
                    })
                }
                (None, Some(_), None) => {
                    self.error(
                        &id.referenced,
                        "a wait `until` needs a `timeout`, so that no lead waits forever (e.g. `timeout: 3d`)",
                    );
                    return None;
                }
                (Some(f), _, _) => {
                    self.error(
                        &f.referenced,
                        "a wait has either `for`, or `until` with a `timeout`, not both",
                    );
                    return None;
                }
                (None, None, _) => {
                    self.error(
                        &id.referenced,
                        "a wait needs `for: DURATION`, or `until: CONDITION` with a `timeout`",
                    );
                    return None;
                }
            }
        } else if let Some(branch) = step.branch.as_mut() {
            self.condition(&mut branch.condition, Some(messages));
            link(Edge::Yes, &branch.then, "then");
            link(Edge::No, &branch.otherwise, "else");
            Action::Branch(branch.condition.clone())
        } else if let Some(arms) = &step.split {
            if arms.len() < 2 {
                self.error(
                    &id.referenced,
                    "a split needs at least two arms, each `{ weight: N, next: STEP }`",
                );
            }
            for arm in arms {
                if arm.weight.value <= 0 || arm.weight.value > 1_000_000 {
                    self.error(
                        &arm.weight.referenced,
                        format!(
                            "split weight {} must be a positive whole number (at most 1000000)",
                            arm.weight.value
                        ),
                    );
                }
                let weight = arm.weight.value.clamp(0, 1_000_000) as u32;
                link(Edge::Split { weight }, &arm.next, "next");
            }
            Action::Split
        } else if let Some(tag) = &step.tag {
            if tag.add.is_empty() && tag.remove.is_empty() {
                self.error(&id.referenced, "a tag step needs `add`, `remove` or both");
            }
            Action::Tag {
                add: self.tags(&tag.add),
                remove: self.tags(&tag.remove),
            }
        } else if let Some(points) = &step.score {
            if points.value == 0 {
                self.error(
                    &points.referenced,
                    "a score step of 0 changes nothing; give points (negative to take away) or remove the step",
                );
            }
            Action::Score(points.value)
        } else if let Some(handoff) = &step.handoff {
            handoff.check(self.file, self.context.queues, &mut self.issues);
            Action::Handoff {
                queue: handoff.queue.value.clone(),
                reason: handoff.reason.clone(),
                priority: handoff.priority.unwrap_or(50).min(100),
            }
        } else if let Some(enroll) = &step.enroll {
            let target = &enroll.campaign;
            if !(self.context.campaign_exists)(&target.value) {
                self.error(
                    &target.referenced,
                    format!(
                        "campaign {:?} does not exist; enroll names the `id` of a `kind: Campaign` file",
                        target.value
                    ),
                );
            }
            enrolls.push((target.value.clone(), Position::of(&target.referenced)));
            Action::Enroll {
                campaign: target.value.clone(),
            }
        } else {
            let outcome = step.exit.clone()?;
            if !is_outcome(&outcome.value) {
                self.error(
                    &outcome.referenced,
                    format!(
                        "exit outcome {:?} must be lower-case letters, digits and '_', e.g. returned_to_pool",
                        outcome.value
                    ),
                );
            }
            Action::Exit { outcome: outcome.value }
        };
        Some(action)
    }

    /// Checks that need the whole graph: reachability, loops without a wait, and that each
    /// message condition names a send step that comes before it on every path.
    fn check_graph(
        &mut self,
        graph: &DiGraph<Step, Edge>,
        index: &StepIndex,
        start: NodeIndex,
        start_id: &str,
        messages: &[(NodeIndex, MessageRef)],
    ) {
        let mut reached = vec![false; graph.node_count()];
        let mut dfs = Dfs::new(graph, start);
        while let Some(n) = dfs.next(graph) {
            reached[n.index()] = true;
        }
        for n in graph.node_indices().filter(|n| !reached[n.index()]) {
            let step = &graph[n];
            self.issues.push(Issue::at(
                self.file,
                step.position,
                format!(
                    "step {:?} is never reached from `start` ({start_id}); lead to it with `next`, `then` or `else`, or remove it",
                    step.id
                ),
            ));
        }

        // A loop that passes no wait would run a lead round it at once, forever.
        let no_waits = NodeFiltered::from_fn(graph, |n| !matches!(graph[n].action, Action::Wait(_)));
        for scc in tarjan_scc(&no_waits) {
            let looped = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !looped {
                continue;
            }
            let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
            let first = *members.iter().next().unwrap_or(&scc[0]);
            let path = loop_path(graph, first, &members);
            let names: Vec<&str> = path.iter().map(|&n| graph[n].id.as_str()).collect();
            self.issues.push(Issue::at(
                self.file,
                graph[first].position,
                format!(
                    "steps loop without a wait: [ {} ]; a lead would go round at once, forever: put a `wait` in the loop",
                    names.join(" -> ")
                ),
            ));
        }

        let dominators = dominators::simple_fast(graph, start);
        for (node, message) in messages {
            let question = message.question.as_str();
            let Some(&target) = index.get(&message.step) else {
                let ids = index.keys();
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`{question}: {}` names a step that does not exist{}",
                        message.step,
                        suggest(&message.step, ids)
                    ),
                ));
                continue;
            };
            let Action::Send { channel, .. } = graph[target].action else {
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`{question}: {}` names a {} step; it must name a `send` step",
                        message.step,
                        graph[target].action.kind()
                    ),
                ));
                continue;
            };
            if message.question == MessageKind::Opened && channel != Channel::Email {
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`opened: {}` asks about a {} message, which reports no opens; ask `responded` instead",
                        message.step,
                        channel.as_str()
                    ),
                ));
                continue;
            }
            if !reached[node.index()] {
                continue;
            }
            let precedes = *node != target
                && dominators
                    .dominators(*node)
                    .is_some_and(|mut chain| chain.any(|d| d == target));
            if !precedes {
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`{question}: {}` in step {:?}: not every path to this step passes {:?} first, so its message may never have been sent; ask only about a send every path passes",
                        message.step, graph[*node].id, message.step
                    ),
                ));
            }
        }
    }
}

/// A loop through `members` starting and ending at `first`, following edges inside the set.
fn loop_path(graph: &DiGraph<Step, Edge>, first: NodeIndex, members: &BTreeSet<NodeIndex>) -> Vec<NodeIndex> {
    // Breadth-first from `first` back to itself, so the loop shown is a shortest one.
    let mut came_from: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([first]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|m| members.contains(m)).collect();
        next.sort();
        for m in next {
            if m == first {
                let mut path = vec![n];
                let mut at = n;
                while at != first {
                    at = came_from[&at];
                    path.push(at);
                }
                path.reverse();
                path.push(first);
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![first, first]
}

/// `, did you mean "wait_open"?` when an existing id is close to the one written.
fn suggest<'a>(wanted: &str, ids: impl Iterator<Item = &'a String>) -> String {
    let best = ids
        .map(|id| (strsim::levenshtein(wanted, id), id))
        .filter(|(d, id)| *d <= 2.max(id.len().max(wanted.len()) / 3))
        .min();
    match best {
        Some((_, id)) => format!("; did you mean {id:?}?"),
        None => String::new(),
    }
}

fn is_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_outcome(outcome: &str) -> bool {
    !outcome.is_empty()
        && outcome.len() <= 64
        && outcome
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn parse_weekday(day: &str) -> Option<Weekday> {
    Some(match day.trim().to_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

/// `HH:MM` on a 24-hour clock.
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

/// The file's content as JSON with keys sorted: what a campaign's version hashes, so that
/// comments, key order and formatting do not make a new version.
fn canonical_definition(file: &str, text: &str) -> Result<String, Issue> {
    let value: serde_json::Value = super::parse(file, text)?;
    let mut out = String::new();
    write_canonical(&value, &mut out);
    Ok(out)
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The first 12 hex digits of the SHA-256 of the canonical definition.
fn version_of(definition: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(definition.as_bytes());
    hex::encode(digest)[..12].to_owned()
}
