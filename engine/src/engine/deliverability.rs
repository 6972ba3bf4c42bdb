//! Deliverability inside the engine's transactions: bounce and complaint events put addresses
//! on the suppression list, which pacing (at the step) and the dispatcher (at send time) read.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

use super::{Engine, EngineResult};
use crate::bounce::{suppression, Bounce, SOFT_WINDOW};
use crate::clock::to_micros;
use crate::condition::EventView;
use crate::lead::Lead;
use crate::store::pacing::Suppression;
use crate::store::{email_hash, Tx};

impl Engine {
    /// Suppresses the addresses that this batch's bounce and complaint events call for: a hard
    /// bounce or a complaint at once, a soft bounce when it is the third within 30 days.
    pub(super) async fn suppress_bounced(
        &self,
        tx: &mut dyn Tx,
        leads: &[Lead],
        events: &BTreeMap<i64, Vec<EventView<'_>>>,
        now: DateTime<Utc>,
    ) -> EngineResult<usize> {
        let mut reported: HashMap<i64, Vec<Bounce>> = HashMap::new();
        for (lead, views) in events {
            for view in views {
                if let Some(bounce) = Bounce::of(view.kind, view.properties) {
                    reported.entry(*lead).or_default().push(bounce);
                }
            }
        }
        if reported.is_empty() {
            return Ok(0);
        }
        let soft: Vec<i64> = reported
            .iter()
            .filter(|(_, b)| b.contains(&Bounce::Soft))
            .map(|(id, _)| *id)
            .collect();
        let mut soft_counts: HashMap<i64, usize> = HashMap::new();
        if !soft.is_empty() {
            let since = to_micros(now - SOFT_WINDOW);
            // Read in this transaction: the batch's own bounces are already in it.
            for (lead, event) in tx.load_events(&soft, &[("email_bounced".into(), Some(since))]).await? {
                if Bounce::of(&event.kind, &event.properties) == Some(Bounce::Soft) {
                    *soft_counts.entry(lead).or_default() += 1;
                }
            }
        }
        let rows: Vec<Suppression> = leads
            .iter()
            .filter_map(|lead| {
                let email = lead.email.as_deref()?;
                let bounces = reported.get(&lead.id.0)?;
                let soft = soft_counts.get(&lead.id.0).copied().unwrap_or(0);
                let reason = suppression(bounces, soft)?;
                Some(Suppression {
                    email_hash: email_hash(email),
                    reason: reason.to_owned(),
                    detail: Some(match reason {
                        "soft_bounces" => format!("{soft} soft bounces within 30 days (lead {})", lead.id),
                        _ => format!("reported for lead {}", lead.id),
                    }),
                    created_at: to_micros(now),
                })
            })
            .collect();
        tx.suppress(&rows).await?;
        Ok(rows.len())
    }
}
