//! The storage port: the `Store` and `Tx` traits the engine works through.

use super::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

use crate::condition::EventFact;
use crate::engine::EngineResult;
use crate::journey::Enrollment;
use crate::lead::Lead;
use crate::nurture::Changes;
use crate::playbook::Decay;
use crate::tag::TagFamily;

/// What happened when an idempotent request began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First time: go ahead, then record the answer.
    Proceed,
    /// Done before: here is the first answer.
    Replay { status: u16, body: String },
    /// The same key is being processed by another request right now.
    InFlight,
    /// The same key was used for a different request.
    Mismatch,
}

/// The storage port.
#[async_trait]
pub trait Store:
    handoffs::HandoffStore
    + AdminStore
    + AuditStore
    + UserStore
    + CampaignStore
    + EngagementStore
    + LeadStore
    + NoteStore
    + OutboxStore
    + reports::ReportStore
    + VisitorStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Notified when a transaction that queued messages commits after the first call: in
    /// this process, and on PostgreSQL in every process on the database (`LISTEN
    /// nurture_mail`, on a connection of its own). A notification while nobody waits is kept
    /// for the next wait.
    async fn mail_queued(&self) -> std::sync::Arc<tokio::sync::Notify>;
    /// Starts a write transaction.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// Starts a read-only transaction (its write methods must not be called).
    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>>;
    /// Runs a journey pass (the runner's, hand enrollment's): picks, decides and writes what
    /// `work` says, beside other passes, and commits. Workers on one PostgreSQL database lock
    /// the leads they take and skip those others hold; SQLite decides in a snapshot, outside
    /// the writer's turn, and decides again in the write transaction if what it read changed.
    async fn run_pass(&self, work: &mut dyn PassWork) -> EngineResult<()>;
    /// The leads this process's passes hold now (what an advance of a manual clock waits on).
    fn held(&self) -> &Held;

    /// Records what sending did, and adds it to the report counters in the same transaction.
    async fn finish_messages(&self, outcomes: &[MessageOutcome], counts: &[reports::CountDelta]) -> StoreResult<()>;
    /// The earliest wake-up time of a waiting enrollment outside paused campaigns.
    async fn next_wake(&self, paused: &[String]) -> StoreResult<Option<DateTime<Utc>>>;

    /// Decays the scores of leads inactive for `decay.every` (one set-based pass); returns how many.
    async fn decay(&self, decay: Decay, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Brings the query planner's statistics up to date on tables that changed a lot since
    /// they were last gathered; returns the tables refreshed. `serve` calls it every few
    /// seconds: a table that grew from empty to a million rows in minutes is otherwise planned
    /// as if it were still small.
    async fn refresh_statistics(&self) -> StoreResult<Vec<String>>;

    /// Folds the message and handoff counters' shards of hours before `before` (hours since
    /// the epoch) into one row per key and hour (shard 0) and into one per key and local day
    /// of `zone`, the report zone (migration 0028), so that a report in that zone reads a row
    /// per day; returns the key-hours folded into. Writers add to shards 1 and up; once an
    /// hour is over, few do (events about its messages), and those the next fold takes.
    async fn fold_counters(&self, before: i64, zone: chrono_tz::Tz) -> StoreResult<u64>;
}

/// A write transaction: the set-based primitives the engine composes.
#[async_trait]
pub trait Tx:
    handoffs::HandoffTx + pacing::PacingTx + AuditTx + EnrollingTx + EngagementTx + reports::ReportTx + NoteTx + Send
{
    /// Leads with any of these ids, e-mails or external ids.
    async fn find_leads(&mut self, ids: &[i64], emails: &[String], external_ids: &[String]) -> StoreResult<Vec<Lead>>;
    /// These leads as they are, without the lock a write transaction's `find_leads` takes: for
    /// answers that show a lead without changing it (a claim).
    async fn view_leads(&mut self, ids: &[i64]) -> StoreResult<Vec<Lead>>;
    /// Allocates `n` new lead ids.
    async fn reserve_lead_ids(&mut self, n: usize) -> StoreResult<Vec<i64>>;
    /// Inserts or overwrites these leads (by id).
    async fn write_leads(&mut self, leads: &[Lead]) -> StoreResult<()>;
    /// Writes only what behaviour changes on existing leads: score, stage, activity time.
    async fn write_lead_activity(&mut self, leads: &[ActivityRow]) -> StoreResult<()>;
    /// The current tags of these leads.
    async fn load_tags(&mut self, ids: &[i64]) -> StoreResult<Vec<(i64, String, TagFamily)>>;
    /// Every enrollment of these leads, any status (running ones, and past ones for re-entry);
    /// each lead's in id order.
    async fn load_enrollments(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Enrollment>>;
    /// Leads with an enrollment due by `now` (waiting, wake-up time passed), outside paused
    /// campaigns and other than `busy` (taken by a pass that has not written yet), earliest
    /// first, at most `limit`.
    async fn due_leads(&mut self, now: i64, paused: &[String], busy: &[i64], limit: i64) -> StoreResult<Vec<i64>>;
    /// Of these leads, those this transaction could lock, locked and read, in id order
    /// (PostgreSQL: `FOR UPDATE SKIP LOCKED` in one statement, so that workers share due work
    /// without waiting on each other; SQLite: all of them, as its one writer holds the database).
    async fn take_free_leads(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Lead>>;
    /// Allocates `n` new enrollment ids.
    async fn reserve_enrollment_ids(&mut self, n: usize) -> StoreResult<Vec<i64>>;
    /// Inserts or overwrites these enrollments (by id).
    async fn write_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()>;
    /// Writes enrollments that exist and keep their status (a running enrollment moving from
    /// one step to the next): only their step, wake-up time, outcome, transitions and updated
    /// time change. SQLite then leaves the indexes that depend on the status alone.
    async fn move_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()> {
        self.write_enrollments(rows).await
    }
    async fn write_journey(&mut self, rows: &[JourneyRow]) -> StoreResult<()>;
    /// Inserts messages; one already made for the same (enrollment, seq) is left as it is.
    async fn insert_messages(&mut self, rows: &[NewMessage]) -> StoreResult<()>;
    /// Campaigns whose status is not `active` (paused or retired): their enrollments do not move.
    async fn frozen_campaigns(&mut self) -> StoreResult<Vec<String>>;
    /// The stored source of a deployed campaign version: (file, YAML).
    async fn campaign_source(&mut self, id: &str, version: &str) -> StoreResult<Option<(String, String)>>;
    /// The messages these enrollments sent; each enrollment's in the order they were made.
    async fn load_messages(&mut self, enrollment_ids: &[i64]) -> StoreResult<Vec<SentMessage>>;
    /// Events of these leads of the given types since the given time (`None`: all time).
    async fn load_events(&mut self, ids: &[i64], needs: &[(String, Option<i64>)])
        -> StoreResult<Vec<(i64, EventFact)>>;
    /// Ledger entries of capped rules for these leads since a time: (lead, rule, event time, delta).
    async fn load_cap_usage(
        &mut self,
        ids: &[i64],
        rules: &[String],
        since: i64,
    ) -> StoreResult<Vec<(i64, String, i64, i64)>>;
    /// Which of these e-mails were erased before and must stay suppressed.
    async fn suppressed(&mut self, email_hashes: &[String]) -> StoreResult<HashSet<String>>;
    /// Inserts events; returns the idempotency keys that were new (events without a key are always new).
    async fn insert_events(&mut self, events: &[NewEvent<'_>]) -> StoreResult<HashSet<String>>;
    /// The stored events that carry these idempotency keys: (key, lead, event).
    async fn keyed_events(&mut self, keys: &[&str]) -> StoreResult<Vec<(String, i64, EventFact)>>;
    /// Writes tag changes (current tags and log), score ledger entries and handoff requests;
    /// returns the handoffs opened (a request for a lead with one open is dropped).
    async fn write_changes(&mut self, changes: &Changes) -> StoreResult<Vec<handoffs::Opened>>;
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}
