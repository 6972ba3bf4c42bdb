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
        .ok_or_else(|| ApiError::Malformed("cursor is not one this server gave out; start again without it".into()))
}
