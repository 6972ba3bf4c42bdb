//! Cursor pagination: `?limit=100&cursor=…` → `{"items": [...], "next_cursor": "…" | null}`.
//! Cursors are opaque to clients (base64 of a position).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1_000;

pub fn limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::Malformed(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"
            ))),
        },
    }
}

pub fn encode(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

pub fn decode(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(foreign)
}

/// The answer to a cursor this server did not give out.
pub fn foreign() -> ApiError {
    ApiError::Malformed("cursor is not one this server gave out; start again without it".into())
}

/// `?limit=` and `?cursor=` of a list paged by a descending id: the page size, and the id the
/// page starts below.
pub fn by_id(limit: Option<&String>, cursor: Option<&String>) -> Result<(i64, Option<i64>), ApiError> {
    let limit = self::limit(limit.map(String::as_str))?;
    let before = match cursor {
        None => None,
        Some(c) => Some(decode(c)?.parse::<i64>().map_err(|_| foreign())?),
    };
    Ok((limit, before))
}

/// Cuts `items` (asked for `limit + 1`) to `limit`; the cursor of the next page, when there is
/// one, is the last item's id.
pub fn cut_by_id<T>(items: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Option<String> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    more.then(|| items.last().map(|item| encode(&id(item).to_string())))
        .flatten()
}
