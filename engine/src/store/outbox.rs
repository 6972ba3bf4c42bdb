//! The outbox of messages to send: claims with a lease, and what was sent.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::clock::{from_micros, to_micros};
use crate::lead::LeadId;
use crate::store::sql::{Dialect, SqlStore};
use chrono::{DateTime, Utc};

/// The outbox of messages to send: claims with a lease, and what was sent.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Takes up to `limit` pending messages due by `now` for sending: each is leased until
    /// `lease` (another dispatcher leaves it alone; a crash makes it due again then) and its
    /// attempt counted.
    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<PendingMessage>>;
    /// Whether a message is leased (claimed, its outcome not yet recorded) until a time after
    /// `now` and no later than `until`: a send in flight of a dispatcher whose clock stands at
    /// `now`.
    async fn sends_in_flight(&self, now: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<bool>;
    /// The lead a message went to, and its channel.
    async fn message_lead(&self, message_id: i64) -> StoreResult<Option<MessageTarget>>;
    /// How many e-mails were sent since `since` (microseconds): what a warm-up counts.
    async fn emails_sent_since(&self, since: i64) -> StoreResult<i64>;
}

#[async_trait]
impl<S, DB> OutboxStore for S
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut <DB as Database>::Connection: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (bool,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64, String, Option<i64>): FromRow<'r, <DB as Database>::Row>,
    for<'r> PendingMessage: FromRow<'r, <DB as Database>::Row>,
{
    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<PendingMessage>> {
        let skip_locked = <DB as Dialect>::SKIP_LOCKED;
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE messages SET next_attempt_at = $2, attempts = attempts + 1 WHERE id IN \
             (SELECT id FROM messages WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $3{skip_locked}) \
             RETURNING id, enrollment_id, lead_id, campaign_id, version, step, channel, template, attempts"
        )))
        .bind(to_micros(now))
        .bind(to_micros(lease))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?)
    }

    async fn sends_in_flight(&self, now: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<bool> {
        // A claim counts the attempt and leaves `reason` as it was: empty until a send fails.
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE status = 'pending' AND attempts > 0 AND reason IS NULL \
             AND next_attempt_at > $1 AND next_attempt_at <= $2)",
        )
        .bind(to_micros(now))
        .bind(to_micros(until))
        .fetch_one(self.pool())
        .await?)
    }

    async fn message_lead(&self, message_id: i64) -> StoreResult<Option<MessageTarget>> {
        let row: Option<(i64, String, Option<i64>)> =
            sqlx::query_as("SELECT lead_id, channel, sent_at FROM messages WHERE id = $1")
                .bind(message_id)
                .fetch_optional(self.pool())
                .await?;
        row.map(|(lead, channel, sent_at)| {
            Ok(MessageTarget {
                lead: LeadId(lead),
                channel: channel.parse().map_err(StoreError::Corrupt)?,
                sent_at: sent_at.map(from_micros),
            })
        })
        .transpose()
    }

    async fn emails_sent_since(&self, since: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE channel = 'email' AND status = 'sent' AND sent_at >= $1",
        )
        .bind(since)
        .fetch_one(self.pool())
        .await?)
    }
}
