//! The storage port: what the engine needs of a database, and the two adapters (SQLite, the
//! embedded default, and PostgreSQL, the scale backend). Both pass one contract test suite.
//!
//! Batches travel to the database as one JSON array per statement (`json_each` in SQLite,
//! `jsonb_to_recordset` in PostgreSQL), so a bulk of 10,000 events costs a handful of
//! statements, not 10,000 round trips.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

use crate::access::{ApiKey, Role};
use crate::clock::{from_micros, to_micros};
use crate::condition::EventFact;
use crate::journey::{Enrollment, Status as JourneyStatus};
use crate::lead::{ChannelConsent, Consent, ConsentStatus, Lead, LeadId, Stage, TEXT_FIELDS};
use crate::nurture::Changes;
use crate::playbook::Decay;
use crate::tag::TagFamily;

pub mod handoffs;
pub mod pacing;
pub mod postgres;
pub mod sqlite;

/// What erasing a lead deletes, in order (children before what they point at).
const ERASE: [&str; 13] = [
    "DELETE FROM events WHERE lead_id = $1",
    "DELETE FROM lead_tags WHERE lead_id = $1",
    "DELETE FROM tag_changes WHERE lead_id = $1",
    "DELETE FROM score_changes WHERE lead_id = $1",
    "DELETE FROM handoff_log WHERE handoff_id IN (SELECT id FROM handoffs WHERE lead_id = $1)",
    "DELETE FROM handoffs WHERE lead_id = $1",
    "DELETE FROM messages WHERE enrollment_id IN (SELECT id FROM enrollments WHERE lead_id = $1)",
    "DELETE FROM journey_moves WHERE lead_id = $1",
    "DELETE FROM enrollments WHERE lead_id = $1",
    "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE lead_id = $1)",
    "DELETE FROM webhook_deliveries WHERE lead_id = $1",
    "DELETE FROM notifications WHERE lead_id = $1",
    "DELETE FROM leads WHERE id = $1",
];

/// Writes an adapter's `impl Store`: its own methods, plus those whose code is the same on both
/// backends (the same SQL text; only the pool type differs), written once here. The shared
/// methods use the adapter module's `MIGRATOR`, `LIST_LEADS`, `TIMELINE` and `ERASE_LOOKUP`, and the
/// adapter's `write_tx()`.
macro_rules! store_impl {
    ($store:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl Store for $store {
            $($own)*

        async fn erase_lead(&self, id: LeadId, now: DateTime<Utc>) -> StoreResult<bool> {
            let mut tx = self.write_tx().await?;
            let email: Option<Option<String>> = sqlx::query_scalar(ERASE_LOOKUP)
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(email) = email else {
                return Ok(false);
            };
            // Every table that names the person; per-step counters and queue members do not.
            for sql in ERASE {
                sqlx::query(sql).bind(id.0).execute(&mut *tx).await?;
            }
            if let Some(email) = email {
                sqlx::query("INSERT INTO suppressions (email_hash, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(email_hash(&email))
                    .bind(to_micros(now))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        }

        async fn migrate(&self) -> StoreResult<()> {
            MIGRATOR.run(&self.pool).await?;
            Ok(())
        }

        async fn deploy_campaigns(&self, deployed: &[CampaignVersion], now: DateTime<Utc>) -> StoreResult<DeployReport> {
            let mut tx = self.write_tx().await?;
            let current: Vec<(String, String, String)> =
                sqlx::query_as("SELECT id, version, status FROM campaigns ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?;
            let mut report = DeployReport::default();
            for campaign in deployed {
                let before = current.iter().find(|(id, _, _)| *id == campaign.campaign_id);
                match before {
                    Some((_, version, status)) if *version == campaign.version && status != "retired" => {
                        report.unchanged.push(campaign.campaign_id.clone());
                        continue;
                    }
                    Some(_) => report.changed.push(campaign.campaign_id.clone()),
                    None => report.created.push(campaign.campaign_id.clone()),
                }
                // A version seen before (a rollback) keeps its number and first deploy time.
                sqlx::query(
                    "INSERT INTO campaign_versions (campaign_id, version, number, name, campaign_type, definition, source, file, deployed_at) \
                     SELECT $1, $2, COALESCE(MAX(number), 0) + 1, $3, $4, $5, $6, $7, $8 FROM campaign_versions WHERE campaign_id = $1 \
                     ON CONFLICT (campaign_id, version) DO NOTHING",
                )
                .bind(&campaign.campaign_id)
                .bind(&campaign.version)
                .bind(&campaign.name)
                .bind(&campaign.campaign_type)
                .bind(&campaign.definition)
                .bind(&campaign.source)
                .bind(&campaign.file)
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO campaigns (id, version, status, updated_at) VALUES ($1, $2, 'active', $3) \
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, \
                     status = CASE WHEN campaigns.status = 'retired' THEN 'active' ELSE campaigns.status END",
                )
                .bind(&campaign.campaign_id)
                .bind(&campaign.version)
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            }
            for (id, _, status) in &current {
                if status != "retired" && !deployed.iter().any(|c| c.campaign_id == *id) {
                    sqlx::query("UPDATE campaigns SET status = 'retired', updated_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(to_micros(now))
                        .execute(&mut *tx)
                        .await?;
                    report.retired.push(id.clone());
                }
            }
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok(report)
        }

        async fn claim_messages(&self, now: DateTime<Utc>, lease: DateTime<Utc>, limit: i64) -> StoreResult<Vec<PendingMessage>> {
            Ok(sqlx::query_as(AssertSqlSafe(format!(
                "UPDATE messages SET next_attempt_at = $2, attempts = attempts + 1 WHERE id IN \
                 (SELECT id FROM messages WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $3{SKIP_LOCKED}) \
                 RETURNING id, enrollment_id, lead_id, campaign_id, step, channel, template, attempts"
            )))
            .bind(to_micros(now))
            .bind(to_micros(lease))
            .bind(limit)
            .fetch_all(&self.pool)
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
            .fetch_one(&self.pool)
            .await?)
        }

        async fn emails_sent_since(&self, since: i64) -> StoreResult<i64> {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE channel = 'email' AND status = 'sent' AND sent_at >= $1")
                    .bind(since)
                    .fetch_one(&self.pool)
                    .await?,
            )
        }

        async fn message_lead(&self, message_id: i64) -> StoreResult<Option<MessageTarget>> {
            let row: Option<(i64, String, Option<i64>)> =
                sqlx::query_as("SELECT lead_id, channel, sent_at FROM messages WHERE id = $1")
                    .bind(message_id)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(|(lead, channel, sent_at)| MessageTarget {
                lead: LeadId(lead),
                channel,
                sent_at: sent_at.map(from_micros),
            }))
        }

        async fn setting(&self, name: &str, fresh: &str) -> StoreResult<String> {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(fresh)
                .execute(&self.pool)
                .await?;
            Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?)
        }

        async fn put_setting(&self, name: &str, value: &str) -> StoreResult<()> {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
                .bind(name)
                .bind(value)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>> {
            let rows: Vec<(String, String, String, i64, i64, String, String, i64)> = sqlx::query_as(
                "SELECT c.id, c.version, c.status, c.updated_at, v.number, v.name, v.campaign_type, v.deployed_at \
                 FROM campaigns c JOIN campaign_versions v ON v.campaign_id = c.id AND v.version = c.version ORDER BY c.id",
            )
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, version, status, updated_at, number, name, campaign_type, deployed_at)| CampaignRecord {
                    id,
                    version,
                    number,
                    status,
                    name,
                    campaign_type,
                    deployed_at: from_micros(deployed_at),
                    updated_at: from_micros(updated_at),
                })
                .collect())
        }

        async fn stage_counts(&self) -> StoreResult<Vec<(String, i64)>> {
            Ok(
                sqlx::query_as("SELECT stage, COUNT(*) FROM leads GROUP BY stage ORDER BY stage")
                    .fetch_all(&self.pool)
                    .await?,
            )
        }

        async fn step_counts(&self, campaign: &str) -> StoreResult<Vec<StepCount>> {
            let mut steps: std::collections::BTreeMap<String, StepCount> = std::collections::BTreeMap::new();
            let counted: Vec<(String, String, i64, i64)> = sqlx::query_as(
                "SELECT step, outcome, CAST(SUM(entered) AS BIGINT), CAST(SUM(lines) AS BIGINT) \
                 FROM step_counts WHERE campaign_id = $1 GROUP BY step, outcome",
            )
            .bind(campaign)
            .fetch_all(&self.pool)
            .await?;
            for (step, outcome, entered, lines) in counted {
                let slot = step_slot(&mut steps, step);
                slot.entered += entered;
                slot.outcomes.insert(outcome, lines);
            }
            let waiting: Vec<(String, i64)> = sqlx::query_as(
                "SELECT step, COUNT(*) FROM enrollments WHERE campaign_id = $1 AND status = 'waiting' GROUP BY step",
            )
            .bind(campaign)
            .fetch_all(&self.pool)
            .await?;
            for (step, n) in waiting {
                step_slot(&mut steps, step).waiting = n;
            }
            Ok(steps.into_values().collect())
        }

        async fn open_enrollments(&self, campaign: &str, version: Option<&str>) -> StoreResult<i64> {
            // The condition is the open-enrollment index's own, so the count reads that index.
            let open = "SELECT COUNT(*) FROM enrollments WHERE campaign_id = $1 AND status IN ('active', 'waiting')";
            let count: i64 = match version {
                Some(version) => {
                    sqlx::query_scalar(AssertSqlSafe(format!("{open} AND version = $2")))
                        .bind(campaign)
                        .bind(version)
                        .fetch_one(&self.pool)
                        .await?
                }
                None => sqlx::query_scalar(open).bind(campaign).fetch_one(&self.pool).await?,
            };
            Ok(count)
        }

        async fn campaign_versions(&self, id: &str) -> StoreResult<Vec<CampaignVersion>> {
            let rows: Vec<(String, String, i64, String, String, String, String, String, i64)> = sqlx::query_as(
                "SELECT campaign_id, version, number, name, campaign_type, definition, source, file, deployed_at \
                 FROM campaign_versions WHERE campaign_id = $1 ORDER BY number",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(campaign_id, version, number, name, campaign_type, definition, source, file, deployed_at)| {
                        CampaignVersion {
                            campaign_id,
                            version,
                            number,
                            name,
                            campaign_type,
                            definition,
                            source,
                            file,
                            deployed_at: from_micros(deployed_at),
                        }
                    },
                )
                .collect())
        }

        async fn set_campaign_status(&self, id: &str, status: CampaignStatus, now: DateTime<Utc>) -> StoreResult<bool> {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query("UPDATE campaigns SET status = $2, updated_at = $3 WHERE id = $1 AND status <> 'retired'")
                .bind(id)
                .bind(status.as_str())
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        }

        async fn ready(&self) -> StoreResult<bool> {
            // Reachable first: an unreachable database is not one with migrations pending.
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
            Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
        }

        async fn create_api_key(&self, name: &str, role: Role, hash: &str, now: DateTime<Utc>) -> StoreResult<()> {
            sqlx::query("INSERT INTO api_keys (name, role, key_hash, created_at) VALUES ($1, $2, $3, $4)")
                .bind(name)
                .bind(role.as_str())
                .bind(hash)
                .bind(to_micros(now))
                .execute(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
            Ok(())
        }

        async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
            let row: Option<(String, String)> = sqlx::query_as("SELECT name, role FROM api_keys WHERE key_hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
            row.map(|(name, role)| {
                Ok(ApiKey {
                    name,
                    role: role.parse().map_err(StoreError::Corrupt)?,
                })
            })
            .transpose()
        }

        async fn lead_tags(&self, id: LeadId) -> StoreResult<Vec<(String, TagFamily)>> {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT tag, family FROM lead_tags WHERE lead_id = $1 ORDER BY tag")
                    .bind(id.0)
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows
                .into_iter()
                .filter_map(|(t, f)| TagFamily::parse(&f).map(|f| (t, f)))
                .collect())
        }

        async fn list_leads(&self, filter: &LeadFilter, after: Option<LeadId>, limit: i64) -> StoreResult<Vec<Lead>> {
            let rows: Vec<LeadRow> = sqlx::query_as(AssertSqlSafe(LIST_LEADS.as_str()))
                .bind(after.map(|a| a.0).unwrap_or(i64::MIN))
                .bind(filter.stage.map(|s| s.as_str()))
                .bind(filter.tag.as_deref())
                .bind(filter.q.as_deref().map(like_pattern))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            leads_from(rows)
        }

        async fn timeline(
            &self,
            id: LeadId,
            before: Option<TimelineCursor>,
            limit: i64,
        ) -> StoreResult<Vec<TimelineEntry>> {
            let mut entries = Vec::new();
            for (kind, sql) in TIMELINE {
                let (at, bound) = match before {
                    Some(c) => (c.at, c.id_bound(kind)),
                    None => (i64::MAX, i64::MAX),
                };
                let rows: Vec<(i64, i64, String)> = sqlx::query_as(sql)
                    .bind(id.0)
                    .bind(at)
                    .bind(bound)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                for (seq, at, data) in rows {
                    entries.push(timeline_entry(kind, seq, at, &data)?);
                }
            }
            Ok(merge_timeline(entries, limit))
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
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Idempotency::Proceed);
            }
            let row =
                sqlx::query("SELECT fingerprint, status, body FROM idempotent_requests WHERE scope = $1 AND key = $2")
                    .bind(scope)
                    .bind(key)
                    .fetch_one(&self.pool)
                    .await?;
            let (theirs, status, body): (String, Option<i64>, Option<String>) = (row.get(0), row.get(1), row.get(2));
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
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn idempotency_abort(&self, scope: &str, key: &str) -> StoreResult<()> {
            sqlx::query("DELETE FROM idempotent_requests WHERE scope = $1 AND key = $2 AND status IS NULL")
                .bind(scope)
                .bind(key)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        }
    };
}
pub(crate) use store_impl;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first (a unique key taken meanwhile); the caller may retry.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database did not answer: unreachable, shutting down, out of connections, or no
    /// connection free within the pool's wait. Nothing is known to have been written; the
    /// caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not as expected: {0}")]
    Corrupt(String),
    /// A journey pass decided in a snapshot found, when it came to write, that something
    /// committed since may have changed what it read (see `Store::begin_checked`). Nothing was
    /// written; the pass is decided again.
    #[error("the snapshot a pass was decided in is out of date")]
    Stale,
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if unavailable(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Database(error)
        }
    }
}

/// Whether an error means the database could not be reached (rather than that it refused
/// what was asked): I/O, TLS, pool wait and closed pool, and PostgreSQL's connection
/// exceptions (class 08), shutdowns and "too many connections" (57P01-57P03, 53300).
fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")),
        _ => false,
    }
}

impl StoreError {
    /// Maps unique-constraint violations, deadlocks and serialisation failures (PostgreSQL
    /// 40P01, 40001) to [`StoreError::Conflict`]: the transaction lost a race and may be retried.
    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            let raced = matches!(db.code().as_deref(), Some("40P01" | "40001"));
            if db.is_unique_violation() || raced {
                return StoreError::Conflict(db.message().to_owned());
            }
        }
        StoreError::from(error)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite file `url` names, if it does not exist ([`connect`] would create it).
pub fn missing_file(url: &str) -> StoreResult<Option<std::path::PathBuf>> {
    if is_postgres(url) {
        return Ok(None);
    }
    let file = sqlite::SqliteStore::file(url)?;
    Ok((!file.exists()).then_some(file))
}

/// Opens the store a URL names: `sqlite://path` (or a bare path) or `postgres://…`.
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::connect(url).await?))
    }
}

/// A new behaviour event, resolved to its lead; borrows from the request.
#[derive(Debug, Clone, Serialize)]
pub struct NewEvent<'a> {
    pub lead_id: i64,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub properties: &'a Map<String, Value>,
    pub occurred_at: i64,
    pub received_at: i64,
    pub idempotency_key: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// Filters of `GET /v1/leads` that the database answers; segments are evaluated by the engine.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub tag: Option<String>,
    pub stage: Option<Stage>,
    /// Case-insensitive substring of e-mail, names or company.
    pub q: Option<String>,
}

/// One entry of a lead's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    #[serde(skip)]
    pub seq: i64,
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

/// Timeline entry kinds, ranked so that entries at the same instant have a stable order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Event = 0,
    TagChange = 1,
    ScoreChange = 2,
    Handoff = 3,
    /// A step an enrollment took, from the journey log.
    CampaignStep = 4,
    Message = 5,
}

impl TimelineKind {
    pub const ALL: [TimelineKind; 6] = [
        Self::Event,
        Self::TagChange,
        Self::ScoreChange,
        Self::Handoff,
        Self::CampaignStep,
        Self::Message,
    ];
}

/// A position in the timeline, newest first: entries strictly older than this come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimelineCursor {
    pub at: i64,
    pub kind: TimelineKind,
    pub seq: i64,
}

impl TimelineCursor {
    /// The id bound for one kind's query: rows at the cursor's instant come next when their
    /// (kind, id) sorts below the cursor's.
    pub fn id_bound(&self, kind: TimelineKind) -> i64 {
        match kind.cmp(&self.kind) {
            std::cmp::Ordering::Less => i64::MAX,
            std::cmp::Ordering::Equal => self.seq,
            std::cmp::Ordering::Greater => i64::MIN,
        }
    }
}

/// What happened when an idempotent request began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First time: go ahead, then record the answer.
    Proceed,
    /// Done before: here is the first answer.
    Replay { status: u16, body: String },
    /// The same key is being processed by another request right now.
    InFlight,
    /// The same key was used for a different request.
    Mismatch,
}

/// A read transaction from `Store::begin_snapshot` and the write sequence number it sees.
pub struct Snapshot {
    pub tx: Box<dyn Tx>,
    pub seq: i64,
}

/// The storage port.
#[async_trait]
pub trait Store: handoffs::HandoffStore + Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Notified when a transaction that queued messages commits after the first call: in
    /// this process, and on PostgreSQL in every process on the database (`LISTEN
    /// nurture_mail`, on a connection of its own). A notification while nobody waits is kept
    /// for the next wait.
    async fn mail_queued(&self) -> std::sync::Arc<tokio::sync::Notify>;
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers and every migration is applied.
    async fn ready(&self) -> StoreResult<bool>;
    /// Starts a write transaction.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// Starts a read-only transaction (its write methods must not be called).
    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>>;
    /// Where transactions read a snapshot and one writer writes at a time (SQLite): a read
    /// transaction in which a journey pass can read and decide outside the writer's turn, with
    /// the write sequence number it sees. `None` where writers lock rows instead (PostgreSQL).
    async fn begin_snapshot(&self) -> StoreResult<Option<Snapshot>> {
        Ok(None)
    }
    /// A write transaction for a journey pass over `leads` decided in the snapshot numbered
    /// `seq`, scoped to them (see `Tx::scope`); `None` when something committed since may have
    /// changed what it read: any write that was not a journey pass of this process, or one over
    /// any of these leads. Then the pass is decided again in a plain write transaction.
    ///
    /// The transaction may be staged: its writes are bound as they come and run together when
    /// it commits or first reads, and only then does it take the writer's turn and check the
    /// snapshot. A staged transaction that finds the snapshot out of date writes nothing and
    /// fails with [`StoreError::Stale`], and the pass is decided again all the same.
    async fn begin_checked(&self, _seq: i64, _leads: &[i64]) -> StoreResult<Option<Box<dyn Tx>>> {
        Ok(None)
    }
    /// Of `leads` (read in the snapshot numbered `seq`), those a journey pass of this process
    /// wrote after that snapshot: the snapshot shows them as they were, and a pass that decided
    /// them there could not write (see `begin_checked`). Empty where there are no snapshots.
    fn written_since(&self, _seq: i64, _leads: &[i64]) -> HashSet<i64> {
        HashSet::new()
    }

    async fn create_api_key(&self, name: &str, role: Role, hash: &str, now: DateTime<Utc>) -> StoreResult<()>;
    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<ApiKey>>;

    async fn lead_tags(&self, id: LeadId) -> StoreResult<Vec<(String, TagFamily)>>;
    /// Leads after `after` (by id) matching the filter, at most `limit`.
    async fn list_leads(&self, filter: &LeadFilter, after: Option<LeadId>, limit: i64) -> StoreResult<Vec<Lead>>;
    /// A lead's timeline entries older than the cursor, newest first, at most `limit`.
    async fn timeline(&self, id: LeadId, before: Option<TimelineCursor>, limit: i64)
        -> StoreResult<Vec<TimelineEntry>>;
    /// Erases a lead and everything recorded about them; keeps the e-mail's hash as suppression.
    async fn erase_lead(&self, id: LeadId, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Records a deploy: a campaign version not seen before is kept beside the earlier ones, the
    /// current version moves to it, and campaigns no longer deployed are retired. Deploying
    /// unchanged campaigns changes nothing.
    async fn deploy_campaigns(&self, deployed: &[CampaignVersion], now: DateTime<Utc>) -> StoreResult<DeployReport>;
    /// Every campaign ever deployed, with its current version.
    async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>>;
    /// Per step of a campaign (all versions): journey lines by outcome, arrivals at the step,
    /// and enrollments waiting there now. Read from counters, in O(steps).
    async fn step_counts(&self, campaign: &str) -> StoreResult<Vec<StepCount>>;
    /// How many leads are at each stage (stages with none are left out).
    async fn stage_counts(&self) -> StoreResult<Vec<(String, i64)>>;
    /// Every deployed version of a campaign, oldest first.
    async fn campaign_versions(&self, id: &str) -> StoreResult<Vec<CampaignVersion>>;
    /// How many enrollments of a campaign are running (active or waiting), on one version or
    /// on all of them.
    async fn open_enrollments(&self, campaign: &str, version: Option<&str>) -> StoreResult<i64>;
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
    /// Records what sending did.
    async fn finish_messages(&self, outcomes: &[MessageOutcome]) -> StoreResult<()>;
    /// The lead a message went to, and its channel.
    async fn message_lead(&self, message_id: i64) -> StoreResult<Option<MessageTarget>>;
    /// How many e-mails were sent since `since` (microseconds): what a warm-up counts.
    async fn emails_sent_since(&self, since: i64) -> StoreResult<i64>;
    /// A setting generated once: `fresh` is stored if none is, and the stored value returned.
    async fn setting(&self, name: &str, fresh: &str) -> StoreResult<String>;
    /// Sets a server-wide setting.
    async fn put_setting(&self, name: &str, value: &str) -> StoreResult<()>;
    /// The earliest wake-up time of a waiting enrollment outside paused campaigns.
    async fn next_wake(&self, paused: &[String]) -> StoreResult<Option<DateTime<Utc>>>;
    /// Pauses or resumes a deployed campaign; false when there is no such (unretired) campaign.
    async fn set_campaign_status(&self, id: &str, status: CampaignStatus, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Decays the scores of leads inactive for `decay.every` (one set-based pass); returns how many.
    async fn decay(&self, decay: Decay, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Brings the query planner's statistics up to date on tables that changed a lot since
    /// they were last gathered; returns the tables refreshed. `serve` calls it every few
    /// seconds: a table that grew from empty to a million rows in minutes is otherwise planned
    /// as if it were still small.
    async fn refresh_statistics(&self) -> StoreResult<Vec<String>>;

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
}

/// Who a message went to, on which channel, and when it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTarget {
    pub lead: LeadId,
    pub channel: String,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One deployed version of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignVersion {
    pub campaign_id: String,
    pub version: String,
    /// 1 for the first version deployed, then 2, 3, …
    pub number: i64,
    pub name: String,
    pub campaign_type: String,
    /// The canonical content the version hashes.
    pub definition: String,
    /// The YAML as deployed.
    pub source: String,
    pub file: String,
    pub deployed_at: DateTime<Utc>,
}

/// How many went through one step of a campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StepCount {
    pub step: String,
    /// Times an enrollment arrived at the step (one that loops back counts again).
    pub entered: i64,
    /// Enrollments waiting at the step now.
    pub waiting: i64,
    /// Journey lines by outcome: `sent`, `yes`, `no`, `waited`, `arm 1`, `goal`, …
    pub outcomes: std::collections::BTreeMap<String, i64>,
}

/// The count of `step`, made empty on first use.
pub(crate) fn step_slot(steps: &mut std::collections::BTreeMap<String, StepCount>, step: String) -> &mut StepCount {
    steps.entry(step.clone()).or_insert_with(|| StepCount {
        step,
        ..Default::default()
    })
}

/// A campaign as deployed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub id: String,
    pub version: String,
    pub number: i64,
    pub status: String,
    pub name: String,
    pub campaign_type: String,
    pub deployed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether a deployed campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    Active,
    Paused,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Active => "active",
            CampaignStatus::Paused => "paused",
        }
    }
}

/// What a deploy changed, by campaign id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DeployReport {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub retired: Vec<String>,
}

/// An enrollment as stored.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct EnrollmentRow {
    pub id: i64,
    pub campaign_id: String,
    pub version: String,
    pub lead_id: i64,
    pub step: String,
    pub status: String,
    pub wake_at: Option<i64>,
    pub outcome: Option<String>,
    pub transitions: i64,
    pub entered_at: i64,
    pub updated_at: i64,
}

/// The columns of [`EnrollmentRow`], in order.
pub const ENROLLMENT_COLUMNS: &str =
    "id, campaign_id, version, lead_id, step, status, wake_at, outcome, transitions, entered_at, updated_at";

impl From<&Enrollment> for EnrollmentRow {
    fn from(e: &Enrollment) -> Self {
        Self {
            id: e.id,
            campaign_id: e.campaign.clone(),
            version: e.version.clone(),
            lead_id: e.lead.0,
            step: e.step.clone(),
            status: e.status.as_str().to_owned(),
            wake_at: e.wake_at.map(to_micros),
            outcome: e.outcome.clone(),
            transitions: e.transitions,
            entered_at: to_micros(e.entered_at),
            updated_at: to_micros(e.updated_at),
        }
    }
}

impl EnrollmentRow {
    pub fn into_enrollment(self) -> StoreResult<Enrollment> {
        Ok(Enrollment {
            id: self.id,
            status: JourneyStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("enrollment status {:?}", self.status)))?,
            campaign: self.campaign_id,
            version: self.version,
            lead: LeadId(self.lead_id),
            step: self.step,
            wake_at: self.wake_at.map(from_micros),
            outcome: self.outcome,
            transitions: self.transitions,
            entered_at: from_micros(self.entered_at),
            updated_at: from_micros(self.updated_at),
        })
    }
}

pub(crate) fn leads_from(rows: Vec<LeadRow>) -> StoreResult<Vec<Lead>> {
    rows.into_iter().map(Lead::try_from).collect()
}

pub(crate) fn enrollments_from(rows: Vec<EnrollmentRow>) -> StoreResult<Vec<Enrollment>> {
    rows.into_iter().map(EnrollmentRow::into_enrollment).collect()
}

/// One line of the journey log, ready to insert.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyRow {
    pub enrollment_id: i64,
    pub lead_id: i64,
    pub campaign_id: String,
    pub step: String,
    pub outcome: String,
    pub detail: String,
    pub at: i64,
    /// Counted in the step's `entered`.
    #[serde(skip)]
    pub arrived: bool,
}

/// One row of `journey_moves`: the journey lines one enrollment wrote at one time (one move),
/// in order, as a JSON array of `[step, outcome, detail]`. See migration 0008.
pub(crate) struct JourneyMove<'a> {
    pub(crate) enrollment_id: i64,
    pub(crate) lead_id: i64,
    pub(crate) campaign_id: &'a str,
    pub(crate) at: i64,
    pub(crate) steps: String,
}

/// `rows` as moves: each run of lines of one enrollment at one time becomes one row. The engine
/// writes a move's lines next to each other; lines apart stay apart, in their order.
pub(crate) fn journey_moves(rows: &[JourneyRow]) -> StoreResult<Vec<JourneyMove<'_>>> {
    rows.chunk_by(|a, b| a.enrollment_id == b.enrollment_id && a.at == b.at && a.campaign_id == b.campaign_id)
        .map(|lines| {
            let text: usize = lines
                .iter()
                .map(|l| l.step.len() + l.outcome.len() + l.detail.len() + 12)
                .sum();
            let mut steps = String::with_capacity(text + 2);
            steps.push('[');
            for (i, l) in lines.iter().enumerate() {
                if i > 0 {
                    steps.push(',');
                }
                for (j, text) in [&l.step, &l.outcome, &l.detail].into_iter().enumerate() {
                    steps.push(if j == 0 { '[' } else { ',' });
                    json_str(&mut steps, text)?;
                }
                steps.push(']');
            }
            steps.push(']');
            Ok(JourneyMove {
                enrollment_id: lines[0].enrollment_id,
                lead_id: lines[0].lead_id,
                campaign_id: &lines[0].campaign_id,
                at: lines[0].at,
                steps,
            })
        })
        .collect()
}

/// `s` as a JSON string, appended to `out`. Journey lines are the playbook's names and the
/// engine's own explanations, which almost never hold a character JSON escapes: those are copied
/// as they are, after one branch-free pass over their bytes; the rest go through serde_json. Serialising every string through serde_json cost 4,400 instructions a W2 step
/// (callgrind, `bench engine`), for about 250 bytes.
fn json_str(out: &mut String, s: &str) -> StoreResult<()> {
    let plain = !s
        .bytes()
        .fold(false, |escaped, b| escaped | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return Ok(());
    }
    let quoted = serde_json::to_string(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.push_str(&quoted);
    Ok(())
}

/// What a batch of journey lines adds to the per-step counters: (campaign, step, outcome,
/// entered, lines), in key order so that concurrent writers lock counter rows in one order.
///
/// A pass's moves repeat a few shapes (wait ended, branch, send), so a line's counter is most
/// often the one after the previous line's: that guess is tried first, an FxHash map of the
/// counters after it, and the sums are sorted once at the end. A `BTreeMap` over the three
/// strings cost 720 instructions a line in `bench engine` W2.
pub(crate) fn step_count_deltas(rows: &[JourneyRow]) -> Vec<(String, String, String, i64, i64)> {
    type Key<'a> = (&'a str, &'a str, &'a str);
    let mut sums: Vec<(Key<'_>, i64, i64)> = Vec::new();
    // FxHash: the keys are the playbook's own names, not anything a caller sends.
    let mut index: HashMap<Key<'_>, usize, rustc_hash::FxBuildHasher> = HashMap::default();
    let mut last = 0;
    for row in rows {
        let key = (row.campaign_id.as_str(), row.step.as_str(), row.outcome.as_str());
        let next = if last + 1 < sums.len() { last + 1 } else { 0 };
        let at = match sums.get(next) {
            Some(sum) if sum.0 == key => next,
            _ => *index.entry(key).or_insert_with(|| {
                sums.push((key, 0, 0));
                sums.len() - 1
            }),
        };
        sums[at].1 += i64::from(row.arrived);
        sums[at].2 += 1;
        last = at;
    }
    sums.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    sums.into_iter()
        .map(|((c, s, o), entered, lines)| (c.to_owned(), s.to_owned(), o.to_owned(), entered, lines))
        .collect()
}

/// A message for the outbox: created with its step, sent later by the dispatcher.
#[derive(Debug, Clone, Serialize)]
pub struct NewMessage {
    pub enrollment_id: i64,
    pub seq: i64,
    pub lead_id: i64,
    pub campaign_id: String,
    pub version: String,
    pub step: String,
    pub channel: String,
    pub template: String,
    /// `pending`, or `skipped` (with the reason) when it must not be sent.
    pub status: String,
    pub reason: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
}

/// A message taken for sending.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingMessage {
    pub id: i64,
    pub enrollment_id: i64,
    pub lead_id: i64,
    pub campaign_id: String,
    pub step: String,
    pub channel: String,
    pub template: String,
    pub attempts: i64,
}

/// What sending a message did: `sent`, `failed` (with the reason), or still `pending` with the
/// time of the next attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageOutcome {
    pub id: i64,
    pub status: String,
    pub reason: Option<String>,
    pub sent_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    /// 1 when the claim's attempt does not count (held back by a rate, not tried).
    pub refund: i64,
}

/// A message an enrollment sent: which step, and its id (events about it carry the id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, sqlx::FromRow)]
pub struct SentMessage {
    pub enrollment_id: i64,
    pub id: i64,
    pub step: String,
}

/// A write transaction: the set-based primitives the engine composes.
#[async_trait]
pub trait Tx: handoffs::HandoffTx + pacing::PacingTx + Send {
    /// Leads with any of these ids, e-mails or external ids.
    async fn find_leads(&mut self, ids: &[i64], emails: &[String], external_ids: &[String]) -> StoreResult<Vec<Lead>>;
    /// These leads as they are, without the lock a write transaction's `find_leads` takes: for
    /// answers that show a lead without changing it (a claim).
    async fn view_leads(&mut self, ids: &[i64]) -> StoreResult<Vec<Lead>>;
    /// Allocates `n` new lead ids.
    async fn reserve_lead_ids(&mut self, n: usize) -> StoreResult<Vec<i64>>;
    /// Inserts or overwrites these leads (by id).
    async fn write_leads(&mut self, leads: &[Lead]) -> StoreResult<()>;
    /// Writes only what behaviour changes on existing leads: score, stage, activity time.
    async fn write_lead_activity(&mut self, leads: &[ActivityRow]) -> StoreResult<()>;
    /// The current tags of these leads.
    async fn load_tags(&mut self, ids: &[i64]) -> StoreResult<Vec<(i64, String, TagFamily)>>;
    /// Every enrollment of these leads, any status (running ones, and past ones for re-entry);
    /// each lead's in id order.
    async fn load_enrollments(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Enrollment>>;
    /// Leads with an enrollment due by `now` (waiting, wake-up time passed), outside paused
    /// campaigns and other than `busy` (taken by a pass that has not written yet), earliest
    /// first, at most `limit`.
    async fn due_leads(&mut self, now: i64, paused: &[String], busy: &[i64], limit: i64) -> StoreResult<Vec<i64>>;
    /// Of these leads, those this transaction could lock, locked and read, in id order
    /// (PostgreSQL: `FOR UPDATE SKIP LOCKED` in one statement, so that workers share due work
    /// without waiting on each other; SQLite: all of them, as its one writer holds the database).
    async fn take_free_leads(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Lead>>;
    /// Allocates `n` new enrollment ids.
    async fn reserve_enrollment_ids(&mut self, n: usize) -> StoreResult<Vec<i64>>;
    /// Inserts or overwrites these enrollments (by id).
    async fn write_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()>;
    /// Writes enrollments that exist and keep their status (a running enrollment moving from
    /// one step to the next): only their step, wake-up time, outcome, transitions and updated
    /// time change. SQLite then leaves the indexes that depend on the status alone.
    async fn move_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()> {
        self.write_enrollments(rows).await
    }
    async fn write_journey(&mut self, rows: &[JourneyRow]) -> StoreResult<()>;
    /// Inserts messages; one already made for the same (enrollment, seq) is left as it is.
    async fn insert_messages(&mut self, rows: &[NewMessage]) -> StoreResult<()>;
    /// Campaigns whose status is not `active` (paused or retired): their enrollments do not move.
    async fn frozen_campaigns(&mut self) -> StoreResult<Vec<String>>;
    /// The stored source of a deployed campaign version: (file, YAML).
    async fn campaign_source(&mut self, id: &str, version: &str) -> StoreResult<Option<(String, String)>>;
    /// The messages these enrollments sent; each enrollment's in the order they were made.
    async fn load_messages(&mut self, enrollment_ids: &[i64]) -> StoreResult<Vec<SentMessage>>;
    /// Events of these leads of the given types since the given time (`None`: all time).
    async fn load_events(&mut self, ids: &[i64], needs: &[(String, Option<i64>)])
        -> StoreResult<Vec<(i64, EventFact)>>;
    /// Ledger entries of capped rules for these leads since a time: (lead, rule, event time, delta).
    async fn load_cap_usage(
        &mut self,
        ids: &[i64],
        rules: &[String],
        since: i64,
    ) -> StoreResult<Vec<(i64, String, i64, i64)>>;
    /// Which of these e-mails were erased before and must stay suppressed.
    async fn suppressed(&mut self, email_hashes: &[String]) -> StoreResult<HashSet<String>>;
    /// Inserts events; returns the idempotency keys that were new (events without a key are always new).
    async fn insert_events(&mut self, events: &[NewEvent<'_>]) -> StoreResult<HashSet<String>>;
    /// The stored events that carry these idempotency keys: (key, lead, event).
    async fn keyed_events(&mut self, keys: &[&str]) -> StoreResult<Vec<(String, i64, EventFact)>>;
    /// Writes tag changes (current tags and log), score ledger entries and handoff requests;
    /// returns the handoffs opened (a request for a lead with one open is dropped).
    async fn write_changes(&mut self, changes: &Changes) -> StoreResult<Vec<handoffs::Opened>>;
    /// Says that this transaction is a journey pass that writes only these leads' data, so that
    /// passes over other leads decided in a snapshot stay valid when it commits (see
    /// `Store::begin_checked`). Nothing to do where writers lock rows (PostgreSQL).
    fn scope(&mut self, _leads: &[i64]) {}
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// A lead as a database row; both backends read and write this shape.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct LeadRow {
    pub id: i64,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub company: Option<String>,
    pub industry: Option<String>,
    pub company_size: Option<String>,
    pub region: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub source: Option<String>,
    pub persona: Option<String>,
    pub owner: Option<String>,
    pub attributes: sqlx::types::Json<Map<String, Value>>,
    pub stage: String,
    pub score: i64,
    pub email_opt_out_at: Option<i64>,
    pub email_opt_out_source: Option<String>,
    pub wechat_opt_out_at: Option<i64>,
    pub wechat_opt_out_source: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_activity_at: Option<i64>,
    pub last_decay_at: Option<i64>,
    pub cooldown_until: Option<i64>,
}

/// Columns of `leads` and their types, in [`LeadRow`] order; the adapters build their SQL from it.
pub const LEAD_COLUMNS: [(&str, &str); 27] = [
    ("id", "bigint"),
    ("email", "text"),
    ("external_id", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("title", "text"),
    ("company", "text"),
    ("industry", "text"),
    ("company_size", "text"),
    ("region", "text"),
    ("phone", "text"),
    ("timezone", "text"),
    ("source", "text"),
    ("persona", "text"),
    ("owner", "text"),
    ("attributes", "jsonb"),
    ("stage", "text"),
    ("score", "bigint"),
    ("email_opt_out_at", "bigint"),
    ("email_opt_out_source", "text"),
    ("wechat_opt_out_at", "bigint"),
    ("wechat_opt_out_source", "text"),
    ("created_at", "bigint"),
    ("updated_at", "bigint"),
    ("last_activity_at", "bigint"),
    ("last_decay_at", "bigint"),
    ("cooldown_until", "bigint"),
];

/// `col, col, …` of `leads`.
pub fn lead_column_list() -> String {
    LEAD_COLUMNS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
}

fn consent_from(at: Option<i64>, source: Option<String>) -> ChannelConsent {
    match at {
        Some(at) => ChannelConsent {
            status: ConsentStatus::OptedOut,
            at: Some(from_micros(at)),
            source,
        },
        None => ChannelConsent::default(),
    }
}

fn consent_to(c: &ChannelConsent) -> (Option<i64>, Option<String>) {
    match c.status {
        ConsentStatus::OptedOut => (Some(to_micros(c.at.unwrap_or_default())), c.source.clone()),
        ConsentStatus::OptedIn => (None, None),
    }
}

impl TryFrom<LeadRow> for Lead {
    type Error = StoreError;
    fn try_from(row: LeadRow) -> StoreResult<Lead> {
        let stage: Stage = row.stage.parse().map_err(StoreError::Corrupt)?;
        let values = [
            row.first_name,
            row.last_name,
            row.title,
            row.company,
            row.industry,
            row.company_size,
            row.region,
            row.phone,
            row.timezone,
            row.source,
            row.persona,
        ];
        // Inserted one by one: a lead has a few of the eleven, and collecting them would sort
        // them in a vector of their own first.
        let mut fields = std::collections::BTreeMap::new();
        for (name, value) in TEXT_FIELDS.iter().zip(values) {
            if let Some(value) = value {
                fields.insert(*name, value);
            }
        }
        Ok(Lead {
            id: LeadId(row.id),
            email: row.email,
            external_id: row.external_id,
            fields,
            attributes: row.attributes.0,
            stage,
            owner: row.owner,
            score: row.score,
            consent: Consent {
                email: consent_from(row.email_opt_out_at, row.email_opt_out_source),
                wechat: consent_from(row.wechat_opt_out_at, row.wechat_opt_out_source),
            },
            created_at: from_micros(row.created_at),
            updated_at: from_micros(row.updated_at),
            last_activity_at: row.last_activity_at.map(from_micros),
            last_decay_at: row.last_decay_at.map(from_micros),
            cooldown_until: row.cooldown_until.map(from_micros),
        })
    }
}

impl From<&Lead> for LeadRow {
    fn from(lead: &Lead) -> LeadRow {
        let field = |name: &str| lead.fields.get(name).cloned();
        let (email_opt_out_at, email_opt_out_source) = consent_to(&lead.consent.email);
        let (wechat_opt_out_at, wechat_opt_out_source) = consent_to(&lead.consent.wechat);
        LeadRow {
            id: lead.id.0,
            email: lead.email.clone(),
            external_id: lead.external_id.clone(),
            first_name: field("first_name"),
            last_name: field("last_name"),
            title: field("title"),
            company: field("company"),
            industry: field("industry"),
            company_size: field("company_size"),
            region: field("region"),
            phone: field("phone"),
            timezone: field("timezone"),
            source: field("source"),
            persona: field("persona"),
            owner: lead.owner.clone(),
            attributes: sqlx::types::Json(lead.attributes.clone()),
            stage: lead.stage.as_str().to_owned(),
            score: lead.score,
            email_opt_out_at,
            email_opt_out_source,
            wechat_opt_out_at,
            wechat_opt_out_source,
            created_at: to_micros(lead.created_at),
            updated_at: to_micros(lead.updated_at),
            last_activity_at: lead.last_activity_at.map(to_micros),
            last_decay_at: lead.last_decay_at.map(to_micros),
            cooldown_until: lead.cooldown_until.map(to_micros),
        }
    }
}

/// Rows of tag changes, score changes and handoffs as the JSON batches carry them.
#[derive(Serialize)]
pub(crate) struct TagChangeRow<'a> {
    pub lead_id: i64,
    pub tag: &'a str,
    pub family: &'a str,
    pub added: bool,
    pub actor_kind: &'a str,
    pub actor: &'a str,
    pub at: i64,
}

#[derive(Serialize)]
pub(crate) struct ScoreChangeRow<'a> {
    pub lead_id: i64,
    pub delta: i64,
    pub reason: &'a str,
    pub actor_kind: &'a str,
    pub actor: &'a str,
    pub rule: Option<&'a str>,
    pub occurred_at: i64,
    pub at: i64,
}

#[derive(Serialize)]
pub(crate) struct NewHandoffRow<'a> {
    lead_id: i64,
    queue: &'a str,
    reason: &'a str,
    priority: i64,
    origin: &'a str,
    score: i64,
    tags: String,
    campaign_id: Option<&'a str>,
    step: Option<&'a str>,
    sla_due_at: Option<i64>,
    created_at: i64,
}

/// The rows of one [`Changes`]: the tag log, the net tag change per (lead, tag), scores and
/// handoffs. SQLite binds them as values; [`ChangeBatches`] carries them as JSON.
pub(crate) struct ChangeRows<'a> {
    pub tag_log: Vec<TagChangeRow<'a>>,
    /// Indexes into `tag_log` of the last change per (lead, tag), in log order: its net effect.
    finals: Vec<usize>,
    pub scores: Vec<ScoreChangeRow<'a>>,
    pub handoffs: Vec<NewHandoffRow<'a>>,
}

impl<'a> ChangeRows<'a> {
    pub fn of(changes: &'a Changes) -> ChangeRows<'a> {
        let tag_log: Vec<TagChangeRow> = changes
            .tags
            .iter()
            .map(|c| TagChangeRow {
                lead_id: c.lead_id.0,
                tag: &c.tag,
                family: c.family.as_str(),
                added: c.added,
                actor_kind: c.actor.kind(),
                actor: c.actor.name(),
                at: to_micros(c.at),
            })
            .collect();
        // The net effect per (lead, tag): the last change wins.
        let mut last = std::collections::HashMap::new();
        for (i, row) in tag_log.iter().enumerate() {
            last.insert((row.lead_id, row.tag), i);
        }
        let mut finals: Vec<usize> = last.into_values().collect();
        finals.sort_unstable();
        let scores = changes
            .scores
            .iter()
            .map(|c| ScoreChangeRow {
                lead_id: c.lead_id.0,
                delta: c.delta,
                reason: &c.reason,
                actor_kind: c.actor.kind(),
                actor: c.actor.name(),
                rule: c.rule.as_deref(),
                occurred_at: to_micros(c.occurred_at),
                at: to_micros(c.at),
            })
            .collect();
        let handoffs = changes
            .handoffs
            .iter()
            .map(|h| NewHandoffRow {
                lead_id: h.lead_id.0,
                queue: &h.queue,
                reason: &h.reason,
                priority: i64::from(h.priority.unwrap_or(50)),
                origin: &h.origin,
                score: h.score,
                tags: serde_json::to_string(&h.tags).unwrap_or_else(|_| "[]".into()),
                campaign_id: h.campaign.as_deref(),
                step: h.step.as_deref(),
                sla_due_at: h.sla_due_at.map(to_micros),
                created_at: to_micros(h.at),
            })
            .collect();
        ChangeRows {
            tag_log,
            finals,
            scores,
            handoffs,
        }
    }

    /// The batch's net tag changes: with `added`, the tags it leaves on their leads (their
    /// last change adds them); without, the tags it takes off.
    pub fn net_tags(&self, added: bool) -> Vec<&TagChangeRow<'a>> {
        self.finals
            .iter()
            .map(|&i| &self.tag_log[i])
            .filter(|r| r.added == added)
            .collect()
    }
}

/// The JSON batches of one [`Changes`]: tag log, tags added, tags removed, scores, handoffs.
pub(crate) struct ChangeBatches {
    pub tag_log: Option<String>,
    pub tag_adds: Option<String>,
    pub tag_removes: Option<String>,
    pub scores: Option<String>,
    pub handoffs: Option<String>,
}

impl ChangeBatches {
    pub fn of(changes: &Changes) -> ChangeBatches {
        let rows = ChangeRows::of(changes);
        ChangeBatches {
            tag_log: json_batch(&rows.tag_log),
            tag_adds: json_batch(&rows.net_tags(true)),
            tag_removes: json_batch(&rows.net_tags(false)),
            scores: json_batch(&rows.scores),
            handoffs: json_batch(&rows.handoffs),
        }
    }
}

/// The event types and windows [`Tx::load_events`] is asked for, as one JSON parameter
/// (`since` is the earliest event time; all time is `i64::MIN`).
pub(crate) fn event_needs_json(needs: &[(String, Option<i64>)]) -> String {
    let rows: Vec<Value> = needs
        .iter()
        .map(|(kind, since)| serde_json::json!({"type": kind, "since": since.unwrap_or(i64::MIN)}))
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

/// Serialises a batch for binding as one JSON parameter.
pub(crate) fn json_batch<T: Serialize>(rows: &[T]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    serde_json::to_string(rows).ok()
}

pub use crate::access::email_hash;

/// Builds a timeline entry from a row: its id, time and a JSON object of its details.
pub(crate) fn timeline_entry(kind: TimelineKind, seq: i64, at: i64, data: &str) -> StoreResult<TimelineEntry> {
    let data: Map<String, Value> = serde_json::from_str(data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(TimelineEntry {
        at: from_micros(at),
        kind,
        seq,
        data,
    })
}

/// Merges per-kind timeline rows, newest first, and keeps `limit`.
pub(crate) fn merge_timeline(mut entries: Vec<TimelineEntry>, limit: i64) -> Vec<TimelineEntry> {
    entries.sort_by_key(|e| std::cmp::Reverse((e.at, e.kind, e.seq)));
    entries.truncate(limit.max(0) as usize);
    entries
}

/// `%` and `_` escaped for a LIKE pattern with `ESCAPE '\'`, wrapped as a substring search.
pub(crate) fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// How long an unfinished idempotent request blocks its key before a retry may take it over.
pub(crate) const IDEMPOTENCY_STALE_MICROS: i64 = 60_000_000;

/// The columns [`Tx::write_lead_activity`] writes.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityRow {
    pub(crate) id: i64,
    pub(crate) score: i64,
    pub(crate) stage: &'static str,
    pub(crate) last_activity_at: Option<i64>,
    pub(crate) updated_at: i64,
}

impl From<&Lead> for ActivityRow {
    fn from(l: &Lead) -> Self {
        ActivityRow {
            id: l.id.0,
            score: l.score,
            stage: l.stage.as_str(),
            last_activity_at: l.last_activity_at.map(to_micros),
            updated_at: to_micros(l.updated_at),
        }
    }
}

/// Parses rows that SQLite aggregated into one JSON array (see the SQLite adapter).
pub(crate) fn json_rows<T: serde::de::DeserializeOwned>(text: Option<String>) -> StoreResult<Vec<T>> {
    json_rows_into(text, 0, Ok)
}

/// Parses rows that SQLite aggregated into one JSON array straight into what they convert to,
/// in a vector sized for `expected` of them. A batch's leads or enrollments are hundreds of
/// rows of several hundred bytes: parsed into a vector of rows first, that vector grew by
/// doubling (copying it each time, into fresh pages) and was then converted and dropped.
pub(crate) fn json_rows_into<T, U>(
    text: Option<String>,
    expected: usize,
    convert: impl FnMut(T) -> StoreResult<U>,
) -> StoreResult<Vec<U>>
where
    T: serde::de::DeserializeOwned,
{
    use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};

    struct Rows<T, U, F> {
        expected: usize,
        convert: F,
        row: std::marker::PhantomData<fn(T) -> U>,
    }

    impl<'de, T: Deserialize<'de>, U, F: FnMut(T) -> StoreResult<U>> Visitor<'de> for Rows<T, U, F> {
        type Value = Vec<U>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of rows")
        }

        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<U>, A::Error> {
            let mut out = Vec::with_capacity(self.expected);
            while let Some(row) = seq.next_element::<T>()? {
                out.push((self.convert)(row).map_err(A::Error::custom)?);
            }
            Ok(out)
        }
    }

    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut parser = serde_json::Deserializer::from_str(&text);
    let rows = parser
        .deserialize_seq(Rows {
            expected,
            convert,
            row: std::marker::PhantomData,
        })
        .and_then(|rows| parser.end().map(|()| rows))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(rows)
}

/// The ids in their first order, each once.
pub(crate) fn distinct(ids: Vec<i64>) -> Vec<i64> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

#[cfg(test)]
mod tests {
    use super::{journey_moves, json_rows_into, step_count_deltas, JourneyRow, StoreError};

    #[test]
    fn step_counts_sum_every_line_once_in_key_order() {
        // Few counters and many, drawn at random, so that the guess misses as often as it hits
        // and the hash map answers the rest.
        for kinds in [3_usize, 7, 50, 200] {
            let mut rows = Vec::new();
            let mut x = 12_345_u64;
            for i in 0..3_000_i64 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let k = (x >> 33) as usize % kinds;
                rows.push(JourneyRow {
                    enrollment_id: i,
                    lead_id: i,
                    campaign_id: format!("c{}", k % 3),
                    step: format!("s{}", k / 3),
                    outcome: if k.is_multiple_of(2) {
                        "sent".into()
                    } else {
                        "no".into()
                    },
                    detail: String::new(),
                    at: 0,
                    arrived: x.is_multiple_of(5),
                });
            }
            let mut expected: std::collections::BTreeMap<(String, String, String), (i64, i64)> = Default::default();
            for r in &rows {
                let sum = expected
                    .entry((r.campaign_id.clone(), r.step.clone(), r.outcome.clone()))
                    .or_default();
                sum.0 += i64::from(r.arrived);
                sum.1 += 1;
            }
            let expected: Vec<_> = expected
                .into_iter()
                .map(|((c, s, o), (e, l))| (c, s, o, e, l))
                .collect();
            assert_eq!(step_count_deltas(&rows), expected, "{kinds} kinds");
        }
    }

    fn pairs(text: &str) -> Result<Vec<String>, StoreError> {
        json_rows_into(Some(text.to_owned()), 2, |(id, name): (i64, String)| {
            if id < 0 {
                return Err(StoreError::Corrupt(format!("negative id {id}")));
            }
            Ok(format!("{id}:{name}"))
        })
    }

    #[test]
    fn rows_are_read_straight_into_what_they_convert_to() {
        assert_eq!(pairs(r#"[[1,"a"],[2,"b"],[3,"c"]]"#).unwrap(), ["1:a", "2:b", "3:c"]);
        assert_eq!(pairs("[]").unwrap(), Vec::<String>::new());
        assert!(json_rows_into(None, 5, |row: i64| Ok(row)).unwrap().is_empty());
        let refused = |text: &str| match pairs(text) {
            Err(StoreError::Corrupt(why)) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert!(refused(r#"[[1,"a"],[-2,"b"]]"#).contains("negative id -2"));
        assert!(refused(r#"[[1,"a"]] trailing"#).contains("trailing characters"));
        assert!(refused(r#"[[1,2]]"#).contains("invalid type"));
    }

    fn line(enrollment_id: i64, step: &str, at: i64) -> JourneyRow {
        JourneyRow {
            enrollment_id,
            lead_id: enrollment_id * 10,
            campaign_id: "drip".into(),
            step: step.into(),
            outcome: "sent".into(),
            detail: format!("\"{step}\" 发送"),
            at,
            arrived: true,
        }
    }

    #[test]
    fn a_move_is_the_run_of_lines_of_one_enrollment_at_one_time() {
        let rows = [
            line(1, "a", 5),
            line(1, "b", 5),
            line(2, "a", 5),
            line(1, "c", 5),
            line(1, "d", 9),
        ];
        let moves = journey_moves(&rows).unwrap();
        let shape: Vec<(i64, i64, i64, &str)> = moves
            .iter()
            .map(|m| (m.enrollment_id, m.lead_id, m.at, m.steps.as_str()))
            .collect();
        assert_eq!(
            shape,
            [
                (1, 10, 5, r#"[["a","sent","\"a\" 发送"],["b","sent","\"b\" 发送"]]"#),
                (2, 20, 5, r#"[["a","sent","\"a\" 发送"]]"#),
                (1, 10, 5, r#"[["c","sent","\"c\" 发送"]]"#),
                (1, 10, 9, r#"[["d","sent","\"d\" 发送"]]"#),
            ]
        );
        assert!(journey_moves(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_move_is_written_as_serde_json_writes_it() {
        let texts = [
            "",
            "plain",
            "branch opened_insight: no (no human open of message 8812 by 2026-11-26T09:00Z)",
            "quote \" and backslash \\ and slash /",
            "tab\tnew line\ncarriage\rnul\u{0}unit\u{1f}",
            "del \u{7f} and 中文 and emoji 📈",
            "\"",
            "\\",
        ];
        for (i, text) in texts.iter().enumerate() {
            let mut row = line(1, "step", 5);
            row.outcome = texts[(i + 1) % texts.len()].to_string();
            row.detail = text.to_string();
            let rows = [row.clone(), row.clone()];
            let moves = journey_moves(&rows).unwrap();
            let lines: Vec<(&str, &str, &str)> = rows
                .iter()
                .map(|l| (l.step.as_str(), l.outcome.as_str(), l.detail.as_str()))
                .collect();
            assert_eq!(moves[0].steps, serde_json::to_string(&lines).unwrap(), "{text:?}");
            let back: Vec<(String, String, String)> = serde_json::from_str(&moves[0].steps).unwrap();
            assert_eq!(back[1].2, *text);
        }
    }
}
