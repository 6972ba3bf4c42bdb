//! Migrations, readiness, API keys, server settings and idempotent requests.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::access::{ApiKey, Role};
use crate::audit::Change;
use crate::clock::{from_micros, to_micros};
use crate::store::sql::{Dialect, SqlStore};
use chrono::{DateTime, Utc};

/// Migrations, readiness, API keys, server settings and idempotent requests.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers and every migration is applied.
    async fn ready(&self) -> StoreResult<bool>;
    /// Stores a key's hash, with `audit` about the new key's id; the new key's id.
    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        now: DateTime<Utc>,
        audit: &Change,
    ) -> StoreResult<i64>;
    /// The key with this hash, unless revoked.
    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Every key, revoked ones too, oldest first.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// One key, revoked or not.
    async fn api_key(&self, id: i64) -> StoreResult<Option<ApiKeyRecord>>;
    /// Revokes a key (a revoked one keeps its first revocation, and records nothing again),
    /// recording `audit` with the key's name and role;
    /// the key as it is then, or `None` when there is no such key.
    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>, audit: &Change) -> StoreResult<Option<ApiKeyRecord>>;
    /// Revokes a key and stores its successor (same name and role) in one transaction, with
    /// `audit` naming the key and its successor; the successor, or `None` when there is no such unrevoked key.
    async fn rotate_api_key(
        &self,
        id: i64,
        hash: &str,
        now: DateTime<Utc>,
        audit: &Change,
    ) -> StoreResult<Option<ApiKeyRecord>>;
    /// A setting generated once: `fresh` is stored if none is, and the stored value returned.
    async fn setting(&self, name: &str, fresh: &str) -> StoreResult<String>;
    /// Sets a server-wide setting.
    async fn put_setting(&self, name: &str, value: &str) -> StoreResult<()>;
    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Idempotency>;
    async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, body: &str) -> StoreResult<()>;
    /// Forgets a begun request that failed, so a retry can run it.
    async fn idempotency_abort(&self, scope: &str, key: &str) -> StoreResult<()>;
    /// What waits for the engine at `now`; each figure read through a partial index of the
    /// rows that wait.
    async fn backlog(&self, now: DateTime<Utc>) -> StoreResult<Backlog>;
}

#[async_trait]
impl<S, DB> AdminStore for S
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut <DB as Database>::Connection: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    <DB as Database>::Connection: sqlx::migrate::Migrate,
    for<'r> (i64,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64, String, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> KeyRow: FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, Option<i64>, Option<String>): FromRow<'r, <DB as Database>::Row>,
    for<'r> (Option<i64>,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, i64, i64): FromRow<'r, <DB as Database>::Row>,
{
    async fn migrate(&self) -> StoreResult<()> {
        <DB as Dialect>::MIGRATOR.run(self.pool()).await?;
        Ok(())
    }

    async fn ready(&self) -> StoreResult<bool> {
        // Reachable first: an unreachable database is not one with migrations pending.
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(self.pool())
            .await
            .unwrap_or_default();
        Ok(<DB as Dialect>::MIGRATOR.iter().all(|m| applied.contains(&m.version)))
    }

    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        now: DateTime<Utc>,
        audit: &Change,
    ) -> StoreResult<i64> {
        let mut tx = self.write_tx().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO api_keys (name, role, key_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(to_micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        audit::insert::<DB>(&mut *tx, &[audit.about(id)], to_micros(now)).await?;
        S::commit(tx).await?;
        Ok(id)
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<KeyRow> =
            sqlx::query_as(AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id")))
                .fetch_all(self.pool())
                .await?;
        rows.into_iter().map(KeyRow::record).collect()
    }

    async fn api_key(&self, id: i64) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(KeyRow::record).transpose()
    }

    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>, audit: &Change) -> StoreResult<Option<ApiKeyRecord>> {
        let mut tx = self.write_tx().await?;
        let revoked: Option<KeyRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        )))
        .bind(id)
        .bind(to_micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let row = match revoked {
            Some(row) => {
                let audit = audit
                    .clone()
                    .with("name", row.name.clone())
                    .with("role", row.role.clone());
                audit::insert::<DB>(&mut *tx, &[audit], to_micros(now)).await?;
                Some(row)
            }
            None => {
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        S::commit(tx).await?;
        row.map(KeyRow::record).transpose()
    }

    async fn rotate_api_key(
        &self,
        id: i64,
        hash: &str,
        now: DateTime<Utc>,
        audit: &Change,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let mut tx = self.write_tx().await?;
        let old: Option<(String, String)> = sqlx::query_as(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING name, role",
        )
        .bind(id)
        .bind(to_micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((name, role)) = old else {
            return Ok(None);
        };
        let successor: KeyRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO api_keys (name, role, key_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING {KEY_COLUMNS}"
        )))
        .bind(name)
        .bind(role)
        .bind(hash)
        .bind(to_micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        let audit = audit
            .clone()
            .with("name", successor.name.clone())
            .with("role", successor.role.clone())
            .with("successor", successor.id.to_string());
        audit::insert::<DB>(&mut *tx, &[audit], to_micros(now)).await?;
        S::commit(tx).await?;
        successor.record().map(Some)
    }

    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                .bind(hash)
                .fetch_optional(self.pool())
                .await?;
        row.map(|(id, name, role)| {
            Ok(ApiKey {
                id,
                name,
                role: role.parse().map_err(StoreError::Corrupt)?,
            })
        })
        .transpose()
    }

    async fn setting(&self, name: &str, fresh: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh)
            .execute(self.pool())
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await?)
    }

    async fn put_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Idempotency> {
        let now = to_micros(now);
        let inserted = sqlx::query(
            "INSERT INTO idempotent_requests (scope, key, fingerprint, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, created_at = excluded.created_at \
             WHERE idempotent_requests.status IS NULL AND idempotent_requests.created_at < $5",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .bind(now)
        .bind(now - IDEMPOTENCY_STALE_MICROS)
        .execute(self.pool())
        .await?;
        if <DB as Dialect>::rows_affected(&inserted) == 1 {
            return Ok(Idempotency::Proceed);
        }
        let (theirs, status, body): (String, Option<i64>, Option<String>) =
            sqlx::query_as("SELECT fingerprint, status, body FROM idempotent_requests WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_one(self.pool())
                .await?;
        Ok(match (theirs == fingerprint, status) {
            (false, _) => Idempotency::Mismatch,
            (true, None) => Idempotency::InFlight,
            (true, Some(status)) => Idempotency::Replay {
                status: status as u16,
                body: body.unwrap_or_default(),
            },
        })
    }

    async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, body: &str) -> StoreResult<()> {
        sqlx::query("UPDATE idempotent_requests SET status = $3, body = $4 WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .bind(status as i64)
            .bind(body)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn idempotency_abort(&self, scope: &str, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotent_requests WHERE scope = $1 AND key = $2 AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn backlog(&self, now: DateTime<Utc>) -> StoreResult<Backlog> {
        let now = to_micros(now);
        let count = |sql: &'static str| async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(self.pool()).await?;
            StoreResult::Ok(n)
        };
        let oldest = |sql: &'static str| async move {
            let (at,): (Option<i64>,) = sqlx::query_as(sql).bind(now).fetch_one(self.pool()).await?;
            StoreResult::Ok(at.map(from_micros))
        };
        let queues: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT queue, COUNT(*), CAST(SUM(CASE WHEN sla_breached_at IS NULL THEN 0 ELSE 1 END) AS BIGINT) \
             FROM handoffs WHERE status = 'open' GROUP BY queue ORDER BY queue",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(Backlog {
            waiting: count("SELECT COUNT(*) FROM enrollments WHERE status = 'waiting'").await?,
            // A paused campaign holds its due wake-ups on purpose: they are no lag of the runner.
            oldest_due_wake: oldest(
                "SELECT MIN(wake_at) FROM enrollments WHERE status = 'waiting' AND wake_at <= $1 \
                 AND campaign_id NOT IN (SELECT id FROM campaigns WHERE status = 'paused')",
            )
            .await?,
            outbox: count("SELECT COUNT(*) FROM messages WHERE status = 'pending'").await?,
            oldest_due_message: oldest(
                "SELECT MIN(next_attempt_at) FROM messages WHERE status = 'pending' AND next_attempt_at <= $1",
            )
            .await?,
            webhooks_pending: count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'").await?,
            webhooks_failed: count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'failed'").await?,
            queues,
        })
    }
}

/// The columns of a listed key, in [`KeyRow`]'s order.
const KEY_COLUMNS: &str = "id, name, role, created_at, revoked_at";

/// A key as listed, as stored.
#[derive(sqlx::FromRow)]
pub struct KeyRow {
    id: i64,
    name: String,
    role: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl KeyRow {
    fn record(self) -> StoreResult<ApiKeyRecord> {
        Ok(ApiKeyRecord {
            id: self.id,
            name: self.name,
            role: self.role.parse().map_err(StoreError::Corrupt)?,
            created_at: crate::clock::from_micros(self.created_at),
            revoked_at: self.revoked_at.map(crate::clock::from_micros),
        })
    }
}
