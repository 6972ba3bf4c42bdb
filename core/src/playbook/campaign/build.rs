//! `Campaign::build`: a spec turned into the graph, each step and reference checked, every
//! problem reported with its position.

use super::*;
use chrono::{NaiveTime, Weekday};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_saphyr::Spanned;
use std::collections::BTreeSet;

use crate::channel::Channel;
use crate::condition::{Condition, MessageRef};
use crate::duration::Span;
use crate::playbook::{Issue, Position};
use crate::tag::normalize_tag;

pub(super) struct Builder<'a> {
    pub(super) file: &'a str,
    pub(super) context: &'a BuildContext<'a>,
    pub(super) issues: Vec<Issue>,
    /// A step that needs a `next` has none: the steps after it are then unreachable only
    /// because of that one error, which is reported alone.
    pub(super) missing_next: bool,
}

/// A step's outgoing reference before it is resolved: the edge and the step id it names.
pub(super) struct Link {
    pub(super) from: NodeIndex,
    pub(super) edge: Edge,
    pub(super) target: Spanned<String>,
    pub(super) field: &'static str,
}

impl Builder<'_> {
    /// Reports a step that has no way on (see `missing_next`).
    fn missing(&mut self, at: &serde_saphyr::Location, message: String) {
        self.missing_next = true;
        self.error(at, message);
    }

    pub(super) fn error(&mut self, at: &serde_saphyr::Location, message: impl Into<String>) {
        self.issues.push(Issue::at(self.file, Position::of(at), message));
    }

    pub(super) fn span(&mut self, text: &Spanned<String>) -> Option<Span> {
        match text.value.parse::<Span>() {
            Ok(span) => Some(span),
            Err(e) => {
                self.error(&text.referenced, e.to_string());
                None
            }
        }
    }

    /// A wait until a moment (`until_time`, or `until: { attribute, offset }`): `None` when
    /// the wait is of another kind, `Some(None)` when it is a moment written wrong (reported).
    fn moment(&mut self, id: &Spanned<String>, wait: &WaitSpec) -> Option<Option<Moment>> {
        let moment = match (&wait.until_time, &wait.until) {
            (Some(at), _) => {
                if wait.wait_for.is_some() || wait.until.is_some() || wait.timeout.is_some() {
                    self.error(
                        &at.referenced,
                        "a wait has one of `for`, `until` with a `timeout`, or `until_time`; not several",
                    );
                    return Some(None);
                }
                let parsed = parse_moment(&at.value);
                if parsed.is_none() {
                    self.error(
                        &at.referenced,
                        format!(
                            "invalid moment {:?}; write 2026-12-10T09:00:00+08:00, or 2026-12-10 09:00 for the \
                             lead's time zone",
                            at.value
                        ),
                    );
                }
                parsed
            }
            (None, Some(UntilSpec::Moment(spec))) => {
                if let Some(extra) = wait.wait_for.as_ref().or(wait.timeout.as_ref()) {
                    self.error(
                        &extra.referenced,
                        "a wait until a moment takes no `for` or `timeout`: it ends at the moment",
                    );
                    return Some(None);
                }
                let offset = match &spec.offset {
                    Some(text) => match self.signed_span(text) {
                        Some(offset) => offset,
                        None => return Some(None),
                    },
                    None => chrono::Duration::zero(),
                };
                match (&spec.attribute, &spec.event_property) {
                    (Some(name), None) => Some(Moment::Attribute {
                        name: name.value.trim().to_owned(),
                        offset,
                    }),
                    (None, Some(property)) => Some(Moment::EventProperty {
                        name: property.value.trim().to_owned(),
                        offset,
                    }),
                    (Some(_), Some(property)) => {
                        self.error(
                            &property.referenced,
                            "a moment is either `attribute` (of the lead) or `event_property` (of the event that \
                             enrolled it), not both",
                        );
                        None
                    }
                    (None, None) => {
                        self.error(
                            &id.referenced,
                            "a wait until a moment needs `attribute: NAME`, a date of the lead (e.g. `{ attribute: \
                             webinar_at, offset: -1d }`)",
                        );
                        None
                    }
                }
            }
            _ => return None,
        };
        Some(moment)
    }

    /// `-1d` (earlier), `2h` or `+2h` (later). `None` when it is not a duration (reported).
    fn signed_span(&mut self, text: &Spanned<String>) -> Option<chrono::Duration> {
        let raw = text.value.trim();
        let (negative, rest) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw.strip_prefix('+').unwrap_or(raw)),
        };
        match rest.trim().parse::<Span>() {
            Ok(span) if negative => Some(-span.to_chrono()),
            Ok(span) => Some(span.to_chrono()),
            Err(e) => {
                self.error(&text.referenced, format!("{e} (with `-` before it for earlier)"));
                None
            }
        }
    }

    pub(super) fn condition(&mut self, condition: &mut Condition, messages: Option<&mut Vec<MessageRef>>) {
        condition.check(self.file, self.context.segments, messages, &mut self.issues);
    }

    pub(super) fn template(&mut self, channel: Channel, name: &Spanned<String>) {
        if let Err(message) = self.context.templates.check(channel, &name.value) {
            self.error(&name.referenced, message);
        }
    }

    pub(super) fn tags(&mut self, tags: &[Spanned<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for tag in tags {
            match normalize_tag(&tag.value) {
                Ok(t) => out.push(t),
                Err(message) => self.error(&tag.referenced, message),
            }
        }
        out
    }

    /// Long on purpose: the campaign file's sections checked in the order they are written
    /// (name, priority, entry, goal, steps, graph), each a few lines, so that the errors come
    /// out in the file's order.
    pub(super) fn build(mut self, mut spec: CampaignSpec, text: &str) -> Result<(Campaign, Vec<Issue>), Vec<Issue>> {
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
        let reads_event = graph
            .node_weights()
            .any(|s| matches!(&s.action, Action::Wait(Wait::At(Moment::EventProperty { .. }))));
        if reads_event && entry.trigger != Trigger::Event {
            for step in graph.node_weights() {
                if let Action::Wait(Wait::At(Moment::EventProperty { name, .. })) = &step.action {
                    self.issues.push(Issue::at(
                        self.file,
                        step.position,
                        format!(
                            "step {:?} waits until `event_property: {name}`, but no event enrolls leads into this \
                             campaign: use `entry: {{ trigger: event, event: … }}`, or a date attribute of the lead \
                             (`attribute: {name}`)",
                            step.id
                        ),
                    ));
                }
            }
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
            reads_event,
        };
        Ok((campaign, self.issues))
    }

    pub(super) fn entry(&mut self, spec: &mut EntrySpec, id: &Spanned<String>) -> Entry {
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

    pub(super) fn send_window(&mut self, spec: &SendWindowSpec) -> Option<SendWindow> {
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
            spread: spec.spread.unwrap_or_else(crate::playbook::default_spread),
        })
    }

    /// Long on purpose: one arm per step kind, each checking that kind's fields where the
    /// marketer wrote them; the arms share the step's links and positions, and apart they would
    /// pass all of it around.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
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
            (_, None) => self.missing(
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
            if let Some(moment) = self.moment(id, wait) {
                return moment.map(|m| Action::Wait(Wait::At(m)));
            }
            let until = match wait.until.as_mut() {
                Some(UntilSpec::Condition(condition)) => Some(condition),
                _ => None,
            };
            match (&wait_for, until, &timeout) {
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
            if !self.context.campaigns.contains(&target.value) {
                let hint = self
                    .context
                    .campaigns
                    .hint(&target.value, "; enroll names the `id` of a `kind: Campaign` file");
                self.error(
                    &target.referenced,
                    format!("campaign {:?} does not exist{hint}", target.value),
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
}

/// `; did you mean "wait_open"?` when an existing step id is close to the one written.
pub(super) fn suggest<'a>(wanted: &str, ids: impl Iterator<Item = &'a String>) -> String {
    crate::diagnostic::KnownIds::new(ids).hint(wanted, "")
}

pub(super) fn is_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(super) fn is_outcome(outcome: &str) -> bool {
    !outcome.is_empty()
        && outcome.len() <= 64
        && outcome
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn parse_weekday(day: &str) -> Option<Weekday> {
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
