//! Tracking, public and keyless: the open pixel, the click redirect and the unsubscribe page.
//! Every link carries a signed token; a forged or altered one gets 404 and records nothing.
//! Opens and clicks become behaviour events, so they wake waits and take branches at once.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nurture_engine::event::EventInput;
use nurture_engine::lead::{ConsentInput, ConsentInputs, ConsentStatus, LeadInput, LeadRef};
use nurture_engine::tag::Actor;
use nurture_engine::tracking::Token;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/o/{token}", get(open))
        .route("/t/c/{token}", get(click))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
}

/// A 1×1 transparent GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// User agents of image proxies and link scanners that fetch on their own, not a person.
const AUTOMATED_AGENTS: &[&str] = &[
    "GoogleImageProxy",
    "YahooMailProxy",
    "Barracuda",
    "Mimecast",
    "Proofpoint",
    "Microsoft Office Protection",
    "bot",
    "crawler",
];

fn not_found() -> ApiError {
    ApiError::NotFound("this link is not valid".into())
}

fn verify(state: &AppState, token: &str) -> Result<Token, ApiError> {
    state
        .tracking
        .as_ref()
        .and_then(|key| key.verify(token))
        .ok_or_else(not_found)
}

/// Whether a fetch looks automated: a HEAD request or a known proxy or scanner.
fn automated(method: &Method, headers: &HeaderMap) -> bool {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_lowercase();
    *method == Method::HEAD || AUTOMATED_AGENTS.iter().any(|a| agent.contains(&a.to_lowercase()))
}

/// Records a behaviour event about a message for the lead it went to.
async fn record(state: &AppState, message: i64, kind: &str, properties: Value) -> Result<(), ApiError> {
    let Some((lead, _)) = state.engine.message_lead(message).await? else {
        return Ok(());
    };
    let mut properties: Map<String, Value> = properties.as_object().cloned().unwrap_or_default();
    properties.insert("message_id".into(), json!(message));
    let event = EventInput {
        lead: LeadRef {
            id: Some(lead.to_string()),
            email: None,
            external_id: None,
        },
        kind: kind.into(),
        occurred_at: None,
        properties,
        idempotency_key: None,
        source: Some("tracking".into()),
    };
    state.engine.ingest_events(vec![event]).await?;
    Ok(())
}

async fn open(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let Token::Open { message } = verify(&state, &token)? else {
        return Err(not_found());
    };
    record(
        &state,
        message,
        "email_opened",
        json!({"automated": automated(&method, &headers)}),
    )
    .await?;
    Ok((
        [(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store")],
        PIXEL,
    )
        .into_response())
}

async fn click(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let Token::Click { message, url, link } = verify(&state, &token)? else {
        return Err(not_found());
    };
    record(
        &state,
        message,
        "email_clicked",
        json!({"url": url, "link": link, "automated": automated(&method, &headers)}),
    )
    .await?;
    // Only ever to the URL signed into the token: never an open redirect.
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\
         <body style=\"font-family:'PingFang SC','Microsoft YaHei',Helvetica,Arial,sans-serif;max-width:480px;margin:64px auto;padding:0 16px;color:#1f2937\">{body}</body></html>"
    ))
}

/// GET only asks: scanners that follow every link must not unsubscribe anyone.
async fn unsubscribe_page(State(state): State<AppState>, Path(token): Path<String>) -> Result<Html<String>, ApiError> {
    let Token::Unsubscribe { .. } = verify(&state, &token)? else {
        return Err(not_found());
    };
    Ok(page(
        "退订 · Unsubscribe",
        "<h1 style=\"font-size:22px\">退订邮件 · Unsubscribe</h1>\
         <p>确认后，您将不再收到我们的营销邮件。<br>Confirm, and you will receive no more marketing e-mail from us.</p>\
         <form method=\"post\"><button type=\"submit\" style=\"padding:10px 24px;font-size:16px\">确认退订 · Unsubscribe</button></form>",
    ))
}

/// The confirm button and RFC 8058 one-click unsubscribe: the lead stops getting that channel
/// at once, queued messages included.
async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Result<Html<String>, ApiError> {
    let Token::Unsubscribe { message } = verify(&state, &token)? else {
        return Err(not_found());
    };
    if let Some((lead, channel)) = state.engine.message_lead(message).await? {
        let opt_out = Some(ConsentInput {
            status: ConsentStatus::OptedOut,
            source: Some(format!("unsubscribe link (message {message})")),
            at: None,
        });
        let consent = if channel == "wechat" {
            ConsentInputs {
                email: None,
                wechat: opt_out,
            }
        } else {
            ConsentInputs {
                email: opt_out,
                wechat: None,
            }
        };
        let input = LeadInput {
            consent: Some(consent),
            ..Default::default()
        };
        match state
            .engine
            .patch_lead(lead, input, &Actor::System("unsubscribe".into()))
            .await
        {
            Ok(_) | Err(nurture_engine::engine::EngineError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(page(
        "已退订 · Unsubscribed",
        "<h1 style=\"font-size:22px\">您已退订 · You are unsubscribed</h1><p>您将不再收到我们的营销邮件。<br>You will receive no more marketing e-mail from us.</p>",
    ))
}
