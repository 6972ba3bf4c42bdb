//! Visitors of the customer's sites (`POST /t/events`): the lead each is known as, and the
//! page views of those not known yet, kept until the visitor is identified. The same SQL on
//! both backends.

use async_trait::async_trait;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::{StoreError, StoreResult};
use crate::lead::LeadId;
use crate::store::sql::SqlStore;

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
    /// Notes that `visitor` was seen at `at` (microseconds), and says which lead it is known
    /// as, if any.
    async fn visit(&self, visitor: &str, at: i64) -> StoreResult<Option<LeadId>>;
    /// Keeps `visits` (type, properties as JSON text, time) of a visitor not known yet.
    async fn keep_visits(&self, visitor: &str, visits: &[(String, String, i64)]) -> StoreResult<()>;
    /// A visitor's kept visits, oldest first.
    async fn kept_visits(&self, visitor: &str) -> StoreResult<Vec<KeptVisit>>;
    /// Knows `visitor` as `lead` from now on (the latest identification wins), and lets go of
    /// its kept visits up to `through` (their id), recorded as the lead's events by then.
    async fn identify_visitor(&self, visitor: &str, lead: LeadId, through: i64) -> StoreResult<()>;
}

#[async_trait]
impl<S, DB> VisitorStore for S
where
    S: SqlStore<DB = DB>,
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> KeptVisit: FromRow<'r, DB::Row>,
    for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn visit(&self, visitor: &str, at: i64) -> StoreResult<Option<LeadId>> {
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
        S::commit(tx).await?;
        Ok(lead.map(LeadId))
    }

    async fn keep_visits(&self, visitor: &str, visits: &[(String, String, i64)]) -> StoreResult<()> {
        if visits.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for (kind, properties, at) in visits {
            sqlx::query(
                "INSERT INTO visitor_events (visitor_id, type, properties, occurred_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(visitor)
            .bind(kind.as_str())
            .bind(properties.as_str())
            .bind(*at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        S::commit(tx).await
    }

    async fn kept_visits(&self, visitor: &str) -> StoreResult<Vec<KeptVisit>> {
        Ok(sqlx::query_as(
            "SELECT id, type, properties, occurred_at FROM visitor_events WHERE visitor_id = $1 ORDER BY id",
        )
        .bind(visitor)
        .fetch_all(self.pool())
        .await?)
    }

    async fn identify_visitor(&self, visitor: &str, lead: LeadId, through: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE visitors SET lead_id = $2 WHERE id = $1")
            .bind(visitor)
            .bind(lead.0)
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
}
