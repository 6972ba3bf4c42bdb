//! The audit part of the storage port: entries written inside the transaction of the change
//! they record ([`AuditTx::write_audit`], and [`insert`] for the store's own transactions), and
//! read newest first with filters. The same SQL on both backends.

use async_trait::async_trait;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::{StoreError, StoreResult};
use crate::audit::{AuditEntry, AuditFilter, Change};
use crate::clock::from_micros;
use crate::store::sql::{SqlStore, SqlTx};

/// The audit part of a write transaction.
#[async_trait]
pub trait AuditTx: Send {
    /// Records these changes at `at` (microseconds), in this transaction.
    async fn write_audit(&mut self, changes: &[Change], at: i64) -> StoreResult<()>;
}

/// Reading the audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Entries that pass `filter`, newest first: up to `limit` of those before `before` (an id).
    async fn audit_log(&self, filter: &AuditFilter, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditEntry>>;
}

/// An entry as stored.
#[derive(sqlx::FromRow)]
pub struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    via: String,
    kind: String,
    subject: String,
    detail: String,
}

impl AuditRow {
    fn entry(self) -> StoreResult<AuditEntry> {
        Ok(AuditEntry {
            id: self.id,
            at: from_micros(self.at),
            actor: self.actor,
            via: self.via.parse().map_err(StoreError::Corrupt)?,
            kind: self.kind.parse().map_err(StoreError::Corrupt)?,
            subject: self.subject,
            detail: serde_json::from_str(&self.detail)
                .map_err(|e| StoreError::Corrupt(format!("audit entry {}: {e}", self.id)))?,
        })
    }
}

/// Records `changes` at `at` on `conn`, inside whatever transaction it is in.
pub(crate) async fn insert<DB>(conn: &mut DB::Connection, changes: &[Change], at: i64) -> StoreResult<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    for chunk in changes.chunks(1_000) {
        let mut q = sqlx::QueryBuilder::<DB>::new("INSERT INTO audit_log (at, actor, via, kind, subject, detail) ");
        q.push_values(chunk, |mut row, c| {
            row.push_bind(at)
                .push_bind(c.by.actor.clone())
                .push_bind(c.by.via.as_str())
                .push_bind(c.kind.as_str())
                .push_bind(c.subject.clone())
                .push_bind(c.detail.to_string());
        });
        q.build().execute(&mut *conn).await.map_err(StoreError::from_sqlx)?;
    }
    Ok(())
}

#[async_trait]
impl<T, DB> AuditTx for T
where
    T: SqlTx<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn write_audit(&mut self, changes: &[Change], at: i64) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        insert::<DB>(self.connection().await?, changes, at).await
    }
}

#[async_trait]
impl<S, DB> AuditStore for S
where
    S: SqlStore<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> AuditRow: FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn audit_log(&self, filter: &AuditFilter, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let mut q = sqlx::QueryBuilder::<DB>::new(
            "SELECT id, at, actor, via, kind, subject, detail FROM audit_log WHERE 1 = 1",
        );
        if let Some(before) = before {
            q.push(" AND id < ").push_bind(before);
        }
        if let Some(actor) = &filter.actor {
            q.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(since) = filter.since {
            q.push(" AND at >= ").push_bind(since);
        }
        match filter.kinds.as_deref() {
            None => {}
            Some([]) => {
                q.push(" AND 1 = 0");
            }
            Some(kinds) => {
                q.push(" AND kind IN (");
                let mut list = q.separated(", ");
                for kind in kinds {
                    list.push_bind(kind.as_str());
                }
                q.push(")");
            }
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        let rows: Vec<AuditRow> = q.build_query_as().fetch_all(self.pool()).await?;
        rows.into_iter().map(AuditRow::entry).collect()
    }
}
