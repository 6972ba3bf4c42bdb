//! What the SQL both adapters share needs of an adapter. Most of the storage port is the same
//! SQL text on SQLite and PostgreSQL; that code is written once, generic over the adapter
//! (`impl<T: SqlTx> HandoffTx for T`, …), and each adapter states here what differs: its sqlx
//! database, how a read locks rows, the few statements written in its own dialect, and how it
//! hands out connections and write transactions.

use std::future::Future;
use std::ops::DerefMut;

use super::StoreResult;

/// A backend's SQL dialect, for the statements both adapters share.
pub(crate) trait Dialect: sqlx::Database {
    /// Appended to a read that locks the rows it takes for its transaction. Empty on SQLite,
    /// where the one writer holds the whole database.
    const FOR_UPDATE: &'static str;
    /// Appended to a claim's inner `SELECT` so that two workers never take the same row and
    /// neither waits for the other. Empty on SQLite (one writer).
    const SKIP_LOCKED: &'static str;
    /// An event's `properties` as JSON text (a column of JSON on PostgreSQL, of text on SQLite).
    const JSON_TEXT_PROPERTIES: &'static str;
    /// Finds a lead for erasure, locking it where rows lock. `$1`: the lead id.
    const ERASE_LOOKUP: &'static str;
    /// The comparisons that read a prefix search's range (`$1` ≤ text < `$2`) in its index,
    /// byte-wise as the index orders it, and the `ORDER BY` that reads the range in that
    /// order (so that a limit stops the scan, with no sort).
    const PREFIX_RANGE: (&'static str, &'static str);
    const PREFIX_ORDER: &'static str;
    /// Rows `(id, at)` of the JSON array of `[id, at]` pairs bound as `$1`.
    const ID_TIME_PAIRS: &'static str;
    /// Rows of the JSON array of arrays bound as `$1`: each array's first `texts` elements as
    /// text columns, the next `ints` as integers.
    fn json_array_rows(texts: usize, ints: usize) -> String;
    /// Shards of the report counters (`message_counts`): as many as writers that add at once.
    const COUNTER_SHARDS: i64;
    /// Appended to a read that keeps the rows it takes from changing until its transaction
    /// ends, while others may read them so too. Empty on SQLite.
    const FOR_SHARE: &'static str;
    /// Whether a fold of the counters' shards is one statement (`DELETE … RETURNING` in a
    /// `WITH`), which lets writers add while it runs; SQLite's one writer runs several.
    const FOLD_IN_ONE_STATEMENT: bool;
    /// Claims open, unassigned handoffs of queue `$1` for the members of the JSON array `$2`
    /// (the n-th handoff in claim order to the n-th member), at most `$3`, at time `$4`;
    /// returns the claimed rows (`HANDOFF_COLUMNS`) in member order.
    fn claim_many_sql() -> String;
    /// Lists leads: `$1` after this id, `$2` stage, `$3` tag, `$4` LIKE pattern, `$5` limit.
    fn list_leads_sql() -> &'static str;
    /// Per kind of timeline entry, the query for a lead's entries: `$1` lead, `$2`/`$3` the
    /// cursor's time and id bound, `$4` limit; rows of (seq, at, JSON data).
    const TIMELINE: &'static [(super::TimelineKind, &'static str)];
    /// The adapter's migrations.
    const MIGRATOR: &'static sqlx::migrate::Migrator;
    /// How many rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

/// A transaction of an adapter: the connection the shared SQL runs on.
pub(crate) trait SqlTx: Send {
    type DB: Dialect;
    /// The transaction's connection (on SQLite, a staged transaction takes its turn here).
    fn connection(&mut self)
        -> impl Future<Output = StoreResult<&mut <Self::DB as sqlx::Database>::Connection>> + Send;
}

/// An adapter's store: its pool for reads, and its write transactions.
pub(crate) trait SqlStore: Send + Sync + 'static {
    type DB: Dialect;
    /// A write transaction outside the `Tx` port; it derefs to its connection.
    type WriteTx: DerefMut<Target = <Self::DB as sqlx::Database>::Connection> + Send;
    /// Connections for reads, and for writes that need no write transaction of their own.
    fn pool(&self) -> &sqlx::Pool<Self::DB>;
    fn write_tx(&self) -> impl Future<Output = StoreResult<Self::WriteTx>> + Send;
    fn commit(tx: Self::WriteTx) -> impl Future<Output = StoreResult<()>> + Send;
}

/// A list of strings as one JSON array parameter.
pub(crate) fn json_strings(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}
