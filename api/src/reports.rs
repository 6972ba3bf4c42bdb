//! The Reports section: what a campaign's messages, or a template's, did over a span of days,
//! and what became of a queue's handoffs, as JSON or (with `Accept: text/csv`) as CSV: one
//! line per day, step, version, template, channel and language; or per day and member.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::{EngineError, QueueReport, Report, WindowAsked};
use nurture_engine::report::SplitRate;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{Id, Params, QueryParam, QuerySpec, QueueName, TemplateName};
use crate::openapi::Doc;
use crate::AppState;

/// Marketers read reports; a CRM or BI tool pulls them with its key.
const READERS: &[Role] = &[Role::Marketer, Role::Crm];

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/reports/campaigns/{id}",
            get_with(campaign, |o| {
                o.summary(
                    "What a campaign's messages did, by day or week: sent, delivered, bounced (hard, soft), \
                     human opens and clicks (unique and total), machines' apart, unsubscribes, complaints, \
                     rates over delivered; per step, version, template, channel and language; the \
                     campaign's flow (arrivals, waiting, moves, exits), time spent at its wait steps, and \
                     its conversions (goal, handoff, accepted, converted) credited to the last step and to \
                     every campaign that reached the lead. `Accept: text/csv` for CSV.",
                )
                .allow(READERS)
                .answers::<Report>(200)
            }),
        )
        .api_route(
            "/v1/reports/queues/{queue}",
            get_with(queue, |o| {
                o.summary(
                    "What became of a queue's handoffs, by day or week: arrived (opened or moved in), \
                     claimed and the time to claim (p50, p90), released, accepted, rejected (by reason), \
                     converted, SLA breaches, moved out; per member; and what waits now. `Accept: text/csv` \
                     for CSV.",
                )
                .allow(READERS)
                .answers::<QueueReport>(200)
            }),
        )
        .api_route(
            "/v1/reports/messages/{name}",
            get_with(message, |o| {
                o.summary(
                    "What the messages of one template did, in every campaign step that sends it, by day \
                     or week. `Accept: text/csv` for CSV.",
                )
                .allow(READERS)
                .answers::<Report>(200)
            }),
        )
}

const FROM: QueryParam = QueryParam {
    name: "from",
    schema: || json!({"type": "string", "format": "date"}),
    description: "The first day (2026-11-01), in `tz`. Default: 30 days before `to`.",
};
const TO: QueryParam = QueryParam {
    name: "to",
    schema: || json!({"type": "string", "format": "date"}),
    description: "The last day, included. Default: today in `tz`.",
};
const SINCE: QueryParam = QueryParam {
    name: "since",
    schema: || json!({"type": "string", "minLength": 1}),
    description: "Instead of `from`: whole days back from `to` (`30d`, `12w`).",
};
const BY: QueryParam = QueryParam {
    name: "by",
    schema: || json!({"type": "string", "enum": ["day", "week"]}),
    description: "Periods: `day` (default) or `week` (ISO weeks, named by their Monday).",
};
const TZ: QueryParam = QueryParam {
    name: "tz",
    schema: || json!({"type": "string", "minLength": 1}),
    description: "The IANA time zone days are counted in (`Asia/Shanghai`). Default: the Rules' time zone.",
};

/// `?from=&to=&since=&by=&tz=`.
pub struct WindowQuery;
impl QuerySpec for WindowQuery {
    const PARAMS: &'static [QueryParam] = &[FROM, TO, SINCE, BY, TZ];
}

/// A campaign report's window, and `?rate=`.
pub struct CampaignQuery;
impl QuerySpec for CampaignQuery {
    const PARAMS: &'static [QueryParam] = &[
        FROM,
        TO,
        SINCE,
        BY,
        TZ,
        QueryParam {
            name: "window",
            schema: || json!({"type": "string", "enum": ["1d", "3d", "7d", "1w", "14d", "2w", "30d", "60d", "90d"]}),
            description: "Conversions: outcomes (goal, handoff, accepted, converted) credited to a campaign \
                          step within this many days of it reaching the lead: `1d`, `3d`, `7d`, `14d`, `30d` \
                          (default), `60d` or `90d`.",
        },
        QueryParam {
            name: "rate",
            schema: || json!({"type": "string", "enum": ["open", "click", "handoff"]}),
            description: "What a split's arms are compared on: unique human opens (default) or clicks over \
                          delivered, or handoffs over leads that took the arm.",
        },
    ];
}

async fn campaign(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(Id { id }): Path<Id>,
    query: Params<CampaignQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let window = window(&state, &query.0)?;
    let rate = match query.get("rate") {
        None => SplitRate::default(),
        Some(text) => SplitRate::parse(text)
            .ok_or_else(|| ApiError::Malformed(format!("rate {text:?} is none of open, click, handoff")))?,
    };
    let report = state
        .engine
        .campaign_report(&id, window, rate)
        .await
        .map_err(|e| match e {
            EngineError::NotFound => ApiError::NotFound(format!("no campaign {id:?} was ever deployed")),
            e => e.into(),
        })?;
    let file = file_name(&id, report.from, report.to);
    Ok(answer(&headers, report, Report::csv, &file))
}

async fn message(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(TemplateName { name }): Path<TemplateName>,
    query: Params<WindowQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let window = window(&state, &query.0)?;
    let report = state.engine.message_report(&name, window).await.map_err(|e| match e {
        EngineError::NotFound => ApiError::NotFound(format!(
            "no template {name:?} in the playbook in force, and none by that name sent anything then"
        )),
        e => e.into(),
    })?;
    let file = file_name(&name, report.from, report.to);
    Ok(answer(&headers, report, Report::csv, &file))
}

async fn queue(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(QueueName { queue }): Path<QueueName>,
    query: Params<WindowQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let window = window(&state, &query.0)?;
    let report = state.engine.queue_report(&queue, window).await.map_err(|e| match e {
        EngineError::NotFound => ApiError::NotFound(format!(
            "no queue {queue:?} in the playbook in force, and none by that name counted anything then"
        )),
        e => e.into(),
    })?;
    let file = file_name(&format!("queue-{queue}"), report.from, report.to);
    Ok(answer(&headers, report, QueueReport::csv, &file))
}

fn window(
    state: &AppState,
    query: &std::collections::HashMap<String, String>,
) -> Result<nurture_engine::engine::ReportWindow, ApiError> {
    let get = |name: &str| query.get(name).map(String::as_str);
    state
        .engine
        .report_window(WindowAsked {
            from: get("from"),
            to: get("to"),
            since: get("since"),
            by: get("by"),
            tz: get("tz"),
            window: get("window"),
        })
        .map_err(ApiError::Malformed)
}

/// A CSV download's file name: the subject (made safe) and the window.
fn file_name(subject: &str, from: chrono::NaiveDate, to: chrono::NaiveDate) -> String {
    format!(
        "{}-{from}-{to}.csv",
        subject.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_")
    )
}

/// JSON, or CSV when the caller asks for it before JSON.
fn answer<R: serde::Serialize>(headers: &HeaderMap, report: R, csv: fn(&R) -> String, file: &str) -> Response {
    if wants_csv(headers) {
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
            ],
            csv(&report),
        )
            .into_response()
    } else {
        Json(report).into_response()
    }
}

/// Whether `Accept` names CSV ahead of JSON (or without it).
fn wants_csv(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match (accept.find("text/csv"), accept.find("application/json")) {
        (Some(csv), Some(json)) => csv < json,
        (Some(_), None) => true,
        _ => false,
    }
}
