//! The storage port's deliverability part: what frequency caps count (a lead's recent
//! messages) and the suppression list (addresses that bounced hard, complained, or bounced
//! softly too often). `recent_sends` and `suppress` are the same SQL on both backends: generic helpers here, which
//! each adapter's `impl PacingTx` calls.

use async_trait::async_trait;

use super::{StoreError, StoreResult};

/// The columns of a [`Suppression`], as both backends select them.
pub(crate) const SUPPRESSION_COLUMNS: &str = "email_hash, reason, detail, created_at";

/// A recent message that counts against a frequency cap.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecentSend {
    pub lead_id: i64,
    #[sqlx(try_from = "String")]
    pub channel: crate::channel::Channel,
    /// When the message was created (when its step ran): microseconds.
    pub created_at: i64,
}

/// An address that must get no more mail.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Suppression {
    /// [`super::email_hash`] of the address.
    pub email_hash: String,
    /// `hard_bounce`, `complaint` or `soft_bounces`.
    pub reason: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// The deliverability part of a transaction.
#[async_trait]
pub trait PacingTx: Send {
    /// Messages to these leads created after `since` that were not skipped or failed.
    async fn recent_sends(&mut self, lead_ids: &[i64], since: i64) -> StoreResult<Vec<RecentSend>>;
    /// The suppressions of these address hashes.
    async fn suppressions(&mut self, email_hashes: &[String]) -> StoreResult<Vec<Suppression>>;
    /// Adds suppressions; an address already suppressed keeps its first reason.
    async fn suppress(&mut self, rows: &[Suppression]) -> StoreResult<()>;
}
/// Messages to these leads created after `since` that count against caps, 1,000 leads a
/// statement. The same SQL on both backends.
pub(crate) async fn recent_sends<DB>(
    conn: &mut DB::Connection,
    lead_ids: &[i64],
    since: i64,
) -> StoreResult<Vec<RecentSend>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> RecentSend: sqlx::FromRow<'r, DB::Row>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let mut out = Vec::new();
    for chunk in lead_ids.chunks(1_000) {
        let mut q = sqlx::QueryBuilder::<DB>::new(
            "SELECT lead_id, channel, created_at FROM messages WHERE status NOT IN ('skipped', 'failed') AND created_at > ",
        );
        // Through the leads' enrollments: messages have no index by lead.
        q.push_bind(since)
            .push(" AND enrollment_id IN (SELECT id FROM enrollments WHERE lead_id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push("))");
        out.extend(
            q.build_query_as()
                .fetch_all(&mut *conn)
                .await
                .map_err(StoreError::from_sqlx)?,
        );
    }
    Ok(out)
}

/// Adds suppressions, 1,000 a statement; an address already suppressed keeps its first reason.
pub(crate) async fn suppress<DB>(conn: &mut DB::Connection, rows: &[Suppression]) -> StoreResult<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    for chunk in rows.chunks(1_000) {
        let mut q =
            sqlx::QueryBuilder::<DB>::new("INSERT INTO mail_suppressions (email_hash, reason, detail, created_at) ");
        q.push_values(chunk, |mut row, s| {
            row.push_bind(s.email_hash.clone())
                .push_bind(s.reason.clone())
                .push_bind(s.detail.clone())
                .push_bind(s.created_at);
        });
        q.push(" ON CONFLICT (email_hash) DO NOTHING");
        q.build().execute(&mut *conn).await.map_err(StoreError::from_sqlx)?;
    }
    Ok(())
}
