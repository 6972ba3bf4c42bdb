//! Deployed campaigns: versions, status, and the counts per step.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::audit::Change;
use crate::clock::{from_micros, to_micros};
use crate::store::sql::{Dialect, SqlStore};
use chrono::{DateTime, Utc};

/// Deployed campaigns: versions, status, and the counts per step.
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Records a deploy: a campaign version not seen before is kept beside the earlier ones, the
    /// current version moves to it, and campaigns no longer deployed are retired. Deploying
    /// unchanged campaigns changes nothing. With `deployment`, the deployment is recorded in
    /// the same transaction, with what it changed; its id is returned.
    async fn deploy_campaigns(
        &self,
        deployed: &[CampaignVersion],
        deployment: Option<&NewDeployment>,
        now: DateTime<Utc>,
    ) -> StoreResult<(DeployReport, Option<i64>)>;
    /// Recorded deployments, newest first: up to `limit` of those before `before` (an id).
    async fn deployments(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<DeploymentHead>>;
    /// One deployment with its files; the latest when `id` is `None`.
    async fn deployment(&self, id: Option<i64>) -> StoreResult<Option<Deployment>>;
    /// The latest deployment's id: what other processes on the same database look at to
    /// follow a deploy.
    async fn latest_deployment_id(&self) -> StoreResult<Option<i64>>;
    /// Every campaign ever deployed, with its current version.
    async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>>;
    /// Per step of a campaign (all versions): journey lines by outcome, arrivals at the step,
    /// and enrollments waiting there now. Read from counters, in O(steps).
    async fn step_counts(&self, campaign: &str) -> StoreResult<Vec<StepCount>>;
    /// Enrollments of a campaign waiting now, per step and version.
    async fn waiting_by_version(&self, campaign: &str) -> StoreResult<Vec<(String, String, i64)>>;
    /// Every deployed version of a campaign, oldest first.
    async fn campaign_versions(&self, id: &str) -> StoreResult<Vec<CampaignVersion>>;
    /// How many enrollments of a campaign are running (active or waiting), on one version or
    /// on all of them.
    async fn open_enrollments(&self, campaign: &str, version: Option<&str>) -> StoreResult<i64>;
    /// The running enrollments of a campaign at one step, by lead: up to `limit` of those with
    /// a lead id above `after`.
    async fn at_step(&self, campaign: &str, step: &str, after: Option<i64>, limit: i64) -> StoreResult<Vec<AtStep>>;
    /// Pauses or resumes a deployed campaign, recording `audit` (with the status it had) when
    /// that changes it; false when there is no such (unretired) campaign.
    async fn set_campaign_status(
        &self,
        id: &str,
        status: CampaignStatus,
        now: DateTime<Utc>,
        audit: &Change,
    ) -> StoreResult<bool>;
}

#[async_trait]
impl<S, DB> CampaignStore for S
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut <DB as Database>::Connection: Executor<'c, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (Option<i64>,): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String,): FromRow<'r, <DB as Database>::Row>,
    for<'r> DeploymentRow: FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> (i64, Option<i64>, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String, String): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String, i64, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String, String, i64, i64, String, String, i64): FromRow<'r, <DB as Database>::Row>,
    for<'r> (String, String, i64, String, String, String, String, String, i64): FromRow<'r, <DB as Database>::Row>,
{
    async fn deploy_campaigns(
        &self,
        deployed: &[CampaignVersion],
        deployment: Option<&NewDeployment>,
        now: DateTime<Utc>,
    ) -> StoreResult<(DeployReport, Option<i64>)> {
        let mut tx = self.write_tx().await?;
        let current: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, version, status FROM campaigns ORDER BY id")
                .fetch_all(&mut *tx)
                .await?;
        let current = current
            .into_iter()
            .map(|(id, version, status)| Ok((id, version, status.parse::<CampaignStatus>()?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut report = DeployReport::default();
        for campaign in deployed {
            let before = current.iter().find(|(id, _, _)| *id == campaign.campaign_id);
            match before {
                Some((_, version, status)) if *version == campaign.version && *status != CampaignStatus::Retired => {
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
            .bind(campaign.campaign_id.as_str())
            .bind(campaign.version.as_str())
            .bind(campaign.name.as_str())
            .bind(campaign.campaign_type.as_str())
            .bind(campaign.definition.as_str())
            .bind(campaign.source.as_str())
            .bind(campaign.file.as_str())
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
            sqlx::query(
                "INSERT INTO campaigns (id, version, status, updated_at) VALUES ($1, $2, 'active', $3) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, \
                 status = CASE WHEN campaigns.status = 'retired' THEN 'active' ELSE campaigns.status END",
            )
            .bind(campaign.campaign_id.as_str())
            .bind(campaign.version.as_str())
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        for (id, _, status) in &current {
            if *status != CampaignStatus::Retired && !deployed.iter().any(|c| c.campaign_id == *id) {
                sqlx::query("UPDATE campaigns SET status = 'retired', updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(to_micros(now))
                    .execute(&mut *tx)
                    .await?;
                report.retired.push(id.clone());
            }
        }
        let id = match deployment {
            Some(d) => {
                let id: (i64,) = sqlx::query_as(
                    "INSERT INTO deployments (deployed_at, actor, origin, content_hash, files, warnings, report, restored_from) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(to_micros(now))
                .bind(d.actor.as_str())
                .bind(d.origin.as_str())
                .bind(d.content_hash.as_str())
                .bind(to_json(&d.files))
                .bind(to_json(&d.warnings))
                .bind(to_json(&report))
                .bind(d.restored_from)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                audit::insert::<DB>(&mut *tx, &[d.audit(id.0, &report)], to_micros(now)).await?;
                Some(id.0)
            }
            None => None,
        };
        S::commit(tx).await?;
        Ok((report, id))
    }

    async fn deployments(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<DeploymentHead>> {
        let rows: Vec<DeploymentRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_HEAD} FROM deployments WHERE id < $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(DeploymentRow::head).collect()
    }

    async fn deployment(&self, id: Option<i64>) -> StoreResult<Option<Deployment>> {
        let which = match id {
            Some(_) => "WHERE id = $1",
            None => "ORDER BY id DESC LIMIT 1",
        };
        let query = format!("SELECT {DEPLOYMENT_HEAD}, files FROM deployments {which}");
        let mut query = sqlx::query_as(AssertSqlSafe(query));
        if let Some(id) = id {
            query = query.bind(id);
        }
        let row: Option<DeploymentRow> = query.fetch_optional(self.pool()).await?;
        let Some(mut row) = row else { return Ok(None) };
        let files = from_json(&row.files.take().unwrap_or_default(), "deployment files")?;
        Ok(Some(Deployment {
            head: row.head()?,
            files,
        }))
    }

    async fn latest_deployment_id(&self) -> StoreResult<Option<i64>> {
        let (id,): (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM deployments")
            .fetch_one(self.pool())
            .await?;
        Ok(id)
    }

    async fn campaigns(&self) -> StoreResult<Vec<CampaignRecord>> {
        let rows: Vec<(String, String, String, i64, i64, String, String, i64)> = sqlx::query_as(
            "SELECT c.id, c.version, c.status, c.updated_at, v.number, v.name, v.campaign_type, v.deployed_at \
             FROM campaigns c JOIN campaign_versions v ON v.campaign_id = c.id AND v.version = c.version ORDER BY c.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(
                |(id, version, status, updated_at, number, name, campaign_type, deployed_at)| {
                    Ok(CampaignRecord {
                        id,
                        version,
                        number,
                        status: status.parse()?,
                        name,
                        campaign_type,
                        deployed_at: from_micros(deployed_at),
                        updated_at: from_micros(updated_at),
                    })
                },
            )
            .collect()
    }

    async fn step_counts(&self, campaign: &str) -> StoreResult<Vec<StepCount>> {
        let mut steps: std::collections::BTreeMap<String, StepCount> = std::collections::BTreeMap::new();
        let counted: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT step, outcome, CAST(SUM(entered) AS BIGINT), CAST(SUM(lines) AS BIGINT) \
             FROM step_counts WHERE campaign_id = $1 GROUP BY step, outcome",
        )
        .bind(campaign)
        .fetch_all(self.pool())
        .await?;
        for (step, outcome, entered, lines) in counted {
            let slot = step_slot(&mut steps, step);
            slot.entered += entered;
            slot.outcomes.insert(outcome, lines);
        }
        for (step, _, n) in self.waiting_by_version(campaign).await? {
            step_slot(&mut steps, step).waiting += n;
        }
        Ok(steps.into_values().collect())
    }

    async fn waiting_by_version(&self, campaign: &str) -> StoreResult<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT step, version, COUNT(*) FROM enrollments WHERE campaign_id = $1 AND status = 'waiting' \
             GROUP BY step, version",
        )
        .bind(campaign)
        .fetch_all(self.pool())
        .await?)
    }

    async fn campaign_versions(&self, id: &str) -> StoreResult<Vec<CampaignVersion>> {
        let rows: Vec<(String, String, i64, String, String, String, String, String, i64)> = sqlx::query_as(
            "SELECT campaign_id, version, number, name, campaign_type, definition, source, file, deployed_at \
             FROM campaign_versions WHERE campaign_id = $1 ORDER BY number",
        )
        .bind(id)
        .fetch_all(self.pool())
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

    async fn at_step(&self, campaign: &str, step: &str, after: Option<i64>, limit: i64) -> StoreResult<Vec<AtStep>> {
        let rows: Vec<(i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT lead_id, wake_at, updated_at FROM enrollments \
             WHERE campaign_id = $1 AND status IN ('active', 'waiting') AND step = $2 AND lead_id > $3 \
             ORDER BY lead_id LIMIT $4",
        )
        .bind(campaign)
        .bind(step)
        .bind(after.unwrap_or(i64::MIN))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(lead, wake_at, since)| AtStep {
                lead: crate::lead::LeadId(lead),
                wakes_at: wake_at.map(from_micros),
                since: from_micros(since),
            })
            .collect())
    }

    async fn open_enrollments(&self, campaign: &str, version: Option<&str>) -> StoreResult<i64> {
        // The condition is the open-enrollment index's own, so the count reads that index.
        let open = "SELECT COUNT(*) FROM enrollments WHERE campaign_id = $1 AND status IN ('active', 'waiting')";
        let count: i64 = match version {
            Some(version) => {
                sqlx::query_scalar(AssertSqlSafe(format!("{open} AND version = $2")))
                    .bind(campaign)
                    .bind(version)
                    .fetch_one(self.pool())
                    .await?
            }
            None => sqlx::query_scalar(open).bind(campaign).fetch_one(self.pool()).await?,
        };
        Ok(count)
    }

    async fn set_campaign_status(
        &self,
        id: &str,
        status: CampaignStatus,
        now: DateTime<Utc>,
        audit: &Change,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let was: Option<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT status FROM campaigns WHERE id = $1 AND status <> 'retired'{}",
            <DB as Dialect>::FOR_UPDATE
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((was,)) = was else {
            return Ok(false);
        };
        if was != status.as_str() {
            sqlx::query("UPDATE campaigns SET status = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(status.as_str())
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await?;
            let audit = audit.clone().with("was", was);
            audit::insert::<DB>(&mut *tx, &[audit], to_micros(now)).await?;
        }
        S::commit(tx).await?;
        Ok(true)
    }
}

/// The columns of a deployment's head, in [`DeploymentRow`]'s order.
const DEPLOYMENT_HEAD: &str = "id, deployed_at, actor, origin, content_hash, warnings, report, restored_from";

/// A deployment's head as stored (JSON in text columns, on both backends).
#[derive(sqlx::FromRow)]
pub struct DeploymentRow {
    id: i64,
    deployed_at: i64,
    actor: String,
    origin: String,
    content_hash: String,
    warnings: String,
    report: String,
    restored_from: Option<i64>,
    /// Read only for one deployment (`files` is left out of lists).
    #[sqlx(default)]
    files: Option<String>,
}

impl DeploymentRow {
    fn head(self) -> StoreResult<DeploymentHead> {
        Ok(DeploymentHead {
            id: self.id,
            deployed_at: from_micros(self.deployed_at),
            actor: self.actor,
            origin: self.origin.parse()?,
            content_hash: self.content_hash,
            restored_from: self.restored_from,
            report: from_json(&self.report, "deployment report")?,
            warnings: from_json(&self.warnings, "deployment warnings")?,
        })
    }
}
