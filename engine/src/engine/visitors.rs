//! Visitors of the customer's sites (`POST /t/events`): page views of a known visitor become
//! its lead's events at once, those of an anonymous one are kept until the site says who it
//! is; then they are recorded as the lead's events (their own times), so page rules and
//! `visited` conditions count them from then on. Nothing here changes a known lead's fields.

use serde_json::{json, Map, Value};

use super::{Engine, EngineError, EngineResult};
use crate::clock::{from_micros, to_micros};
use crate::event::EventInput;
use crate::lead::{FieldError, LeadId, LeadRef};
use crate::pages::TrackBatch;

/// What a post to `POST /t/events` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracked {
    /// Recorded as the lead's events (kept ones merged on identification included).
    pub recorded: usize,
    /// Kept for a visitor not known yet.
    pub kept: usize,
}

impl Engine {
    /// Records what a visitor did: `automated` when a bot's user agent or address sent it (kept
    /// and recorded, marked, scored by no rule).
    pub async fn track(&self, batch: &TrackBatch, automated: bool) -> EngineResult<Tracked> {
        let problems = batch.problems();
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        let visitor = batch.visitor.trim();
        let now = to_micros(self.now());
        let events: Vec<(&'static str, Map<String, Value>)> = batch
            .events
            .iter()
            .map(|e| (e.kind.event_type(), e.properties(automated)))
            .collect();
        let mut tracked = Tracked::default();
        let lead = match &batch.identify {
            Some(identify) => {
                let (lead, merged) = self.identify(visitor, &identify.email, now).await?;
                tracked.recorded += merged;
                Some(lead)
            }
            None => {
                // Kept with the visit when nobody knows the visitor yet: one transaction.
                let lead = self.store.visit(visitor, now, &events).await?;
                if lead.is_none() {
                    tracked.kept = events.len();
                }
                lead
            }
        };
        if let (Some(lead), false) = (lead, events.is_empty()) {
            let inputs = events
                .into_iter()
                .map(|(kind, properties)| tracked_event(LeadRef::by_id(lead.0), kind, None, properties, None))
                .collect();
            tracked.recorded += self.ingest_events(inputs).await?.accepted;
        }
        Ok(tracked)
    }

    /// Forgets the page views of visitors nobody knows once they are older than the Rules'
    /// `tracking.keep_anonymous` (90 days), and those visitors once not seen for as long.
    /// Returns the page views forgotten.
    pub async fn forget_anonymous_visits(&self) -> EngineResult<u64> {
        let keep = self.playbook().rules.tracking.keep_anonymous;
        let before = to_micros(self.now() - keep.to_chrono());
        Ok(self.store.forget_anonymous(before).await?)
    }

    /// Knows `visitor` as the lead with `email` (made if there is none: with the e-mail alone),
    /// its kept visits recorded as the lead's events; returns the lead and the events merged.
    async fn identify(&self, visitor: &str, email: &str, now: i64) -> EngineResult<(LeadId, usize)> {
        let kept = self.store.kept_visits(visitor).await?;
        let by_email = LeadRef {
            id: None,
            email: Some(email.trim().to_owned()),
            external_id: None,
        };
        // Each kept visit under a key of its own: a retry after a failure records it once.
        let mut inputs: Vec<EventInput> = kept
            .iter()
            .map(|k| {
                let properties = serde_json::from_str::<Map<String, Value>>(&k.properties).unwrap_or_default();
                tracked_event(
                    by_email.clone(),
                    &k.kind,
                    Some(from_micros(k.occurred_at)),
                    properties,
                    Some(format!("visit:{visitor}:{}", k.id)),
                )
            })
            .collect();
        inputs.push(tracked_event(
            by_email.clone(),
            "visitor_identified",
            None,
            json!({"visits": kept.len()}).as_object().cloned().unwrap_or_default(),
            None,
        ));
        let report = self.ingest_events(inputs).await?;
        if let Some(refused) = report.rejected.first() {
            return Err(EngineError::Invalid(vec![FieldError::new(
                "identify.email",
                refused.error.message.clone(),
            )]));
        }
        let lead = self.find_lead(&by_email).await?.lead.id;
        let through = kept.last().map_or(0, |k| k.id);
        self.store.identify_visitor(visitor, lead, through, now).await?;
        Ok((lead, report.accepted.saturating_sub(1)))
    }
}

/// A behaviour event from the tracking script, for a lead; a lead it makes has `website` as
/// its source.
fn tracked_event(
    lead: LeadRef,
    kind: &str,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    properties: Map<String, Value>,
    idempotency_key: Option<String>,
) -> EventInput {
    EventInput {
        lead,
        kind: kind.to_owned(),
        occurred_at,
        properties,
        idempotency_key,
        source: Some("website".into()),
    }
}
