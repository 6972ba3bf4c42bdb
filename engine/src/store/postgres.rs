//! The PostgreSQL adapter: the scale backend, where many engine workers share one database.
//! Batches arrive as one `jsonb` parameter unpacked by `jsonb_to_recordset`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;

use super::handoffs::*;
use super::*;
use crate::clock::to_micros;



static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");


pub struct PgStore {
    pool: PgPool,
    /// Woken by `NOTIFY nurture_mail`, which a transaction that queued messages sends as it
    /// commits, from any process on the database.
    mail: std::sync::Arc<tokio::sync::Notify>,
    listening: tokio::sync::OnceCell<()>,
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

fn recordset_columns() -> String {
    LEAD_COLUMNS
        .iter()
        .map(|(c, t)| format!("{c} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shards of the per-step counters (see migration 0004).
const STEP_COUNT_SHARDS: i64 = 16;

static SELECT_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        // One index lookup per key kind: `id = ANY OR email = ANY OR …` reads the whole table.
        // The ids are gathered into an array first (an init plan, run once), so that the rows
        // are fetched by the primary key: as `id IN (… UNION …)` the planner joined the whole
        // table against the ids once its plan was generic (seen: every claim batch and every
        // engine batch read all of `leads`).
        "SELECT {} FROM leads WHERE id = ANY(ARRAY(SELECT unnest($1::bigint[]) \
         UNION SELECT id FROM leads WHERE email = ANY($2) \
         UNION SELECT id FROM leads WHERE external_id = ANY($3))) ORDER BY id",
        lead_column_list()
    )
});

/// The leads of `$1` no other transaction holds, locked in id order and read in one statement,
/// through a function that keeps the plan on the primary key (see `migrations/postgres/0010`).
static TAKE_FREE_LEADS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM take_free_leads($1)", lead_column_list()));

/// In a write transaction the leads are locked, in id order so that two writers never wait on
/// each other in a cycle: the engine computes new scores from what it read, and no other writer
/// may change them in between.
static SELECT_LEADS_FOR_UPDATE: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", SELECT_LEADS.as_str()));

static WRITE_LEADS: LazyLock<String> = LazyLock::new(|| {
    let cols = lead_column_list();
    let updates: Vec<String> = LEAD_COLUMNS
        .iter()
        .skip(1)
        .map(|(c, _)| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO leads ({cols}) SELECT {cols} FROM jsonb_to_recordset($1::jsonb) AS r({}) \
         ON CONFLICT (id) DO UPDATE SET {}",
        recordset_columns(),
        updates.join(", ")
    )
});

static LIST_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM leads WHERE id > $1 AND ($2::text IS NULL OR stage = $2) \
         AND ($3::text IS NULL OR id IN (SELECT lead_id FROM lead_tags WHERE tag = $3)) \
         AND ($4::text IS NULL OR lower(coalesce(email, '') || ' ' || coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(company, '')) LIKE $4 ESCAPE '\\') \
         ORDER BY id LIMIT $5",
        lead_column_list()
    )
});

const TIMELINE: [(TimelineKind, &str); 6] = [
    (
        TimelineKind::Event,
        "SELECT id, occurred_at, jsonb_build_object('type', type, 'properties', properties, 'source', source, 'received_at', received_at)::text \
         FROM events WHERE lead_id = $1 AND (occurred_at < $2 OR (occurred_at = $2 AND id < $3)) ORDER BY occurred_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::TagChange,
        "SELECT id, at, jsonb_build_object('tag', tag, 'family', family, 'change', CASE WHEN added THEN 'added' ELSE 'removed' END, 'by', jsonb_build_object('kind', actor_kind, 'name', actor))::text \
         FROM tag_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::ScoreChange,
        "SELECT id, at, jsonb_build_object('delta', delta, 'reason', reason, 'rule', rule, 'by', jsonb_build_object('kind', actor_kind, 'name', actor))::text \
         FROM score_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Handoff,
        "SELECT id, created_at, jsonb_build_object('queue', queue, 'reason', reason, 'priority', priority, 'origin', origin, 'status', status, 'handoff_id', id::text, 'claimed_by', claimed_by, 'reject_reason', reject_reason)::text \
         FROM handoffs WHERE lead_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::CampaignStep,
        "SELECT id, at, jsonb_build_object('campaign', campaign_id, 'enrollment', enrollment_id, 'step', step, 'outcome', outcome, 'detail', detail)::text \
         FROM journey WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Message,
        "SELECT id, created_at, jsonb_build_object('message', id, 'campaign', campaign_id, 'step', step, 'channel', channel, 'template', template, 'status', status, 'reason', reason, 'sent_at', sent_at)::text \
         FROM messages WHERE enrollment_id IN (SELECT id FROM enrollments WHERE lead_id = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
];

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

    async fn finish_messages(&self, outcomes: &[MessageOutcome]) -> StoreResult<()> {
        if let Some(json) = json_batch(outcomes) {
            sqlx::query(
                "UPDATE messages m SET status = j.status, reason = j.reason, sent_at = j.sent_at, next_attempt_at = j.next_attempt_at, \
                 attempts = m.attempts - j.refund \
                 FROM jsonb_to_recordset($1::jsonb) AS j(id BIGINT, status TEXT, reason TEXT, sent_at BIGINT, next_attempt_at BIGINT, refund BIGINT) \
                 WHERE m.id = j.id",
            )
            .bind(json)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(PgTx {
            tx: self.pool.begin().await?,
            write: true,
            step_counts: StepCountDeltas::default(),
        }))
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(PgTx {
            tx: self.pool.begin_with("BEGIN READ ONLY").await?,
            write: false,
            step_counts: StepCountDeltas::default(),
        }))
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
                let tables: Vec<String> = stale.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect();
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

struct PgTx {
    tx: Transaction<'static, Postgres>,
    write: bool,
    /// Step counts this transaction adds, written just before it commits (see `commit`).
    step_counts: StepCountDeltas,
}

/// Per (campaign, step, outcome): enrollments that arrived, and lines written; and the shard
/// they go to.
#[derive(Default)]
struct StepCountDeltas {
    sums: std::collections::BTreeMap<(String, String, String), (i64, i64)>,
    shard: i64,
}

impl PgTx {
    async fn conn(&mut self) -> StoreResult<&mut sqlx::PgConnection> {
        Ok(&mut self.tx)
    }
}

#[async_trait::async_trait]
impl pacing::PacingTx for PgTx {
    async fn suppressions(&mut self, email_hashes: &[String]) -> StoreResult<Vec<pacing::Suppression>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {} FROM mail_suppressions WHERE email_hash = ANY($1)",
            pacing::SUPPRESSION_COLUMNS
        )))
        .bind(email_hashes)
        .fetch_all(self.conn().await?)
        .await?)
    }

    async fn recent_sends(&mut self, lead_ids: &[i64], since: i64) -> StoreResult<Vec<pacing::RecentSend>> {
        pacing::recent_sends::<Postgres>(self.conn().await?, lead_ids, since).await
    }

    async fn suppress(&mut self, rows: &[pacing::Suppression]) -> StoreResult<()> {
        pacing::suppress::<Postgres>(self.conn().await?, rows).await
    }
}

impl sql::Dialect for Postgres {
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const ERASE_LOOKUP: &'static str = "SELECT email FROM leads WHERE id = $1 FOR UPDATE";

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

    fn timeline_sql() -> &'static [(TimelineKind, &'static str)] {
        &TIMELINE
    }

    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }
}

impl sql::SqlTx for PgTx {
    type DB = Postgres;

    async fn connection(&mut self) -> StoreResult<&mut sqlx::PgConnection> {
        Ok(&mut self.tx)
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

impl PgTx {
    /// Runs one of the lead lookups (`SELECT_LEADS`, with or without its lock).
    async fn select_leads(
        &mut self,
        sql: &'static str,
        ids: &[i64],
        emails: &[String],
        external_ids: &[String],
    ) -> StoreResult<Vec<Lead>> {
        let rows: Vec<LeadRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(ids)
            .bind(emails)
            .bind(external_ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        leads_from(rows)
    }
}

#[async_trait]
impl Tx for PgTx {
    async fn find_leads(&mut self, ids: &[i64], emails: &[String], external_ids: &[String]) -> StoreResult<Vec<Lead>> {
        let sql = if self.write {
            SELECT_LEADS_FOR_UPDATE.as_str()
        } else {
            SELECT_LEADS.as_str()
        };
        self.select_leads(sql, ids, emails, external_ids).await
    }

    async fn view_leads(&mut self, ids: &[i64]) -> StoreResult<Vec<Lead>> {
        self.select_leads(SELECT_LEADS.as_str(), ids, &[], &[]).await
    }

    async fn reserve_lead_ids(&mut self, n: usize) -> StoreResult<Vec<i64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(
            sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('leads', 'id')) FROM generate_series(1, $1)")
                .bind(n as i64)
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }

    async fn write_leads(&mut self, leads: &[Lead]) -> StoreResult<()> {
        for chunk in leads.chunks(5_000) {
            let rows: Vec<LeadRow> = chunk.iter().map(LeadRow::from).collect();
            sqlx::query(AssertSqlSafe(WRITE_LEADS.as_str()))
                .bind(serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn write_lead_activity(&mut self, leads: &[ActivityRow]) -> StoreResult<()> {
        // Typed arrays, not a recordset: the runner writes a row per lead it moved.
        for chunk in leads.chunks(5_000) {
            sqlx::query(
                "UPDATE leads l SET score = r.score, stage = r.stage, last_activity_at = r.last_activity_at, updated_at = r.updated_at \
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) \
                 AS r(id, score, stage, last_activity_at, updated_at) WHERE l.id = r.id",
            )
            .bind(chunk.iter().map(|r| r.id).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|r| r.score).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|r| r.stage).collect::<Vec<&str>>())
            .bind(chunk.iter().map(|r| r.last_activity_at).collect::<Vec<Option<i64>>>())
            .bind(chunk.iter().map(|r| r.updated_at).collect::<Vec<i64>>())
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn load_tags(&mut self, ids: &[i64]) -> StoreResult<Vec<(i64, String, TagFamily)>> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT lead_id, tag, family FROM lead_tags WHERE lead_id = ANY($1)")
                .bind(ids)
                .fetch_all(&mut *self.tx)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, t, f)| TagFamily::parse(&f).map(|f| (id, t, f)))
            .collect())
    }

    async fn load_enrollments(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Enrollment>> {
        // Locked with the leads: a worker that holds a lead holds its enrollments.
        let lock = if self.write { " FOR UPDATE" } else { "" };
        let rows: Vec<EnrollmentRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE lead_id = ANY($1) ORDER BY id{lock}"
        )))
        .bind(lead_ids)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        enrollments_from(rows)
    }

    async fn due_leads(&mut self, now: i64, paused: &[String], _busy: &[i64], limit: i64) -> StoreResult<Vec<i64>> {
        // The earliest due enrollments by the wake-up index, skipping rows another worker has
        // locked, so that workers take different work instead of queueing for the same rows.
        // The leads other passes of this process hold (`busy`) are locked by those passes'
        // transactions, so `SKIP LOCKED` passes them by; checked again in SQL, each row went
        // through the whole list (no hashing for a bound array). The function keeps the plan
        // on the index whatever the statistics say (see `migrations/postgres/0010`).
        let leads: Vec<i64> = sqlx::query_scalar("SELECT lead_id FROM due_leads($1, $2, $3) AS due(lead_id)")
            .bind(now)
            .bind(paused)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(distinct(leads))
    }

    async fn take_free_leads(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Lead>> {
        let rows: Vec<LeadRow> = sqlx::query_as(AssertSqlSafe(TAKE_FREE_LEADS.as_str()))
            .bind(lead_ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        leads_from(rows)
    }

    async fn frozen_campaigns(&mut self) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM campaigns WHERE status <> 'active' ORDER BY id")
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }

    async fn campaign_source(&mut self, id: &str, version: &str) -> StoreResult<Option<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT file, source FROM campaign_versions WHERE campaign_id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .fetch_optional(&mut *self.tx)
                .await?,
        )
    }

    async fn reserve_enrollment_ids(&mut self, n: usize) -> StoreResult<Vec<i64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('enrollments', 'id')) FROM generate_series(1, $1)",
        )
        .bind(n as i64)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    // The three writes of a step go as typed arrays (UNNEST): binary parameters, no JSON to
    // build and parse, several times faster than a recordset for the engine's batches.
    async fn write_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<EnrollmentRow> = rows.iter().map(EnrollmentRow::from).collect();
        let col = |f: fn(&EnrollmentRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        let text = |f: fn(&EnrollmentRow) -> &str| rows.iter().map(|r| f(r).to_owned()).collect::<Vec<String>>();
        sqlx::query(
            "INSERT INTO enrollments (id, campaign_id, version, lead_id, step, status, wake_at, outcome, transitions, entered_at, updated_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], \
             $8::text[], $9::bigint[], $10::bigint[], $11::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET step = excluded.step, status = excluded.status, wake_at = excluded.wake_at, \
             outcome = excluded.outcome, transitions = excluded.transitions, updated_at = excluded.updated_at",
        )
        .bind(col(|r| r.id))
        .bind(text(|r| &r.campaign_id))
        .bind(text(|r| &r.version))
        .bind(col(|r| r.lead_id))
        .bind(text(|r| &r.step))
        .bind(text(|r| &r.status))
        .bind(rows.iter().map(|r| r.wake_at).collect::<Vec<Option<i64>>>())
        .bind(rows.iter().map(|r| r.outcome.clone()).collect::<Vec<Option<String>>>())
        .bind(col(|r| r.transitions))
        .bind(col(|r| r.entered_at))
        .bind(col(|r| r.updated_at))
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn write_journey(&mut self, rows: &[JourneyRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let moves = journey_moves(rows)?;
        let col = |f: fn(&JourneyMove) -> i64| moves.iter().map(f).collect::<Vec<i64>>();
        sqlx::query(
            "INSERT INTO journey_moves (enrollment_id, lead_id, campaign_id, at, steps) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[])",
        )
        .bind(col(|m| m.enrollment_id))
        .bind(col(|m| m.lead_id))
        .bind(moves.iter().map(|m| m.campaign_id).collect::<Vec<&str>>())
        .bind(col(|m| m.at))
        .bind(moves.iter().map(|m| m.steps.as_str()).collect::<Vec<&str>>())
        .execute(&mut *self.tx)
        .await?;
        if self.step_counts.sums.is_empty() {
            self.step_counts.shard = rows[0].enrollment_id.rem_euclid(STEP_COUNT_SHARDS);
        }
        for (campaign, step, outcome, entered, lines) in step_count_deltas(rows) {
            let sum = self.step_counts.sums.entry((campaign, step, outcome)).or_default();
            sum.0 += entered;
            sum.1 += lines;
        }
        Ok(())
    }

    async fn insert_messages(&mut self, rows: &[NewMessage]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let col = |f: fn(&NewMessage) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        let text = |f: fn(&NewMessage) -> &str| rows.iter().map(|r| f(r).to_owned()).collect::<Vec<String>>();
        // The notification is delivered when the transaction commits, once however many
        // statements sent it: the dispatchers on the database wake then.
        sqlx::query(
            "WITH queued AS (INSERT INTO messages (enrollment_id, seq, lead_id, campaign_id, version, step, channel, template, status, reason, next_attempt_at, created_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[]) \
             ON CONFLICT (enrollment_id, seq) DO NOTHING RETURNING 1) \
             SELECT pg_notify('nurture_mail', '') WHERE EXISTS (SELECT 1 FROM queued)",
        )
        .bind(col(|r| r.enrollment_id))
        .bind(col(|r| r.seq))
        .bind(col(|r| r.lead_id))
        .bind(text(|r| &r.campaign_id))
        .bind(text(|r| &r.version))
        .bind(text(|r| &r.step))
        .bind(text(|r| &r.channel))
        .bind(text(|r| &r.template))
        .bind(text(|r| &r.status))
        .bind(rows.iter().map(|r| r.reason.clone()).collect::<Vec<Option<String>>>())
        .bind(rows.iter().map(|r| r.next_attempt_at).collect::<Vec<Option<i64>>>())
        .bind(col(|r| r.created_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn load_messages(&mut self, enrollment_ids: &[i64]) -> StoreResult<Vec<SentMessage>> {
        Ok(
            sqlx::query_as("SELECT enrollment_id, id, step FROM messages WHERE enrollment_id = ANY($1) ORDER BY id")
                .bind(enrollment_ids)
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }

    async fn load_events(
        &mut self,
        ids: &[i64],
        needs: &[(String, Option<i64>)],
    ) -> StoreResult<Vec<(i64, EventFact)>> {
        let rows: Vec<(i64, String, i64, sqlx::types::Json<Map<String, Value>>)> = sqlx::query_as(
            "SELECT e.lead_id, e.type, e.occurred_at, e.properties FROM events e \
             JOIN jsonb_to_recordset($2::jsonb) AS n(type text, since bigint) ON e.type = n.type AND e.occurred_at >= n.since \
             WHERE e.lead_id = ANY($1)",
        )
        .bind(ids)
        .bind(event_needs_json(needs))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, at, props)| {
                (
                    id,
                    EventFact {
                        kind,
                        occurred_at: from_micros(at),
                        properties: props.0,
                    },
                )
            })
            .collect())
    }

    async fn load_cap_usage(
        &mut self,
        ids: &[i64],
        rules: &[String],
        since: i64,
    ) -> StoreResult<Vec<(i64, String, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT lead_id, rule, occurred_at, delta FROM score_changes WHERE lead_id = ANY($1) AND rule = ANY($2) AND occurred_at >= $3",
        )
        .bind(ids)
        .bind(rules)
        .bind(since)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn suppressed(&mut self, email_hashes: &[String]) -> StoreResult<HashSet<String>> {
        if email_hashes.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = sqlx::query_scalar("SELECT email_hash FROM suppressions WHERE email_hash = ANY($1)")
            .bind(email_hashes)
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn keyed_events(&mut self, keys: &[&str]) -> StoreResult<Vec<(String, i64, EventFact)>> {
        let rows: Vec<(String, i64, String, i64, sqlx::types::Json<Map<String, Value>>)> = sqlx::query_as(
            "SELECT idempotency_key, lead_id, type, occurred_at, properties FROM events WHERE idempotency_key = ANY($1)",
        )
        .bind(keys)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(key, lead, kind, at, properties)| {
                let fact = EventFact {
                    kind,
                    occurred_at: from_micros(at),
                    properties: properties.0,
                };
                (key, lead, fact)
            })
            .collect())
    }

    async fn insert_events(&mut self, events: &[NewEvent<'_>]) -> StoreResult<HashSet<String>> {
        // Typed arrays, unnested server-side: cheaper to decode than one large jsonb document.
        let mut inserted = HashSet::new();
        for chunk in events.chunks(5_000) {
            let lead_ids: Vec<i64> = chunk.iter().map(|e| e.lead_id).collect();
            let kinds: Vec<&str> = chunk.iter().map(|e| e.kind).collect();
            let properties: Vec<String> = chunk
                .iter()
                .map(|e| serde_json::to_string(e.properties).unwrap_or_else(|_| "{}".into()))
                .collect();
            let occurred: Vec<i64> = chunk.iter().map(|e| e.occurred_at).collect();
            let received: Vec<i64> = chunk.iter().map(|e| e.received_at).collect();
            let keys: Vec<Option<&str>> = chunk.iter().map(|e| e.idempotency_key).collect();
            let sources: Vec<Option<&str>> = chunk.iter().map(|e| e.source).collect();
            let keys: Vec<Option<String>> = sqlx::query_scalar(
                "INSERT INTO events (lead_id, type, properties, occurred_at, received_at, idempotency_key, source) \
                 SELECT lead_id, type, properties::jsonb, occurred_at, received_at, idempotency_key, source \
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[]) \
                 AS r(lead_id, type, properties, occurred_at, received_at, idempotency_key, source) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
            )
            .bind(&lead_ids)
            .bind(&kinds)
            .bind(&properties)
            .bind(&occurred)
            .bind(&received)
            .bind(&keys)
            .bind(&sources)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
            inserted.extend(keys.into_iter().flatten());
        }
        Ok(inserted)
    }

    async fn write_changes(&mut self, changes: &Changes) -> StoreResult<Vec<Opened>> {
        let batches = ChangeBatches::of(changes);
        let statements = [
            (
                &batches.tag_log,
                "INSERT INTO tag_changes (lead_id, tag, family, added, actor_kind, actor, at) \
                 SELECT lead_id, tag, family, added, actor_kind, actor, at FROM jsonb_to_recordset($1::jsonb) \
                 AS r(lead_id bigint, tag text, family text, added boolean, actor_kind text, actor text, at bigint)",
            ),
            (
                &batches.tag_removes,
                "DELETE FROM lead_tags t USING jsonb_to_recordset($1::jsonb) AS r(lead_id bigint, tag text) \
                 WHERE t.lead_id = r.lead_id AND t.tag = r.tag",
            ),
            (
                &batches.tag_adds,
                "INSERT INTO lead_tags (lead_id, tag, family, added_at) \
                 SELECT lead_id, tag, family, at FROM jsonb_to_recordset($1::jsonb) AS r(lead_id bigint, tag text, family text, at bigint) \
                 ON CONFLICT (lead_id, tag) DO NOTHING",
            ),
            (
                &batches.scores,
                "INSERT INTO score_changes (lead_id, delta, reason, actor_kind, actor, rule, occurred_at, at) \
                 SELECT lead_id, delta, reason, actor_kind, actor, rule, occurred_at, at FROM jsonb_to_recordset($1::jsonb) \
                 AS r(lead_id bigint, delta bigint, reason text, actor_kind text, actor text, rule text, occurred_at bigint, at bigint)",
            ),
        ];
        for (batch, sql) in statements {
            if let Some(json) = batch {
                sqlx::query(sql)
                    .bind(json.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
            }
        }
        let Some(json) = &batches.handoffs else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_as(
            "INSERT INTO handoffs (lead_id, queue, reason, priority, origin, status, score, tags, campaign_id, step, sla_due_at, created_at, updated_at) \
             SELECT lead_id, queue, reason, priority, origin, 'open', score, tags, campaign_id, step, sla_due_at, created_at, created_at \
             FROM jsonb_to_recordset($1::jsonb) AS r(lead_id bigint, queue text, reason text, priority integer, origin text, \
             score bigint, tags text, campaign_id text, step text, sla_due_at bigint, created_at bigint) \
             ORDER BY lead_id ON CONFLICT DO NOTHING RETURNING id, lead_id, queue",
        )
        .bind(json.as_str())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?)
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        // The counters are rows every pass adds to: written last, a transaction holds their
        // locks for its commit only, not for all its other statements, so that concurrent
        // passes do not queue on them. Concurrent passes also add to different shards (most of
        // the time), and take the rows in key order, so that two cannot deadlock.
        let counts = std::mem::take(&mut self.step_counts);
        if !counts.sums.is_empty() {
            let (keys, sums): (Vec<_>, Vec<_>) = counts.sums.into_iter().unzip();
            sqlx::query(
                "INSERT INTO step_counts (campaign_id, step, outcome, shard, entered, lines) \
                 SELECT c, s, o, $6, e, l FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS u(c, s, o, e, l) \
                 ON CONFLICT (campaign_id, step, outcome, shard) DO UPDATE SET \
                 entered = step_counts.entered + excluded.entered, lines = step_counts.lines + excluded.lines",
            )
            .bind(keys.iter().map(|k: &(String, String, String)| k.0.as_str()).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.2.as_str()).collect::<Vec<_>>())
            .bind(sums.iter().map(|s: &(i64, i64)| s.0).collect::<Vec<i64>>())
            .bind(sums.iter().map(|s| s.1).collect::<Vec<i64>>())
            .bind(counts.shard as i32)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        self.tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }
}
