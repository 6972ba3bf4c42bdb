//! The counters reports read: what each campaign step's messages did, per hour of sending
//! (`message_counts`), added to in the transactions that record sends and ingest the events
//! about messages.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::*;
use crate::report::attribution::{Conversion, Credit, Touch};
use crate::report::queue::{HandoffDayRow, HandoffFact};
use crate::report::{day_number, CountKey, CountRow, DayRow, MessageFigures, Span};
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

/// An addition to the flow counters (`flow_counts`): journey lines of a campaign version at
/// step `step` with outcome `outcome` in hour `hour`, and of those the arrivals at the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowCount {
    pub campaign: String,
    pub step: String,
    pub version: String,
    pub outcome: String,
    pub hour: i64,
    pub shard: i64,
    pub entered: i64,
    pub lines: i64,
}

/// Flow counted for a campaign's step and version in a span.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FlowRow {
    pub step: String,
    pub version: String,
    pub outcome: String,
    pub entered: i64,
    pub lines: i64,
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
/// `hour`, credited one way to a campaign step, within `within_days` (one of
/// `attribution::WINDOWS`, the shortest that holds it) after it reached the lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionCount {
    pub campaign: String,
    pub step: String,
    pub credit: Credit,
    pub outcome: Conversion,
    pub hour: i64,
    pub within_days: i64,
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

impl<'a> CountScope<'a> {
    /// The counter column it selects by, and the value.
    fn column(self) -> (&'static str, &'a str) {
        match self {
            CountScope::Campaign(id) => ("campaign_id", id),
            CountScope::Template(name) => ("template", name),
        }
    }
}

/// `CAST(SUM(v) AS BIGINT) AS v` for each of `values`, comma-separated.
fn sums_as(values: &[&str]) -> String {
    let sums: Vec<String> = values
        .iter()
        .map(|v| format!("CAST(SUM({v}) AS BIGINT) AS {v}"))
        .collect();
    sums.join(", ")
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
    /// Adds to the flow counters.
    async fn count_flows(&mut self, counts: &[FlowCount]) -> StoreResult<()>;
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
    /// The counters of a campaign or a template summed per key and local day over a span.
    /// Grouped in the database: a report reads a row per key and day, not per hour and shard.
    /// `zone`: the zone whose day rows, if they are kept in it, stand for the span's days
    /// (the span's own, or one that cuts it into the same days); else the hours are read.
    async fn message_counts_by_day(
        &self,
        scope: CountScope<'_>,
        span: &Span,
        zone: chrono_tz::Tz,
    ) -> StoreResult<Vec<DayRow>>;
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
    /// A campaign's journey lines in hours `from` ≤ hour < `to`, and the arrivals among them,
    /// summed per step, version and outcome.
    async fn flow_counts(&self, campaign: &str, from: i64, to: i64) -> StoreResult<Vec<FlowRow>>;
    /// Rolls the flow, wait and conversion counters of the UTC days before `before_day` (days
    /// since the epoch) up into a row per day, so that a report reads a row per day for the
    /// whole days of its span; returns the day rows written. A day must be over (no writer
    /// adds to its hours any more: they add at the current hour) before it is rolled up.
    async fn roll_up_counters(&self, before_day: i64) -> StoreResult<u64>;
    /// A queue's handoff counters summed per member, fact, detail and local day over a span
    /// (`zone` as for `message_counts_by_day`).
    async fn handoff_counts_by_day(
        &self,
        queue: &str,
        span: &Span,
        zone: chrono_tz::Tz,
    ) -> StoreResult<Vec<HandoffDayRow>>;
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
    // Shards only part writers that run at once: as many as the backend has of those,
    // numbered from 1 (shard 0 is the fold's).
    let deltas = merge_deltas(deltas.iter().map(|d| CountDelta {
        shard: 1 + d.shard.rem_euclid(DB::COUNTER_SHARDS),
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

/// An addition to a counter table, keyed by text columns (the first the campaign or queue)
/// then integer columns (the first the hour, the last the shard).
pub(crate) trait Counted {
    const TABLE: &'static str;
    const TEXTS: &'static [&'static str];
    /// The integer key columns, `hour` first and `shard` last.
    const INTS: &'static [&'static str];
    /// The counters added to.
    const VALUES: &'static [&'static str] = &["n"];
    /// Folded (`Folded`): writers add to shards from 1, shard 0 is the fold's.
    const FOLDED: bool = false;
    /// The row's text key, its integer key (the shard as given), and how many to add to each
    /// of `VALUES`.
    fn key(&self) -> (Vec<String>, Vec<i64>, Vec<i64>);
}

impl Counted for HandoffCount {
    const TABLE: &'static str = "handoff_counts";
    const TEXTS: &'static [&'static str] = &["queue", "member", "fact", "detail"];
    const INTS: &'static [&'static str] = &["hour", "shard"];
    const FOLDED: bool = true;
    fn key(&self) -> (Vec<String>, Vec<i64>, Vec<i64>) {
        let texts = vec![
            self.queue.clone(),
            self.member.clone(),
            self.fact.as_str().to_owned(),
            self.detail.clone(),
        ];
        (texts, vec![self.hour, self.shard], vec![self.n])
    }
}

impl Counted for WaitCount {
    const TABLE: &'static str = "wait_counts";
    const TEXTS: &'static [&'static str] = &["campaign_id", "step", "version"];
    const INTS: &'static [&'static str] = &["hour", "bucket", "shard"];
    fn key(&self) -> (Vec<String>, Vec<i64>, Vec<i64>) {
        let texts = vec![self.campaign.clone(), self.step.clone(), self.version.clone()];
        (texts, vec![self.hour, self.bucket, self.shard], vec![self.n])
    }
}

impl Counted for FlowCount {
    const TABLE: &'static str = "flow_counts";
    const TEXTS: &'static [&'static str] = &["campaign_id", "step", "version", "outcome"];
    const INTS: &'static [&'static str] = &["hour", "shard"];
    const VALUES: &'static [&'static str] = &["entered", "lines"];
    fn key(&self) -> (Vec<String>, Vec<i64>, Vec<i64>) {
        let texts = vec![
            self.campaign.clone(),
            self.step.clone(),
            self.version.clone(),
            self.outcome.clone(),
        ];
        (texts, vec![self.hour, self.shard], vec![self.entered, self.lines])
    }
}

impl Counted for ConversionCount {
    const TABLE: &'static str = "conversion_counts";
    const TEXTS: &'static [&'static str] = &["campaign_id", "step", "credit", "outcome"];
    const INTS: &'static [&'static str] = &["hour", "within_days", "shard"];
    fn key(&self) -> (Vec<String>, Vec<i64>, Vec<i64>) {
        let texts = vec![
            self.campaign.clone(),
            self.step.clone(),
            self.credit.as_str().to_owned(),
            self.outcome.as_str().to_owned(),
        ];
        (texts, vec![self.hour, self.within_days, self.shard], vec![self.n])
    }
}

/// A counter only ever added to at the current hour, so that a day once over never changes:
/// rolled up into a row per UTC day in `DAYS` (`ReportStore::roll_up_counters`), whose key is
/// the first text column, `day`, the other text columns, and the integer ones between the
/// hour and the shard.
pub(crate) trait RolledUp: Counted {
    const DAYS: &'static str;
}

/// A rolled-up counter's day key after the first column and `day`.
fn day_key<R: RolledUp>() -> Vec<&'static str> {
    R::TEXTS[1..]
        .iter()
        .chain(&R::INTS[1..R::INTS.len() - 1])
        .copied()
        .collect()
}

impl RolledUp for FlowCount {
    const DAYS: &'static str = "flow_days";
}

impl RolledUp for WaitCount {
    const DAYS: &'static str = "wait_days";
}

impl RolledUp for ConversionCount {
    const DAYS: &'static str = "conversion_days";
}

/// The statement that rolls up a campaign's hours `$2` ≤ hour < `$3` into days; a day rolled
/// up again gets the same sums (it replaces, so a retry or two processes at once agree).
fn roll_up_sql<R: RolledUp>() -> String {
    let first = R::TEXTS[0];
    let rest = day_key::<R>().join(", ");
    let sums: Vec<String> = R::VALUES.iter().map(|v| format!("CAST(SUM({v}) AS BIGINT)")).collect();
    let sets: Vec<String> = R::VALUES.iter().map(|v| format!("{v} = excluded.{v}")).collect();
    format!(
        "INSERT INTO {days} ({first}, day, {rest}, {values}) \
         SELECT {first}, hour / 24, {rest}, {sums} FROM {table} \
         WHERE {first} = $1 AND hour >= $2 AND hour < $3 GROUP BY {first}, hour / 24, {rest} \
         ON CONFLICT ({first}, day, {rest}) DO UPDATE SET {sets}",
        days = R::DAYS,
        table = R::TABLE,
        values = R::VALUES.join(", "),
        sums = sums.join(", "),
        sets = sets.join(", "),
    )
}

/// Rolls up counter `R`'s days before `before_day` not rolled up yet, one of `campaigns` a
/// transaction, then moves its mark; returns the day rows written.
async fn roll_up<S, DB, R>(store: &S, campaigns: &[(String,)], before_day: i64) -> StoreResult<u64>
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    R: RolledUp,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    let through = rolled_through(store, R::TABLE).await?;
    if through >= before_day {
        return Ok(0);
    }
    let sql = roll_up_sql::<R>();
    let mut written = 0;
    for (campaign,) in campaigns {
        let mut tx = store.write_tx().await?;
        let done = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(campaign)
            .bind(through * 24)
            .bind(before_day * 24)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        written += DB::rows_affected(&done);
        S::commit(tx).await?;
    }
    let mut tx = store.write_tx().await?;
    sqlx::query("UPDATE counter_rollups SET through_day = $2 WHERE counter = $1 AND through_day < $2")
        .bind(R::TABLE)
        .bind(before_day)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
    S::commit(tx).await?;
    Ok(written)
}

/// The first day of counter `table` not rolled up (days since the epoch).
async fn rolled_through<S, DB>(store: &S, table: &str) -> StoreResult<i64>
where
    S: SqlStore<DB = DB>,
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    let mark: Option<(i64,)> = sqlx::query_as("SELECT through_day FROM counter_rollups WHERE counter = $1")
        .bind(table)
        .fetch_optional(store.pool())
        .await?;
    Ok(mark.map_or(0, |(d,)| d))
}

/// Where the rows for hours `from` ≤ hour < `to` of a rolled-up counter are: the whole UTC
/// days rolled up (before `through`) in the day table, the hours before and after them in the
/// hour table. Bound as `$2`–`$7` of `spanned_sql`.
fn spanned(from: i64, to: i64, through: i64) -> [i64; 6] {
    let first = (from + 23).div_euclid(24);
    let last = to.div_euclid(24).min(through);
    if first < last {
        [from, first * 24, first, last, last * 24, to]
    } else {
        [from, to, 0, 0, 0, 0]
    }
}

/// `columns` of counter `R`'s rows of campaign `$1` in a span (`spanned`: hours `$2`–`$3`,
/// days `$4`–`$5`, hours `$6`–`$7`), each part `filter`ed (which may use `$8`).
fn spanned_sql<R: RolledUp>(columns: &str, filter: &str) -> String {
    let first = R::TEXTS[0];
    let (days, table) = (R::DAYS, R::TABLE);
    format!(
        "SELECT {columns} FROM {table} WHERE {first} = $1 AND hour >= $2 AND hour < $3 {filter} \
         UNION ALL SELECT {columns} FROM {days} WHERE {first} = $1 AND day >= $4 AND day < $5 {filter} \
         UNION ALL SELECT {columns} FROM {table} WHERE {first} = $1 AND hour >= $6 AND hour < $7 {filter}"
    )
}

/// Counter `R`'s values for campaign `campaign` in hours `from` ≤ hour < `to`, summed per
/// `keys` (columns of both its tables), rows `filter`ed by a condition on `$8` and its value.
async fn read_spanned<S, DB, R, Row>(
    store: &S,
    campaign: &str,
    (from, to): (i64, i64),
    keys: &str,
    filter: Option<(&str, i64)>,
) -> StoreResult<Vec<Row>>
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    R: RolledUp,
    Row: Send + Unpin + for<'r> FromRow<'r, DB::Row>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    let sql = format!(
        "SELECT {keys}, {sums} FROM ({parts}) AS c GROUP BY {keys}",
        sums = sums_as(R::VALUES),
        parts = spanned_sql::<R>(
            &format!("{keys}, {}", R::VALUES.join(", ")),
            filter.map_or("", |(condition, _)| condition)
        )
    );
    let span = spanned(from, to, rolled_through(store, R::TABLE).await?);
    let query = span
        .into_iter()
        .fold(sqlx::query_as(AssertSqlSafe(sql)).bind(campaign), |q, v| q.bind(v));
    let query = match filter {
        Some((_, value)) => query.bind(value),
        None => query,
    };
    Ok(query.fetch_all(store.pool()).await?)
}

/// A counter writers add to at any hour (a message's events land on the hour it was sent),
/// in shards 1 and up. The fold (`fold`) moves its finished hours' shards into shard 0 and
/// into a row per local day of the report zone in `days`, so that a report in that zone
/// reads a row per key and day (migration 0028).
pub(crate) struct Folded {
    table: &'static str,
    days: &'static str,
    /// The key's text columns, the one reports select by first; the hour table's key is the
    /// first, `hour`, the others and `shard`; the day table's the first, `day`, the others.
    texts: &'static [&'static str],
    values: &'static [&'static str],
}

pub(crate) const MESSAGES_FOLDED: Folded = Folded {
    table: "message_counts",
    days: "message_days",
    texts: &["campaign_id", "step", "version", "template", "channel", "language"],
    values: &MessageFigures::NAMES,
};

pub(crate) const HANDOFFS_FOLDED: Folded = Folded {
    table: "handoff_counts",
    days: "handoff_days",
    texts: &["queue", "member", "fact", "detail"],
    values: &["n"],
};

impl Folded {
    fn hour_key(&self) -> String {
        let (first, rest) = (self.texts[0], self.texts[1..].join(", "));
        format!("{first}, hour, {rest}, shard")
    }

    fn day_key(&self) -> String {
        let (first, rest) = (self.texts[0], self.texts[1..].join(", "));
        format!("{first}, day, {rest}")
    }

    fn sums(&self) -> String {
        let sums: Vec<String> = self
            .values
            .iter()
            .map(|v| format!("CAST(SUM({v}) AS BIGINT)"))
            .collect();
        sums.join(", ")
    }

    fn adds(&self, table: &str) -> String {
        let adds: Vec<String> = self
            .values
            .iter()
            .map(|v| format!("{v} = {table}.{v} + excluded.{v}"))
            .collect();
        adds.join(", ")
    }

    /// Adds the rows `source` (a table or CTE with the text columns, `hour` and the values)
    /// to the day rows, a row per local day at offset `$3` minutes.
    fn days_sql(&self, source: &str, filter: &str) -> String {
        let texts = self.texts.join(", ");
        format!(
            "INSERT INTO {days} ({texts}, day, {values}) \
             SELECT {texts}, (hour * 60 + $3) / 1440, {sums} FROM {source} WHERE true {filter} \
             GROUP BY {texts}, (hour * 60 + $3) / 1440 \
             ON CONFLICT ({day_key}) DO UPDATE SET {adds}",
            days = self.days,
            values = self.values.join(", "),
            sums = self.sums(),
            day_key = self.day_key(),
            adds = self.adds(self.days),
        )
    }

    /// The statements, in order, that fold the shards of hours `$1` ≤ hour < `$2` into
    /// shard 0 and into days at offset `$3`; the first says how many key-hours it folded
    /// into. On PostgreSQL one statement, so that a writer's row is either folded whole or
    /// left to the next fold (writers add while it runs); on SQLite, where the fold is the
    /// one writer while it runs, a count and three statements.
    fn fold_sql<DB: Dialect>(&self) -> Vec<String> {
        let (table, texts, values) = (self.table, self.texts.join(", "), self.values.join(", "));
        let unfolded = "shard <> 0 AND hour >= $1 AND hour < $2";
        let hours = |source: &str, filter: &str| {
            format!(
                "INSERT INTO {table} ({texts}, hour, shard, {values}) \
                 SELECT {texts}, hour, 0, {sums} FROM {source} WHERE true {filter} GROUP BY {texts}, hour \
                 ON CONFLICT ({hour_key}) DO UPDATE SET {adds}",
                sums = self.sums(),
                hour_key = self.hour_key(),
                adds = self.adds(table),
            )
        };
        if DB::FOLD_IN_ONE_STATEMENT {
            vec![format!(
                "WITH gone AS (DELETE FROM {table} WHERE {unfolded} RETURNING {texts}, hour, {values}), \
                 hours AS ({hours} RETURNING 1), \
                 days AS ({days} RETURNING 1) \
                 SELECT CAST((SELECT COUNT(*) FROM hours) AS BIGINT)",
                hours = hours("gone", ""),
                days = self.days_sql("gone", ""),
            )]
        } else {
            let filter = format!("AND {unfolded}");
            vec![
                format!("SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT 1 FROM {table} WHERE {unfolded} GROUP BY {texts}, hour) AS k"),
                hours(table, &filter),
                self.days_sql(table, &filter),
                format!("DELETE FROM {table} WHERE {unfolded}"),
            ]
        }
    }

    /// Reads the rows where `{column} = $1`, summed per `keys` and local day over a span:
    /// days `$2` ≤ day ≤ `$3` from the day rows and the hours not folded yet, when the day
    /// rows are kept in zone `$4`; else every hour's rows. Piece `i` of the span binds its
    /// hours and offset as `$(5+3i)`, `$(6+3i)`, `$(7+3i)`. One statement: one snapshot, so
    /// a fold committing meanwhile is read before or after, never half.
    fn read_sql(&self, column: &str, keys: &str, pieces: usize) -> String {
        let (table, days, values) = (self.table, self.days, self.values.join(", "));
        let kept = "EXISTS (SELECT 1 FROM counter_zone WHERE zone = $4)";
        let mut parts = vec![format!(
            "SELECT {keys}, day AS bucket, {values} FROM {days} \
             WHERE {column} = $1 AND day >= $2 AND day <= $3 AND {kept}"
        )];
        for i in 0..pieces {
            let (from, to, offset) = (5 + 3 * i, 6 + 3 * i, 7 + 3 * i);
            let hours = format!(
                "SELECT {keys}, (hour * 60 + ${offset}) / 1440 AS bucket, {values} FROM {table} \
                 WHERE {column} = $1 AND hour >= ${from} AND hour < ${to}"
            );
            parts.push(format!("{hours} AND shard <> 0 AND {kept}"));
            parts.push(format!("{hours} AND NOT {kept}"));
        }
        format!(
            "SELECT {keys}, CAST(bucket AS BIGINT) AS bucket, {sums} FROM ({parts}) AS c GROUP BY {keys}, bucket",
            sums = sums_as(self.values),
            parts = parts.join(" UNION ALL "),
        )
    }
}

/// Reads folded counter `f`'s rows where `column` is `value` over `span`'s local days, from
/// the day rows if they are kept in `zone` (see `Folded::read_sql`).
async fn read_folded<S, DB, Row>(
    store: &S,
    f: &Folded,
    (column, value): (&str, &str),
    keys: &str,
    (span, zone): (&Span, chrono_tz::Tz),
) -> StoreResult<Vec<Row>>
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    Row: Send + Unpin + for<'r> FromRow<'r, DB::Row>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let pieces = span.pieces();
    let day = |d: chrono::NaiveDate| (d - day_number(0)).num_days();
    let query = sqlx::query_as(AssertSqlSafe(f.read_sql(column, keys, pieces.len())))
        .bind(value)
        .bind(day(span.from))
        .bind(day(span.to))
        .bind(zone.name());
    let query = pieces
        .iter()
        .fold(query, |q, p| q.bind(p.from).bind(p.to).bind(p.offset));
    Ok(query.fetch_all(store.pool()).await?)
}

/// Folds the message and handoff counters' shards of hours before `before` into shard 0 and
/// into the day rows of `zone`; the day rows are first built again from shard 0 when they
/// are kept in another zone (the Rules' zone changed). A day of hours (a piece of one UTC
/// offset) a transaction, oldest first; each checks that the day rows are still kept in
/// `zone` (a process with another playbook may have built them again) and stops if not.
/// Returns the key-hours folded into.
pub(crate) async fn fold<S, DB>(store: &S, before: i64, zone: chrono_tz::Tz) -> StoreResult<u64>
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
    for<'r> (Option<i64>, Option<i64>): FromRow<'r, DB::Row>,
    for<'r> (Option<String>,): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    let name = zone.name();
    let kept: Option<String> = sqlx::query_scalar("SELECT zone FROM counter_zone WHERE id = 1")
        .fetch_one(store.pool())
        .await?;
    if kept.as_deref() != Some(name) {
        rebuild_days(store, zone).await?;
    }
    let mut folded = 0;
    for f in [&MESSAGES_FOLDED, &HANDOFFS_FOLDED] {
        let statements = f.fold_sql::<DB>();
        let oldest = format!(
            "SELECT MIN(hour) FROM {} WHERE shard <> 0 AND hour >= $1 AND hour < $2",
            f.table
        );
        let mut floor = i64::MIN;
        loop {
            let first: Option<i64> = sqlx::query_scalar(AssertSqlSafe(oldest.as_str()))
                .bind(floor)
                .bind(before)
                .fetch_one(store.pool())
                .await?;
            let Some(first) = first else { break };
            floor = (first + 24).min(before);
            for piece in crate::report::hour_pieces(zone, first, floor) {
                let mut tx = store.write_tx().await?;
                let still: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT zone FROM counter_zone WHERE id = 1{}",
                    DB::FOR_SHARE
                )))
                .fetch_one(&mut *tx)
                .await?;
                if still.as_deref() != Some(name) {
                    return Ok(folded);
                }
                let (count, rest) = statements.split_first().expect("a fold has statements");
                let query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count.as_str()))
                    .bind(piece.from)
                    .bind(piece.to);
                let query = if count.contains("$3") {
                    query.bind(piece.offset)
                } else {
                    query
                };
                folded += query.fetch_one(&mut *tx).await.map_err(StoreError::from_sqlx)? as u64;
                for sql in rest {
                    let query = sqlx::query(AssertSqlSafe(sql.as_str())).bind(piece.from).bind(piece.to);
                    let query = if sql.contains("$3") {
                        query.bind(piece.offset)
                    } else {
                        query
                    };
                    query.execute(&mut *tx).await.map_err(StoreError::from_sqlx)?;
                }
                S::commit(tx).await?;
            }
        }
    }
    Ok(folded)
}

/// Builds the day rows again in `zone` from the hours' shard 0, and names the zone.
async fn rebuild_days<S, DB>(store: &S, zone: chrono_tz::Tz) -> StoreResult<()>
where
    S: SqlStore<DB = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (Option<i64>, Option<i64>): FromRow<'r, DB::Row>,
    for<'r> (Option<String>,): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    let mut tx = store.write_tx().await?;
    let kept: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT zone FROM counter_zone WHERE id = 1{}",
        DB::FOR_UPDATE
    )))
    .fetch_one(&mut *tx)
    .await?;
    if kept.as_deref() == Some(zone.name()) {
        return Ok(());
    }
    for f in [&MESSAGES_FOLDED, &HANDOFFS_FOLDED] {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", f.days)))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT MIN(hour), MAX(hour) FROM {} WHERE shard = 0",
            f.table
        )))
        .fetch_one(&mut *tx)
        .await?;
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        let sql = f.days_sql(f.table, "AND shard = 0 AND hour >= $1 AND hour < $2");
        for piece in crate::report::hour_pieces(zone, first, last + 1) {
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(piece.from)
                .bind(piece.to)
                .bind(piece.offset)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
    }
    sqlx::query("UPDATE counter_zone SET zone = $1 WHERE id = 1")
        .bind(zone.name())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
    S::commit(tx).await
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
    let mut merged: std::collections::BTreeMap<(Vec<String>, Vec<i64>), Vec<i64>> = Default::default();
    for c in counts {
        let (texts, mut ints, values) = c.key();
        if let Some(shard) = ints.last_mut() {
            *shard = shard.rem_euclid(DB::COUNTER_SHARDS) + i64::from(C::FOLDED);
        }
        let sums = merged.entry((texts, ints)).or_insert_with(|| vec![0; C::VALUES.len()]);
        for (sum, v) in sums.iter_mut().zip(values) {
            *sum += v;
        }
    }
    merged.retain(|_, sums| sums.iter().any(|n| *n != 0));
    if merged.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = merged
        .into_iter()
        .map(|((t, i), sums)| {
            let mut row: Vec<serde_json::Value> = t.into_iter().map(serde_json::Value::from).collect();
            row.extend(i.into_iter().chain(sums).map(serde_json::Value::from));
            serde_json::Value::Array(row)
        })
        .collect();
    let table = C::TABLE;
    let key = [C::TEXTS, C::INTS].concat().join(", ");
    let adds: Vec<String> = C::VALUES
        .iter()
        .map(|v| format!("{v} = {table}.{v} + excluded.{v}"))
        .collect();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} ({key}, {values}) SELECT * FROM ({rows}) AS r WHERE true \
         ON CONFLICT ({key}) DO UPDATE SET {adds}",
        values = C::VALUES.join(", "),
        rows = DB::json_array_rows(C::TEXTS.len(), C::INTS.len() + C::VALUES.len()),
        adds = adds.join(", "),
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

impl ReadRow {
    /// The key, the bucket and the figures.
    fn split(self) -> (CountKey, i64, MessageFigures) {
        let key = CountKey {
            campaign: self.campaign_id,
            step: self.step,
            version: self.version,
            template: self.template,
            channel: self.channel,
            language: self.language,
        };
        let figures = MessageFigures {
            sent: self.sent,
            failed: self.failed,
            skipped: self.skipped,
            bounced_hard: self.bounced_hard,
            bounced_soft: self.bounced_soft,
            complained: self.complained,
            unsubscribed: self.unsubscribed,
            opened: self.opened,
            opens: self.opens,
            clicked: self.clicked,
            clicks: self.clicks,
            opens_automated: self.opens_automated,
            clicks_automated: self.clicks_automated,
        };
        (key, self.bucket, figures)
    }
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

    async fn count_flows(&mut self, counts: &[FlowCount]) -> StoreResult<()> {
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
    DB: Dialect,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> ReadRow: FromRow<'r, DB::Row>,
    for<'r> HandoffReadRow: FromRow<'r, DB::Row>,
    for<'r> WaitRow: FromRow<'r, DB::Row>,
    for<'r> ConversionReadRow: FromRow<'r, DB::Row>,
    for<'r> FlowRow: FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn conversion_counts(
        &self,
        campaign: &str,
        from: i64,
        to: i64,
        window_days: i64,
    ) -> StoreResult<Vec<ConversionRow>> {
        let within = ("AND within_days <= $8", window_days);
        let rows: Vec<ConversionReadRow> =
            read_spanned::<_, _, ConversionCount, _>(self, campaign, (from, to), "step, credit, outcome", Some(within))
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
        read_spanned::<_, _, WaitCount, _>(self, campaign, (from, to), "step, version, bucket", None).await
    }

    async fn flow_counts(&self, campaign: &str, from: i64, to: i64) -> StoreResult<Vec<FlowRow>> {
        read_spanned::<_, _, FlowCount, _>(self, campaign, (from, to), "step, version, outcome", None).await
    }

    async fn roll_up_counters(&self, before_day: i64) -> StoreResult<u64> {
        // Every campaign ever deployed: the only ones these counters are kept for.
        let campaigns: Vec<(String,)> = sqlx::query_as("SELECT id FROM campaigns ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        Ok(roll_up::<S, DB, FlowCount>(self, &campaigns, before_day).await?
            + roll_up::<S, DB, WaitCount>(self, &campaigns, before_day).await?
            + roll_up::<S, DB, ConversionCount>(self, &campaigns, before_day).await?)
    }

    async fn message_counts(&self, scope: CountScope<'_>, from: i64, to: i64) -> StoreResult<Vec<CountRow>> {
        let (column, value) = scope.column();
        let keys = MESSAGES_FOLDED.texts.join(", ");
        let rows: Vec<ReadRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {keys}, hour AS bucket, {sums} FROM message_counts \
             WHERE {column} = $1 AND hour >= $2 AND hour < $3 GROUP BY {keys}, hour",
            sums = sums_as(MESSAGES_FOLDED.values),
        )))
        .bind(value)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let (key, hour, figures) = r.split();
                CountRow { key, hour, figures }
            })
            .collect())
    }

    async fn message_counts_by_day(
        &self,
        scope: CountScope<'_>,
        span: &Span,
        zone: chrono_tz::Tz,
    ) -> StoreResult<Vec<DayRow>> {
        let keys = MESSAGES_FOLDED.texts.join(", ");
        let rows: Vec<ReadRow> = read_folded(self, &MESSAGES_FOLDED, scope.column(), &keys, (span, zone)).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let (key, day, figures) = r.split();
                DayRow {
                    key,
                    day: day_number(day),
                    figures,
                }
            })
            .collect())
    }

    async fn handoff_counts_by_day(
        &self,
        queue: &str,
        span: &Span,
        zone: chrono_tz::Tz,
    ) -> StoreResult<Vec<HandoffDayRow>> {
        let keys = "member, fact, detail";
        let rows: Vec<HandoffReadRow> =
            read_folded(self, &HANDOFFS_FOLDED, ("queue", queue), keys, (span, zone)).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(HandoffDayRow {
                    day: day_number(r.bucket),
                    member: r.member,
                    fact: HandoffFact::parse(&r.fact)?,
                    detail: r.detail,
                    n: r.n,
                })
            })
            .collect())
    }
}
