//! Portable SQL: erasure and the other `Store` methods whose text is the same on both backends,
//! written once for both adapters by `store_impl!`.

/// What erasing a lead deletes, in order (children before what they point at).
pub(crate) const ERASE: [&str; 13] = [
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
