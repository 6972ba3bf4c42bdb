//! `GET /v1/segments/{id}/preview`: who a segment holds now, before a campaign is pointed at it
//! or it is enrolled by hand: how many, and a sample with why each matches.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::SegmentPreview;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{Id, Params, QueryParam, QuerySpec};
use crate::openapi::Doc;
use crate::AppState;

const MARKETERS: &[Role] = &[Role::Marketer];
/// The largest sample a preview shows.
const MAX_SAMPLE: usize = 100;

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/v1/segments/{id}/preview",
        get_with(preview, |o| {
            o.summary(
                "Who a deployed segment holds now: the count, and the first leads (`?sample=`, 10 by \
                 default) with the conditions that made each match. Nothing changes.",
            )
            .allow(MARKETERS)
            .answers::<SegmentPreview>(200)
        }),
    )
}

/// `?sample=`.
pub struct Sample;
impl QuerySpec for Sample {
    const PARAMS: &'static [QueryParam] = &[QueryParam {
        name: "sample",
        schema: || serde_json::json!({"type": "integer", "minimum": 0, "maximum": 100, "default": 10}),
        description: "How many matching leads to show, with why each matches.",
    }];
}

async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    query: Params<Sample>,
) -> Result<Json<SegmentPreview>, ApiError> {
    caller.require(MARKETERS)?;
    let sample = match query.get("sample") {
        None => 10,
        Some(text) => text.parse::<usize>().ok().filter(|n| *n <= MAX_SAMPLE).ok_or_else(|| {
            ApiError::Malformed(format!(
                "sample must be a whole number from 0 to {MAX_SAMPLE}, not {text:?}"
            ))
        })?,
    };
    Ok(Json(state.engine.segment_preview(&id, sample).await?))
}
