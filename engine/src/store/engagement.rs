//! Human engagement with messages: the first human open and the first human click of each,
//! counted per campaign step (unique opens and clicks).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::clock::to_micros;
use crate::store::sql::{SqlStore, SqlTx};

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
    /// Records that a person opened or clicked in a message at `at`: a message's first of each
    /// is kept and counted on its campaign step; later ones and unknown messages change
    /// nothing. True when it was the first.
    async fn engaged(&mut self, what: Engagement, message: i64, at: DateTime<Utc>) -> StoreResult<bool>;
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
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn engaged(&mut self, what: Engagement, message: i64, at: DateTime<Utc>) -> StoreResult<bool> {
        let column = what.column();
        let first: Option<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE messages SET {column} = $2 WHERE id = $1 AND {column} IS NULL RETURNING campaign_id, step"
        )))
        .bind(message)
        .bind(to_micros(at))
        .fetch_optional(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        let Some((campaign, step)) = first else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO engagement_counts (campaign_id, step, kind, shard, n) VALUES ($1, $2, $3, $4, 1) \
             ON CONFLICT (campaign_id, step, kind, shard) DO UPDATE SET n = engagement_counts.n + 1",
        )
        .bind(campaign)
        .bind(step)
        .bind(what.kind())
        .bind(message.rem_euclid(SHARDS))
        .execute(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(true)
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
