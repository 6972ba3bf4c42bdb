//! The journey log as rows: each step a lead took, and the per-step counters it adds to.

use super::*;
use serde::Serialize;
use std::collections::HashMap;

/// One line of the journey log, ready to insert.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyRow {
    pub enrollment_id: i64,
    pub lead_id: i64,
    pub campaign_id: String,
    pub step: String,
    pub outcome: crate::journey::Outcome,
    pub detail: String,
    pub at: i64,
    /// Counted in the step's `entered`.
    #[serde(skip)]
    pub arrived: bool,
}

/// One row of `journey_moves`: the journey lines one enrollment wrote at one time (one move),
/// in order, as a JSON array of `[step, outcome, detail]`. See migration 0008.
pub(crate) struct JourneyMove<'a> {
    pub(crate) enrollment_id: i64,
    pub(crate) lead_id: i64,
    pub(crate) campaign_id: &'a str,
    pub(crate) at: i64,
    pub(crate) steps: String,
}

/// `rows` as moves: each run of lines of one enrollment at one time becomes one row. The engine
/// writes a move's lines next to each other; lines apart stay apart, in their order.
pub(crate) fn journey_moves(rows: &[JourneyRow]) -> StoreResult<Vec<JourneyMove<'_>>> {
    rows.chunk_by(|a, b| a.enrollment_id == b.enrollment_id && a.at == b.at && a.campaign_id == b.campaign_id)
        .map(|lines| {
            let text: usize = lines.iter().map(|l| l.step.len() + l.detail.len() + 24).sum();
            let mut steps = String::with_capacity(text + 2);
            steps.push('[');
            for (i, l) in lines.iter().enumerate() {
                if i > 0 {
                    steps.push(',');
                }
                let outcome = l.outcome.label();
                for (j, text) in [l.step.as_str(), &*outcome, l.detail.as_str()].into_iter().enumerate() {
                    steps.push(if j == 0 { '[' } else { ',' });
                    json_str(&mut steps, text)?;
                }
                steps.push(']');
            }
            steps.push(']');
            Ok(JourneyMove {
                enrollment_id: lines[0].enrollment_id,
                lead_id: lines[0].lead_id,
                campaign_id: &lines[0].campaign_id,
                at: lines[0].at,
                steps,
            })
        })
        .collect()
}

/// `s` as a JSON string, appended to `out`. Journey lines are the playbook's names and the
/// engine's own explanations, which almost never hold a character JSON escapes: those are copied
/// as they are, after one branch-free pass over their bytes; the rest go through serde_json,
/// whose general path costs far more than the few hundred bytes of a step's lines.
fn json_str(out: &mut String, s: &str) -> StoreResult<()> {
    let plain = !s
        .bytes()
        .fold(false, |escaped, b| escaped | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return Ok(());
    }
    let quoted = serde_json::to_string(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.push_str(&quoted);
    Ok(())
}

/// What a batch of journey lines adds to the per-step counters: (campaign, step, outcome,
/// entered, lines), in key order so that concurrent writers lock counter rows in one order.
///
/// A pass's moves repeat a few shapes (wait ended, branch, send), so a line's counter is most
/// often the one after the previous line's: that guess is tried first, an FxHash map of the
/// counters after it, and the sums are sorted once at the end (rather than a `BTreeMap` over
/// the three strings, compared for every line).
pub(crate) fn step_count_deltas(rows: &[JourneyRow]) -> Vec<(String, String, String, i64, i64)> {
    type Key<'a> = (&'a str, &'a str, crate::journey::Outcome);
    let mut sums: Vec<(Key<'_>, i64, i64)> = Vec::new();
    // FxHash: the keys are the playbook's own names, not anything a caller sends.
    let mut index: HashMap<Key<'_>, usize, rustc_hash::FxBuildHasher> = HashMap::default();
    let mut last = 0;
    for row in rows {
        let key = (row.campaign_id.as_str(), row.step.as_str(), row.outcome);
        let next = if last + 1 < sums.len() { last + 1 } else { 0 };
        let at = match sums.get(next) {
            Some(sum) if sum.0 == key => next,
            _ => *index.entry(key).or_insert_with(|| {
                sums.push((key, 0, 0));
                sums.len() - 1
            }),
        };
        sums[at].1 += i64::from(row.arrived);
        sums[at].2 += 1;
        last = at;
    }
    let mut out: Vec<(String, String, String, i64, i64)> = sums
        .into_iter()
        .map(|((c, s, o), entered, lines)| (c.to_owned(), s.to_owned(), o.label().into_owned(), entered, lines))
        .collect();
    // In the order of the stored key, so that every writer updates counter rows in one order.
    out.sort_unstable_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    out
}
