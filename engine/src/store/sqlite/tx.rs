//! `SqliteTx`: a transaction of the engine's, staged in a snapshot and written in the
//! writer's turn.

use super::*;
use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Sqlite, Transaction};
use std::collections::HashSet;

/// A transaction, and for a write transaction this process's turn to write (held until the
/// transaction is dropped) and its write sequence number; then the frozen campaigns once read
/// (a transaction sees one snapshot, and no `Tx` method changes a campaign's status, so a pass
/// that asks twice makes one round trip).
pub(super) struct SqliteTx {
    /// `None` while staged, and after a staged pass found its snapshot out of date.
    pub(super) tx: Option<Transaction<'static, Sqlite>>,
    #[allow(dead_code)]
    pub(super) turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    pub(super) pass: Option<Pass>,
    pub(super) frozen: Option<Vec<String>>,
    pub(super) staged: Option<Staged>,
    /// It queued messages: the dispatcher is woken when it commits.
    pub(super) queued_mail: bool,
}

/// The writes of a journey pass decided in a snapshot, bound before it takes the writer's turn,
/// so that the turn, which every other writer waits behind, is only `BEGIN`, the write sequence
/// number, one multi-statement execution (one round trip to the writer connection's thread)
/// and `COMMIT`. The statements use `?` parameters only: sqlx binds a multi-statement text's values in order,
/// statement after statement, where `$1` would name the first value of the whole text.
pub(super) struct Staged {
    pub(super) writer: Writer,
    /// The write sequence number of the snapshot the pass was decided in.
    pub(super) since: i64,
    pub(super) leads: std::sync::Arc<[i64]>,
    pub(super) sql: String,
    pub(super) binds: Binds,
}

/// A write transaction's number, and if it is a journey pass, the leads it writes (sorted):
/// recorded in the pass log when it commits, which also wakes the checkpointer.
pub(super) struct Pass {
    pub(super) seq: i64,
    pub(super) leads: Option<std::sync::Arc<[i64]>>,
    pub(super) log: std::sync::Arc<std::sync::Mutex<PassLog>>,
    pub(super) checkpointer: Checkpointer,
    pub(super) mail: std::sync::Arc<tokio::sync::Notify>,
}

impl SqliteTx {
    pub(super) fn new(
        tx: Transaction<'static, Sqlite>,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
        pass: Option<Pass>,
    ) -> Self {
        SqliteTx {
            tx: Some(tx),
            turn,
            pass,
            frozen: None,
            staged: None,
            queued_mail: false,
        }
    }

    /// Says that this transaction is a journey pass that writes only these leads' data, so
    /// that passes over other leads decided in a snapshot stay valid when it commits.
    pub(super) fn scope(&mut self, leads: &[i64]) {
        if let Some(pass) = &mut self.pass {
            pass.leads = Some(sorted(leads));
        }
    }

    /// The transaction's connection; a staged transaction takes its turn here and runs what it
    /// staged first.
    pub(super) async fn conn(&mut self) -> StoreResult<&mut sqlx::SqliteConnection> {
        if let Some(staged) = self.staged.take() {
            let Staged {
                writer,
                since,
                leads,
                sql,
                binds,
            } = staged;
            let Some((turn, mut tx, pass)) = writer.begin_checked(since, leads).await? else {
                return Err(StoreError::Stale);
            };
            if !sql.is_empty() {
                binds.execute(sql, &mut tx).await?;
            }
            (self.tx, self.turn, self.pass) = (Some(tx), Some(turn), Some(pass));
        }
        match &mut self.tx {
            Some(tx) => Ok(&mut **tx),
            None => Err(StoreError::Stale),
        }
    }

    /// Writes `rows` through [`values_sql`], at once or, staged, at the turn.
    pub(super) async fn write_values<T>(
        &mut self,
        head: &str,
        tail: &str,
        columns: usize,
        rows: &[T],
        push: impl Fn(&mut Binds, &T),
    ) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(staged) = &mut self.staged {
            return values_sql(&mut staged.sql, &mut staged.binds, head, tail, columns, rows, push);
        }
        let (mut sql, mut binds) = (String::new(), Binds::default());
        values_sql(&mut sql, &mut binds, head, tail, columns, rows, push)?;
        binds.execute(sql, self.conn().await?).await
    }

    /// One statement with `?` parameters that `bind` binds, at once or, staged, at the turn.
    pub(super) async fn write(&mut self, statement: &str, bind: impl FnOnce(&mut Binds)) -> StoreResult<()> {
        debug_assert!(
            !statement.contains('$'),
            "staged statements take `?` parameters: {statement}"
        );
        if let Some(staged) = &mut self.staged {
            staged.sql.push_str(statement);
            staged.sql.push_str(";\n");
            bind(&mut staged.binds);
            return Ok(());
        }
        let mut binds = Binds::default();
        bind(&mut binds);
        binds.execute(statement.to_owned(), self.conn().await?).await
    }
}

/// Reserves `n` ids of an AUTOINCREMENT table. Inside BEGIN IMMEDIATE no other writer runs, so
/// the ids after the sequence are ours; the sequence row is moved past them at once so later
/// reservations in this transaction do not hand them out again.
pub(super) async fn reserve_ids(
    tx: &mut sqlx::SqliteConnection,
    table: &'static str,
    n: usize,
) -> StoreResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if let Some(ids) = bump_sequence(tx, table, n).await? {
        return Ok(ids);
    }
    // No sequence row yet: the table has never had one.
    let last: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COALESCE(MAX(id), 0) FROM {table}")))
        .fetch_one(&mut *tx)
        .await?;
    let end = last + n as i64;
    sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ($1, $2)")
        .bind(table)
        .bind(end)
        .execute(&mut *tx)
        .await?;
    Ok((last + 1..=end).collect())
}

/// Moves a table's sequence `n` ids on in one statement (atomic by itself, even outside a
/// transaction) and returns the ids passed over; `None` if the table has no sequence row yet.
pub(super) async fn bump_sequence(
    conn: &mut sqlx::SqliteConnection,
    table: &'static str,
    n: usize,
) -> StoreResult<Option<Vec<i64>>> {
    let end: Option<i64> = sqlx::query_scalar("UPDATE sqlite_sequence SET seq = seq + ? WHERE name = ? RETURNING seq")
        .bind(n as i64)
        .bind(table)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(end.map(|end| (end - n as i64 + 1..=end).collect()))
}

#[async_trait]
impl Tx for SqliteTx {
    async fn find_leads(&mut self, ids: &[i64], emails: &[String], external_ids: &[String]) -> StoreResult<Vec<Lead>> {
        let rows: Option<String> = if emails.is_empty() && external_ids.is_empty() {
            sqlx::query_scalar(AssertSqlSafe(SELECT_LEADS_BY_ID.as_str()))
                .bind(id_set(ids))
                .fetch_one(self.conn().await?)
                .await?
        } else {
            sqlx::query_scalar(AssertSqlSafe(SELECT_LEADS.as_str()))
                .bind(json_ids(ids))
                .bind(json_strings(emails))
                .bind(json_strings(external_ids))
                .fetch_one(self.conn().await?)
                .await?
        };
        json_rows_into(
            rows,
            ids.len() + emails.len() + external_ids.len(),
            <Lead as TryFrom<LeadRow>>::try_from,
        )
    }

    async fn view_leads(&mut self, ids: &[i64]) -> StoreResult<Vec<Lead>> {
        // One writer: reading locks nothing here.
        self.find_leads(ids, &[], &[]).await
    }

    async fn reserve_lead_ids(&mut self, n: usize) -> StoreResult<Vec<i64>> {
        reserve_ids(self.conn().await?, "leads", n).await
    }

    async fn write_leads(&mut self, leads: &[Lead]) -> StoreResult<()> {
        for chunk in leads.chunks(5_000) {
            let rows: Vec<LeadRow> = chunk.iter().map(LeadRow::from).collect();
            sqlx::query(AssertSqlSafe(WRITE_LEADS.as_str()))
                .bind(serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .execute(self.conn().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn write_lead_activity(&mut self, leads: &[ActivityRow]) -> StoreResult<()> {
        self.write_values(
            "UPDATE leads SET score = v.column2, stage = v.column3, last_activity_at = v.column4, updated_at = v.column5 FROM (",
            ") AS v WHERE leads.id = v.column1",
            5,
            leads,
            |b, r| {
                b.int(r.id)
                    .int(r.score)
                    .name(r.stage)
                    .opt_int(r.last_activity_at)
                    .int(r.updated_at);
            },
        )
        .await
    }

    async fn load_tags(&mut self, ids: &[i64]) -> StoreResult<Vec<(i64, String, TagFamily)>> {
        let rows: Option<String> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT json_group_array(json_array(lead_id, tag, family)) FROM {WANTED} CROSS JOIN lead_tags ON lead_id = i.wanted")))
                .bind(id_set(ids))
                .fetch_one(self.conn().await?)
                .await?;
        let rows: Vec<(i64, String, String)> = json_rows(rows)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, t, f)| TagFamily::parse(&f).map(|f| (id, t, f)))
            .collect())
    }

    async fn load_enrollments(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Enrollment>> {
        // One JSON row, not a row each through sqlx's worker channel (see `json_rows`), by lead
        // and then by id: the join walks the sorted leads through `enrollments_lead`.
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT json_group_array(json_array({ENROLLMENT_COLUMNS})) \
             FROM {WANTED} CROSS JOIN enrollments ON lead_id = i.wanted"
        )))
        .bind(id_set(lead_ids))
        .fetch_one(self.conn().await?)
        .await?;
        json_rows_into(rows, lead_ids.len(), EnrollmentRow::into_enrollment)
    }

    async fn due_leads(&mut self, now: i64, paused: &[String], busy: &[i64], limit: i64) -> StoreResult<Vec<i64>> {
        // The earliest due enrollments by the wake-up index (no grouping: that would read every
        // due row for each batch), as one JSON row (see `json_rows`): a row each through sqlx's
        // worker channel cost about a microsecond a lead, four times the query's own work. The
        // index holds the lead, so with no campaign paused no enrollment row is read at all.
        let campaigns = if paused.is_empty() {
            ""
        } else {
            "AND campaign_id NOT IN (SELECT value FROM json_each($4))"
        };
        let mut query = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT json_group_array(lead_id ORDER BY wake_at, id) FROM (\
             SELECT lead_id, wake_at, id FROM enrollments WHERE status = 'waiting' AND wake_at <= $1 \
             AND lead_id NOT IN (SELECT value FROM json_each($3)) {campaigns} ORDER BY wake_at LIMIT $2)"
        )))
        .bind(now)
        .bind(limit)
        .bind(json_ids(busy));
        if !paused.is_empty() {
            query = query.bind(json_strings(paused));
        }
        let leads: Option<String> = query.fetch_one(self.conn().await?).await?;
        Ok(distinct(json_rows(leads)?))
    }

    async fn take_free_leads(&mut self, lead_ids: &[i64]) -> StoreResult<Vec<Lead>> {
        self.find_leads(lead_ids, &[], &[]).await
    }

    async fn frozen_campaigns(&mut self) -> StoreResult<Vec<String>> {
        if let Some(frozen) = &self.frozen {
            return Ok(frozen.clone());
        }
        let frozen: Vec<String> = sqlx::query_scalar("SELECT id FROM campaigns WHERE status <> 'active' ORDER BY id")
            .fetch_all(self.conn().await?)
            .await?;
        self.frozen = Some(frozen.clone());
        Ok(frozen)
    }

    async fn campaign_source(&mut self, id: &str, version: &str) -> StoreResult<Option<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT file, source FROM campaign_versions WHERE campaign_id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .fetch_optional(self.conn().await?)
                .await?,
        )
    }

    async fn reserve_enrollment_ids(&mut self, n: usize) -> StoreResult<Vec<i64>> {
        if let Some(staged) = &self.staged {
            return staged.writer.reserve("enrollments", n).await;
        }
        reserve_ids(self.conn().await?, "enrollments", n).await
    }

    async fn write_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()> {
        let rows: Vec<EnrollmentRow> = rows.iter().map(EnrollmentRow::from).collect();
        self.write_values(
            "INSERT INTO enrollments (id, campaign_id, version, lead_id, step, status, wake_at, outcome, transitions, entered_at, updated_at) \
             SELECT * FROM (",
            ") WHERE column1 IS NOT NULL ON CONFLICT (id) DO UPDATE SET step = excluded.step, status = excluded.status, wake_at = excluded.wake_at, \
             outcome = excluded.outcome, transitions = excluded.transitions, updated_at = excluded.updated_at",
            11,
            &rows,
            |b, r| {
                b.int(r.id)
                    .name(&r.campaign_id)
                    .name(&r.version)
                    .int(r.lead_id)
                    .name(&r.step)
                    .name(r.status.as_str())
                    .opt_int(r.wake_at)
                    .opt_text(r.outcome.as_deref())
                    .int(r.transitions)
                    .int(r.entered_at)
                    .int(r.updated_at);
            },
        )
        .await
    }

    async fn move_enrollments(&mut self, rows: &[Enrollment]) -> StoreResult<()> {
        // Setting `status`, even to the same value, makes SQLite rewrite the entries of both
        // indexes whose condition names it, which would double the cost of a move.
        let rows: Vec<EnrollmentRow> = rows.iter().map(EnrollmentRow::from).collect();
        self.write_values(
            "UPDATE enrollments SET step = v.column2, wake_at = v.column3, outcome = v.column4, \
             transitions = v.column5, updated_at = v.column6 FROM (",
            ") AS v WHERE enrollments.id = v.column1",
            6,
            &rows,
            |b, r| {
                b.int(r.id)
                    .name(&r.step)
                    .opt_int(r.wake_at)
                    .opt_text(r.outcome.as_deref())
                    .int(r.transitions)
                    .int(r.updated_at);
            },
        )
        .await
    }

    async fn write_journey(&mut self, rows: &[JourneyRow]) -> StoreResult<()> {
        if !rows.is_empty() {
            self.write_values(
                "INSERT INTO journey_moves (enrollment_id, lead_id, campaign_id, at, steps) SELECT * FROM (",
                ") WHERE column1 IS NOT NULL",
                5,
                &journey_moves(rows)?,
                |b, m| {
                    b.int(m.enrollment_id)
                        .int(m.lead_id)
                        .name(m.campaign_id)
                        .int(m.at)
                        .text(&m.steps);
                },
            )
            .await?;
            // One writer at a time on SQLite: one shard.
            let deltas =
                serde_json::to_string(&step_count_deltas(rows)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.write(
                "INSERT INTO step_counts (campaign_id, step, outcome, shard, entered, lines) \
                 SELECT j.value->>0, j.value->>1, j.value->>2, 0, j.value->>3, j.value->>4 FROM json_each(?) AS j WHERE true \
                 ON CONFLICT (campaign_id, step, outcome, shard) DO UPDATE SET \
                 entered = step_counts.entered + excluded.entered, lines = step_counts.lines + excluded.lines",
                |b| {
                    b.add(deltas);
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn insert_messages(&mut self, rows: &[NewMessage]) -> StoreResult<()> {
        self.queued_mail |= !rows.is_empty();
        self.write_values(
            "INSERT INTO messages (enrollment_id, seq, lead_id, campaign_id, version, step, channel, template, status, reason, next_attempt_at, created_at) \
             SELECT * FROM (",
            ") WHERE column1 IS NOT NULL ON CONFLICT (enrollment_id, seq) DO NOTHING",
            12,
            rows,
            |b, r| {
                b.int(r.enrollment_id)
                    .int(r.seq)
                    .int(r.lead_id)
                    .name(&r.campaign_id)
                    .name(&r.version)
                    .name(&r.step)
                    .name(r.channel.as_str())
                    .name(&r.template)
                    .name(r.status.as_str())
                    .opt_text(r.reason.as_deref())
                    .opt_int(r.next_attempt_at)
                    .int(r.created_at);
            },
        )
        .await
    }

    async fn load_messages(&mut self, enrollment_ids: &[i64]) -> StoreResult<Vec<SentMessage>> {
        // By enrollment and then by seq, the order they were made in: the join walks the sorted
        // enrollments through the messages' unique (enrollment_id, seq).
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT json_group_array(json_array(enrollment_id, id, step)) \
             FROM {WANTED} CROSS JOIN messages ON enrollment_id = i.wanted"
        )))
        .bind(id_set(enrollment_ids))
        .fetch_one(self.conn().await?)
        .await?;
        json_rows(rows)
    }

    async fn load_events(
        &mut self,
        ids: &[i64],
        needs: &[(String, Option<i64>)],
    ) -> StoreResult<Vec<(i64, EventFact)>> {
        // The needs are read out of their JSON once, not for every event they are held against.
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH n(type, since) AS MATERIALIZED (SELECT value->>'type', value->>'since' FROM json_each($2)) \
             SELECT json_group_array(json_array(e.lead_id, e.type, e.occurred_at, json(e.properties))) \
             FROM {WANTED} CROSS JOIN events e ON e.lead_id = i.wanted \
             CROSS JOIN n ON e.type = n.type AND e.occurred_at >= n.since"
        )))
        .bind(id_set(ids))
        .bind(event_needs_json(needs))
        .fetch_one(self.conn().await?)
        .await?;
        let rows: Vec<(i64, String, i64, Map<String, Value>)> = json_rows(rows)?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, at, properties)| {
                (
                    id,
                    EventFact {
                        kind,
                        occurred_at: from_micros(at),
                        properties,
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
        let rows: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(lead_id, rule, occurred_at, delta)) FROM score_changes \
             WHERE lead_id IN (SELECT value FROM json_each($1)) AND rule IN (SELECT value FROM json_each($2)) AND occurred_at >= $3",
        )
        .bind(json_ids(ids))
        .bind(json_strings(rules))
        .bind(since)
        .fetch_one(self.conn().await?)
        .await?;
        json_rows(rows)
    }

    async fn suppressed(&mut self, email_hashes: &[String]) -> StoreResult<HashSet<String>> {
        if email_hashes.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT email_hash FROM suppressions WHERE email_hash IN (SELECT value FROM json_each($1))",
        )
        .bind(json_strings(email_hashes))
        .fetch_all(self.conn().await?)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn keyed_events(&mut self, keys: &[&str]) -> StoreResult<Vec<(String, i64, EventFact)>> {
        let rows: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(idempotency_key, lead_id, type, occurred_at, json(properties))) \
             FROM events WHERE idempotency_key IN (SELECT value FROM json_each($1))",
        )
        .bind(serde_json::to_string(keys).unwrap_or_default())
        .fetch_one(self.conn().await?)
        .await?;
        let rows: Vec<(String, i64, String, i64, Map<String, Value>)> = json_rows(rows)?;
        Ok(rows
            .into_iter()
            .map(|(key, lead, kind, at, properties)| {
                let fact = EventFact {
                    kind,
                    occurred_at: from_micros(at),
                    properties,
                };
                (key, lead, fact)
            })
            .collect())
    }

    async fn insert_events(&mut self, events: &[NewEvent<'_>]) -> StoreResult<HashSet<String>> {
        let mut inserted = HashSet::new();
        for chunk in events.chunks(5_000) {
            let keys: Vec<Option<String>> = sqlx::query_scalar(
                "INSERT INTO events (lead_id, type, properties, occurred_at, received_at, idempotency_key, source) \
                 SELECT j.value->>'lead_id', j.value->>'type', json(j.value->'properties'), j.value->>'occurred_at', j.value->>'received_at', \
                 j.value->>'idempotency_key', j.value->>'source' FROM jsonb_each(jsonb($1)) AS j WHERE true \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
            )
            .bind(serde_json::to_string(chunk).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .fetch_all(self.conn().await?)
            .await?;
            inserted.extend(keys.into_iter().flatten());
        }
        Ok(inserted)
    }

    async fn write_changes(&mut self, changes: &Changes) -> StoreResult<Vec<Opened>> {
        // Tag and score rows are bound as values (see `values_sql`), like the step writes;
        // removals are rare and stay one JSON batch.
        let rows = ChangeRows::of(changes);
        self.write_values(
            "INSERT INTO tag_changes (lead_id, tag, family, added, actor_kind, actor, at) SELECT * FROM (",
            ") WHERE column1 IS NOT NULL",
            7,
            &rows.tag_log,
            |b, r| {
                b.int(r.lead_id)
                    .name(r.tag)
                    .name(r.family)
                    .add(r.added)
                    .name(r.actor_kind)
                    .name(r.actor)
                    .int(r.at);
            },
        )
        .await?;
        if let Some(json) = json_batch(&rows.net_tags(false)) {
            self.write(
                "DELETE FROM lead_tags WHERE (lead_id, tag) IN (SELECT j.value->>'lead_id', j.value->>'tag' FROM jsonb_each(jsonb(?)) AS j)",
                |b| {
                    b.add(json);
                },
            )
            .await?;
        }
        self.write_values(
            "INSERT INTO lead_tags (lead_id, tag, family, added_at) SELECT * FROM (",
            ") WHERE column1 IS NOT NULL ON CONFLICT (lead_id, tag) DO NOTHING",
            4,
            &rows.net_tags(true),
            |b, r| {
                b.int(r.lead_id).name(r.tag).name(r.family).int(r.at);
            },
        )
        .await?;
        self.write_values(
            "INSERT INTO score_changes (lead_id, delta, reason, actor_kind, actor, rule, occurred_at, at) SELECT * FROM (",
            ") WHERE column1 IS NOT NULL",
            8,
            &rows.scores,
            |b, r| {
                b.int(r.lead_id)
                    .int(r.delta)
                    .name(r.reason)
                    .name(r.actor_kind)
                    .name(r.actor)
                    .opt_text(r.rule)
                    .int(r.occurred_at)
                    .int(r.at);
            },
        )
        .await?;
        let Some(json) = json_batch(&rows.handoffs) else {
            return Ok(Vec::new());
        };
        // `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint.
        Ok(sqlx::query_as(
            "INSERT INTO handoffs (lead_id, queue, reason, priority, origin, status, score, tags, campaign_id, step, sla_due_at, created_at, updated_at) \
             SELECT j.value->>'lead_id', j.value->>'queue', j.value->>'reason', j.value->>'priority', j.value->>'origin', 'open', \
             j.value->>'score', j.value->>'tags', j.value->>'campaign_id', j.value->>'step', j.value->>'sla_due_at', j.value->>'created_at', j.value->>'created_at' \
             FROM jsonb_each(jsonb($1)) AS j WHERE true ON CONFLICT DO NOTHING RETURNING id, lead_id, queue",
        )
        .bind(json)
        .fetch_all(self.conn().await?)
        .await?)
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let mut this = *self;
        // A staged pass takes its turn and writes here.
        this.conn().await?;
        let SqliteTx {
            tx,
            turn,
            pass,
            queued_mail,
            ..
        } = this;
        tx.ok_or(StoreError::Stale)?.commit().await?;
        if let Some(pass) = pass {
            if let Some(leads) = pass.leads {
                pass.log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(pass.seq, leads);
            }
            pass.checkpointer.wake();
            if queued_mail {
                pass.mail.notify_one();
            }
        }
        // The turn goes only now, so the next checked writer finds this pass in the log.
        drop(turn);
        Ok(())
    }
}
