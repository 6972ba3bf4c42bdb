//! The storage port's handoff and webhook part: queues, claims, members, SLA timers, and the
//! webhook outbox. The SQL is the same on both backends but for locking (`FOR_UPDATE`,
//! `SKIP_LOCKED`, empty on SQLite, whose one writer holds the database), so one macro writes
//! both adapters' implementations; batches use `QueryBuilder` rows, which both dialects take.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{StoreError, StoreResult};
use crate::audit::Change;
use crate::clock::{from_micros, to_micros};
use crate::handoff::{Amount, Handoff, HandoffId, Member};
use crate::lead::LeadId;

/// Columns of `handoffs` in [`HandoffRow`] order.
pub(crate) const HANDOFF_COLUMNS: &str =
    "id, lead_id, queue, reason, CAST(priority AS BIGINT) AS priority, origin, status, \
     score, tags, campaign_id, step, assigned_to, claimed_by, claimed_at, decided_by, decided_at, reject_reason, amount_cents, \
     sla_due_at, sla_breached_at, moved_from, created_at, COALESCE(updated_at, created_at) AS updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct HandoffRow {
    id: i64,
    lead_id: i64,
    queue: String,
    reason: String,
    priority: Option<i64>,
    origin: String,
    status: String,
    score: Option<i64>,
    tags: Option<String>,
    campaign_id: Option<String>,
    step: Option<String>,
    assigned_to: Option<String>,
    claimed_by: Option<String>,
    claimed_at: Option<i64>,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    reject_reason: Option<String>,
    amount_cents: Option<i64>,
    sla_due_at: Option<i64>,
    sla_breached_at: Option<i64>,
    moved_from: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<HandoffRow> for Handoff {
    type Error = StoreError;
    fn try_from(r: HandoffRow) -> StoreResult<Handoff> {
        let tags = match r.tags.as_deref() {
            Some(json) => serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("handoff tags: {e}")))?,
            None => Vec::new(),
        };
        Ok(Handoff {
            id: HandoffId(r.id),
            lead_id: LeadId(r.lead_id),
            queue: r.queue,
            reason: r.reason,
            priority: r.priority.unwrap_or(50),
            origin: r.origin,
            status: r.status.parse().map_err(StoreError::Corrupt)?,
            score: r.score,
            tags,
            campaign: r.campaign_id,
            step: r.step,
            assigned_to: r.assigned_to,
            claimed_by: r.claimed_by,
            claimed_at: r.claimed_at.map(from_micros),
            decided_by: r.decided_by,
            decided_at: r.decided_at.map(from_micros),
            reject_reason: r.reject_reason,
            amount: r.amount_cents.map(Amount),
            sla_due_at: r.sla_due_at.map(from_micros),
            sla_breached_at: r.sla_breached_at.map(from_micros),
            moved_from: r.moved_from,
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
        })
    }
}

pub(crate) fn handoffs_from(rows: Vec<HandoffRow>) -> StoreResult<Vec<Handoff>> {
    rows.into_iter().map(Handoff::try_from).collect()
}

/// A handoff just opened by a batch: its id, lead and queue.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Opened {
    pub id: i64,
    pub lead_id: i64,
    pub queue: String,
}

/// One line of a handoff's history.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct HandoffLogEntry {
    #[serde(skip)]
    pub handoff_id: i64,
    /// `opened`, `assigned`, `claimed`, `released`, `accepted`, `rejected`, `converted`,
    /// `sla_breached`, `moved`.
    pub action: String,
    pub actor: Option<String>,
    pub detail: Option<String>,
    #[serde(serialize_with = "micros_as_time")]
    #[schemars(with = "DateTime<Utc>")]
    pub at: i64,
    /// The queue the handoff was in when the line was written.
    #[serde(skip)]
    #[schemars(skip)]
    pub queue: Option<String>,
}

fn micros_as_time<S: serde::Serializer>(at: &i64, s: S) -> Result<S::Ok, S::Error> {
    from_micros(*at).serialize(s)
}

/// A line of a handoff's history with where the handoff stands (see
/// [`HandoffStore::handoff_moves`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HandoffMove {
    pub id: i64,
    pub handoff_id: i64,
    pub action: String,
    pub queue: String,
    pub assigned_to: Option<String>,
}

/// How many handoffs of a queue wait and are worked now (see [`HandoffStore::queue_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueCounts {
    pub queue: String,
    /// Open: waiting for a claim (assigned or not).
    pub open: i64,
    /// Open and given to a member by round robin.
    pub assigned: i64,
    pub claimed: i64,
    /// Open past the queue's SLA.
    pub overdue: i64,
}

/// Where a page of a queue's open handoffs ends: (priority, created_at, id) of its last.
pub type QueueCursor = (i64, i64, i64);

/// A webhook event on its way out: one delivery per subscription that wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub event: String,
    pub lead_id: Option<i64>,
    /// The JSON body sent (it carries the event's id, type, time and data).
    pub payload: String,
    pub at: DateTime<Utc>,
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Webhook {
    #[serde(serialize_with = "id_as_string")]
    #[schemars(with = "String")]
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    #[serde(skip)]
    pub secret: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub active: bool,
}

fn id_as_string<S: serde::Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct WebhookRow {
    id: i64,
    url: String,
    events: String,
    secret: String,
    created_by: String,
    created_at: i64,
    active: bool,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;
    fn try_from(r: WebhookRow) -> StoreResult<Webhook> {
        Ok(Webhook {
            id: r.id,
            url: r.url,
            events: serde_json::from_str(&r.events).map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))?,
            secret: r.secret,
            created_by: r.created_by,
            created_at: from_micros(r.created_at),
            active: r.active,
        })
    }
}

/// An e-mail to someone inside the company about a lead (a queue's `on_breach.notify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub lead_id: i64,
    pub handoff_id: i64,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// A notification taken for sending.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingNotification {
    pub id: i64,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// Counting this one.
    pub attempts: i64,
}

/// What sending a notification did: `sent`, `pending` (again at `next_attempt_at`) or
/// `failed` (given up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationOutcome {
    pub id: i64,
    pub status: &'static str,
    pub error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub at: i64,
}

/// A delivery taken for sending, with where it goes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingDelivery {
    pub id: i64,
    pub delivery_id: String,
    pub webhook_id: i64,
    pub event: String,
    pub lead_id: Option<i64>,
    pub payload: String,
    pub attempts: i64,
    pub created_at: i64,
    pub url: String,
    pub secret: String,
}

/// What one delivery attempt did. `status`: `delivered`, `pending` (retry at
/// `next_attempt_at`) or `failed` (given up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub id: i64,
    pub attempt: i64,
    pub status: &'static str,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub at: i64,
    pub duration_ms: i64,
    pub next_attempt_at: Option<i64>,
}

/// A delivery in the log of a webhook, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Delivery {
    /// The id sent as `X-Nurture-Delivery`, the same on every attempt.
    pub id: String,
    pub event: String,
    pub lead_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub payload: serde_json::Value,
    pub log: Vec<Attempt>,
    #[serde(skip)]
    pub seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Attempt {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub id: i64,
    pub delivery_id: String,
    pub event: String,
    pub lead_id: Option<i64>,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub payload: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub delivery_id: i64,
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

pub(crate) fn deliveries_from(rows: Vec<DeliveryRow>, attempts: Vec<AttemptRow>) -> Vec<Delivery> {
    rows.into_iter()
        .map(|r| Delivery {
            id: r.delivery_id,
            event: r.event,
            lead_id: r.lead_id.map(|l| l.to_string()),
            status: r.status,
            attempts: r.attempts,
            created_at: from_micros(r.created_at),
            delivered_at: r.delivered_at.map(from_micros),
            next_attempt_at: r.next_attempt_at.map(from_micros),
            last_status: r.last_status,
            last_error: r.last_error,
            payload: serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::String(r.payload)),
            log: attempts
                .iter()
                .filter(|a| a.delivery_id == r.id)
                .map(|a| Attempt {
                    attempt: a.attempt,
                    at: from_micros(a.at),
                    status_code: a.status_code,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
            seq: r.id,
        })
        .collect()
}

/// The handoff part of a write transaction.
#[async_trait]
pub trait HandoffTx: Send {
    /// Takes the next open handoff of a queue for `member` (unassigned, or assigned to them):
    /// highest priority, then oldest. Two callers never get the same one.
    async fn claim_handoff(&mut self, queue: &str, member: &str, now: i64) -> StoreResult<Option<Handoff>>;
    /// Takes the next open, unassigned handoffs of a queue, one for each of `members` in
    /// order (`None` for those left without), in one statement.
    async fn claim_many(&mut self, queue: &str, members: &[String], now: i64) -> StoreResult<Vec<Option<Handoff>>>;
    /// A handoff, locked for this transaction (PostgreSQL: `FOR UPDATE`).
    async fn lock_handoff(&mut self, id: i64) -> StoreResult<Option<Handoff>>;
    /// Handoffs by id, locked for this transaction.
    async fn lock_handoffs(&mut self, ids: &[i64]) -> StoreResult<Vec<Handoff>>;
    /// Writes every mutable column of these handoffs.
    async fn update_handoffs(&mut self, handoffs: &[Handoff]) -> StoreResult<()>;
    async fn log_handoffs(&mut self, entries: &[HandoffLogEntry]) -> StoreResult<()>;
    /// Queues e-mails to people inside the company, due at once.
    async fn queue_notifications(&mut self, items: &[NewNotification], now: i64) -> StoreResult<()>;
    /// Open handoffs unclaimed past their SLA and not yet reported, earliest first, locked
    /// (PostgreSQL: skipping those another worker holds).
    async fn sla_due(&mut self, now: i64, limit: i64) -> StoreResult<Vec<Handoff>>;
    /// Leads whose cool-down ended by `now`, earliest first (PostgreSQL: skipping locked ones).
    async fn cooled_leads(&mut self, now: i64, limit: i64) -> StoreResult<Vec<i64>>;
    /// A queue's members as stored (those never stored are not returned), with their load:
    /// handoffs open and assigned to them, or claimed by them. Locked for this transaction.
    async fn queue_members(&mut self, queue: &str) -> StoreResult<Vec<Member>>;
    async fn write_members(&mut self, queue: &str, members: &[Member], now: i64) -> StoreResult<()>;
    /// The event types active subscriptions want (`*` for all).
    async fn wanted_events(&mut self) -> StoreResult<Vec<String>>;
    /// Queues webhook deliveries: one per active subscription that wants the event.
    async fn emit(&mut self, events: &[Emitted]) -> StoreResult<usize>;
}

/// The handoff part of the store, outside transactions.
#[async_trait]
pub trait HandoffStore: Send + Sync {
    /// Open handoffs of a queue after the cursor: highest priority first, then oldest.
    async fn queue_handoffs(&self, queue: &str, after: Option<QueueCursor>, limit: i64) -> StoreResult<Vec<Handoff>>;
    /// The handoffs `member` has claimed and not yet decided, oldest claim first.
    async fn claimed_by(&self, member: &str, limit: i64) -> StoreResult<Vec<Handoff>>;
    /// A lead's handoffs, newest first, at most `limit`.
    async fn lead_handoffs(&self, lead: i64, limit: i64) -> StoreResult<Vec<Handoff>>;
    async fn handoff(&self, id: i64) -> StoreResult<Option<Handoff>>;
    async fn handoff_log(&self, id: i64) -> StoreResult<Vec<HandoffLogEntry>>;
    /// Lines of every handoff's history after line `after` (an id; `None`: the last line's id
    /// and nothing else), at most `limit`, oldest first: what changed in the queues since.
    async fn handoff_moves(&self, after: Option<i64>, limit: i64) -> StoreResult<(i64, Vec<HandoffMove>)>;
    /// The earliest SLA deadline of an open handoff not yet reported, or cool-down end.
    /// Every queue with an open or claimed handoff, and how many there are of each.
    async fn queue_counts(&self, now: i64) -> StoreResult<Vec<QueueCounts>>;
    /// SLA breaches since `since`, per queue breached and per day: `(queue, day, count)`, the day
    /// numbered from the Unix epoch after adding `offset` (a time zone's offset, micros).
    async fn sla_breaches(&self, since: i64, offset: i64) -> StoreResult<Vec<(String, i64, i64)>>;
    async fn next_handoff_timer(&self) -> StoreResult<Option<i64>>;
    /// Subscribes `url` to `events`, created by `audit`'s actor and recorded with `audit` about
    /// the new subscription's id.
    async fn create_webhook(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
        now: i64,
        audit: &Change,
    ) -> StoreResult<Webhook>;
    async fn webhooks(&self) -> StoreResult<Vec<Webhook>>;
    async fn webhook(&self, id: i64) -> StoreResult<Option<Webhook>>;
    /// Deactivates a subscription; its pending deliveries are dropped. False when there is none.
    /// Records `audit` with the subscription's URL and events.
    async fn delete_webhook(&self, id: i64, now: i64, audit: &Change) -> StoreResult<bool>;
    /// Takes due deliveries, leasing each until `lease` and counting the attempt. A delivery
    /// waits while an earlier one of the same subscription and lead is pending, so a receiver
    /// gets a lead's events in order.
    async fn claim_deliveries(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<PendingDelivery>>;
    async fn finish_deliveries(&self, outcomes: &[DeliveryOutcome]) -> StoreResult<()>;
    /// Takes due notifications, leasing each until `lease` and counting the attempt.
    async fn claim_notifications(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<PendingNotification>>;
    async fn finish_notifications(&self, outcomes: &[NotificationOutcome]) -> StoreResult<()>;
    /// A subscription's deliveries, newest first, before the cursor (a delivery's seq).
    async fn deliveries(&self, webhook: i64, before: Option<i64>, limit: i64) -> StoreResult<Vec<Delivery>>;
}

pub(crate) fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(to_micros)
}

mod sql;
