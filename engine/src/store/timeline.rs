//! A lead's timeline as the store reads it: entries of several kinds merged by time.

use super::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::from_micros;

/// One entry of a lead's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    #[serde(skip)]
    pub seq: i64,
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

/// Timeline entry kinds, ranked so that entries at the same instant have a stable order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Event = 0,
    TagChange = 1,
    ScoreChange = 2,
    Handoff = 3,
    /// A step an enrollment took, from the journey log.
    CampaignStep = 4,
    Message = 5,
    /// A note or call outcome someone wrote.
    Note = 6,
}

impl TimelineKind {
    pub const ALL: [TimelineKind; 7] = [
        Self::Event,
        Self::TagChange,
        Self::ScoreChange,
        Self::Handoff,
        Self::CampaignStep,
        Self::Message,
        Self::Note,
    ];
}

/// A position in the timeline, newest first: entries strictly older than this come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimelineCursor {
    pub at: i64,
    pub kind: TimelineKind,
    pub seq: i64,
}

impl TimelineCursor {
    /// The id bound for one kind's query: rows at the cursor's instant come next when their
    /// (kind, id) sorts below the cursor's.
    pub fn id_bound(&self, kind: TimelineKind) -> i64 {
        match kind.cmp(&self.kind) {
            std::cmp::Ordering::Less => i64::MAX,
            std::cmp::Ordering::Equal => self.seq,
            std::cmp::Ordering::Greater => i64::MIN,
        }
    }
}

/// Builds a timeline entry from a row: its id, time and a JSON object of its details.
pub(crate) fn timeline_entry(kind: TimelineKind, seq: i64, at: i64, data: &str) -> StoreResult<TimelineEntry> {
    let data: Map<String, Value> = serde_json::from_str(data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(TimelineEntry {
        at: from_micros(at),
        kind,
        seq,
        data,
    })
}

/// Merges per-kind timeline rows, newest first, and keeps `limit`.
pub(crate) fn merge_timeline(mut entries: Vec<TimelineEntry>, limit: i64) -> Vec<TimelineEntry> {
    entries.sort_by_key(|e| std::cmp::Reverse((e.at, e.kind, e.seq)));
    entries.truncate(limit.max(0) as usize);
    entries
}
