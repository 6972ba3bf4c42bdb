//! The storage port's deliverability part: what frequency caps count (a lead's recent
//! messages) and the suppression list (addresses that bounced hard, complained, or bounced
//! softly too often). The SQL is the same on both backends, so one macro writes both.

use async_trait::async_trait;

use super::StoreResult;

/// The columns of a [`Suppression`], as both backends select them.
pub(crate) const SUPPRESSION_COLUMNS: &str = "email_hash, reason, detail, created_at";

/// A recent message that counts against a frequency cap.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecentSend {
    pub lead_id: i64,
    pub channel: String,
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

/// Writes an adapter's `impl PacingTx`; the adapter provides `Db`, `fn conn(&mut self)` and
/// its own `suppressions` (SQLite joins over a JSON list, PostgreSQL binds one array: neither
/// binds a parameter per address).
macro_rules! pacing_impl {
    ($tx:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::pacing::PacingTx for $tx {
            $($own)*

            async fn recent_sends(
                &mut self,
                lead_ids: &[i64],
                since: i64,
            ) -> StoreResult<Vec<$crate::store::pacing::RecentSend>> {
                let mut out = Vec::new();
                for chunk in lead_ids.chunks(1_000) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "SELECT lead_id, channel, created_at FROM messages WHERE status NOT IN ('skipped', 'failed') AND created_at > ",
                    );
                    // Through the leads' enrollments: messages have no index by lead.
                    q.push_bind(since).push(" AND enrollment_id IN (SELECT id FROM enrollments WHERE lead_id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push("))");
                    out.extend(q.build_query_as().fetch_all(self.conn().await?).await.map_err(StoreError::from_sqlx)?);
                }
                Ok(out)
            }

            async fn suppress(&mut self, rows: &[$crate::store::pacing::Suppression]) -> StoreResult<()> {
                for chunk in rows.chunks(1_000) {
                    let mut q =
                        sqlx::QueryBuilder::<Db>::new("INSERT INTO mail_suppressions (email_hash, reason, detail, created_at) ");
                    q.push_values(chunk, |mut row, s| {
                        row.push_bind(s.email_hash.clone())
                            .push_bind(s.reason.clone())
                            .push_bind(s.detail.clone())
                            .push_bind(s.created_at);
                    });
                    q.push(" ON CONFLICT (email_hash) DO NOTHING");
                    q.build().execute(self.conn().await?).await.map_err(StoreError::from_sqlx)?;
                }
                Ok(())
            }
        }
    };
}
pub(crate) use pacing_impl;
