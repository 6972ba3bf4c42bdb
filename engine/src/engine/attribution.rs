//! Conversion attribution as the engine records outcomes: in the transaction that reaches a
//! goal, opens a handoff, accepts or converts one, the lead's touches of the last
//! `ATTRIBUTION_DAYS` are read (one query for a batch) and the credits added to the
//! conversion counters (`core::report::attribution`).

use std::collections::HashMap;

use crate::report::attribution::{credits, window_of, Conversion, Touch, ATTRIBUTION_DAYS};
use crate::store::{ConversionCount, StoreResult, Tx};

/// An outcome to credit: a lead went on to `outcome` at `at` (microseconds); a goal names its
/// campaign, the only one it is credited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reached {
    pub lead: i64,
    pub outcome: Conversion,
    pub campaign: Option<String>,
    pub at: i64,
}

/// Adds the credits of `reached` to the conversion counters, in `tx`.
pub(crate) async fn attribute(tx: &mut dyn Tx, reached: &[Reached]) -> StoreResult<()> {
    let Some(earliest) = reached.iter().map(|r| r.at).min() else {
        return Ok(());
    };
    let mut leads: Vec<i64> = reached.iter().map(|r| r.lead).collect();
    leads.sort_unstable();
    leads.dedup();
    let mut touches: HashMap<i64, Vec<Touch>> = HashMap::new();
    for (lead, touch) in tx.touches(&leads, earliest - ATTRIBUTION_DAYS * 86_400_000_000).await? {
        touches.entry(lead).or_default().push(touch);
    }
    let counts: Vec<ConversionCount> = reached
        .iter()
        .flat_map(|r| {
            let theirs = touches.get(&r.lead).map(Vec::as_slice).unwrap_or_default();
            credits(r.at, r.campaign.as_deref(), theirs)
                .into_iter()
                .map(move |c| ConversionCount {
                    campaign: c.campaign,
                    step: c.step,
                    credit: c.credit,
                    outcome: r.outcome,
                    hour: crate::report::hour_of(r.at),
                    within_days: window_of(c.lag_days),
                    shard: r.lead,
                    n: 1,
                })
        })
        .collect();
    tx.count_conversions(&counts).await
}
