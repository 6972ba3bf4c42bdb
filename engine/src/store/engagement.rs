//! Human engagement with messages: the first human open and the first human click of each,
//! counted per campaign step (unique opens and clicks).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::clock::to_micros;
use crate::store::sql::{Dialect, SqlStore, SqlTx};

/// Shards of a step's engagement counters: concurrent writers add to different rows.
const SHARDS: i64 = 8;

/// What a person did with a message, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Opened,
    Clicked,
}

impl Engagement {
    fn column(self) -> &'static str {
        match self {
            Engagement::Opened => "opened_at",
            Engagement::Clicked => "clicked_at",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Engagement::Opened => "opened",
            Engagement::Clicked => "clicked",
        }
    }
}

/// A step's unique human opens and clicks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepEngagement {
    pub step: String,
    pub opened: i64,
    pub clicked: i64,
}

/// The engagement part of a write transaction.
#[async_trait]
pub trait EngagementTx: Send {
    /// Records that a person opened or clicked in messages, each at its time: a message's
    /// first of each is kept and counted on its campaign step; later ones and unknown
    /// messages change nothing. Returns the messages whose first it was.
    async fn engaged(&mut self, what: Engagement, messages: &[(i64, DateTime<Utc>)]) -> StoreResult<Vec<i64>>;
}

/// Reading engagement.
#[async_trait]
pub trait EngagementStore: Send + Sync {
    /// Per step of a campaign (all versions), its messages' unique human opens and clicks.
    async fn engagement(&self, campaign: &str) -> StoreResult<Vec<StepEngagement>>;
}

#[async_trait]
impl<T, DB> EngagementTx for T
where
    T: SqlTx<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (String, String, i64): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn engaged(&mut self, what: Engagement, messages: &[(i64, DateTime<Utc>)]) -> StoreResult<Vec<i64>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // A message named twice keeps its earliest time.
        let mut earliest: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
        for (id, at) in messages {
            let at = to_micros(*at);
            earliest.entry(*id).and_modify(|t| *t = (*t).min(at)).or_insert(at);
        }
        let pairs: Vec<[i64; 2]> = earliest.into_iter().map(|(id, at)| [id, at]).collect();
        let column = what.column();
        let firsts: Vec<(String, String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH given AS ({pairs}) \
             UPDATE messages SET {column} = (SELECT at FROM given WHERE given.id = messages.id) \
             WHERE id IN (SELECT id FROM given) AND {column} IS NULL RETURNING campaign_id, step, id",
            pairs = DB::ID_TIME_PAIRS
        )))
        .bind(serde_json::to_string(&pairs).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .fetch_all(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        let mut counts: std::collections::BTreeMap<(String, String, i64), i64> = Default::default();
        for (campaign, step, id) in &firsts {
            *counts
                .entry((campaign.clone(), step.clone(), id.rem_euclid(SHARDS)))
                .or_default() += 1;
        }
        // One row per step and shard the batch touched.
        for ((campaign, step, shard), n) in counts {
            sqlx::query(
                "INSERT INTO engagement_counts (campaign_id, step, kind, shard, n) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (campaign_id, step, kind, shard) DO UPDATE SET n = engagement_counts.n + excluded.n",
            )
            .bind(campaign)
            .bind(step)
            .bind(what.kind())
            .bind(shard)
            .bind(n)
            .execute(self.connection().await?)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        Ok(firsts.into_iter().map(|(_, _, id)| id).collect())
    }
}

#[async_trait]
impl<S, DB> EngagementStore for S
where
    S: SqlStore<DB = DB>,
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (String, String, i64): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn engagement(&self, campaign: &str) -> StoreResult<Vec<StepEngagement>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT step, kind, CAST(SUM(n) AS BIGINT) FROM engagement_counts WHERE campaign_id = $1 \
             GROUP BY step, kind ORDER BY step",
        )
        .bind(campaign)
        .fetch_all(self.pool())
        .await?;
        let mut steps: Vec<StepEngagement> = Vec::new();
        for (step, kind, n) in rows {
            if steps.last().is_none_or(|s| s.step != step) {
                steps.push(StepEngagement {
                    step: step.clone(),
                    ..Default::default()
                });
            }
            let slot = steps.last_mut().expect("pushed above");
            match kind.as_str() {
                "opened" => slot.opened = n,
                "clicked" => slot.clicked = n,
                other => return Err(StoreError::Corrupt(format!("engagement count of kind {other:?}"))),
            }
        }
        Ok(steps)
    }
}
