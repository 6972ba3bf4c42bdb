//! Visitors of the customer's sites (`POST /t/events`): the lead each is known as, and the
//! page views of those not known yet, kept until the visitor is identified. The same SQL on
//! both backends.

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Type};

use super::{StoreError, StoreResult};
use crate::lead::LeadId;
use crate::store::sql::{Dialect, SqlStore};

/// A page view (or click) of a visitor not known yet, as kept.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KeptVisit {
    pub id: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    /// The event's properties as JSON text.
    pub properties: String,
    /// Microseconds since the epoch.
    pub occurred_at: i64,
}

#[async_trait]
pub trait VisitorStore: Send + Sync {
    /// Notes that `visitor` was seen at `at` (microseconds) and, when nobody knows who it is
    /// yet, keeps its `visits` (event type and properties) as of `at`, in one transaction.
    /// Returns the lead it is known as, if any: its visits are then not kept (the caller
    /// records them as the lead's).
    async fn visit(&self, visitor: &str, at: i64, visits: &[(&str, Map<String, Value>)])
        -> StoreResult<Option<LeadId>>;
    /// A visitor's kept visits, oldest first.
    async fn kept_visits(&self, visitor: &str) -> StoreResult<Vec<KeptVisit>>;
    /// Knows `visitor` as `lead` from now on (the latest identification wins; seen at `at`),
    /// and lets go of its kept visits up to `through` (their id), recorded as the lead's
    /// events by then.
    async fn identify_visitor(&self, visitor: &str, lead: LeadId, through: i64, at: i64) -> StoreResult<()>;
    /// Deletes what is kept of visitors nobody knows from before `before` (microseconds):
    /// their page views, and the visitors not seen since. Returns the page views deleted.
    async fn forget_anonymous(&self, before: i64) -> StoreResult<u64>;
}

#[async_trait]
impl<S, DB> VisitorStore for S
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> KeptVisit: FromRow<'r, DB::Row>,
    for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn visit(
        &self,
        visitor: &str,
        at: i64,
        visits: &[(&str, Map<String, Value>)],
    ) -> StoreResult<Option<LeadId>> {
        let mut tx = self.write_tx().await?;
        let lead: Option<i64> = sqlx::query_scalar(
            "INSERT INTO visitors (id, lead_id, first_seen_at, last_seen_at) VALUES ($1, NULL, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at RETURNING lead_id",
        )
        .bind(visitor)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        if lead.is_none() && !visits.is_empty() {
            // All of them in one statement, bound as one JSON array of [type, properties, at],
            // the properties as the JSON text a kept visit holds.
            let rows = visits
                .iter()
                .map(|(kind, properties)| Ok(serde_json::json!([kind, serde_json::to_string(properties)?, at])))
                .collect::<Result<Vec<Value>, serde_json::Error>>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO visitor_events (visitor_id, type, properties, occurred_at) \
                 SELECT $2, c0, c1, c2 FROM ({rows}) AS r",
                rows = DB::json_array_rows(2, 1)
            )))
            .bind(Value::Array(rows).to_string())
            .bind(visitor)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        S::commit(tx).await?;
        Ok(lead.map(LeadId))
    }

    async fn kept_visits(&self, visitor: &str) -> StoreResult<Vec<KeptVisit>> {
        Ok(sqlx::query_as(
            "SELECT id, type, properties, occurred_at FROM visitor_events WHERE visitor_id = $1 ORDER BY id",
        )
        .bind(visitor)
        .fetch_all(self.pool())
        .await?)
    }

    async fn identify_visitor(&self, visitor: &str, lead: LeadId, through: i64, at: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO visitors (id, lead_id, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET lead_id = excluded.lead_id, last_seen_at = excluded.last_seen_at",
        )
        .bind(visitor)
        .bind(lead.0)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        sqlx::query("DELETE FROM visitor_events WHERE visitor_id = $1 AND id <= $2")
            .bind(visitor)
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        S::commit(tx).await
    }

    async fn forget_anonymous(&self, before: i64) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        // A known visitor's kept views are its lead's by now (`identify_visitor`): none left.
        let views = sqlx::query("DELETE FROM visitor_events WHERE occurred_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        sqlx::query(
            "DELETE FROM visitors WHERE lead_id IS NULL AND last_seen_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM visitor_events e WHERE e.visitor_id = visitors.id)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        S::commit(tx).await?;
        Ok(DB::rows_affected(&views))
    }
}
