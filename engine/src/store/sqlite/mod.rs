//! The SQLite adapter: the embedded default, one file, zero set-up. WAL mode with a busy
//! timeout; write transactions start with `BEGIN IMMEDIATE` so that two writers queue rather
//! than deadlock on a lock upgrade.

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Sqlite, SqlitePool};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use super::handoffs::*;
use super::sql::json_strings;
use super::*;
use crate::clock::to_micros;
use crate::engine::EngineResult;

mod checkpoint;
mod pass;
mod queries;
#[cfg(test)]
mod tests;
mod tx;
mod values;
mod writer;

use checkpoint::*;
pub use pass::Snapshot;
use queries::*;
use tx::*;
use values::*;
use writer::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How a write transaction starts (taking the write lock at once).
const WRITE_BEGIN: &str = "BEGIN IMMEDIATE";

pub struct SqliteStore {
    /// Connections for reads (and the few writes outside numbered transactions).
    pool: SqlitePool,
    writer: Writer,
    held: Held,
}

impl SqliteStore {
    /// The options a `sqlite://path` URL or a bare path names.
    fn options(url: &str) -> StoreResult<SqliteConnectOptions> {
        Ok(if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(url)
        })
    }

    /// The database file `url` names.
    pub fn file(url: &str) -> StoreResult<std::path::PathBuf> {
        Ok(Self::options(url)?.get_filename().to_path_buf())
    }

    /// Opens (creating if missing) the database file a `sqlite://path` URL or a bare path names.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = Self::options(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "memory")
            // When the WAL starts over, its file is cut back to this size: a burst that grew it
            // does not keep its disk space.
            .pragma("journal_size_limit", Checkpointer::WAL_FILE_LIMIT.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        // Kept open for the store's life: a new connection would start with a cold cache.
        let write_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        // Its own connection, whose busy timeout bounds how long a `RESTART` checkpoint waits
        // for readers.
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.busy_timeout(Checkpointer::RESTART_WAIT))
            .await?;
        let turn = std::sync::Arc::<tokio::sync::Mutex<()>>::default();
        Ok(Self {
            writer: Writer {
                checkpointer: Checkpointer::spawn(checkpoints, turn.clone()),
                mail: Default::default(),
                pool: write_pool,
                turn,
                passes: Default::default(),
            },
            pool,
            held: Held::default(),
        })
    }

    /// A write transaction of the port, in this process's turn to write.
    async fn begin_tx(&self) -> StoreResult<SqliteTx> {
        let turn = self.writer.turn.clone().lock_owned().await;
        let (tx, seq) = self.writer.numbered_tx().await?;
        Ok(SqliteTx::new(tx.tx, Some(turn), Some(self.writer.pass(seq, None))))
    }

    /// A numbered write transaction (see `Writer::numbered_tx`), for writes outside the `Tx` port.
    async fn write_tx(&self) -> StoreResult<WriteTx> {
        Ok(self.writer.numbered_tx().await?.0)
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn mail_queued(&self) -> std::sync::Arc<tokio::sync::Notify> {
        // One process writes a SQLite file's mail (others are tools: import, migrate).
        self.writer.mail.clone()
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn finish_messages(&self, outcomes: &[MessageOutcome], counts: &[CountDelta]) -> StoreResult<()> {
        if let Some(json) = json_batch(outcomes) {
            let mut tx = self.write_tx().await?;
            sqlx::query(
                "UPDATE messages SET status = j.value->>'status', reason = j.value->>'reason', \
                 sent_at = j.value->>'sent_at', next_attempt_at = j.value->>'next_attempt_at', \
                 attempts = attempts - j.value->>'refund', language = COALESCE(j.value->>'language', language) \
                 FROM jsonb_each(jsonb($1)) AS j WHERE messages.id = j.value->>'id'",
            )
            .bind(json)
            .execute(&mut *tx)
            .await?;
            crate::store::reports::count_on(&mut *tx, counts).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(self.begin_tx().await?))
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx::new(self.pool.begin().await?, None, None)))
    }

    async fn run_pass(&self, work: &mut dyn PassWork) -> EngineResult<()> {
        self.pass(work).await
    }

    fn held(&self) -> &Held {
        &self.held
    }

    async fn next_wake(&self, paused: &[String]) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(wake_at) FROM enrollments WHERE status = 'waiting' \
             AND campaign_id NOT IN (SELECT value FROM json_each($1))",
        )
        .bind(json_strings(paused))
        .fetch_one(&self.pool)
        .await?;
        Ok(at.map(from_micros))
    }

    async fn refresh_statistics(&self) -> StoreResult<Vec<String>> {
        // SQLite plans these queries from their indexes, with no gathered statistics.
        Ok(Vec::new())
    }

    async fn fold_counters(&self, before: i64, zone: chrono_tz::Tz) -> StoreResult<u64> {
        crate::store::reports::fold(self, before, zone).await
    }

    async fn decay(&self, decay: Decay, now: DateTime<Utc>) -> StoreResult<u64> {
        let cutoff = to_micros(now) - decay.every.secs() * 1_000_000;
        let mut tx = self.write_tx().await?;
        const DUE: &str = "score > 0 AND MAX(COALESCE(last_activity_at, created_at), COALESCE(last_decay_at, 0)) <= $1";
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO score_changes (lead_id, delta, reason, actor_kind, actor, rule, occurred_at, at) \
             SELECT id, -((score * $2 + 99) / 100), 'decay', 'system', 'decay', NULL, $3, $3 FROM leads WHERE {DUE}"
        )))
        .bind(cutoff)
        .bind(decay.percent)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE leads SET score = score - ((score * $2 + 99) / 100), last_decay_at = $3, updated_at = $3 WHERE {DUE}"
        )))
        .bind(cutoff)
        .bind(decay.percent)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

#[async_trait::async_trait]
impl pacing::PacingTx for SqliteTx {
    async fn suppressions(&mut self, email_hashes: &[String]) -> StoreResult<Vec<pacing::Suppression>> {
        let mut wanted: Vec<&str> = email_hashes.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let wanted = serde_json::to_string(&wanted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {} FROM {WANTED} CROSS JOIN mail_suppressions ON email_hash = i.wanted",
            pacing::SUPPRESSION_COLUMNS
        )))
        .bind(wanted)
        .fetch_all(self.conn().await?)
        .await?)
    }

    async fn recent_sends(&mut self, lead_ids: &[i64], since: i64) -> StoreResult<Vec<pacing::RecentSend>> {
        pacing::recent_sends::<Sqlite>(self.conn().await?, lead_ids, since).await
    }

    async fn suppress(&mut self, rows: &[pacing::Suppression]) -> StoreResult<()> {
        pacing::suppress::<Sqlite>(self.conn().await?, rows).await
    }
}

impl sql::Dialect for Sqlite {
    const FOR_UPDATE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const JSON_TEXT_PROPERTIES: &'static str = "properties";
    const ERASE_LOOKUP: &'static str = "SELECT email FROM leads WHERE id = $1";
    const PREFIX_RANGE: (&'static str, &'static str) = (">=", "<");
    const PREFIX_ORDER: &'static str = " ASC, id";
    // One writer at a time: one shard.
    const COUNTER_SHARDS: i64 = 1;
    const FOR_SHARE: &'static str = "";
    const FOLD_IN_ONE_STATEMENT: bool = false;
    fn json_array_rows(texts: usize, ints: usize) -> String {
        let columns: Vec<String> = (0..texts + ints)
            .map(|i| format!("json_extract(value, '$[{i}]') AS c{i}"))
            .collect();
        format!("SELECT {} FROM json_each($1)", columns.join(", "))
    }
    const ID_TIME_PAIRS: &'static str =
        "SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at FROM json_each($1)";
    const TIMELINE: &'static [(TimelineKind, &'static str)] = &TIMELINE;
    const MIGRATOR: &'static sqlx::migrate::Migrator = &MIGRATOR;

    fn claim_many_sql() -> String {
        // The n-th open handoff (in claim order) goes to the n-th member, in one statement.
        format!(
            "WITH asked(member, n) AS (SELECT value, key + 1 FROM json_each($2)), \
             cand(cid, n) AS (SELECT id, row_number() OVER (ORDER BY priority DESC, created_at, id) FROM \
               (SELECT id, priority, created_at FROM handoffs WHERE queue = $1 AND status = 'open' AND assigned_to IS NULL \
                ORDER BY priority DESC, created_at, id LIMIT $3)) \
             UPDATE handoffs SET status = 'claimed', claimed_by = m.member, claimed_at = $4, updated_at = $4 \
             FROM (SELECT cand.cid, asked.member FROM cand JOIN asked USING (n)) AS m \
             WHERE handoffs.id = m.cid RETURNING {HANDOFF_COLUMNS}"
        )
    }

    fn list_leads_sql() -> &'static str {
        LIST_LEADS.as_str()
    }

    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
}

impl sql::SqlTx for SqliteTx {
    type DB = Sqlite;

    async fn connection(&mut self) -> StoreResult<&mut sqlx::SqliteConnection> {
        self.conn().await
    }
}

impl sql::SqlStore for SqliteStore {
    type DB = Sqlite;
    type WriteTx = WriteTx;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn write_tx(&self) -> StoreResult<WriteTx> {
        SqliteStore::write_tx(self).await
    }

    async fn commit(tx: WriteTx) -> StoreResult<()> {
        Ok(tx.commit().await?)
    }
}
