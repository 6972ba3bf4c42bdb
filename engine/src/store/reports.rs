//! The counters reports read: what each campaign step's messages did, per hour of sending
//! (`message_counts`), added to in the transactions that record sends and ingest the events
//! about messages.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::report::attribution::{Conversion, Credit, Touch};
use crate::report::queue::{HandoffDayRow, HandoffFact};
use crate::report::{day_number, CountKey, CountRow, DayRow, MessageFigures, Piece};
use crate::store::sql::{Dialect, SqlStore, SqlTx};

/// An addition to one counter row: a step's messages of one version, template, channel and
/// language, sent in hour `hour` (hours since the epoch), on shard `shard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountDelta {
    pub key: CountKey,
    pub hour: i64,
    pub shard: i64,
    pub figures: MessageFigures,
}

/// A message as its counters know it: what it is about and the hour it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedMessage {
    pub id: i64,
    /// The lead it went to: only events about that lead count for it.
    pub lead: i64,
    pub key: CountKey,
    pub hour: i64,
}

/// An addition to a queue's handoff counter (`handoff_counts`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HandoffCount {
    pub queue: String,
    pub hour: i64,
    /// Who it concerns; empty when no member does.
    pub member: String,
    pub fact: HandoffFact,
    /// A rejection's reason, a claim wait's bucket; else empty.
    pub detail: String,
    pub shard: i64,
    pub n: i64,
}

/// An addition to the time-spent-waiting counters (`wait_counts`): enrollments of a campaign
/// version that left wait step `step` in hour `hour` having waited a duration in `bucket`
/// (`report::queue::wait_bucket`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitCount {
    pub campaign: String,
    pub step: String,
    pub version: String,
    pub hour: i64,
    pub bucket: i64,
    pub shard: i64,
    pub n: i64,
}

/// Waits counted for a campaign's step and version in a span: how many left it having waited
/// a duration in `bucket`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WaitRow {
    pub step: String,
    pub version: String,
    pub bucket: i64,
    pub n: i64,
}

/// An addition to the conversion counters (`conversion_counts`): outcomes of one kind in hour
/// `hour`, credited one way to a campaign step, `lag_days` after it reached the lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionCount {
    pub campaign: String,
    pub step: String,
    pub credit: Credit,
    pub outcome: Conversion,
    pub hour: i64,
    pub lag_days: i64,
    pub shard: i64,
    pub n: i64,
}

/// Conversion counters of a campaign in a span, summed per step, credit and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionRow {
    pub step: String,
    pub credit: Credit,
    pub outcome: Conversion,
    pub n: i64,
}

/// Which counters a report reads.
#[derive(Debug, Clone, Copy)]
pub enum CountScope<'a> {
    Campaign(&'a str),
    Template(&'a str),
}

/// Adds batches of deltas, merged per row; the rows written in key order, so that two writers
/// never wait on each other's rows crosswise.
pub fn merge_deltas(deltas: impl IntoIterator<Item = CountDelta>) -> Vec<CountDelta> {
    let mut merged: std::collections::BTreeMap<(CountKey, i64, i64), MessageFigures> = Default::default();
    for d in deltas {
        merged.entry((d.key, d.hour, d.shard)).or_default().add(&d.figures);
    }
    merged
        .into_iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|((key, hour, shard), figures)| CountDelta {
            key,
            hour,
            shard,
            figures,
        })
        .collect()
}

/// The counter part of a write transaction.
#[async_trait]
pub trait ReportTx: Send {
    /// Adds to the counters (deltas merged with `merge_deltas`).
    async fn count_messages(&mut self, deltas: &[CountDelta]) -> StoreResult<()>;
    /// Adds to the conversion counters.
    async fn count_conversions(&mut self, counts: &[ConversionCount]) -> StoreResult<()>;
    /// Each campaign step's latest message sent to each of `leads` since `since`
    /// (microseconds), as (lead, touch).
    async fn touches(&mut self, leads: &[i64], since: i64) -> StoreResult<Vec<(i64, Touch)>>;
    /// Adds to the time-spent-waiting counters.
    async fn count_waits(&mut self, counts: &[WaitCount]) -> StoreResult<()>;
    /// Adds to the queues' handoff counters.
    async fn count_handoffs(&mut self, counts: &[HandoffCount]) -> StoreResult<()>;
    /// The sent messages among `ids`, with what their counters are keyed by.
    async fn counted_messages(&mut self, ids: &[i64]) -> StoreResult<Vec<CountedMessage>>;
}

/// Reading the counters.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// The counters of a campaign or a template for hours `from` ≤ hour < `to`, summed per
    /// key and hour.
    async fn message_counts(&self, scope: CountScope<'_>, from: i64, to: i64) -> StoreResult<Vec<CountRow>>;
    /// The counters of a campaign or a template summed per key and local day, over the
    /// pieces of a span (`Span::pieces`: hours with one UTC offset each). Grouped in the
    /// database: a report reads a row per key and day, not per hour and shard.
    async fn message_counts_by_day(&self, scope: CountScope<'_>, pieces: &[Piece]) -> StoreResult<Vec<DayRow>>;
    /// A campaign's conversion counters for outcomes in hours `from` ≤ hour < `to`, at most
    /// `window_days` after the touch credited, summed per step, credit and outcome.
    async fn conversion_counts(
        &self,
        campaign: &str,
        from: i64,
        to: i64,
        window_days: i64,
    ) -> StoreResult<Vec<ConversionRow>>;
    /// A campaign's waits that ended in hours `from` ≤ hour < `to`, summed per step, version
    /// and bucket.
    async fn wait_counts(&self, campaign: &str, from: i64, to: i64) -> StoreResult<Vec<WaitRow>>;
    /// A queue's handoff counters summed per member, fact, detail and local day over the
    /// pieces of a span.
    async fn handoff_counts_by_day(&self, queue: &str, pieces: &[Piece]) -> StoreResult<Vec<HandoffDayRow>>;
}

/// The counters' upsert: one statement for a batch, bound as one JSON array of arrays.
pub(crate) fn count_sql<DB: Dialect>() -> String {
    let names = MessageFigures::NAMES;
    format!(
        "INSERT INTO message_counts (campaign_id, step, version, template, channel, language, hour, shard, {columns}) \
         SELECT * FROM ({rows}) AS r WHERE true {on_conflict}",
        columns = names.join(", "),
        rows = DB::json_array_rows(6, 2 + names.len()),
        on_conflict = add_on_conflict(),
    )
}

/// The message counters' key, but for the shard.
pub(crate) const MESSAGE_KEY: &str = "campaign_id, hour, step, version, template, channel, language";

/// An insert's tail that adds each counter given to the row already there.
pub(crate) fn add_on_conflict() -> String {
    let adds: Vec<String> = MessageFigures::NAMES
        .iter()
        .map(|n| format!("{n} = message_counts.{n} + excluded.{n}"))
        .collect();
    format!("ON CONFLICT ({MESSAGE_KEY}, shard) DO UPDATE SET {}", adds.join(", "))
}

/// The JSON the upsert binds.
pub(crate) fn count_json(deltas: &[CountDelta]) -> StoreResult<String> {
    let rows: Vec<serde_json::Value> = deltas
        .iter()
        .map(|d| {
            let k = &d.key;
            let mut row = vec![
                k.campaign.as_str().into(),
                k.step.as_str().into(),
                k.version.as_str().into(),
                k.template.as_str().into(),
                k.channel.as_str().into(),
                k.language.as_str().into(),
                d.hour.into(),
                d.shard.into(),
            ];
            row.extend(d.figures.to_array().map(serde_json::Value::from));
            serde_json::Value::Array(row)
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Adds deltas on a connection (inside the caller's transaction).
pub(crate) async fn count_on<'c, DB, E>(conn: E, deltas: &[CountDelta]) -> StoreResult<()>
where
    DB: Dialect,
    E: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    // Shards only part writers that run at once: as many as the backend has of those.
    let deltas = merge_deltas(deltas.iter().map(|d| CountDelta {
        shard: d.shard.rem_euclid(DB::COUNTER_SHARDS),
        ..d.clone()
    }));
    if deltas.is_empty() {
        return Ok(());
    }
    sqlx::query(AssertSqlSafe(count_sql::<DB>()))
        .bind(count_json(&deltas)?)
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// An addition to a one-number counter table (`n`), keyed by text columns then integer
/// columns, the last of them the shard.
pub(crate) trait Counted {
    const TABLE: &'static str;
    const TEXTS: &'static [&'static str];
    /// The integer key columns, `shard` last.
    const INTS: &'static [&'static str];
    /// The row's text key, its integer key (the shard as given), and how many to add.
    fn key(&self) -> (Vec<String>, Vec<i64>, i64);
}

impl Counted for HandoffCount {
    const TABLE: &'static str = "handoff_counts";
    const TEXTS: &'static [&'static str] = &["queue", "member", "fact", "detail"];
    const INTS: &'static [&'static str] = &["hour", "shard"];
    fn key(&self) -> (Vec<String>, Vec<i64>, i64) {
        let texts = vec![
            self.queue.clone(),
            self.member.clone(),
            self.fact.as_str().to_owned(),
            self.detail.clone(),
        ];
        (texts, vec![self.hour, self.shard], self.n)
    }
}

impl Counted for WaitCount {
    const TABLE: &'static str = "wait_counts";
    const TEXTS: &'static [&'static str] = &["campaign_id", "step", "version"];
    const INTS: &'static [&'static str] = &["hour", "bucket", "shard"];
    fn key(&self) -> (Vec<String>, Vec<i64>, i64) {
        let texts = vec![self.campaign.clone(), self.step.clone(), self.version.clone()];
        (texts, vec![self.hour, self.bucket, self.shard], self.n)
    }
}

impl Counted for ConversionCount {
    const TABLE: &'static str = "conversion_counts";
    const TEXTS: &'static [&'static str] = &["campaign_id", "step", "credit", "outcome"];
    const INTS: &'static [&'static str] = &["hour", "lag_days", "shard"];
    fn key(&self) -> (Vec<String>, Vec<i64>, i64) {
        let texts = vec![
            self.campaign.clone(),
            self.step.clone(),
            self.credit.as_str().to_owned(),
            self.outcome.as_str().to_owned(),
        ];
        (texts, vec![self.hour, self.lag_days, self.shard], self.n)
    }
}

/// Adds `counts` to their counter table on a connection, inside the caller's transaction:
/// shards taken within `Dialect::COUNTER_SHARDS`, merged per row and written in key order (so
/// that two writers never wait on each other's rows crosswise), in one statement.
async fn add_counted<'c, DB, E, C>(conn: E, counts: &[C]) -> StoreResult<()>
where
    DB: Dialect,
    E: Executor<'c, Database = DB>,
    C: Counted,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let mut merged: std::collections::BTreeMap<(Vec<String>, Vec<i64>), i64> = Default::default();
    for c in counts {
        let (texts, mut ints, n) = c.key();
        if let Some(shard) = ints.last_mut() {
            *shard = shard.rem_euclid(DB::COUNTER_SHARDS);
        }
        *merged.entry((texts, ints)).or_default() += n;
    }
    merged.retain(|_, n| *n != 0);
    if merged.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = merged
        .into_iter()
        .map(|((t, i), n)| {
            let mut row: Vec<serde_json::Value> = t.into_iter().map(serde_json::Value::from).collect();
            row.extend(i.into_iter().map(serde_json::Value::from));
            row.push(n.into());
            serde_json::Value::Array(row)
        })
        .collect();
    let table = C::TABLE;
    let key = [C::TEXTS, C::INTS].concat().join(", ");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} ({key}, n) SELECT * FROM ({rows}) AS r WHERE true \
         ON CONFLICT ({key}) DO UPDATE SET n = {table}.n + excluded.n",
        rows = DB::json_array_rows(C::TEXTS.len(), C::INTS.len() + 1)
    )))
    .bind(serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    .execute(conn)
    .await
    .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// `add_counted` in a write transaction; asking for the connection takes a staged SQLite
/// transaction's turn, so only with work.
async fn add_in<T, DB, C>(tx: &mut T, counts: &[C]) -> StoreResult<()>
where
    T: SqlTx<DB = DB>,
    DB: Dialect,
    C: Counted + Sync,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    if counts.is_empty() {
        return Ok(());
    }
    add_counted(tx.connection().await?, counts).await
}

/// A campaign step's latest message to a lead, as read.
#[derive(sqlx::FromRow)]
pub struct TouchRow {
    lead_id: i64,
    campaign_id: String,
    step: String,
    sent_at: i64,
}

/// A conversion counter row as the read returns it.
#[derive(sqlx::FromRow)]
pub struct ConversionReadRow {
    step: String,
    credit: String,
    outcome: String,
    n: i64,
}

/// A handoff counter row as the read returns it.
#[derive(sqlx::FromRow)]
pub struct HandoffReadRow {
    member: String,
    fact: String,
    detail: String,
    bucket: i64,
    n: i64,
}

/// A counter row as the read returns it.
#[derive(sqlx::FromRow)]
pub struct ReadRow {
    step: String,
    version: String,
    template: String,
    channel: String,
    language: String,
    campaign_id: String,
    bucket: i64,
    sent: i64,
    failed: i64,
    skipped: i64,
    bounced_hard: i64,
    bounced_soft: i64,
    complained: i64,
    unsubscribed: i64,
    opened: i64,
    opens: i64,
    clicked: i64,
    clicks: i64,
    opens_automated: i64,
    clicks_automated: i64,
}

/// A message's counter key as read.
#[derive(sqlx::FromRow)]
pub struct MessageKeyRow {
    id: i64,
    lead_id: i64,
    campaign_id: String,
    step: String,
    version: String,
    template: String,
    channel: String,
    language: Option<String>,
    sent_at: i64,
}

#[async_trait]
impl<T, DB> ReportTx for T
where
    T: SqlTx<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> MessageKeyRow: FromRow<'r, DB::Row>,
    for<'r> TouchRow: FromRow<'r, DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn count_messages(&mut self, deltas: &[CountDelta]) -> StoreResult<()> {
        // Asking for the connection takes a staged SQLite transaction's turn: only with work.
        if deltas.is_empty() {
            return Ok(());
        }
        count_on(self.connection().await?, deltas).await
    }

    async fn count_conversions(&mut self, counts: &[ConversionCount]) -> StoreResult<()> {
        add_in(self, counts).await
    }

    async fn touches(&mut self, leads: &[i64], since: i64) -> StoreResult<Vec<(i64, Touch)>> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<[i64; 2]> = leads.iter().map(|id| [*id, 0]).collect();
        // A message is created before it is sent, at most a few days before (held by a send
        // window or the rates): reading from a week earlier finds it by the lead's index.
        let rows: Vec<TouchRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT lead_id, campaign_id, step, CAST(MAX(sent_at) AS BIGINT) AS sent_at FROM messages \
             WHERE lead_id IN (SELECT id FROM ({pairs}) AS given) AND created_at >= $2 AND sent_at >= $3 \
             GROUP BY lead_id, campaign_id, step",
            pairs = DB::ID_TIME_PAIRS
        )))
        .bind(serde_json::to_string(&pairs).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(since - 7 * 86_400_000_000)
        .bind(since)
        .fetch_all(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.lead_id,
                    Touch {
                        campaign: r.campaign_id,
                        step: r.step,
                        sent_at: r.sent_at,
                    },
                )
            })
            .collect())
    }

    async fn count_waits(&mut self, counts: &[WaitCount]) -> StoreResult<()> {
        add_in(self, counts).await
    }

    async fn count_handoffs(&mut self, counts: &[HandoffCount]) -> StoreResult<()> {
        add_in(self, counts).await
    }

    async fn counted_messages(&mut self, ids: &[i64]) -> StoreResult<Vec<CountedMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<[i64; 2]> = ids.iter().map(|id| [*id, 0]).collect();
        let rows: Vec<MessageKeyRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, lead_id, campaign_id, step, version, template, channel, language, sent_at FROM messages \
             WHERE id IN (SELECT id FROM ({pairs}) AS given) AND sent_at IS NOT NULL",
            pairs = DB::ID_TIME_PAIRS
        )))
        .bind(serde_json::to_string(&pairs).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .fetch_all(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|r| CountedMessage {
                id: r.id,
                lead: r.lead_id,
                hour: crate::report::hour_of(r.sent_at),
                key: CountKey {
                    campaign: r.campaign_id,
                    step: r.step,
                    version: r.version,
                    template: r.template,
                    channel: r.channel,
                    language: r.language.unwrap_or_else(|| "zh".into()),
                },
            })
            .collect())
    }
}

#[async_trait]
impl<S, DB> ReportStore for S
where
    S: SqlStore<DB = DB>,
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> ReadRow: FromRow<'r, DB::Row>,
    for<'r> HandoffReadRow: FromRow<'r, DB::Row>,
    for<'r> WaitRow: FromRow<'r, DB::Row>,
    for<'r> ConversionReadRow: FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn conversion_counts(
        &self,
        campaign: &str,
        from: i64,
        to: i64,
        window_days: i64,
    ) -> StoreResult<Vec<ConversionRow>> {
        let rows: Vec<ConversionReadRow> = sqlx::query_as(
            "SELECT step, credit, outcome, CAST(SUM(n) AS BIGINT) AS n FROM conversion_counts \
             WHERE campaign_id = $1 AND hour >= $2 AND hour < $3 AND lag_days <= $4 \
             GROUP BY step, credit, outcome",
        )
        .bind(campaign)
        .bind(from)
        .bind(to)
        .bind(window_days)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(ConversionRow {
                    step: r.step,
                    credit: Credit::parse(&r.credit)?,
                    outcome: Conversion::parse(&r.outcome)?,
                    n: r.n,
                })
            })
            .collect())
    }

    async fn wait_counts(&self, campaign: &str, from: i64, to: i64) -> StoreResult<Vec<WaitRow>> {
        Ok(sqlx::query_as(
            "SELECT step, version, bucket, CAST(SUM(n) AS BIGINT) AS n FROM wait_counts \
             WHERE campaign_id = $1 AND hour >= $2 AND hour < $3 GROUP BY step, version, bucket",
        )
        .bind(campaign)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }

    async fn message_counts(&self, scope: CountScope<'_>, from: i64, to: i64) -> StoreResult<Vec<CountRow>> {
        let rows = read_counts(self, scope, "hour + $4", (from, to, 0)).await?;
        Ok(rows
            .into_iter()
            .map(|(key, hour, figures)| CountRow { key, hour, figures })
            .collect())
    }

    async fn message_counts_by_day(&self, scope: CountScope<'_>, pieces: &[Piece]) -> StoreResult<Vec<DayRow>> {
        let mut out = Vec::new();
        for piece in pieces {
            // Hours are after 1970, so the division rounds down on both backends.
            let rows = read_counts(
                self,
                scope,
                "(hour * 60 + $4) / 1440",
                (piece.from, piece.to, piece.offset),
            )
            .await?;
            out.extend(rows.into_iter().map(|(key, day, figures)| DayRow {
                key,
                day: day_number(day),
                figures,
            }));
        }
        Ok(out)
    }

    async fn handoff_counts_by_day(&self, queue: &str, pieces: &[Piece]) -> StoreResult<Vec<HandoffDayRow>> {
        let mut out = Vec::new();
        for piece in pieces {
            let rows: Vec<HandoffReadRow> = sqlx::query_as(
                "SELECT member, fact, detail, CAST((hour * 60 + $4) / 1440 AS BIGINT) AS bucket, \
                 CAST(SUM(n) AS BIGINT) AS n FROM handoff_counts \
                 WHERE queue = $1 AND hour >= $2 AND hour < $3 \
                 GROUP BY member, fact, detail, CAST((hour * 60 + $4) / 1440 AS BIGINT)",
            )
            .bind(queue)
            .bind(piece.from)
            .bind(piece.to)
            .bind(piece.offset)
            .fetch_all(self.pool())
            .await?;
            out.extend(rows.into_iter().filter_map(|r| {
                Some(HandoffDayRow {
                    day: day_number(r.bucket),
                    member: r.member,
                    fact: HandoffFact::parse(&r.fact)?,
                    detail: r.detail,
                    n: r.n,
                })
            }));
        }
        Ok(out)
    }
}

/// The counters of `scope` for hours `$2` ≤ hour < `$3`, summed per key and `bucket` (an
/// expression of `hour` and `$4`).
async fn read_counts<S, DB>(
    store: &S,
    scope: CountScope<'_>,
    bucket: &str,
    (from, to, offset): (i64, i64, i64),
) -> StoreResult<Vec<(CountKey, i64, MessageFigures)>>
where
    S: SqlStore<DB = DB>,
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> ReadRow: FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    let (column, value) = match scope {
        CountScope::Campaign(id) => ("campaign_id", id),
        CountScope::Template(name) => ("template", name),
    };
    let sums: Vec<String> = MessageFigures::NAMES
        .iter()
        .map(|n| format!("CAST(SUM({n}) AS BIGINT) AS {n}"))
        .collect();
    let rows: Vec<ReadRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT campaign_id, step, version, template, channel, language, CAST({bucket} AS BIGINT) AS bucket, {sums} \
         FROM message_counts WHERE {column} = $1 AND hour >= $2 AND hour < $3 \
         GROUP BY campaign_id, step, version, template, channel, language, CAST({bucket} AS BIGINT)",
        sums = sums.join(", ")
    )))
    .bind(value)
    .bind(from)
    .bind(to)
    .bind(offset)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let key = CountKey {
                campaign: r.campaign_id,
                step: r.step,
                version: r.version,
                template: r.template,
                channel: r.channel,
                language: r.language,
            };
            let figures = MessageFigures {
                sent: r.sent,
                failed: r.failed,
                skipped: r.skipped,
                bounced_hard: r.bounced_hard,
                bounced_soft: r.bounced_soft,
                complained: r.complained,
                unsubscribed: r.unsubscribed,
                opened: r.opened,
                opens: r.opens,
                clicked: r.clicked,
                clicks: r.clicks,
                opens_automated: r.opens_automated,
                clicks_automated: r.clicks_automated,
            };
            (key, r.bucket, figures)
        })
        .collect())
}
