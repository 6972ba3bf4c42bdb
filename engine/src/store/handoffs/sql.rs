//! The handoff part of the storage port, written once for both adapters: the SQL is the same
//! on SQLite and PostgreSQL but for locking ([`Dialect::FOR_UPDATE`], [`Dialect::SKIP_LOCKED`])
//! and the claim of many handoffs at once ([`Dialect::claim_many_sql`]). Batches use
//! `QueryBuilder` rows, which both dialects take. The `where` clauses list what the SQL binds
//! and reads, which both sqlx drivers provide.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::store::sql::{json_strings, Dialect, SqlStore, SqlTx};

#[async_trait]
impl<T, DB> HandoffTx for T
where
    T: SqlTx<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut <DB as Database>::Connection: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> HandoffRow: FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (Option<i64>,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, bool, Option<i64>, i64, i64): FromRow<'r, <DB as Database>::Row>,
{
    async fn claim_handoff(&mut self, queue: &str, member: &str, now: i64) -> StoreResult<Option<Handoff>> {
        let skip_locked = <DB as Dialect>::SKIP_LOCKED;
        let row: Option<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE handoffs SET status = 'claimed', claimed_by = $2, claimed_at = $3, updated_at = $3 WHERE id = \
             (SELECT id FROM handoffs WHERE queue = $1 AND status = 'open' AND (assigned_to IS NULL OR assigned_to = $2) \
              ORDER BY priority DESC, created_at, id LIMIT 1{skip_locked}) AND status = 'open' \
             RETURNING {HANDOFF_COLUMNS}"
        )))
        .bind(queue)
        .bind(member)
        .bind(now)
        .fetch_optional(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(Handoff::try_from).transpose()
    }

    async fn claim_many(&mut self, queue: &str, members: &[String], now: i64) -> StoreResult<Vec<Option<Handoff>>> {
        let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(<DB as Dialect>::claim_many_sql()))
            .bind(queue)
            .bind(json_strings(members))
            .bind(members.len() as i64)
            .bind(now)
            .fetch_all(self.connection().await?)
            .await
            .map_err(StoreError::from_sqlx)?;
        // In member order, each goes to its member's first slot still empty.
        let mut out: Vec<Option<Handoff>> = vec![None; members.len()];
        for handoff in handoffs_from(rows)? {
            let slot = (0..members.len())
                .find(|i| out[*i].is_none() && handoff.claimed_by.as_deref() == Some(members[*i].as_str()));
            if let Some(slot) = slot {
                out[slot] = Some(handoff);
            }
        }
        Ok(out)
    }

    async fn lock_handoff(&mut self, id: i64) -> StoreResult<Option<Handoff>> {
        Ok(self.lock_handoffs(&[id]).await?.pop())
    }

    async fn lock_handoffs(&mut self, ids: &[i64]) -> StoreResult<Vec<Handoff>> {
        let for_update = <DB as Dialect>::FOR_UPDATE;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = sqlx::QueryBuilder::<DB>::new(format!("SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE id IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(format!(") ORDER BY id{for_update}"));
        let rows: Vec<HandoffRow> = q
            .build_query_as()
            .fetch_all(self.connection().await?)
            .await
            .map_err(StoreError::from_sqlx)?;
        handoffs_from(rows)
    }

    async fn update_handoffs(&mut self, handoffs: &[Handoff]) -> StoreResult<()> {
        for chunk in handoffs.chunks(500) {
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "WITH v (id, queue, status, assigned_to, claimed_by, claimed_at, decided_by, decided_at, reject_reason, \
                 amount_cents, sla_due_at, sla_breached_at, moved_from, updated_at) AS (",
            );
            q.push_values(chunk, |mut row, h| {
                row.push_bind(h.id.0)
                    .push_bind(h.queue.clone())
                    .push_bind(h.status.as_str())
                    .push_bind(h.assigned_to.clone())
                    .push_bind(h.claimed_by.clone())
                    .push_bind(opt_micros(h.claimed_at))
                    .push_bind(h.decided_by.clone())
                    .push_bind(opt_micros(h.decided_at))
                    .push_bind(h.reject_reason.clone())
                    .push_bind(h.amount.map(|a| a.0))
                    .push_bind(opt_micros(h.sla_due_at))
                    .push_bind(opt_micros(h.sla_breached_at))
                    .push_bind(h.moved_from.clone())
                    .push_bind(to_micros(h.updated_at));
            });
            q.push(
                ") UPDATE handoffs SET \
                 queue = (SELECT queue FROM v WHERE v.id = handoffs.id), \
                 status = (SELECT status FROM v WHERE v.id = handoffs.id), \
                 assigned_to = (SELECT assigned_to FROM v WHERE v.id = handoffs.id), \
                 claimed_by = (SELECT claimed_by FROM v WHERE v.id = handoffs.id), \
                 claimed_at = (SELECT claimed_at FROM v WHERE v.id = handoffs.id), \
                 decided_by = (SELECT decided_by FROM v WHERE v.id = handoffs.id), \
                 decided_at = (SELECT decided_at FROM v WHERE v.id = handoffs.id), \
                 reject_reason = (SELECT reject_reason FROM v WHERE v.id = handoffs.id), \
                 amount_cents = (SELECT amount_cents FROM v WHERE v.id = handoffs.id), \
                 sla_due_at = (SELECT sla_due_at FROM v WHERE v.id = handoffs.id), \
                 sla_breached_at = (SELECT sla_breached_at FROM v WHERE v.id = handoffs.id), \
                 moved_from = (SELECT moved_from FROM v WHERE v.id = handoffs.id), \
                 updated_at = (SELECT updated_at FROM v WHERE v.id = handoffs.id) \
                 WHERE id IN (SELECT id FROM v)",
            );
            q.build()
                .execute(self.connection().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn log_handoffs(&mut self, entries: &[HandoffLogEntry]) -> StoreResult<()> {
        for chunk in entries.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO handoff_log (handoff_id, action, actor, detail, at, queue) ",
            );
            q.push_values(chunk, |mut row, e| {
                row.push_bind(e.handoff_id)
                    .push_bind(e.action.clone())
                    .push_bind(e.actor.clone())
                    .push_bind(e.detail.clone())
                    .push_bind(e.at)
                    .push_bind(e.queue.clone());
            });
            q.build()
                .execute(self.connection().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn queue_notifications(&mut self, items: &[NewNotification], now: i64) -> StoreResult<()> {
        for chunk in items.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO notifications (lead_id, handoff_id, recipient, subject, body, next_attempt_at, created_at) ",
            );
            q.push_values(chunk, |mut row, n| {
                row.push_bind(n.lead_id)
                    .push_bind(n.handoff_id)
                    .push_bind(n.recipient.clone())
                    .push_bind(n.subject.clone())
                    .push_bind(n.body.clone())
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build()
                .execute(self.connection().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn sla_due(&mut self, now: i64, limit: i64) -> StoreResult<Vec<Handoff>> {
        let skip_locked = <DB as Dialect>::SKIP_LOCKED;
        let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE status = 'open' AND sla_breached_at IS NULL \
             AND sla_due_at IS NOT NULL AND sla_due_at <= $1 ORDER BY sla_due_at, id LIMIT $2{skip_locked}"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        handoffs_from(rows)
    }

    async fn cooled_leads(&mut self, now: i64, limit: i64) -> StoreResult<Vec<i64>> {
        let skip_locked = <DB as Dialect>::SKIP_LOCKED;
        Ok(sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM leads WHERE cooldown_until IS NOT NULL AND cooldown_until <= $1 \
             ORDER BY cooldown_until, id LIMIT $2{skip_locked}"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?)
    }

    async fn queue_members(&mut self, queue: &str) -> StoreResult<Vec<Member>> {
        let for_update = <DB as Dialect>::FOR_UPDATE;
        let rows: Vec<(String, bool, Option<i64>, i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT member, available, capacity, weight, pass FROM queue_members WHERE queue = $1 ORDER BY member{for_update}"
        )))
        .bind(queue)
        .fetch_all(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        let loads: Vec<(String, i64)> = sqlx::query_as(
            "SELECT COALESCE(claimed_by, assigned_to) AS m, COUNT(*) FROM handoffs \
             WHERE queue = $1 AND status IN ('open', 'claimed') AND COALESCE(claimed_by, assigned_to) IS NOT NULL \
             GROUP BY COALESCE(claimed_by, assigned_to)",
        )
        .bind(queue)
        .fetch_all(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(member, available, capacity, weight, pass)| {
                let load = loads.iter().find(|(m, _)| *m == member).map_or(0, |(_, n)| *n);
                Member {
                    member,
                    available,
                    capacity,
                    weight,
                    pass,
                    load,
                }
            })
            .collect())
    }

    async fn write_members(&mut self, queue: &str, members: &[Member], now: i64) -> StoreResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::QueryBuilder::<DB>::new(
            "INSERT INTO queue_members (queue, member, available, capacity, weight, pass, updated_at) ",
        );
        q.push_values(members, |mut row, m| {
            row.push_bind(queue.to_owned())
                .push_bind(m.member.clone())
                .push_bind(m.available)
                .push_bind(m.capacity)
                .push_bind(m.weight)
                .push_bind(m.pass)
                .push_bind(now);
        });
        q.push(
            " ON CONFLICT (queue, member) DO UPDATE SET available = excluded.available, capacity = excluded.capacity, \
             weight = excluded.weight, pass = excluded.pass, updated_at = excluded.updated_at",
        );
        q.build()
            .execute(self.connection().await?)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn wanted_events(&mut self) -> StoreResult<Vec<String>> {
        let lists: Vec<String> = sqlx::query_scalar("SELECT events FROM webhooks WHERE active")
            .fetch_all(self.connection().await?)
            .await?;
        let mut wanted: Vec<String> = lists
            .iter()
            .flat_map(|l| serde_json::from_str::<Vec<String>>(l).unwrap_or_default())
            .collect();
        wanted.sort();
        wanted.dedup();
        Ok(wanted)
    }

    async fn emit(&mut self, events: &[Emitted]) -> StoreResult<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        let hooks: Vec<(i64, String)> = sqlx::query_as("SELECT id, events FROM webhooks WHERE active ORDER BY id")
            .fetch_all(self.connection().await?)
            .await?;
        let mut rows = Vec::new();
        for (hook, wanted) in &hooks {
            let wanted: Vec<String> = serde_json::from_str(wanted).unwrap_or_default();
            for e in events
                .iter()
                .filter(|e| wanted.iter().any(|w| *w == e.event || w == "*"))
            {
                rows.push((*hook, e));
            }
        }
        for chunk in rows.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, lead_id, payload, status, attempts, next_attempt_at, created_at) ",
            );
            q.push_values(chunk, |mut row, (hook, e)| {
                let at = to_micros(e.at);
                row.push_bind(format!("dlv_{}", uuid::Uuid::now_v7().simple()))
                    .push_bind(*hook)
                    .push_bind(e.event.clone())
                    .push_bind(e.lead_id)
                    .push_bind(e.payload.clone())
                    .push_bind("pending")
                    .push_bind(0_i64)
                    .push_bind(at)
                    .push_bind(at);
            });
            q.build()
                .execute(self.connection().await?)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(rows.len())
    }
}

#[async_trait]
impl<S, DB> HandoffStore for S
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut <DB as Database>::Connection: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> HandoffRow: FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> (Option<i64>,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64, String, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> HandoffLogEntry: FromRow<'r, <DB as Database>::Row>,
    for<'r> HandoffMove: FromRow<'r, <DB as Database>::Row>,
    for<'r> QueueCounts: FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, i64, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> WebhookRow: FromRow<'r, <DB as Database>::Row>,
    for<'r> PendingDelivery: FromRow<'r, <DB as Database>::Row>,
    for<'r> PendingNotification: FromRow<'r, <DB as Database>::Row>,
    for<'r> DeliveryRow: FromRow<'r, <DB as Database>::Row>,
    for<'r> AttemptRow: FromRow<'r, <DB as Database>::Row>,
{
    async fn queue_handoffs(&self, queue: &str, after: Option<QueueCursor>, limit: i64) -> StoreResult<Vec<Handoff>> {
        let (p, c, i) = after.unwrap_or((i64::MAX, i64::MIN, i64::MIN));
        let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE queue = $1 AND status = 'open' \
             AND (priority < $2 OR (priority = $2 AND (created_at > $3 OR (created_at = $3 AND id > $4)))) \
             ORDER BY priority DESC, created_at, id LIMIT $5"
        )))
        .bind(queue)
        .bind(p)
        .bind(c)
        .bind(i)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        handoffs_from(rows)
    }

    async fn claimed_by(&self, member: &str, limit: i64) -> StoreResult<Vec<Handoff>> {
        let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE claimed_by = $1 AND status = 'claimed' \
             ORDER BY claimed_at, id LIMIT $2"
        )))
        .bind(member)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        handoffs_from(rows)
    }

    async fn lead_handoffs(&self, lead: i64, limit: i64) -> StoreResult<Vec<Handoff>> {
        let rows: Vec<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE lead_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(lead)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        handoffs_from(rows)
    }

    async fn handoff(&self, id: i64) -> StoreResult<Option<Handoff>> {
        let row: Option<HandoffRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(Handoff::try_from).transpose()
    }

    async fn handoff_log(&self, id: i64) -> StoreResult<Vec<HandoffLogEntry>> {
        Ok(sqlx::query_as(
            "SELECT handoff_id, action, actor, detail, at, queue FROM handoff_log WHERE handoff_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?)
    }

    async fn handoff_moves(&self, after: Option<i64>, limit: i64) -> StoreResult<(i64, Vec<HandoffMove>)> {
        let Some(after) = after else {
            let last: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM handoff_log")
                .fetch_one(self.pool())
                .await?;
            return Ok((last.unwrap_or(0), Vec::new()));
        };
        let moves: Vec<HandoffMove> = sqlx::query_as(
            "SELECT l.id, l.handoff_id, l.action, h.queue, h.assigned_to \
             FROM handoff_log l JOIN handoffs h ON h.id = l.handoff_id \
             WHERE l.id > $1 ORDER BY l.id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok((moves.last().map_or(after, |m| m.id), moves))
    }

    async fn queue_counts(&self, now: i64) -> StoreResult<Vec<QueueCounts>> {
        // Open and claimed handoffs are one per lead at most, read from the index that says so.
        Ok(sqlx::query_as(
            "SELECT queue, \
                    SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END) AS open, \
                    SUM(CASE WHEN status = 'open' AND assigned_to IS NOT NULL THEN 1 ELSE 0 END) AS assigned, \
                    SUM(CASE WHEN status = 'claimed' THEN 1 ELSE 0 END) AS claimed, \
                    SUM(CASE WHEN status = 'open' AND sla_due_at <= $1 THEN 1 ELSE 0 END) AS overdue \
             FROM handoffs WHERE status IN ('open', 'claimed') GROUP BY queue ORDER BY queue",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?)
    }

    async fn sla_breaches(&self, since: i64, offset: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(queue, ''), (at + $2) / 86400000000 AS day, COUNT(*) \
             FROM handoff_log WHERE action = 'sla_breached' AND at >= $1 \
             GROUP BY COALESCE(queue, ''), (at + $2) / 86400000000 ORDER BY 1, 2",
        )
        .bind(since)
        .bind(offset)
        .fetch_all(self.pool())
        .await?)
    }

    async fn next_handoff_timer(&self) -> StoreResult<Option<i64>> {
        let sla: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(sla_due_at) FROM handoffs WHERE status = 'open' AND sla_breached_at IS NULL AND sla_due_at IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await?;
        let cool: Option<i64> =
            sqlx::query_scalar("SELECT MIN(cooldown_until) FROM leads WHERE cooldown_until IS NOT NULL")
                .fetch_one(self.pool())
                .await?;
        Ok(match (sla, cool) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    async fn create_webhook(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
        now: i64,
        audit: &Change,
    ) -> StoreResult<Webhook> {
        let events = serde_json::to_string(events).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        let row: WebhookRow = sqlx::query_as(
            "INSERT INTO webhooks (url, events, secret, created_by, created_at, active) VALUES ($1, $2, $3, $4, $5, true) \
             RETURNING id, url, events, secret, created_by, created_at, active",
        )
        .bind(url)
        .bind(events)
        .bind(secret)
        .bind(audit.by.actor.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        crate::store::audit::insert::<DB>(&mut *tx, &[audit.about(row.id)], now).await?;
        S::commit(tx).await?;
        Webhook::try_from(row)
    }

    async fn webhooks(&self) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(
            "SELECT id, url, events, secret, created_by, created_at, active FROM webhooks WHERE active ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    async fn webhook(&self, id: i64) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = sqlx::query_as(
            "SELECT id, url, events, secret, created_by, created_at, active FROM webhooks WHERE id = $1 AND active",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(Webhook::try_from).transpose()
    }

    async fn delete_webhook(&self, id: i64, now: i64, audit: &Change) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done: Option<(String, String)> =
            sqlx::query_as("UPDATE webhooks SET active = false WHERE id = $1 AND active RETURNING url, events")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query("UPDATE webhook_deliveries SET status = 'dropped', next_attempt_at = NULL WHERE webhook_id = $1 AND status = 'pending'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if let Some((url, events)) = &done {
            let events: serde_json::Value =
                serde_json::from_str(events).map_err(|e| StoreError::Corrupt(format!("webhook {id} events: {e}")))?;
            let audit = audit.clone().with("url", url.clone()).with("events", events);
            crate::store::audit::insert::<DB>(&mut *tx, &[audit], now).await?;
        }
        S::commit(tx).await?;
        Ok(done.is_some())
    }

    async fn claim_deliveries(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<PendingDelivery>> {
        let skip_locked = <DB as Dialect>::SKIP_LOCKED;
        let mut taken: Vec<PendingDelivery> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET next_attempt_at = $2, attempts = attempts + 1 WHERE id IN \
             (SELECT d.id FROM webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending' AND e.webhook_id = d.webhook_id \
                              AND e.lead_id = d.lead_id AND e.id < d.id) \
              ORDER BY d.next_attempt_at, d.id LIMIT $3{skip_locked}) \
             RETURNING id, delivery_id, webhook_id, event, lead_id, payload, attempts, created_at, '' AS url, '' AS secret"
        )))
        .bind(now)
        .bind(lease)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        if taken.is_empty() {
            return Ok(taken);
        }
        let hooks: Vec<(i64, String, String)> = sqlx::query_as("SELECT id, url, secret FROM webhooks ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        for d in &mut taken {
            if let Some((_, url, secret)) = hooks.iter().find(|(id, _, _)| *id == d.webhook_id) {
                d.url = url.clone();
                d.secret = secret.clone();
            }
        }
        taken.sort_by_key(|d| d.id);
        Ok(taken)
    }

    async fn finish_deliveries(&self, outcomes: &[DeliveryOutcome]) -> StoreResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for chunk in outcomes.chunks(500) {
            let mut q =
                sqlx::QueryBuilder::<DB>::new("WITH v (id, status, status_code, error, at, next_attempt_at) AS (");
            q.push_values(chunk, |mut row, o| {
                row.push_bind(o.id)
                    .push_bind(o.status)
                    .push_bind(o.status_code)
                    .push_bind(o.error.clone())
                    .push_bind(o.at)
                    .push_bind(o.next_attempt_at);
            });
            q.push(
                ") UPDATE webhook_deliveries SET \
                 status = (SELECT status FROM v WHERE v.id = webhook_deliveries.id), \
                 last_status = (SELECT status_code FROM v WHERE v.id = webhook_deliveries.id), \
                 last_error = (SELECT error FROM v WHERE v.id = webhook_deliveries.id), \
                 next_attempt_at = (SELECT next_attempt_at FROM v WHERE v.id = webhook_deliveries.id), \
                 delivered_at = (SELECT CASE WHEN status = 'delivered' THEN at END FROM v WHERE v.id = webhook_deliveries.id) \
                 WHERE id IN (SELECT id FROM v) AND status = 'pending'",
            );
            q.build().execute(&mut *tx).await.map_err(StoreError::from_sqlx)?;
            let mut log = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) ",
            );
            log.push_values(chunk, |mut row, o| {
                row.push_bind(o.id)
                    .push_bind(o.attempt)
                    .push_bind(o.at)
                    .push_bind(o.status_code)
                    .push_bind(o.error.clone())
                    .push_bind(o.duration_ms);
            });
            log.build().execute(&mut *tx).await.map_err(StoreError::from_sqlx)?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_notifications(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<PendingNotification>> {
        let skip_locked = <DB as Dialect>::SKIP_LOCKED;
        let mut taken: Vec<PendingNotification> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE notifications SET next_attempt_at = $2, attempts = attempts + 1 WHERE id IN \
             (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
              ORDER BY next_attempt_at, id LIMIT $3{skip_locked}) \
             RETURNING id, recipient, subject, body, attempts"
        )))
        .bind(now)
        .bind(lease)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        taken.sort_by_key(|n| n.id);
        Ok(taken)
    }

    async fn finish_notifications(&self, outcomes: &[NotificationOutcome]) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        for o in outcomes {
            sqlx::query(
                "UPDATE notifications SET status = $2, last_error = $3, next_attempt_at = $4, \
                 sent_at = CASE WHEN $2 = 'sent' THEN $5 END WHERE id = $1 AND status = 'pending'",
            )
            .bind(o.id)
            .bind(o.status)
            .bind(o.error.clone())
            .bind(o.next_attempt_at)
            .bind(o.at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn deliveries(&self, webhook: i64, before: Option<i64>, limit: i64) -> StoreResult<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT id, delivery_id, event, lead_id, status, attempts, created_at, delivered_at, next_attempt_at, \
             last_status, last_error, payload FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(webhook)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let (lo, hi) = match (rows.last(), rows.first()) {
            (Some(lo), Some(hi)) => (lo.id, hi.id),
            _ => return Ok(Vec::new()),
        };
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT a.delivery_id, a.attempt, a.at, a.status_code, a.error, a.duration_ms FROM webhook_attempts a \
             JOIN webhook_deliveries d ON d.id = a.delivery_id \
             WHERE d.webhook_id = $1 AND a.delivery_id BETWEEN $2 AND $3 ORDER BY a.delivery_id, a.attempt",
        )
        .bind(webhook)
        .bind(lo)
        .bind(hi)
        .fetch_all(self.pool())
        .await?;
        Ok(deliveries_from(rows, attempts))
    }
}
