//! `POST /v1/events`: one behaviour event or an array of up to 10,000.

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use nurture_engine::access::Role;
use nurture_engine::engine::IngestReport;
use nurture_engine::engine::Rejected;
use nurture_engine::event::EventInput;
use serde_json::Value;

use crate::auth::Caller;
use crate::body::{self, OneOrMany};
use crate::error::ApiError;
use crate::input::{JsonBody, Keyed};
use crate::openapi::Doc;
use crate::{idempotency, AppState};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/v1/events",
        post_with(ingest, |o| {
            o.summary("One behaviour event, or an array of up to 10,000.")
                .allow(WRITERS)
                .answers::<IngestReport>(200)
        }),
    )
}

const WRITERS: &[Role] = &[Role::Crm, Role::Marketer];

/// `POST /v1/events` takes one event or an array of them.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OneOrManyEvents {
    One(EventInput),
    Many(Vec<EventInput>),
}

async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    Keyed(headers): Keyed,
    body: JsonBody<OneOrManyEvents>,
) -> Response {
    let (state, caller) = (&state, &caller);
    idempotency::write(
        state,
        caller,
        WRITERS,
        "POST /v1/events",
        &headers,
        body.raw,
        |raw| async move {
            match body::one_or_many(&raw)? {
                OneOrMany::One(value) => {
                    let event: EventInput = body::typed(value).map_err(|e| ApiError::invalid(vec![e]))?;
                    let errors = event.validate(state.engine.now());
                    if !errors.is_empty() {
                        return Err(ApiError::invalid(errors));
                    }
                    let report = state.engine.ingest_events(vec![event]).await?;
                    state
                        .metrics
                        .events(report.accepted, report.duplicates, report.rejected.len());
                    if let Some(rejected) = report.rejected.first() {
                        return Err(match rejected.error.code.as_str() {
                            "not_found" => ApiError::NotFound(rejected.error.message.clone()),
                            "idempotency_key_reused" => ApiError::Conflict {
                                code: "idempotency_key_reused",
                                message: rejected.error.message.clone(),
                            },
                            _ => ApiError::invalid(rejected.error.details.clone()),
                        });
                    }
                    Ok((StatusCode::OK, serde_json::to_value(report).unwrap_or(Value::Null)))
                }
                OneOrMany::Many(items) => {
                    let mut events = Vec::with_capacity(items.len());
                    let mut positions = Vec::with_capacity(items.len());
                    let mut rejected = Vec::new();
                    for (index, item) in items.into_iter().enumerate() {
                        match body::typed::<EventInput>(item) {
                            Ok(event) => {
                                positions.push(index);
                                events.push(event);
                            }
                            Err(e) => rejected.push(Rejected::invalid(index, vec![e])),
                        }
                    }
                    let mut report = state.engine.ingest_events(events).await?;
                    for r in &mut report.rejected {
                        r.index = positions[r.index];
                    }
                    report.rejected.extend(rejected);
                    report.rejected.sort_by_key(|r| r.index);
                    state
                        .metrics
                        .events(report.accepted, report.duplicates, report.rejected.len());
                    Ok((StatusCode::OK, serde_json::to_value(report).unwrap_or(Value::Null)))
                }
            }
        },
    )
    .await
}
