//! The storage port: what the engine needs of a database, and the two adapters (SQLite, the
//! embedded default, and PostgreSQL, the scale backend). Both pass one contract test suite.
//!
//! Batches travel to the database as one JSON array per statement (`json_each` in SQLite,
//! `jsonb_to_recordset` in PostgreSQL), so a bulk of 10,000 events costs a handful of
//! statements, not 10,000 round trips.

use serde_json::{Map, Value};

use crate::clock::from_micros;
use crate::condition::EventFact;
use crate::journey::Enrollment;
use crate::lead::Lead;
use crate::nurture::Changes;
use crate::playbook::Decay;
use crate::tag::TagFamily;

mod admin;
pub mod audit;
mod campaigns;
pub mod engagement;
pub mod enrolling;
mod error;
pub mod handoffs;
mod journey_log;
mod json;
mod leads;
pub mod notes;
mod outbox;
pub mod pacing;
mod pass;
mod port;
pub mod postgres;
pub mod reports;
mod rows;
pub(crate) mod sql;
pub mod sqlite;
mod timeline;
pub mod users;
pub mod visitors;

pub use admin::AdminStore;
pub use audit::{AuditStore, AuditTx};
pub use campaigns::CampaignStore;
pub use engagement::{Engagement, EngagementStore, EngagementTx, StepEngagement};
pub use enrolling::EnrollingTx;
pub use error::*;
pub use journey_log::*;
pub(crate) use json::*;
pub use leads::{LeadStore, RulePoints, ScoreSource};
pub use notes::{NewNote, NoteStore, NoteTx};
pub use outbox::OutboxStore;
pub(crate) use pass::{decide_and_write, pick_and_hold};
pub use pass::{Held, PassWork, Taken};
pub use port::*;
pub use reports::{
    ConversionCount, ConversionRow, CountDelta, CountScope, CountedMessage, FlowCount, FlowRow, HandoffCount,
    ReportStore, ReportTx, WaitCount, WaitRow,
};
pub use rows::*;
pub use timeline::*;
pub use users::{NewUser, UserStore};
pub use visitors::{KeptVisit, VisitorStore};

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite file `url` names, if it does not exist ([`connect`] would create it).
pub fn missing_file(url: &str) -> StoreResult<Option<std::path::PathBuf>> {
    if is_postgres(url) {
        return Ok(None);
    }
    let file = sqlite::SqliteStore::file(url)?;
    Ok((!file.exists()).then_some(file))
}

/// Opens the store a URL names: `sqlite://path` (or a bare path) or `postgres://…`.
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::connect(url).await?))
    }
}

pub use crate::access::email_hash;

#[cfg(test)]
mod tests {
    use super::{journey_moves, json_rows_into, step_count_deltas, JourneyRow, StoreError};
    use crate::journey::Outcome;

    /// The SQL built from `LEAD_COLUMNS` reads and writes `LeadRow` by position (SQLite's
    /// JSON arrays): the two must name the same columns in the same order.
    #[test]
    fn lead_columns_are_the_lead_row_in_order() {
        let lead = crate::lead::Lead::new(crate::lead::LeadId(1), chrono::Utc::now());
        let row = serde_json::to_string(&super::LeadRow::from(&lead)).unwrap();
        let positions: Vec<usize> = super::LEAD_COLUMNS
            .iter()
            .map(|(c, _)| {
                row.find(&format!("\"{c}\":"))
                    .unwrap_or_else(|| panic!("{c} not in {row}"))
            })
            .collect();
        assert!(positions.is_sorted(), "{row}");
        assert_eq!(row.matches("\":").count(), super::LEAD_COLUMNS.len(), "{row}");
    }

    #[test]
    fn step_counts_sum_every_line_once_in_key_order() {
        // Few counters and many, drawn at random, so that the guess misses as often as it hits
        // and the hash map answers the rest.
        for kinds in [3_usize, 7, 50, 200] {
            let mut rows = Vec::new();
            let mut x = 12_345_u64;
            for i in 0..3_000_i64 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let k = (x >> 33) as usize % kinds;
                rows.push(JourneyRow {
                    enrollment_id: i,
                    lead_id: i,
                    campaign_id: format!("c{}", k % 3),
                    step: format!("s{}", k / 3),
                    outcome: if k.is_multiple_of(2) {
                        Outcome::Sent
                    } else {
                        Outcome::Arm(k as u32)
                    },
                    detail: String::new(),
                    at: 0,
                    arrived: x.is_multiple_of(5),
                });
            }
            let mut expected: std::collections::BTreeMap<(String, String, String), (i64, i64)> = Default::default();
            for r in &rows {
                let sum = expected
                    .entry((r.campaign_id.clone(), r.step.clone(), r.outcome.to_string()))
                    .or_default();
                sum.0 += i64::from(r.arrived);
                sum.1 += 1;
            }
            let expected: Vec<_> = expected
                .into_iter()
                .map(|((c, s, o), (e, l))| (c, s, o, e, l))
                .collect();
            assert_eq!(step_count_deltas(&rows), expected, "{kinds} kinds");
        }
    }

    fn pairs(text: &str) -> Result<Vec<String>, StoreError> {
        json_rows_into(Some(text.to_owned()), 2, |(id, name): (i64, String)| {
            if id < 0 {
                return Err(StoreError::Corrupt(format!("negative id {id}")));
            }
            Ok(format!("{id}:{name}"))
        })
    }

    #[test]
    fn rows_are_read_straight_into_what_they_convert_to() {
        assert_eq!(pairs(r#"[[1,"a"],[2,"b"],[3,"c"]]"#).unwrap(), ["1:a", "2:b", "3:c"]);
        assert_eq!(pairs("[]").unwrap(), Vec::<String>::new());
        assert!(json_rows_into(None, 5, |row: i64| Ok(row)).unwrap().is_empty());
        let refused = |text: &str| match pairs(text) {
            Err(StoreError::Corrupt(why)) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert!(refused(r#"[[1,"a"],[-2,"b"]]"#).contains("negative id -2"));
        assert!(refused(r#"[[1,"a"]] trailing"#).contains("trailing characters"));
        assert!(refused(r#"[[1,2]]"#).contains("invalid type"));
    }

    fn line(enrollment_id: i64, step: &str, at: i64) -> JourneyRow {
        JourneyRow {
            enrollment_id,
            lead_id: enrollment_id * 10,
            campaign_id: "drip".into(),
            step: step.into(),
            outcome: Outcome::Sent,
            detail: format!("\"{step}\" 发送"),
            at,
            arrived: true,
        }
    }

    #[test]
    fn a_move_is_the_run_of_lines_of_one_enrollment_at_one_time() {
        let rows = [
            line(1, "a", 5),
            line(1, "b", 5),
            line(2, "a", 5),
            line(1, "c", 5),
            line(1, "d", 9),
        ];
        let moves = journey_moves(&rows).unwrap();
        let shape: Vec<(i64, i64, i64, &str)> = moves
            .iter()
            .map(|m| (m.enrollment_id, m.lead_id, m.at, m.steps.as_str()))
            .collect();
        assert_eq!(
            shape,
            [
                (1, 10, 5, r#"[["a","sent","\"a\" 发送"],["b","sent","\"b\" 发送"]]"#),
                (2, 20, 5, r#"[["a","sent","\"a\" 发送"]]"#),
                (1, 10, 5, r#"[["c","sent","\"c\" 发送"]]"#),
                (1, 10, 9, r#"[["d","sent","\"d\" 发送"]]"#),
            ]
        );
        assert!(journey_moves(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_move_is_written_as_serde_json_writes_it() {
        let texts = [
            "",
            "plain",
            "branch opened_insight: no (no human open of message 8812 by 2026-11-26T09:00Z)",
            "quote \" and backslash \\ and slash /",
            "tab\tnew line\ncarriage\rnul\u{0}unit\u{1f}",
            "del \u{7f} and 中文 and emoji 📈",
            "\"",
            "\\",
        ];
        for (i, text) in texts.iter().enumerate() {
            let mut row = line(1, "step", 5);
            row.step = texts[(i + 1) % texts.len()].to_string();
            row.outcome = [Outcome::Sent, Outcome::Arm(12), Outcome::HandedOff][i % 3];
            row.detail = text.to_string();
            let rows = [row.clone(), row.clone()];
            let moves = journey_moves(&rows).unwrap();
            let lines: Vec<(&str, String, &str)> = rows
                .iter()
                .map(|l| (l.step.as_str(), l.outcome.to_string(), l.detail.as_str()))
                .collect();
            assert_eq!(moves[0].steps, serde_json::to_string(&lines).unwrap(), "{text:?}");
            let back: Vec<(String, String, String)> = serde_json::from_str(&moves[0].steps).unwrap();
            assert_eq!(back[1].2, *text);
        }
    }
}
