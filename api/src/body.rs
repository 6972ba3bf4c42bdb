//! Request bodies: JSON parsed with the position of a syntax error (400) or the path of a
//! field of the wrong type (422), and a size limit answered with 413.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use nurture_engine::lead::FieldError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// The most items a bulk request may carry.
pub const MAX_BATCH: usize = 10_000;

/// Unwraps the raw body, turning an over-size body into 413.
pub fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes_within(body, MAX_BODY_BYTES)
}

/// [`bytes`] for a route whose body is read at most `limit` bytes far (`DefaultBodyLimit`).
pub fn bytes_within(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body is larger than {limit} bytes; nothing was stored"
            ))
        } else {
            ApiError::Malformed(format!("the request body could not be read: {rejection}"))
        }
    })
}

/// Parses well-formed JSON, or says where it is not. An integer literal that neither a 64-bit
/// integer nor a double holds exactly is refused (422, naming where it is), because it would
/// be stored, and read back, as a different number.
pub fn json_value(bytes: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Malformed(format!(
            "malformed JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    if let Some(literal) = inexact_integer(bytes) {
        let rounded: f64 = literal.parse().unwrap_or(f64::NAN);
        let field = path_of_number(&value, rounded, "").unwrap_or_else(|| "body".to_owned());
        return Err(ApiError::invalid(vec![FieldError::new(
            field,
            format!(
                "is the integer {literal}, which has more digits than a 64-bit integer or a double \
                 holds exactly; send it as a string, or as a decimal such as {rounded:e}"
            ),
        )]));
    }
    Ok(value)
}

/// The first integer literal (no fraction, no exponent) outside strings in well-formed JSON
/// that does not fit an `i64` or `u64` and is not exactly a double. serde_json parses such a
/// literal into the nearest double without saying so.
fn inexact_integer(bytes: &[u8]) -> Option<&str> {
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                i += 1;
            }
            let token = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
            let integer = !token.contains(['.', 'e', 'E']);
            // u64::MAX has 20 digits: shorter literals always fit.
            if integer
                && token.trim_start_matches('-').len() >= 20
                && token.parse::<i64>().is_err()
                && token.parse::<u64>().is_err()
            {
                let nearest: f64 = token.parse().unwrap_or(f64::NAN);
                if format!("{nearest:.0}") != token {
                    return Some(token);
                }
            }
            continue;
        }
        i += 1;
    }
    None
}

/// Where in `value` a double equal to `number` is, as `a.b[2]`.
fn path_of_number(value: &Value, number: f64, path: &str) -> Option<String> {
    match value {
        Value::Number(n) if n.is_f64() && n.as_f64() == Some(number) => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| path_of_number(v, number, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            path_of_number(v, number, &here)
        }),
        _ => None,
    }
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
    // serde reads a struct from an array too (`[]` as every field's default): refused here.
    let given = match json_value(bytes)? {
        object @ Value::Object(_) => return typed(object).map_err(|e| ApiError::invalid(vec![e])),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    Err(ApiError::invalid(vec![FieldError::new(
        "body",
        format!("must be one JSON object ({{\"field\": value, …}}), not {given}; nothing was changed"),
    )]))
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

/// A whole number, also when written with a zero fraction (`20.0`): JSON Schema calls that an
/// integer, and a client's JSON library may write it so.
pub fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!("{number} is not a whole number"))),
    }
}

/// [`whole`], optional (`null` or absent: `None`).
pub fn whole_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole")] i64);
    Ok(Option::<Whole>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_field(body: &str) -> Option<String> {
        match json_value(body.as_bytes()) {
            Ok(_) => None,
            Err(ApiError::Invalid { details, .. }) => Some(details[0].field.clone()),
            Err(other) => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn integers_are_taken_only_when_they_read_back_exactly() {
        for exact in [
            r#"{"x": 9223372036854775807}"#,
            r#"{"x": -9223372036854775808}"#,
            r#"{"x": 18446744073709551615}"#,
            r#"{"x": 18446744073709551616}"#,
            r#"{"x": 1.2345678901234567890123e29}"#,
            r#"{"x": "123456789012345678901234567890"}"#,
            r#"{"x\"123456789012345678901234567890": 1}"#,
        ] {
            assert_eq!(refused_field(exact), None, "{exact}");
        }
        assert_eq!(
            refused_field(r#"[{"a": 1}, {"p": {"x": [0, -123456789012345678901234567890]}}]"#).as_deref(),
            Some("[1].p.x[1]")
        );
    }
}
