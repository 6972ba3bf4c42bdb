//! How sets travel to and from the database: one JSON array a statement, and rows read back
//! from JSON.

use super::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event types and windows [`Tx::load_events`] is asked for, as one JSON parameter
/// (`since` is the earliest event time; all time is `i64::MIN`).
pub(crate) fn event_needs_json(needs: &[(String, Option<i64>)]) -> String {
    let rows: Vec<Value> = needs
        .iter()
        .map(|(kind, since)| serde_json::json!({"type": kind, "since": since.unwrap_or(i64::MIN)}))
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

/// Serialises a batch for binding as one JSON parameter.
pub(crate) fn json_batch<T: Serialize>(rows: &[T]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    serde_json::to_string(rows).ok()
}

/// `%` and `_` escaped for a LIKE pattern with `ESCAPE '\'`, wrapped as a substring search.
pub(crate) fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// How long an unfinished idempotent request blocks its key before a retry may take it over.
pub(crate) const IDEMPOTENCY_STALE_MICROS: i64 = 60_000_000;

/// Parses rows that SQLite aggregated into one JSON array (see the SQLite adapter).
pub(crate) fn json_rows<T: serde::de::DeserializeOwned>(text: Option<String>) -> StoreResult<Vec<T>> {
    json_rows_into(text, 0, Ok)
}

/// Parses rows that SQLite aggregated into one JSON array straight into what they convert to,
/// in a vector sized for `expected` of them. A batch's leads or enrollments are hundreds of
/// rows of several hundred bytes: parsed into a vector of rows first, that vector grew by
/// doubling (copying it each time, into fresh pages) and was then converted and dropped.
pub(crate) fn json_rows_into<T, U>(
    text: Option<String>,
    expected: usize,
    convert: impl FnMut(T) -> StoreResult<U>,
) -> StoreResult<Vec<U>>
where
    T: serde::de::DeserializeOwned,
{
    use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};

    struct Rows<T, U, F> {
        expected: usize,
        convert: F,
        row: std::marker::PhantomData<fn(T) -> U>,
    }

    impl<'de, T: Deserialize<'de>, U, F: FnMut(T) -> StoreResult<U>> Visitor<'de> for Rows<T, U, F> {
        type Value = Vec<U>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of rows")
        }

        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<U>, A::Error> {
            let mut out = Vec::with_capacity(self.expected);
            while let Some(row) = seq.next_element::<T>()? {
                out.push((self.convert)(row).map_err(A::Error::custom)?);
            }
            Ok(out)
        }
    }

    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut parser = serde_json::Deserializer::from_str(&text);
    let rows = parser
        .deserialize_seq(Rows {
            expected,
            convert,
            row: std::marker::PhantomData,
        })
        .and_then(|rows| parser.end().map(|()| rows))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(rows)
}

/// The ids in their first order, each once.
pub(crate) fn distinct(ids: Vec<i64>) -> Vec<i64> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

/// A value kept as JSON in a text column (the same on both backends).
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

/// A value read back from a JSON text column; `what` names it when it does not parse.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}
