//! `/v1/admin/clock`: the manual clock of demos, tests and simulations. With `--clock manual`
//! the server's time moves only when told, and advancing it runs every step that falls due in
//! the span, in order, before answering.

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use nurture_engine::access::Role;
use nurture_engine::duration::Span;
use nurture_engine::lead::FieldError;
use serde::Deserialize;

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::input::JsonBody;
use crate::openapi::Doc;
use crate::AppState;

const EVERYONE: &[Role] = &[Role::Admin, Role::Marketer, Role::Sdr, Role::Crm];

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/admin/clock",
            get_with(read, |o| {
                o.summary("The server's time, and whether it is a manual clock.")
                    .allow(EVERYONE)
                    .answers::<ClockAnswer>(200)
            }),
        )
        .api_route(
            "/v1/admin/clock/advance",
            post_with(advance, |o| {
                o.summary(
                    "Manual clock only (409 otherwise): move time forward, running every step that falls \
                     due in the span, in order; answers once the engine is idle at the new time.",
                )
                .allow(&[Role::Admin])
                .answers::<ClockAnswer>(200)
            }),
        )
}

/// `{"by": "3d"}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    /// How far to move the clock: 30s, 15m, 4h, 3d, 2w, 1d12h.
    pub by: String,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ClockAnswer {
    pub now: DateTime<Utc>,
    /// `manual` or `system`.
    pub mode: &'static str,
    /// Enrollments that moved while the clock advanced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<usize>,
}

async fn read(State(state): State<AppState>, caller: Caller) -> Result<Json<ClockAnswer>, ApiError> {
    caller.require(EVERYONE)?;
    Ok(Json(ClockAnswer {
        now: state.engine.now(),
        mode: if state.clock.is_some() { "manual" } else { "system" },
        moved: None,
    }))
}

async fn advance(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody { raw, .. }: JsonBody<AdvanceBody>,
) -> Result<Json<ClockAnswer>, ApiError> {
    caller.require(&[])?;
    let Some(clock) = state.clock.clone() else {
        return Err(ApiError::Conflict {
            code: "system_clock",
            message: "the server runs on the system clock; start it with --clock manual to move time by hand".into(),
        });
    };
    let bytes = body::bytes(raw)?;
    let input: AdvanceBody = body::object(&bytes)?;
    let span: Span = input.by.parse().map_err(|e: nurture_engine::duration::SpanError| {
        ApiError::invalid(vec![FieldError::new("by", e.to_string())])
    })?;
    let moved = state
        .engine
        .advance_clock(&clock, span.to_chrono(), state.sender.as_ref())
        .await?;
    Ok(Json(ClockAnswer {
        now: state.engine.now(),
        mode: "manual",
        moved: Some(moved),
    }))
}
