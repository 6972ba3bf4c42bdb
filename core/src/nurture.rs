//! Applying the rules to one lead: behaviour tagging and scoring with caps, attribute and source
//! tags, manual changes, and the MQL check. Pure: the state comes in, the changes go out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::condition::{EventFact, EventView, Facts};
use crate::lead::{Lead, LeadId, Stage};
use crate::playbook::{Playbook, Rules, TaggingRule};
use crate::tag::{normalize_tag, slug, Actor, ScoreChange, TagChange, TagFamily};

/// A request to hand a lead to a queue: it opens a handoff unless the lead has one open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandoffRequest {
    pub lead_id: LeadId,
    pub queue: String,
    pub reason: String,
    pub priority: Option<u8>,
    /// `mql`, `campaign:ID/STEP` or `api:KEY NAME`.
    pub origin: String,
    /// The lead's score and tags at that moment.
    pub score: i64,
    pub tags: Vec<String>,
    pub campaign: Option<String>,
    pub step: Option<String>,
    /// When the queue's SLA is breached if nobody claims it.
    pub sla_due_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

impl HandoffRequest {
    /// A request for this lead as it is now, into `queue` of the playbook.
    pub fn new(
        state: &LeadState,
        playbook: &Playbook,
        queue: &str,
        reason: &str,
        origin: String,
        now: DateTime<Utc>,
    ) -> Self {
        let sla = playbook.queues.queues.get(queue).and_then(|q| q.sla);
        HandoffRequest {
            lead_id: state.lead.id,
            queue: queue.to_owned(),
            reason: reason.to_owned(),
            priority: None,
            origin,
            score: state.lead.score,
            tags: state.tags.keys().cloned().collect(),
            campaign: None,
            step: None,
            sla_due_at: sla.map(|s| now + s.to_chrono()),
            at: now,
        }
    }
}

/// Everything a batch of work changed, ready to be written in a few set-based statements.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub tags: Vec<TagChange>,
    pub scores: Vec<ScoreChange>,
    pub handoffs: Vec<HandoffRequest>,
}

/// What the rules need to know of one lead: the lead, its tags, the events its conditions
/// look at, and the points each capped rule has already given.
#[derive(Debug, Clone)]
pub struct LeadState {
    pub lead: Lead,
    pub tags: BTreeMap<String, TagFamily>,
    pub events: Vec<EventFact>,
    /// Per capped rule: (event time, points) already awarded.
    pub cap_usage: HashMap<String, Vec<(DateTime<Utc>, i64)>>,
    /// Set when the lead row itself changed and must be written.
    pub dirty: bool,
}

impl Facts for LeadState {
    fn lead(&self) -> &Lead {
        &self.lead
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.contains_key(tag)
    }
    fn events(&self) -> &[EventFact] {
        &self.events
    }
}

impl LeadState {
    pub fn new(lead: Lead) -> Self {
        Self {
            lead,
            tags: BTreeMap::new(),
            events: Vec::new(),
            cap_usage: HashMap::new(),
            dirty: false,
        }
    }

    /// Adds a tag unless the lead has it; records the change.
    pub fn add_tag(&mut self, tag: &str, family: TagFamily, actor: &Actor, now: DateTime<Utc>, out: &mut Changes) {
        if self.tags.contains_key(tag) {
            return;
        }
        self.tags.insert(tag.to_owned(), family);
        out.tags.push(TagChange {
            lead_id: self.lead.id,
            tag: tag.to_owned(),
            family,
            added: true,
            actor: actor.clone(),
            at: now,
        });
    }

    /// Removes a tag if the lead has it; records the change.
    pub fn remove_tag(&mut self, tag: &str, actor: &Actor, now: DateTime<Utc>, out: &mut Changes) {
        if let Some(family) = self.tags.remove(tag) {
            out.tags.push(TagChange {
                lead_id: self.lead.id,
                tag: tag.to_owned(),
                family,
                added: false,
                actor: actor.clone(),
                at: now,
            });
        }
    }

    /// Changes the score and records it in the ledger.
    /// The score saturates at ±[`crate::lead::MAX_SCORE`]; the ledger records the change made.
    pub fn add_score(&mut self, mut change: ScoreChange, out: &mut Changes) {
        let score = crate::lead::bounded_score(self.lead.score, change.delta);
        change.delta = score - self.lead.score;
        if change.delta == 0 {
            return;
        }
        self.lead.score = score;
        self.lead.updated_at = change.at;
        self.dirty = true;
        if let Some(rule) = &change.rule {
            self.cap_usage
                .entry(rule.clone())
                .or_default()
                .push((change.occurred_at, change.delta));
        }
        out.scores.push(change);
    }

    /// Applies the tagging rules to one behaviour event of this lead.
    pub fn apply_event(&mut self, rules: &Rules, event: EventView<'_>, now: DateTime<Utc>, out: &mut Changes) {
        if self.lead.last_activity_at.is_none_or(|t| t < event.occurred_at) {
            self.lead.last_activity_at = Some(event.occurred_at);
            self.dirty = true;
        }
        for rule in rules.tagging.iter().filter(|r| r.matches(&event)) {
            let actor = Actor::Rule(rule.id.clone());
            for tag in &rule.tags {
                self.add_tag(tag, TagFamily::of_rule_tag(tag), &actor, now, out);
            }
            if let Some(tag) = rule.tag_from(&event) {
                self.add_tag(&tag, TagFamily::of_rule_tag(&tag), &actor, now, out);
            }
            let points = self.capped_points(rule, event.occurred_at);
            self.add_score(
                ScoreChange {
                    lead_id: self.lead.id,
                    delta: points,
                    reason: event.kind.to_owned(),
                    actor: actor.clone(),
                    rule: rule.cap.map(|_| rule.id.clone()),
                    occurred_at: event.occurred_at,
                    at: now,
                },
                out,
            );
        }
    }

    /// The points a rule may give for an event at `at`, after its cap.
    fn capped_points(&self, rule: &TaggingRule, at: DateTime<Utc>) -> i64 {
        let Some(cap) = rule.cap else {
            return rule.score;
        };
        if rule.score <= 0 {
            return rule.score;
        }
        let since = at - cap.per.to_chrono();
        let used: i64 = self
            .cap_usage
            .get(&rule.id)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(t, d)| *t > since && *t <= at && *d > 0)
                    .map(|(_, d)| d)
                    .sum()
            })
            .unwrap_or(0);
        rule.score.min(cap.max - used).max(0)
    }

    /// Brings attribute tags (from the `attributes:` rules) and the source tag in line with
    /// the lead's fields: stale ones are removed, missing ones added.
    pub fn sync_attribute_tags(&mut self, rules: &Rules, now: DateTime<Utc>, out: &mut Changes) {
        let mut wanted: BTreeMap<String, (TagFamily, String)> = BTreeMap::new();
        for rule in &rules.attributes {
            let Some(value) = self.lead.field(&rule.field) else {
                continue;
            };
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            if let Ok(tag) = normalize_tag(&format!("{}{}", rule.prefix, slug(&text))) {
                if tag.len() > rule.prefix.len() {
                    wanted.insert(tag, (TagFamily::Attribute, format!("attributes.{}", rule.field)));
                }
            }
        }
        if let Some(source) = self.lead.fields.get("source") {
            let value = slug(source);
            if let Ok(tag) = normalize_tag(&format!("source:{value}")) {
                if !value.is_empty() {
                    wanted.entry(tag).or_insert((TagFamily::Source, "source".into()));
                }
            }
        }
        let stale: Vec<(String, TagFamily)> = self
            .tags
            .iter()
            .filter(|(tag, family)| {
                matches!(family, TagFamily::Attribute | TagFamily::Source) && !wanted.contains_key(*tag)
            })
            .map(|(t, f)| (t.clone(), *f))
            .collect();
        for (tag, family) in stale {
            let rule = if family == TagFamily::Source {
                "source"
            } else {
                "attributes"
            };
            self.remove_tag(&tag, &Actor::Rule(rule.into()), now, out);
        }
        for (tag, (family, rule)) in wanted {
            self.add_tag(&tag, family, &Actor::Rule(rule), now, out);
        }
    }

    /// Requests a handoff for this lead (by a campaign step or by hand): the lead moves to
    /// `handed_off` unless it is past that already.
    pub fn hand_off(&mut self, request: HandoffRequest, now: DateTime<Utc>, out: &mut Changes) {
        out.handoffs.push(request);
        if matches!(
            self.lead.stage,
            Stage::New | Stage::Nurturing | Stage::Recycled | Stage::Mql
        ) {
            self.lead.stage = Stage::HandedOff;
            self.lead.updated_at = now;
            self.dirty = true;
        }
    }

    /// Moves the lead to `mql` and requests a handoff when the MQL condition has become true.
    pub fn check_mql(&mut self, playbook: &Playbook, now: DateTime<Utc>, out: &mut Changes) {
        let Some(mql) = &playbook.rules.mql else {
            return;
        };
        if !self.lead.stage.can_become_mql() || !mql.when.eval(self, &playbook.segments, now) {
            return;
        }
        // The MQL's handoff opens in the same move, so the lead waits in its queue in the
        // stage of every lead handed off (`lead.mql` says why it qualified).
        self.lead.stage = Stage::HandedOff;
        self.lead.updated_at = now;
        self.dirty = true;
        let mut request = HandoffRequest::new(
            self,
            playbook,
            &mql.handoff.queue.value,
            &mql.handoff.reason,
            "mql".into(),
            now,
        );
        request.priority = mql.handoff.priority;
        out.handoffs.push(request);
    }
}

impl TaggingRule {
    /// Whether this rule fires for the event.
    /// Whether the rule fires for this event: its type, its `where`, and, unless the rule
    /// includes them, not an open or click a machine made.
    pub fn matches(&self, event: &EventView<'_>) -> bool {
        self.event == event.kind
            && (self.include_automated || !event.by_machine())
            && self.url.as_ref().is_none_or(|u| u.matches(event.properties))
            && self
                .properties
                .as_ref()
                .is_none_or(|w| crate::condition::properties_match(w, event.properties))
    }

    /// The tag `tags_from` derives from the event, if the property is there.
    pub fn tag_from(&self, event: &EventView<'_>) -> Option<String> {
        let from = self.tags_from.as_ref()?;
        let text = match event.properties.get(&from.field)? {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let value = slug(&text);
        if value.is_empty() {
            return None;
        }
        normalize_tag(&format!("{}{value}", from.prefix)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn playbook() -> Playbook {
        Playbook::from_files(
            &[
                ("rules.yaml".into(), include_str!("../../campaigns/rules.yaml").into()),
                (
                    "icp.yaml".into(),
                    include_str!("../../campaigns/segments/icp.yaml").into(),
                ),
                ("queues.yaml".into(), include_str!("../../campaigns/queues.yaml").into()),
            ],
            Default::default(),
        )
        .unwrap()
    }

    fn t(day: i64) -> DateTime<Utc> {
        "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::days(day)
    }

    fn event(kind: &str, day: i64, properties: serde_json::Value) -> EventFact {
        EventFact {
            kind: kind.into(),
            occurred_at: t(day),
            properties: properties.as_object().cloned().unwrap_or_default(),
        }
    }

    fn state() -> LeadState {
        LeadState::new(Lead::new(LeadId(7), t(0)))
    }

    #[test]
    fn opens_and_clicks_by_machines_fire_no_rule_unless_it_includes_them() {
        let mut pb = playbook();
        let click = |s: &mut LeadState, pb: &Playbook, automated: bool| {
            let mut out = Changes::default();
            let properties = json!({"message_id": 1, "automated": automated});
            s.apply_event(&pb.rules, event("email_clicked", 1, properties).view(), t(1), &mut out);
            (s.lead.score, s.tags.contains_key("behaviour:clicked_email"))
        };
        let mut s = state();
        assert_eq!(
            click(&mut s, &pb, true),
            (0, false),
            "a link scanner's click counts for nothing"
        );
        assert_eq!(click(&mut s, &pb, false), (3, true), "a person's click scores");
        for rule in &mut pb.rules.tagging {
            rule.include_automated = true;
        }
        let mut s = state();
        assert_eq!(
            click(&mut s, &pb, true),
            (3, true),
            "include_automated: true counts machines"
        );
    }

    #[test]
    fn tagging_and_tags_from() {
        let pb = playbook();
        let mut s = state();
        let mut out = Changes::default();
        s.apply_event(
            &pb.rules,
            event("whitepaper_downloaded", 1, json!({})).view(),
            t(1),
            &mut out,
        );
        s.apply_event(
            &pb.rules,
            event("webinar_attended", 2, json!({"topic": "Smart Factory"})).view(),
            t(2),
            &mut out,
        );
        s.apply_event(
            &pb.rules,
            event("page_view", 2, json!({"path": "/blog"})).view(),
            t(2),
            &mut out,
        );
        let tags: Vec<_> = s.tags.iter().map(|(t, f)| format!("{t} {}", f.as_str())).collect();
        assert_eq!(
            tags,
            [
                "behaviour:downloaded_whitepaper behaviour",
                "interest:topic/smart-factory interest"
            ]
        );
        assert_eq!(s.lead.score, 30);
        assert_eq!(out.scores.len(), 2);
        assert_eq!(out.tags[0].actor, Actor::Rule("whitepaper_downloaded".into()));
        assert_eq!(s.lead.last_activity_at, Some(t(2)));
    }

    #[test]
    fn caps_hold_per_window() {
        let pb = playbook();
        let mut s = state();
        let mut out = Changes::default();
        for day in [0, 1, 2, 3, 4] {
            s.apply_event(
                &pb.rules,
                event("page_view", day, json!({"path": "/pricing"})).view(),
                t(day),
                &mut out,
            );
        }
        assert_eq!(s.lead.score, 15, "the cap is 15 per 30 days");
        s.apply_event(
            &pb.rules,
            event("page_view", 31, json!({"path": "/pricing/x"})).view(),
            t(31),
            &mut out,
        );
        assert_eq!(s.lead.score, 20, "day 0's points left the window by day 31");
        let deltas: Vec<_> = out.scores.iter().map(|c| c.delta).collect();
        assert_eq!(deltas, [5, 5, 5, 5]);
    }

    #[test]
    fn attribute_and_source_tags_stay_in_sync() {
        let pb = playbook();
        let mut s = state();
        let mut out = Changes::default();
        s.lead.fields.insert("industry", "Energy".into());
        s.lead.fields.insert("source", "Website".into());
        s.sync_attribute_tags(&pb.rules, t(0), &mut out);
        assert_eq!(s.tags.keys().collect::<Vec<_>>(), ["industry:energy", "source:website"]);
        s.lead.fields.insert("industry", "Smart Manufacturing".into());
        s.sync_attribute_tags(&pb.rules, t(1), &mut out);
        assert_eq!(
            s.tags.keys().collect::<Vec<_>>(),
            ["industry:smart-manufacturing", "source:website"]
        );
        let log: Vec<_> = out
            .tags
            .iter()
            .map(|c| format!("{}{}", if c.added { "+" } else { "-" }, c.tag))
            .collect();
        assert_eq!(
            log,
            [
                "+industry:energy",
                "+source:website",
                "-industry:energy",
                "+industry:smart-manufacturing"
            ]
        );
    }

    #[test]
    fn mql_when_score_and_icp_hold() {
        let pb = playbook();
        let mut s = state();
        let mut out = Changes::default();
        s.lead.fields.insert("industry", "Manufacturing".into());
        s.lead.fields.insert("company_size", "1000+".into());
        s.sync_attribute_tags(&pb.rules, t(0), &mut out);
        for day in 0..5 {
            s.apply_event(
                &pb.rules,
                event("whitepaper_downloaded", day, json!({})).view(),
                t(day),
                &mut out,
            );
            s.check_mql(&pb, t(day), &mut out);
        }
        assert_eq!(s.lead.stage, Stage::New, "50 points is not yet MQL");
        s.apply_event(
            &pb.rules,
            event("whitepaper_downloaded", 5, json!({})).view(),
            t(5),
            &mut out,
        );
        s.check_mql(&pb, t(5), &mut out);
        assert_eq!(
            s.lead.stage,
            Stage::HandedOff,
            "an MQL waits in its queue like a lead a campaign handed off"
        );
        assert_eq!(out.handoffs.len(), 1);
        assert_eq!(out.handoffs[0].queue, "sdr");
        s.check_mql(&pb, t(6), &mut out);
        assert_eq!(out.handoffs.len(), 1, "an MQL is requested once");
    }
}
