//! Request bodies: JSON parsed with the position of a syntax error (400) or the path of a
//! field of the wrong type (422), and a size limit answered with 413.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use nurture_engine::lead::FieldError;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// The most items a bulk request may carry.
pub const MAX_BATCH: usize = 10_000;

/// Unwraps the raw body, turning an over-size body into 413.
pub fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes; nothing was stored"
            ))
        } else {
            ApiError::Malformed(format!("the request body could not be read: {rejection}"))
        }
    })
}

/// Parses well-formed JSON, or says where it is not.
pub fn json_value(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Malformed(format!(
            "malformed JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// Converts a JSON value to a type, naming the field that does not fit.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        FieldError::new(field, e.into_inner().to_string())
    })
}

/// Parses a body that is one JSON object of type `T`.
pub fn object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    typed(json_value(bytes)?).map_err(|e| ApiError::invalid(vec![e]))
}

/// A body that is either one item or an array of up to [`MAX_BATCH`] items.
pub enum OneOrMany {
    One(Value),
    Many(Vec<Value>),
}

pub fn one_or_many(bytes: &[u8]) -> Result<OneOrMany, ApiError> {
    match json_value(bytes)? {
        Value::Array(items) => {
            if items.len() > MAX_BATCH {
                return Err(ApiError::TooLarge(format!(
                    "{} items; a batch holds at most {MAX_BATCH}; nothing was stored",
                    items.len()
                )));
            }
            Ok(OneOrMany::Many(items))
        }
        one => Ok(OneOrMany::One(one)),
    }
}
