//! The PostgreSQL adapter's transaction: rows locked in id order, batches as one `jsonb`
//! parameter, per-step counters summed and written as it commits.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use super::queries::*;
use super::*;

pub(super) struct PgTx {
    tx: Transaction<'static, Postgres>,
    write: bool,
    /// Step counts this transaction adds, written just before it commits (see `commit`).
    step_counts: StepCountDeltas,
}

/// Per (campaign, step, outcome): enrollments that arrived, and lines written; and the shard
/// they go to.
#[derive(Default)]
pub(super) struct StepCountDeltas {
    sums: std::collections::BTreeMap<(String, String, String), (i64, i64)>,
    shard: i64,
}

impl PgTx {
    pub(super) fn new(tx: Transaction<'static, Postgres>, write: bool) -> Self {
        PgTx {
            tx,
            write,
            step_counts: StepCountDeltas::default(),
        }
    }

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

impl sql::SqlTx for PgTx {
    type DB = Postgres;

    async fn connection(&mut self) -> StoreResult<&mut sqlx::PgConnection> {
        self.conn().await
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
        .bind(rows.iter().map(|r| r.status.as_str()).collect::<Vec<&str>>())
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
        .bind(rows.iter().map(|r| r.channel.as_str()).collect::<Vec<&str>>())
        .bind(text(|r| &r.template))
        .bind(rows.iter().map(|r| r.status.as_str()).collect::<Vec<&str>>())
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
