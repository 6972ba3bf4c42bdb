//! Reading leads outside transactions (lists, tags, the timeline, counts per stage), and erasure.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::audit::Change;
use crate::clock::to_micros;
use crate::lead::{Lead, LeadId};
use crate::store::sql::{Dialect, SqlStore};
use crate::tag::TagFamily;
use chrono::{DateTime, Utc};

/// What erasing a lead deletes, in order (children before what they point at).
pub(crate) const ERASE: [&str; 17] = [
    "DELETE FROM events WHERE lead_id = $1",
    "DELETE FROM visitor_events WHERE visitor_id IN (SELECT id FROM visitors WHERE lead_id = $1)",
    "DELETE FROM visitors WHERE lead_id = $1",
    "DELETE FROM enrolling_events WHERE lead_id = $1",
    "DELETE FROM lead_tags WHERE lead_id = $1",
    "DELETE FROM tag_changes WHERE lead_id = $1",
    "DELETE FROM score_changes WHERE lead_id = $1",
    "DELETE FROM lead_notes WHERE lead_id = $1",
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

/// Reading leads outside transactions (lists, tags, the timeline, counts per stage), and erasure.
#[async_trait]
pub trait LeadStore: Send + Sync {
    async fn lead_tags(&self, id: LeadId) -> StoreResult<Vec<(String, TagFamily)>>;
    /// Leads after `after` (by id) matching the filter, at most `limit`.
    async fn list_leads(&self, filter: &LeadFilter, after: Option<LeadId>, limit: i64) -> StoreResult<Vec<Lead>>;
    /// The console's lead search, by id. Without a prefix: the leads after `after` matching the
    /// rest, at most `limit`. With one: the first `limit` matches of each searched column (read
    /// in its index), together and by id, at most `limit` of them; `after` is not used.
    async fn search_leads(&self, search: &LeadSearch, after: Option<LeadId>, limit: i64) -> StoreResult<Vec<Lead>>;
    /// A lead's timeline entries older than the cursor, newest first, at most `limit`.
    async fn timeline(&self, id: LeadId, before: Option<TimelineCursor>, limit: i64)
        -> StoreResult<Vec<TimelineEntry>>;
    /// Erases a lead and everything recorded about them; keeps the e-mail's hash as suppression.
    async fn erase_lead(&self, id: LeadId, now: DateTime<Utc>, audit: &Change) -> StoreResult<bool>;
    /// Where a lead's score came from: per rule, per person (changes by hand) and per system
    /// change (decay), the points and how many changes, most points first.
    async fn score_sources(&self, id: LeadId) -> StoreResult<Vec<ScoreSource>>;
    /// How many leads are at each stage (stages with none are left out).
    async fn stage_counts(&self) -> StoreResult<Vec<(String, i64)>>;
    /// A lead's latest event of type `kind`: when it happened and its properties (JSON text).
    async fn latest_event(&self, id: LeadId, kind: &str) -> StoreResult<Option<(i64, String)>>;
    /// The points rules gave a lead, newest first, at most `limit`: the behaviours that counted.
    async fn rule_points(&self, id: LeadId, limit: i64) -> StoreResult<Vec<RulePoints>>;
}

#[async_trait]
impl<S, DB> LeadStore for S
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut <DB as Database>::Connection: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'r> (Option<String>,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64, i64, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> LeadRow: FromRow<'r, <DB as Database>::Row>,
    for<'r> ScoreSource: FromRow<'r, <DB as Database>::Row>,
    for<'r> RulePoints: FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64, String): FromRow<'r, <DB as Database>::Row>,
{
    async fn lead_tags(&self, id: LeadId) -> StoreResult<Vec<(String, TagFamily)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT tag, family FROM lead_tags WHERE lead_id = $1 ORDER BY tag")
                .bind(id.0)
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, f)| TagFamily::parse(&f).map(|f| (t, f)))
            .collect())
    }

    async fn list_leads(&self, filter: &LeadFilter, after: Option<LeadId>, limit: i64) -> StoreResult<Vec<Lead>> {
        let rows: Vec<LeadRow> = sqlx::query_as(AssertSqlSafe(<DB as Dialect>::list_leads_sql()))
            .bind(after.map(|a| a.0).unwrap_or(i64::MIN))
            .bind(filter.stage.map(|s| s.as_str()))
            .bind(filter.tag.as_deref())
            .bind(filter.q.as_deref().map(like_pattern))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        leads_from(rows)
    }

    async fn search_leads(&self, search: &LeadSearch, after: Option<LeadId>, limit: i64) -> StoreResult<Vec<Lead>> {
        // Only the filters given are written, each with its own placeholder: a query of one
        // shape has one plan, and a stage is read in its index (a `$n IS NULL OR …` filter
        // cannot be, once PostgreSQL plans the statement for any value).
        let mut filters: Vec<String> = Vec::new();
        let mut binds: Vec<Bound> = Vec::new();
        let mut filter = |clause: &dyn Fn(usize) -> String, value: Bound| {
            binds.push(value);
            filters.push(clause(binds.len()));
        };
        if let Some(stage) = search.stage {
            filter(&|n| format!("stage = ${n}"), Bound::Text(stage.as_str().to_owned()));
        }
        if let Some(tag) = &search.tag {
            filter(
                &|n| format!("id IN (SELECT lead_id FROM lead_tags WHERE tag = ${n})"),
                Bound::Text(tag.clone()),
            );
        }
        if let Some(min) = search.score_min {
            filter(&|n| format!("score >= ${n}"), Bound::Int(min));
        }
        if let Some(max) = search.score_max {
            filter(&|n| format!("score <= ${n}"), Bound::Int(max));
        }
        let prefix = search
            .prefix
            .as_deref()
            .map(str::to_lowercase)
            .filter(|p| !p.is_empty());
        let Some(prefix) = prefix else {
            filter(
                &|n| format!("id > ${n}"),
                Bound::Int(after.map(|a| a.0).unwrap_or(i64::MIN)),
            );
            let sql = format!(
                "SELECT {} FROM leads WHERE {} ORDER BY id LIMIT ${}",
                lead_column_list(),
                filters.join(" AND "),
                binds.len() + 1
            );
            let rows: Vec<LeadRow> = bind_all(sqlx::query_as(AssertSqlSafe(sql)), &binds)
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
            return leads_from(rows);
        };
        let end = prefix_end(&prefix).unwrap_or_else(|| format!("{prefix}{}", char::MAX));
        let ((ge, lt), order) = (DB::PREFIX_RANGE, DB::PREFIX_ORDER);
        let n = binds.len();
        let mut found: std::collections::BTreeMap<i64, Lead> = std::collections::BTreeMap::new();
        for indexed in SEARCHED {
            let mut clauses = vec![
                format!("{indexed} {ge} ${}", n + 1),
                format!("{indexed} {lt} ${}", n + 2),
            ];
            clauses.extend(filters.iter().cloned());
            let sql = format!(
                "SELECT {} FROM leads WHERE {} ORDER BY {indexed}{order} LIMIT ${}",
                lead_column_list(),
                clauses.join(" AND "),
                n + 3
            );
            let rows: Vec<LeadRow> = bind_all(sqlx::query_as(AssertSqlSafe(sql)), &binds)
                .bind(prefix.as_str())
                .bind(end.as_str())
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
            for lead in leads_from(rows)? {
                found.insert(lead.id.0, lead);
            }
        }
        Ok(found.into_values().take(limit.max(0) as usize).collect())
    }

    async fn timeline(
        &self,
        id: LeadId,
        before: Option<TimelineCursor>,
        limit: i64,
    ) -> StoreResult<Vec<TimelineEntry>> {
        let mut entries = Vec::new();
        for (kind, sql) in <DB as Dialect>::TIMELINE.iter().copied() {
            let (at, bound) = match before {
                Some(c) => (c.at, c.id_bound(kind)),
                None => (i64::MAX, i64::MAX),
            };
            let rows: Vec<(i64, i64, String)> = sqlx::query_as(sql)
                .bind(id.0)
                .bind(at)
                .bind(bound)
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
            for (seq, at, data) in rows {
                entries.push(timeline_entry(kind, seq, at, &data)?);
            }
        }
        Ok(merge_timeline(entries, limit))
    }

    async fn erase_lead(&self, id: LeadId, now: DateTime<Utc>, audit: &Change) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let email: Option<Option<String>> = sqlx::query_scalar(<DB as Dialect>::ERASE_LOOKUP)
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
        // The trail keeps who changed the lead and when; the words written about the person (the
        // details of every `lead.*` entry) go.
        sqlx::query("UPDATE audit_log SET detail = '{\"erased\":true}' WHERE subject = $1 AND kind LIKE 'lead.%'")
            .bind(id.0.to_string())
            .execute(&mut *tx)
            .await?;
        audit::insert::<DB>(&mut *tx, std::slice::from_ref(audit), to_micros(now)).await?;
        S::commit(tx).await?;
        Ok(true)
    }

    async fn score_sources(&self, id: LeadId) -> StoreResult<Vec<ScoreSource>> {
        Ok(sqlx::query_as(
            "SELECT actor_kind AS kind, actor AS name, CAST(SUM(delta) AS BIGINT) AS points, COUNT(*) AS changes \
             FROM score_changes WHERE lead_id = $1 \
             GROUP BY actor_kind, actor ORDER BY points DESC, changes DESC, name",
        )
        .bind(id.0)
        .fetch_all(self.pool())
        .await?)
    }

    async fn latest_event(&self, id: LeadId, kind: &str) -> StoreResult<Option<(i64, String)>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT occurred_at, {} FROM events WHERE lead_id = $1 AND type = $2 ORDER BY occurred_at DESC, id DESC LIMIT 1",
            <DB as Dialect>::JSON_TEXT_PROPERTIES
        )))
        .bind(id.0)
        .bind(kind)
        .fetch_optional(self.pool())
        .await?)
    }

    async fn rule_points(&self, id: LeadId, limit: i64) -> StoreResult<Vec<RulePoints>> {
        Ok(sqlx::query_as(
            "SELECT at, delta, reason, actor AS rule FROM score_changes \
             WHERE lead_id = $1 AND actor_kind = 'rule' ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(id.0)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    async fn stage_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT stage, COUNT(*) FROM leads GROUP BY stage ORDER BY stage")
                .fetch_all(self.pool())
                .await?,
        )
    }
}

/// Points a rule gave a lead (see [`LeadStore::rule_points`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RulePoints {
    /// Microseconds since the epoch.
    pub at: i64,
    pub delta: i64,
    pub reason: String,
    pub rule: String,
}

/// Points a lead got from one source (see [`LeadStore::score_sources`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ScoreSource {
    /// `rule`, `user` (by hand) or `system`, as the ledger's actor says.
    pub kind: String,
    /// The rule's id, the person's name, or the system's part.
    pub name: String,
    pub points: i64,
    pub changes: i64,
}

/// A value a search binds, in the order its placeholders were written.
enum Bound {
    Text(String),
    Int(i64),
}

/// `query` with `binds` bound, in order.
fn bind_all<'q, DB, O>(
    mut query: sqlx::query::QueryAs<'q, DB, O, <DB as Database>::Arguments>,
    binds: &'q [Bound],
) -> sqlx::query::QueryAs<'q, DB, O, <DB as Database>::Arguments>
where
    DB: Database,
    for<'b> i64: Encode<'b, DB> + Type<DB>,
    for<'b> &'b str: Encode<'b, DB> + Type<DB>,
{
    for bound in binds {
        query = match bound {
            Bound::Text(text) => query.bind(text.as_str()),
            Bound::Int(n) => query.bind(*n),
        };
    }
    query
}
