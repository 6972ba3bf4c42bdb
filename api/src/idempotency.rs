//! `Idempotency-Key`: the same key twice has the effect of once and returns the first answer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nurture_engine::access::Role;
use nurture_engine::store::Idempotency;
use serde_json::Value;
use std::future::Future;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// The frame of every write a client may retry: the role check, the body (413 when too large),
/// then `work` on the body, at most once per `Idempotency-Key`.
pub async fn write<F, Fut>(
    state: &AppState,
    caller: &Caller,
    roles: &[Role],
    route: &str,
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    work: F,
) -> Response
where
    F: FnOnce(Bytes) -> Fut,
    Fut: Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    if let Err(e) = caller.require(roles) {
        return e.into_response();
    }
    let raw = match crate::body::bytes(raw) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    once(state, caller, route, headers, &raw.clone(), work(raw)).await
}

/// Runs `work` at most once per (caller, route, key). Without the header, it just runs.
pub async fn once<F>(
    state: &AppState,
    caller: &Caller,
    route: &str,
    headers: &HeaderMap,
    body: &[u8],
    work: F,
) -> Response
where
    F: Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let Some(raw) = headers.get("idempotency-key") else {
        return answer(work.await);
    };
    // A key the client sent but that cannot be read is refused, never ignored: ignoring it
    // would turn a retry into a second write.
    let key = match raw.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => key.to_owned(),
        _ => {
            return ApiError::Malformed(
                "Idempotency-Key must be 1 to 255 visible ASCII characters, without spaces (a UUID, say)".into(),
            )
            .into_response()
        }
    };
    let scope = format!("{}|{route}", caller.0.name);
    let fingerprint = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(body))
    };
    let engine = &state.engine;
    match engine.idempotency_begin(&scope, &key, &fingerprint).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Idempotency::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            answer(Ok((status, value)))
        }
        Ok(Idempotency::InFlight) => ApiError::Conflict {
            code: "idempotency_in_flight",
            message: "a request with this Idempotency-Key is still being processed; retry shortly".into(),
        }
        .into_response(),
        Ok(Idempotency::Mismatch) => ApiError::Conflict {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used for a different request; use a new key".into(),
        }
        .into_response(),
        Ok(Idempotency::Proceed) => {
            let result = work.await;
            let (status, value) = match &result {
                Ok((status, value)) => (*status, value.clone()),
                Err(e) => (e.status(), e.body()),
            };
            let recorded = if status.is_server_error() {
                engine.idempotency_abort(&scope, &key).await
            } else {
                engine
                    .idempotency_finish(&scope, &key, status.as_u16(), &value.to_string())
                    .await
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "Could not record an idempotent answer.");
            }
            answer(result)
        }
    }
}

fn answer(result: Result<(StatusCode, Value), ApiError>) -> Response {
    match result {
        Ok((StatusCode::NO_CONTENT, _)) => StatusCode::NO_CONTENT.into_response(),
        Ok((status, value)) => (status, axum::Json(value)).into_response(),
        Err(e) => e.into_response(),
    }
}
