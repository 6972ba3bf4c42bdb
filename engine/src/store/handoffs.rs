//! The storage port's handoff and webhook part: queues, claims, members, SLA timers, and the
//! webhook outbox. The SQL is the same on both backends but for locking (`FOR_UPDATE`,
//! `SKIP_LOCKED`, empty on SQLite, whose one writer holds the database), so one macro writes
//! both adapters' implementations; batches use `QueryBuilder` rows, which both dialects take.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{StoreError, StoreResult};
use crate::clock::{from_micros, to_micros};
use crate::handoff::{Handoff, HandoffId, Member};
use crate::lead::LeadId;

/// Columns of `handoffs` in [`HandoffRow`] order.
pub(crate) const HANDOFF_COLUMNS: &str =
    "id, lead_id, queue, reason, CAST(priority AS BIGINT) AS priority, origin, status, \
     score, tags, campaign_id, step, assigned_to, claimed_by, claimed_at, decided_by, decided_at, reject_reason, \
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
}

fn micros_as_time<S: serde::Serializer>(at: &i64, s: S) -> Result<S::Ok, S::Error> {
    from_micros(*at).serialize(s)
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
    async fn handoff(&self, id: i64) -> StoreResult<Option<Handoff>>;
    async fn handoff_log(&self, id: i64) -> StoreResult<Vec<HandoffLogEntry>>;
    /// The earliest SLA deadline of an open handoff not yet reported, or cool-down end.
    async fn next_handoff_timer(&self) -> StoreResult<Option<i64>>;
    async fn create_webhook(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
        by: &str,
        now: i64,
    ) -> StoreResult<Webhook>;
    async fn webhooks(&self) -> StoreResult<Vec<Webhook>>;
    async fn webhook(&self, id: i64) -> StoreResult<Option<Webhook>>;
    /// Deactivates a subscription; its pending deliveries are dropped. False when there is none.
    async fn delete_webhook(&self, id: i64) -> StoreResult<bool>;
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

/// Writes an adapter's `impl HandoffTx` and `impl HandoffStore`. The adapter module provides
/// `Db` (the sqlx database), `FOR_UPDATE` and `SKIP_LOCKED` (empty on SQLite), its store type
/// with a `pool`, and its transaction type with `fn conn(&mut self)`.
macro_rules! handoff_impl {
    ($store:ty, $tx:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::handoffs::HandoffTx for $tx {
            $($own)*

            async fn claim_handoff(&mut self, queue: &str, member: &str, now: i64) -> StoreResult<Option<Handoff>> {
                let row: Option<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "UPDATE handoffs SET status = 'claimed', claimed_by = $2, claimed_at = $3, updated_at = $3 WHERE id = \
                     (SELECT id FROM handoffs WHERE queue = $1 AND status = 'open' AND (assigned_to IS NULL OR assigned_to = $2) \
                      ORDER BY priority DESC, created_at, id LIMIT 1{SKIP_LOCKED}) AND status = 'open' \
                     RETURNING {HANDOFF_COLUMNS}"
                )))
                .bind(queue)
                .bind(member)
                .bind(now)
                .fetch_optional(self.conn().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
                row.map(Handoff::try_from).transpose()
            }

            async fn lock_handoff(&mut self, id: i64) -> StoreResult<Option<Handoff>> {
                Ok(self.lock_handoffs(&[id]).await?.pop())
            }

            async fn lock_handoffs(&mut self, ids: &[i64]) -> StoreResult<Vec<Handoff>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<Db>::new(format!("SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE id IN ("));
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                q.push(format!(") ORDER BY id{FOR_UPDATE}"));
                let rows: Vec<HandoffRow> = q.build_query_as().fetch_all(self.conn().await?).await.map_err(StoreError::from_sqlx)?;
                handoffs_from(rows)
            }

            async fn update_handoffs(&mut self, handoffs: &[Handoff]) -> StoreResult<()> {
                for chunk in handoffs.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "WITH v (id, queue, status, assigned_to, claimed_by, claimed_at, decided_by, decided_at, reject_reason, \
                         sla_due_at, sla_breached_at, moved_from, updated_at) AS (",
                    );
                    q.push_values(chunk, |mut row, h| {
                        row.push_bind(h.id.0)
                            .push_bind(h.queue.clone())
                            .push_bind(h.status.as_str())
                            .push_bind(h.assigned_to.clone())
                            .push_bind(h.claimed_by.clone())
                            .push_bind(opt_micros(h.claimed_at))
                            .push_bind(h.decided_by.clone())
                            .push_bind(opt_micros(h.decided_at))
                            .push_bind(h.reject_reason.clone())
                            .push_bind(opt_micros(h.sla_due_at))
                            .push_bind(opt_micros(h.sla_breached_at))
                            .push_bind(h.moved_from.clone())
                            .push_bind(to_micros(h.updated_at));
                    });
                    q.push(
                        ") UPDATE handoffs SET \
                         queue = (SELECT queue FROM v WHERE v.id = handoffs.id), \
                         status = (SELECT status FROM v WHERE v.id = handoffs.id), \
                         assigned_to = (SELECT assigned_to FROM v WHERE v.id = handoffs.id), \
                         claimed_by = (SELECT claimed_by FROM v WHERE v.id = handoffs.id), \
                         claimed_at = (SELECT claimed_at FROM v WHERE v.id = handoffs.id), \
                         decided_by = (SELECT decided_by FROM v WHERE v.id = handoffs.id), \
                         decided_at = (SELECT decided_at FROM v WHERE v.id = handoffs.id), \
                         reject_reason = (SELECT reject_reason FROM v WHERE v.id = handoffs.id), \
                         sla_due_at = (SELECT sla_due_at FROM v WHERE v.id = handoffs.id), \
                         sla_breached_at = (SELECT sla_breached_at FROM v WHERE v.id = handoffs.id), \
                         moved_from = (SELECT moved_from FROM v WHERE v.id = handoffs.id), \
                         updated_at = (SELECT updated_at FROM v WHERE v.id = handoffs.id) \
                         WHERE id IN (SELECT id FROM v)",
                    );
                    q.build().execute(self.conn().await?).await.map_err(StoreError::from_sqlx)?;
                }
                Ok(())
            }

            async fn log_handoffs(&mut self, entries: &[HandoffLogEntry]) -> StoreResult<()> {
                for chunk in entries.chunks(1_000) {
                    let mut q = sqlx::QueryBuilder::<Db>::new("INSERT INTO handoff_log (handoff_id, action, actor, detail, at) ");
                    q.push_values(chunk, |mut row, e| {
                        row.push_bind(e.handoff_id)
                            .push_bind(e.action.clone())
                            .push_bind(e.actor.clone())
                            .push_bind(e.detail.clone())
                            .push_bind(e.at);
                    });
                    q.build().execute(self.conn().await?).await.map_err(StoreError::from_sqlx)?;
                }
                Ok(())
            }

            async fn queue_notifications(&mut self, items: &[NewNotification], now: i64) -> StoreResult<()> {
                for chunk in items.chunks(1_000) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO notifications (lead_id, handoff_id, recipient, subject, body, next_attempt_at, created_at) ",
                    );
                    q.push_values(chunk, |mut row, n| {
                        row.push_bind(n.lead_id)
                            .push_bind(n.handoff_id)
                            .push_bind(n.recipient.clone())
                            .push_bind(n.subject.clone())
                            .push_bind(n.body.clone())
                            .push_bind(now)
                            .push_bind(now);
                    });
                    q.build().execute(self.conn().await?).await.map_err(StoreError::from_sqlx)?;
                }
                Ok(())
            }

            async fn sla_due(&mut self, now: i64, limit: i64) -> StoreResult<Vec<Handoff>> {
                let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE status = 'open' AND sla_breached_at IS NULL \
                     AND sla_due_at IS NOT NULL AND sla_due_at <= $1 ORDER BY sla_due_at, id LIMIT $2{SKIP_LOCKED}"
                )))
                .bind(now)
                .bind(limit)
                .fetch_all(self.conn().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
                handoffs_from(rows)
            }

            async fn cooled_leads(&mut self, now: i64, limit: i64) -> StoreResult<Vec<i64>> {
                Ok(sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT id FROM leads WHERE cooldown_until IS NOT NULL AND cooldown_until <= $1 \
                     ORDER BY cooldown_until, id LIMIT $2{SKIP_LOCKED}"
                )))
                .bind(now)
                .bind(limit)
                .fetch_all(self.conn().await?)
                .await
                .map_err(StoreError::from_sqlx)?)
            }

            async fn queue_members(&mut self, queue: &str) -> StoreResult<Vec<Member>> {
                let rows: Vec<(String, bool, Option<i64>, i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT member, available, capacity, weight, pass FROM queue_members WHERE queue = $1 ORDER BY member{FOR_UPDATE}"
                )))
                .bind(queue)
                .fetch_all(self.conn().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
                let loads: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT COALESCE(claimed_by, assigned_to) AS m, COUNT(*) FROM handoffs \
                     WHERE queue = $1 AND status IN ('open', 'claimed') AND COALESCE(claimed_by, assigned_to) IS NOT NULL \
                     GROUP BY COALESCE(claimed_by, assigned_to)",
                )
                .bind(queue)
                .fetch_all(self.conn().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(member, available, capacity, weight, pass)| {
                        let load = loads.iter().find(|(m, _)| *m == member).map_or(0, |(_, n)| *n);
                        Member { member, available, capacity, weight, pass, load }
                    })
                    .collect())
            }

            async fn write_members(&mut self, queue: &str, members: &[Member], now: i64) -> StoreResult<()> {
                if members.is_empty() {
                    return Ok(());
                }
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO queue_members (queue, member, available, capacity, weight, pass, updated_at) ",
                );
                q.push_values(members, |mut row, m| {
                    row.push_bind(queue.to_owned())
                        .push_bind(m.member.clone())
                        .push_bind(m.available)
                        .push_bind(m.capacity)
                        .push_bind(m.weight)
                        .push_bind(m.pass)
                        .push_bind(now);
                });
                q.push(
                    " ON CONFLICT (queue, member) DO UPDATE SET available = excluded.available, capacity = excluded.capacity, \
                     weight = excluded.weight, pass = excluded.pass, updated_at = excluded.updated_at",
                );
                q.build().execute(self.conn().await?).await.map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn wanted_events(&mut self) -> StoreResult<Vec<String>> {
                let lists: Vec<String> = sqlx::query_scalar("SELECT events FROM webhooks WHERE active")
                    .fetch_all(self.conn().await?)
                    .await?;
                let mut wanted: Vec<String> = lists
                    .iter()
                    .flat_map(|l| serde_json::from_str::<Vec<String>>(l).unwrap_or_default())
                    .collect();
                wanted.sort();
                wanted.dedup();
                Ok(wanted)
            }

            async fn emit(&mut self, events: &[Emitted]) -> StoreResult<usize> {
                if events.is_empty() {
                    return Ok(0);
                }
                let hooks: Vec<(i64, String)> = sqlx::query_as("SELECT id, events FROM webhooks WHERE active ORDER BY id")
                    .fetch_all(self.conn().await?)
                    .await?;
                let mut rows = Vec::new();
                for (hook, wanted) in &hooks {
                    let wanted: Vec<String> = serde_json::from_str(wanted).unwrap_or_default();
                    for e in events.iter().filter(|e| wanted.iter().any(|w| *w == e.event || w == "*")) {
                        rows.push((*hook, e));
                    }
                }
                for chunk in rows.chunks(1_000) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, lead_id, payload, status, attempts, next_attempt_at, created_at) ",
                    );
                    q.push_values(chunk, |mut row, (hook, e)| {
                        let at = to_micros(e.at);
                        row.push_bind(format!("dlv_{}", uuid::Uuid::now_v7().simple()))
                            .push_bind(*hook)
                            .push_bind(e.event.clone())
                            .push_bind(e.lead_id)
                            .push_bind(e.payload.clone())
                            .push_bind("pending")
                            .push_bind(0_i64)
                            .push_bind(at)
                            .push_bind(at);
                    });
                    q.build().execute(self.conn().await?).await.map_err(StoreError::from_sqlx)?;
                }
                Ok(rows.len())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::handoffs::HandoffStore for $store {
            async fn queue_handoffs(&self, queue: &str, after: Option<QueueCursor>, limit: i64) -> StoreResult<Vec<Handoff>> {
                let (p, c, i) = after.unwrap_or((i64::MAX, i64::MIN, i64::MIN));
                let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE queue = $1 AND status = 'open' \
                     AND (priority < $2 OR (priority = $2 AND (created_at > $3 OR (created_at = $3 AND id > $4)))) \
                     ORDER BY priority DESC, created_at, id LIMIT $5"
                )))
                .bind(queue)
                .bind(p)
                .bind(c)
                .bind(i)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                handoffs_from(rows)
            }

            async fn handoff(&self, id: i64) -> StoreResult<Option<Handoff>> {
                let row: Option<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!("SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE id = $1")))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(Handoff::try_from).transpose()
            }

            async fn handoff_log(&self, id: i64) -> StoreResult<Vec<HandoffLogEntry>> {
                Ok(sqlx::query_as("SELECT handoff_id, action, actor, detail, at FROM handoff_log WHERE handoff_id = $1 ORDER BY id")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn next_handoff_timer(&self) -> StoreResult<Option<i64>> {
                let sla: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(sla_due_at) FROM handoffs WHERE status = 'open' AND sla_breached_at IS NULL AND sla_due_at IS NOT NULL",
                )
                .fetch_one(&self.pool)
                .await?;
                let cool: Option<i64> = sqlx::query_scalar("SELECT MIN(cooldown_until) FROM leads WHERE cooldown_until IS NOT NULL")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(match (sla, cool) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            }

            async fn create_webhook(&self, url: &str, events: &[String], secret: &str, by: &str, now: i64) -> StoreResult<Webhook> {
                let events = serde_json::to_string(events).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let row: WebhookRow = sqlx::query_as(
                    "INSERT INTO webhooks (url, events, secret, created_by, created_at, active) VALUES ($1, $2, $3, $4, $5, true) \
                     RETURNING id, url, events, secret, created_by, created_at, active",
                )
                .bind(url)
                .bind(events)
                .bind(secret)
                .bind(by)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Webhook::try_from(row)
            }

            async fn webhooks(&self) -> StoreResult<Vec<Webhook>> {
                let rows: Vec<WebhookRow> = sqlx::query_as(
                    "SELECT id, url, events, secret, created_by, created_at, active FROM webhooks WHERE active ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(Webhook::try_from).collect()
            }

            async fn webhook(&self, id: i64) -> StoreResult<Option<Webhook>> {
                let row: Option<WebhookRow> = sqlx::query_as(
                    "SELECT id, url, events, secret, created_by, created_at, active FROM webhooks WHERE id = $1 AND active",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(Webhook::try_from).transpose()
            }

            async fn delete_webhook(&self, id: i64) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("UPDATE webhooks SET active = false WHERE id = $1 AND active")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE webhook_deliveries SET status = 'dropped', next_attempt_at = NULL WHERE webhook_id = $1 AND status = 'pending'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn claim_deliveries(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<PendingDelivery>> {
                let mut taken: Vec<PendingDelivery> = sqlx::query_as(AssertSqlSafe(format!(
                    "UPDATE webhook_deliveries SET next_attempt_at = $2, attempts = attempts + 1 WHERE id IN \
                     (SELECT d.id FROM webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending' AND e.webhook_id = d.webhook_id \
                                      AND e.lead_id = d.lead_id AND e.id < d.id) \
                      ORDER BY d.next_attempt_at, d.id LIMIT $3{SKIP_LOCKED}) \
                     RETURNING id, delivery_id, webhook_id, event, lead_id, payload, attempts, created_at, '' AS url, '' AS secret"
                )))
                .bind(now)
                .bind(lease)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                if taken.is_empty() {
                    return Ok(taken);
                }
                let hooks: Vec<(i64, String, String)> = sqlx::query_as("SELECT id, url, secret FROM webhooks ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
                for d in &mut taken {
                    if let Some((_, url, secret)) = hooks.iter().find(|(id, _, _)| *id == d.webhook_id) {
                        d.url = url.clone();
                        d.secret = secret.clone();
                    }
                }
                taken.sort_by_key(|d| d.id);
                Ok(taken)
            }

            async fn finish_deliveries(&self, outcomes: &[DeliveryOutcome]) -> StoreResult<()> {
                if outcomes.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                for chunk in outcomes.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "WITH v (id, status, status_code, error, at, next_attempt_at) AS (",
                    );
                    q.push_values(chunk, |mut row, o| {
                        row.push_bind(o.id)
                            .push_bind(o.status)
                            .push_bind(o.status_code)
                            .push_bind(o.error.clone())
                            .push_bind(o.at)
                            .push_bind(o.next_attempt_at);
                    });
                    q.push(
                        ") UPDATE webhook_deliveries SET \
                         status = (SELECT status FROM v WHERE v.id = webhook_deliveries.id), \
                         last_status = (SELECT status_code FROM v WHERE v.id = webhook_deliveries.id), \
                         last_error = (SELECT error FROM v WHERE v.id = webhook_deliveries.id), \
                         next_attempt_at = (SELECT next_attempt_at FROM v WHERE v.id = webhook_deliveries.id), \
                         delivered_at = (SELECT CASE WHEN status = 'delivered' THEN at END FROM v WHERE v.id = webhook_deliveries.id) \
                         WHERE id IN (SELECT id FROM v) AND status = 'pending'",
                    );
                    q.build().execute(&mut *tx).await.map_err(StoreError::from_sqlx)?;
                    let mut log = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) ",
                    );
                    log.push_values(chunk, |mut row, o| {
                        row.push_bind(o.id)
                            .push_bind(o.attempt)
                            .push_bind(o.at)
                            .push_bind(o.status_code)
                            .push_bind(o.error.clone())
                            .push_bind(o.duration_ms);
                    });
                    log.build().execute(&mut *tx).await.map_err(StoreError::from_sqlx)?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn claim_notifications(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<PendingNotification>> {
                let mut taken: Vec<PendingNotification> = sqlx::query_as(AssertSqlSafe(format!(
                    "UPDATE notifications SET next_attempt_at = $2, attempts = attempts + 1 WHERE id IN \
                     (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
                      ORDER BY next_attempt_at, id LIMIT $3{SKIP_LOCKED}) \
                     RETURNING id, recipient, subject, body, attempts"
                )))
                .bind(now)
                .bind(lease)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                taken.sort_by_key(|n| n.id);
                Ok(taken)
            }

            async fn finish_notifications(&self, outcomes: &[NotificationOutcome]) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for o in outcomes {
                    sqlx::query(
                        "UPDATE notifications SET status = $2, last_error = $3, next_attempt_at = $4, \
                         sent_at = CASE WHEN $2 = 'sent' THEN $5 END WHERE id = $1 AND status = 'pending'",
                    )
                    .bind(o.id)
                    .bind(o.status)
                    .bind(o.error.clone())
                    .bind(o.next_attempt_at)
                    .bind(o.at)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn deliveries(&self, webhook: i64, before: Option<i64>, limit: i64) -> StoreResult<Vec<Delivery>> {
                let rows: Vec<DeliveryRow> = sqlx::query_as(
                    "SELECT id, delivery_id, event, lead_id, status, attempts, created_at, delivered_at, next_attempt_at, \
                     last_status, last_error, payload FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(webhook)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let (lo, hi) = match (rows.last(), rows.first()) {
                    (Some(lo), Some(hi)) => (lo.id, hi.id),
                    _ => return Ok(Vec::new()),
                };
                let attempts: Vec<AttemptRow> = sqlx::query_as(
                    "SELECT a.delivery_id, a.attempt, a.at, a.status_code, a.error, a.duration_ms FROM webhook_attempts a \
                     JOIN webhook_deliveries d ON d.id = a.delivery_id \
                     WHERE d.webhook_id = $1 AND a.delivery_id BETWEEN $2 AND $3 ORDER BY a.delivery_id, a.attempt",
                )
                .bind(webhook)
                .bind(lo)
                .bind(hi)
                .fetch_all(&self.pool)
                .await?;
                Ok(deliveries_from(rows, attempts))
            }

        }
    };
}
pub(crate) use handoff_impl;
