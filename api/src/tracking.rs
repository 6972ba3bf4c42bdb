//! Tracking, public and keyless: the open pixel, the click redirect and the unsubscribe page.
//! Every link carries a signed token; a forged or altered one gets 404 and records nothing.
//! Opens and clicks become behaviour events, so they wake waits and take branches at once.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use nurture_engine::event::EventInput;
use nurture_engine::fetch::{automated, Fetch};
use nurture_engine::lead::{ConsentInput, ConsentInputs, ConsentStatus, LeadInput, LeadRef};
use nurture_engine::store::MessageTarget;
use nurture_engine::tag::Actor;
use nurture_engine::tracking::Token;
use serde_json::{json, Map, Value};
use std::net::{IpAddr, SocketAddr};

use crate::error::ApiError;
use crate::input::LinkToken;
use crate::openapi::Doc;
use crate::AppState;

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/t/o/{token}",
            get_with(open, |o| {
                o.summary(
                    "Open pixel (1x1 GIF); records email_opened, flagged automated for proxies and \
                     HEAD requests. A forged token: 404.",
                )
                .answers_plain(200, "A 1x1 transparent GIF.")
            }),
        )
        .api_route(
            "/t/c/{token}",
            get_with(click, |o| {
                o.summary(
                    "Click redirect: 302 to the link signed into the token (never anywhere else); \
                     records email_clicked.",
                )
                .answers_plain(302, "To the link.")
            }),
        )
        .api_route(
            "/u/{token}",
            get_with(unsubscribe_page, |o| {
                o.summary("Unsubscribe page with a confirm button; changes nothing by itself.")
                    .answers_plain(200, "The page (HTML).")
            })
            .post_with(unsubscribe, |o| {
                o.summary(
                    "Unsubscribe (the confirm button, and RFC 8058 one-click): the lead stops \
                     getting that channel at once.",
                )
                .answers_plain(200, "Unsubscribed (HTML).")
            }),
        )
}

/// A 1×1 transparent GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
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

/// The client's address: the first hop of `X-Forwarded-For` behind a proxy, else the peer.
pub(crate) fn client_ip(headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>) -> Option<IpAddr> {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| peer.map(|p| p.0.ip()))
}

/// Who fetched: the properties `automated` and, for a machine, `automated_by` (why).
fn classify(
    state: &AppState,
    target: &MessageTarget,
    method: &Method,
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Map<String, Value> {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let fetch = Fetch {
        head: *method == Method::HEAD,
        agent,
        ip: client_ip(headers, peer),
        since_sent: target.sent_at.map(|sent| state.engine.now() - sent),
    };
    let mut properties = Map::new();
    let why = automated(&fetch);
    properties.insert("automated".into(), json!(why.is_some()));
    if let Some(why) = why {
        properties.insert("automated_by".into(), json!(why));
    }
    properties
}

/// Records a behaviour event about a message for the lead it went to, saying whether a person
/// or a machine fetched it.
async fn record(
    state: &AppState,
    message: i64,
    kind: &str,
    fetched: (&Method, &HeaderMap, Option<&ConnectInfo<SocketAddr>>),
    extra: Value,
) -> Result<(), ApiError> {
    let Some(target) = state.engine.message_lead(message).await? else {
        return Ok(());
    };
    let lead = target.lead;
    let (method, headers, peer) = fetched;
    let mut properties = classify(state, &target, method, headers, peer);
    properties.extend(extra.as_object().cloned().unwrap_or_default());
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
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(LinkToken { token }): Path<LinkToken>,
) -> Result<Response, ApiError> {
    let Token::Open { message } = verify(&state, &token)? else {
        return Err(not_found());
    };
    let peer = peer.as_ref().map(|p| &p.0);
    record(&state, message, "email_opened", (&method, &headers, peer), json!({})).await?;
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
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(LinkToken { token }): Path<LinkToken>,
) -> Result<Response, ApiError> {
    let Token::Click { message, url, link } = verify(&state, &token)? else {
        return Err(not_found());
    };
    let peer = peer.as_ref().map(|p| &p.0);
    record(
        &state,
        message,
        "email_clicked",
        (&method, &headers, peer),
        json!({"url": url, "link": link}),
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
async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(LinkToken { token }): Path<LinkToken>,
) -> Result<Html<String>, ApiError> {
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
async fn unsubscribe(
    State(state): State<AppState>,
    Path(LinkToken { token }): Path<LinkToken>,
) -> Result<Html<String>, ApiError> {
    let Token::Unsubscribe { message } = verify(&state, &token)? else {
        return Err(not_found());
    };
    if let Some(MessageTarget { lead, channel, .. }) = state.engine.message_lead(message).await? {
        let opt_out = Some(ConsentInput {
            status: ConsentStatus::OptedOut,
            source: Some(format!("unsubscribe link (message {message})")),
            at: None,
        });
        let consent = if channel == nurture_engine::channel::Channel::Wechat {
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
            Ok(_) => {
                // The behaviour, for rules and the message's report; once per message.
                let event = EventInput {
                    lead: LeadRef {
                        id: Some(lead.to_string()),
                        email: None,
                        external_id: None,
                    },
                    kind: "unsubscribed".into(),
                    occurred_at: None,
                    properties: json!({"message_id": message, "channel": channel.as_str()})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    idempotency_key: Some(format!("unsubscribe:{message}")),
                    source: Some("tracking".into()),
                };
                state.engine.ingest_events(vec![event]).await?;
            }
            Err(nurture_engine::engine::EngineError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(page(
        "已退订 · Unsubscribed",
        "<h1 style=\"font-size:22px\">您已退订 · You are unsubscribed</h1><p>您将不再收到我们的营销邮件。<br>You will receive no more marketing e-mail from us.</p>",
    ))
}
