//! The PostgreSQL adapter: the scale backend, where many engine workers share one database.
//! Batches arrive as one `jsonb` parameter unpacked by `jsonb_to_recordset`.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use std::collections::HashSet;
use std::str::FromStr;

use super::handoffs::*;
use super::*;
use crate::clock::to_micros;
use crate::engine::EngineResult;

mod queries;
mod tx;

use queries::*;
use tx::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    /// Woken by `NOTIFY nurture_mail`, which a transaction that queued messages sends as it
    /// commits, from any process on the database.
    mail: std::sync::Arc<tokio::sync::Notify>,
    listening: tokio::sync::OnceCell<()>,
    held: Held,
}

/// The advisory lock the process refreshing planner statistics holds.
const STATISTICS_LOCK: i64 = 0x6e75_7274_7374_6174;

/// The channel a transaction that queued messages notifies.
const MAIL_CHANNEL: &str = "nurture_mail";

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with every session's `search_path` set to `schema`; tests use one schema each.
    pub async fn connect_in_schema(url: &str, schema: &str) -> StoreResult<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?.options([("search_path", schema)])).await
    }

    async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        // One direct attempt first: an unreachable server fails at once with the real reason
        // (refused, unknown database, bad password) instead of a pool timeout 30 s later.
        sqlx::Connection::close(<sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await?).await?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            // A request waits this long for a connection, then answers 503: an unreachable
            // database is reported in seconds, not after a client has given up.
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            mail: Default::default(),
            listening: tokio::sync::OnceCell::new(),
            held: Held::default(),
        })
    }

    /// A connection listening on the mail channel.
    async fn subscribe(pool: &PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(MAIL_CHANNEL).await?;
        Ok(listener)
    }

    /// Wakes `mail` on each `NOTIFY nurture_mail`, for as long as the process runs; after a
    /// lost connection it wakes it once anyway, as a notification may have been missed.
    async fn listen(
        pool: PgPool,
        mut listener: Option<sqlx::postgres::PgListener>,
        mail: std::sync::Arc<tokio::sync::Notify>,
    ) {
        loop {
            let listening = match listener.take() {
                Some(listener) => Ok(listener),
                None => Self::subscribe(&pool).await,
            };
            let lost = match listening {
                Ok(mut listener) => loop {
                    match listener.recv().await {
                        Ok(_) => mail.notify_one(),
                        Err(e) => break e,
                    }
                },
                Err(e) => e,
            };
            tracing::debug!(error = %lost, "Listening for queued mail failed; listening again in a second.");
            mail.notify_one();
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn next_wake(&self, paused: &[String]) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(wake_at) FROM enrollments WHERE status = 'waiting' AND NOT (campaign_id = ANY($1))",
        )
        .bind(paused)
        .fetch_one(&self.pool)
        .await?;
        Ok(at.map(crate::clock::from_micros))
    }

    async fn mail_queued(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.listening
            .get_or_init(|| async {
                // Listening before the first wait, so that no commit after this call is missed.
                let listener = match Self::subscribe(&self.pool).await {
                    Ok(listener) => Some(listener),
                    Err(e) => {
                        tracing::warn!(error = %e, "Listening for queued mail failed; dispatchers poll meanwhile.");
                        None
                    }
                };
                tokio::spawn(Self::listen(self.pool.clone(), listener, self.mail.clone()));
            })
            .await;
        self.mail.clone()
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn finish_messages(&self, outcomes: &[MessageOutcome], counts: &[CountDelta]) -> StoreResult<()> {
        if let Some(json) = json_batch(outcomes) {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE messages m SET status = j.status, reason = j.reason, sent_at = j.sent_at, next_attempt_at = j.next_attempt_at, \
                 attempts = m.attempts - j.refund, language = COALESCE(j.language, m.language) \
                 FROM jsonb_to_recordset($1::jsonb) AS j(id BIGINT, status TEXT, reason TEXT, sent_at BIGINT, next_attempt_at BIGINT, refund BIGINT, language TEXT) \
                 WHERE m.id = j.id",
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
        Ok(Box::new(PgTx::new(self.pool.begin().await?, true)))
    }

    async fn run_pass(&self, work: &mut dyn PassWork) -> EngineResult<()> {
        // The pass locks the leads it takes (`take_free_leads`) and skips those other workers
        // have locked, so passes on many processes share the due work without waiting.
        let mut tx = self.begin().await?;
        let (leads, _held) = pick_and_hold(tx.as_mut(), &self.held, work).await?;
        decide_and_write(tx, leads, work).await
    }

    fn held(&self) -> &Held {
        &self.held
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(PgTx::new(
            self.pool.begin_with("BEGIN READ ONLY").await?,
            false,
        )))
    }

    async fn fold_counters(&self, before: i64, zone: chrono_tz::Tz) -> StoreResult<u64> {
        crate::store::reports::fold(self, before, zone).await
    }

    async fn refresh_statistics(&self) -> StoreResult<Vec<String>> {
        // What autovacuum does, sooner and without it: it may be off, and it looks at a table
        // at most once a minute. The thresholds are autovacuum's defaults (50 rows and a tenth
        // of the table changed). One process at a time: the others skip the round.
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(STATISTICS_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(Vec::new());
        }
        let refreshed = async {
            let stale: Vec<String> = sqlx::query_scalar(
                "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
                 WHERE s.schemaname = current_schema() AND s.relname <> '_sqlx_migrations' \
                 AND s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0) ORDER BY s.relname",
            )
            .fetch_all(&mut *conn)
            .await?;
            if !stale.is_empty() {
                // The names come from the catalogue, quoted as identifiers.
                let tables: Vec<String> = stale
                    .iter()
                    .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
                    .collect();
                sqlx::query(AssertSqlSafe(format!("ANALYZE {}", tables.join(", "))))
                    .execute(&mut *conn)
                    .await?;
            }
            StoreResult::Ok(stale)
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(STATISTICS_LOCK)
            .execute(&mut *conn)
            .await?;
        refreshed
    }

    async fn decay(&self, decay: Decay, now: DateTime<Utc>) -> StoreResult<u64> {
        let cutoff = to_micros(now) - decay.every.secs() * 1_000_000;
        let done: i64 = sqlx::query_scalar(
            "WITH due AS ( \
               SELECT id, -((score * $2 + 99) / 100) AS delta FROM leads \
               WHERE score > 0 AND GREATEST(COALESCE(last_activity_at, created_at), COALESCE(last_decay_at, 0)) <= $1 \
               FOR UPDATE SKIP LOCKED), \
             moved AS ( \
               UPDATE leads l SET score = l.score + due.delta, last_decay_at = $3, updated_at = $3 FROM due WHERE l.id = due.id \
               RETURNING l.id, due.delta), \
             logged AS ( \
               INSERT INTO score_changes (lead_id, delta, reason, actor_kind, actor, rule, occurred_at, at) \
               SELECT id, delta, 'decay', 'system', 'decay', NULL, $3, $3 FROM moved RETURNING 1) \
             SELECT count(*) FROM logged",
        )
        .bind(cutoff)
        .bind(decay.percent)
        .bind(to_micros(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(done as u64)
    }
}

impl sql::Dialect for Postgres {
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const JSON_TEXT_PROPERTIES: &'static str = "properties::text";
    const ERASE_LOOKUP: &'static str = "SELECT email FROM leads WHERE id = $1 FOR UPDATE";
    const PREFIX_RANGE: (&'static str, &'static str) = ("~>=~", "~<~");
    const PREFIX_ORDER: &'static str = " USING ~<~";
    const COUNTER_SHARDS: i64 = 4;
    const FOR_SHARE: &'static str = " FOR SHARE";
    const FOLD_IN_ONE_STATEMENT: bool = true;
    fn json_array_rows(texts: usize, ints: usize) -> String {
        let columns: Vec<String> = (0..texts + ints)
            .map(|i| match i < texts {
                true => format!("e->>{i} AS c{i}"),
                false => format!("(e->>{i})::bigint AS c{i}"),
            })
            .collect();
        format!(
            "SELECT {} FROM jsonb_array_elements($1::jsonb) AS e",
            columns.join(", ")
        )
    }
    const ID_TIME_PAIRS: &'static str =
        "SELECT (e->>0)::bigint AS id, (e->>1)::bigint AS at FROM jsonb_array_elements($1::jsonb) AS e";
    const TIMELINE: &'static [(TimelineKind, &'static str)] = &TIMELINE;
    const MIGRATOR: &'static sqlx::migrate::Migrator = &MIGRATOR;

    fn claim_many_sql() -> String {
        // The n-th open handoff (in claim order, skipping those others hold) goes to the n-th
        // member, in one statement.
        format!(
            "WITH asked AS (SELECT member, n FROM json_array_elements_text($2::json) WITH ORDINALITY AS a(member, n)), \
             cand AS (SELECT c.id AS cid, row_number() OVER (ORDER BY c.priority DESC, c.created_at, c.id) AS n FROM \
               (SELECT id, priority, created_at FROM handoffs WHERE queue = $1 AND status = 'open' AND assigned_to IS NULL \
                ORDER BY priority DESC, created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) c), \
             taken AS (UPDATE handoffs h SET status = 'claimed', claimed_by = asked.member, claimed_at = $4, updated_at = $4 \
               FROM cand JOIN asked USING (n) WHERE h.id = cand.cid AND h.status = 'open' \
               RETURNING asked.n, h.*) \
             SELECT {HANDOFF_COLUMNS} FROM taken ORDER BY n"
        )
    }

    fn list_leads_sql() -> &'static str {
        LIST_LEADS.as_str()
    }

    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
}

impl sql::SqlStore for PgStore {
    type DB = Postgres;
    type WriteTx = Transaction<'static, Postgres>;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn write_tx(&self) -> StoreResult<Self::WriteTx> {
        Ok(self.pool.begin().await?)
    }

    async fn commit(tx: Self::WriteTx) -> StoreResult<()> {
        Ok(tx.commit().await?)
    }
}
