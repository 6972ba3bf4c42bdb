//! Multi-row `VALUES` statements and their bindings: how a pass writes each table in one
//! statement.

use super::*;
use sqlx::{AssertSqlSafe, Sqlite};

/// Lead ids in order, as the pass log keeps them.
pub(super) fn sorted(leads: &[i64]) -> std::sync::Arc<[i64]> {
    let mut sorted = leads.to_vec();
    sorted.sort_unstable();
    sorted.into()
}

/// The most rows one statement of a multi-row write holds. The engine's step writes bind their
/// values (`INSERT … VALUES (…), (…)`) instead of unpacking a JSON batch: bound values cost
/// SQLite a fraction of what `jsonb_each` over objects does, and there is no JSON to build. A
/// pass of 1,000 leads writes each table in one statement: every statement is a round trip to
/// the connection's thread, which with two passes in flight on two cores waits to be
/// scheduled, so fewer, larger statements keep the writer's turn short.
pub(super) const VALUES_MAX: usize = 1024;

/// SQLite's limit on bound parameters in one statement (`SQLITE_MAX_VARIABLE_NUMBER`).
pub(super) const MAX_PARAMS: usize = 32_766;

/// The rows of the statement that writes a chunk of `n`: the next power of four, so that a
/// table has at most six statement shapes, and a pass's text (its tables' statements run
/// together, see [`Staged`]) one of few that the writer's statement cache keeps prepared. The rows past `n` are padding (see [`values_sql`]).
pub(super) fn statement_rows(n: usize) -> usize {
    let mut rows = 1;
    while rows < n {
        rows *= 4;
    }
    rows
}

/// `rows` cut into chunks of the most rows a statement of `columns` values a row may hold.
pub(super) fn value_chunks<T>(rows: &[T], columns: usize) -> std::slice::Chunks<'_, T> {
    let mut most = VALUES_MAX;
    while most > 1 && most * columns > MAX_PARAMS {
        most /= 4;
    }
    rows.chunks(most)
}

/// `head VALUES (?, …), (?, …) tail;` for every chunk of `rows`, appended to `sql`, each row
/// `columns` values that `push` binds, the list padded with rows of NULLs up to
/// [`statement_rows`]. `head` and `tail` drop the padding: an update joins on the first column
/// (`… FROM (VALUES …) AS v WHERE t.id = v.column1`, and NULL matches nothing); an insert
/// selects from the list (`INSERT INTO t (…) SELECT * FROM (VALUES …) WHERE column1 IS NOT
/// NULL`), so the first column of a real row is never NULL.
///
/// This is the hot write of every engine batch, so it binds without sqlx's `QueryBuilder`: the
/// text has plain `?` placeholders (no number to format for each), and values are handed over
/// without copies (see [`Binds`]).
pub(super) fn values_sql<T>(
    sql: &mut String,
    binds: &mut Binds,
    head: &str,
    tail: &str,
    columns: usize,
    rows: &[T],
    push: impl Fn(&mut Binds, &T),
) -> StoreResult<()> {
    debug_assert!(
        head.contains("column1") || tail.contains("column1"),
        "a padded write must drop its padding: {head} … {tail}"
    );
    debug_assert!(
        !head.contains('$') && !tail.contains('$'),
        "staged statements take `?` parameters: {head} … {tail}"
    );
    for chunk in value_chunks(rows, columns) {
        let size = statement_rows(chunk.len());
        // No spaces: sqlx hashes and compares the whole text to find the prepared statement,
        // and at 1,024 rows a pass's text runs to about 100 KB.
        sql.reserve(head.len() + tail.len() + 10 + size * (columns * 2 + 2));
        sql.push_str(head);
        sql.push_str("VALUES ");
        let row_text = {
            let mut row = String::with_capacity(columns * 2 + 2);
            row.push('(');
            for c in 0..columns {
                row.push_str(if c == 0 { "?" } else { ",?" });
            }
            row.push(')');
            row
        };
        for i in 0..size {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&row_text);
        }
        sql.push_str(tail);
        sql.push_str(";\n");
        let before = sqlx::Arguments::len(&binds.args);
        sqlx::Arguments::reserve(&mut binds.args, size * columns, 0);
        for row in chunk {
            push(binds, row);
        }
        for _ in 0..(size - chunk.len()) * columns {
            binds.opt_int(None);
        }
        let bound = sqlx::Arguments::len(&binds.args) - before;
        if bound != size * columns {
            return Err(StoreError::Corrupt(format!(
                "{bound} values bound for {size} rows of {columns} columns"
            )));
        }
    }
    Ok(())
}

/// The values of one or more statements, in order. sqlx copies a bound `&str` into a new `String`
/// in a new `Arc`; here a short string that recurs from row to row (campaign id, step, status)
/// is one shared `Arc<str>` for the whole write, and any other string costs one allocation.
#[derive(Default)]
pub(super) struct Binds {
    pub(super) args: sqlx::sqlite::SqliteArguments,
    pub(super) shared: Vec<std::sync::Arc<str>>,
    pub(super) error: Option<sqlx::error::BoxDynError>,
}

/// How many recurring strings one write keeps to share; past that, each costs an allocation.
pub(super) const SHARED_NAMES: usize = 32;

impl Binds {
    pub(super) fn add<V: sqlx::Encode<'static, Sqlite> + sqlx::Type<Sqlite> + 'static>(
        &mut self,
        value: V,
    ) -> &mut Self {
        use sqlx::Arguments;
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        self
    }

    pub(super) fn int(&mut self, value: i64) -> &mut Self {
        self.add(value)
    }

    pub(super) fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        self.add(value)
    }

    /// A string that recurs across rows (an id, a name, a status). A write has a handful of
    /// them, so a short list searched in order beats hashing each value.
    pub(super) fn name(&mut self, value: &str) -> &mut Self {
        let shared = match self.shared.iter().find(|known| ***known == *value) {
            Some(known) => known.clone(),
            None => {
                let new: std::sync::Arc<str> = value.into();
                if self.shared.len() < SHARED_NAMES {
                    self.shared.push(new.clone());
                }
                new
            }
        };
        self.add(shared)
    }

    /// Runs `sql` (one statement or several) with these values.
    pub(super) async fn execute(self, sql: String, conn: &mut sqlx::SqliteConnection) -> StoreResult<()> {
        if let Some(e) = self.error {
            return Err(StoreError::Corrupt(format!("a value could not be bound: {e}")));
        }
        sqlx::query_with(AssertSqlSafe(sql), self.args)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// A string of this row alone (a detail, a reason).
    pub(super) fn text(&mut self, value: &str) -> &mut Self {
        self.add(std::sync::Arc::<str>::from(value))
    }

    pub(super) fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        self.add(value.map(std::sync::Arc::<str>::from))
    }
}

pub(super) fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// The ids a hot read joins over, bound as `$1` ([`id_set`]): `FROM {WANTED} CROSS JOIN t ON
/// key = i.wanted`. Its one column, `wanted`, leaves the table's own names unambiguous.
pub(super) const WANTED: &str = "(SELECT value AS wanted FROM json_each($1)) AS i";

/// Ids sorted and without repeats, as one JSON array, for the hot reads that join over them
/// ([`WANTED`]). `key IN (SELECT value FROM json_each(…))` first copies the ids into a
/// temporary b-tree; the join reads the array as it stands and looks each id up in order.
pub(super) fn id_set(ids: &[i64]) -> String {
    let mut set = ids.to_vec();
    set.sort_unstable();
    set.dedup();
    json_ids(&set)
}
