//! `GET /v1/audit`: who changed what by hand, and when, newest first.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::audit::{filter_names, kinds_named, AuditEntry, AuditFilter};
use nurture_engine::clock::to_micros;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{Params, QueryParam, QuerySpec, CURSOR, LIMIT};
use crate::openapi::Doc;
use crate::{page, AppState};

const MARKETERS: &[Role] = &[Role::Marketer];

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/v1/audit",
        get_with(list, |o| {
            o.summary(
                "Changes made by hand, newest first: deploys, pauses and resumes, enrollments and exits, \
                 manual tags and scores, handoff decisions, queue members, webhook subscriptions, API \
                 keys and erasures, each with who made it, from where, when and what changed.",
            )
            .allow(MARKETERS)
            .answers::<AuditPage>(200)
        }),
    )
}

/// `GET /v1/audit`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// `?actor=&kind=&since=&limit=&cursor=`.
pub struct AuditQuery;
impl QuerySpec for AuditQuery {
    const PARAMS: &'static [QueryParam] = &[
        QueryParam {
            name: "actor",
            schema: || json!({"type": "string", "minLength": 1}),
            description: "Only changes by this API key (its name) or command-line user.",
        },
        QueryParam {
            name: "kind",
            schema: || json!({"type": "string", "enum": filter_names()}),
            description: "Only changes of this kind (`campaign.paused`, or `pause`), or of every kind of a family (`campaign`).",
        },
        QueryParam {
            name: "since",
            schema: || json!({"type": "string", "minLength": 1}),
            description: "Only changes at or after this time: an RFC 3339 time (`2026-12-01T00:00:00Z`) or a span back from now (`7d`, `12h`).",
        },
        LIMIT,
        CURSOR,
    ];
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Params<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(MARKETERS)?;
    let (limit, before) = page::by_id(query.get("limit"), query.get("cursor"))?;
    let actor = match query.get("actor").map(|a| a.trim()) {
        Some("") => {
            return Err(ApiError::Malformed(
                "actor is empty; name an API key or leave it out".into(),
            ))
        }
        Some(actor) => match nurture_engine::lead::text_problem(actor) {
            Some(problem) => return Err(ApiError::Malformed(format!("actor {problem}"))),
            None => Some(actor.to_owned()),
        },
        None => None,
    };
    let kinds = query
        .get("kind")
        .map(|k| kinds_named(k))
        .transpose()
        .map_err(ApiError::Malformed)?;
    let since = query.get("since").map(|s| since(s, state.engine.now())).transpose()?;
    let filter = AuditFilter { actor, kinds, since };
    let mut items = state.engine.audit_log(&filter, before, limit + 1).await?;
    let next_cursor = page::cut_by_id(&mut items, limit, |e| e.id);
    Ok(Json(AuditPage { items, next_cursor }))
}

/// `?since=` as microseconds: an RFC 3339 time, or a span back from `now`.
fn since(text: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64, ApiError> {
    let text = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(to_micros(at.with_timezone(&chrono::Utc)));
    }
    match text.parse::<nurture_engine::duration::Span>() {
        Ok(span) => Ok(to_micros(now - span.to_chrono())),
        Err(_) => Err(ApiError::Malformed(format!(
            "since {text:?} is neither a time (2026-12-01T00:00:00Z) nor a span back from now (7d, 12h)"
        ))),
    }
}
