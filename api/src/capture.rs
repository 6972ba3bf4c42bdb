//! Lead capture, public and keyless: the tracking script (`GET /t/nurture.js`) and the page
//! views and clicks it posts (`POST /t/events`, with CORS for the playbook's `tracking.sites`).
//! Limited per address; a bot's views are kept and marked, scored by no rule; with
//! `consent: required` nothing is kept before the visitor consents, and with `respect_dnt`
//! nothing from a browser that asks not to be tracked. Nothing here changes a known lead's
//! fields.

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nurture_engine::fetch::{automated, Fetch};
use nurture_engine::pages::TrackBatch;
use nurture_engine::playbook::TrackingConsent;
use std::net::SocketAddr;
use std::sync::LazyLock;

use crate::error::ApiError;
use crate::input::JsonBody;
use crate::openapi::Doc;
use crate::AppState;

/// The largest post the script makes (50 events of a few addresses each), with room to spare.
const MAX_TRACK_BODY: usize = 256 * 1024;

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/t/nurture.js",
            get_with(script, |o| {
                o.summary("The tracking script a site includes with one <script> tag.")
                    .answers_plain(200, "JavaScript.")
            }),
        )
        .api_route(
            "/t/events",
            post_with(track, |o| {
                o.summary(
                    "Page views, clicks and downloads from the tracking script, and who the \
                     visitor is when the site says so; CORS for the playbook's tracking sites.",
                )
                .answers::<TrackAnswer>(200)
                .fails(403, "The origin is not one of the playbook's tracking sites.")
            }),
        )
        // A public endpoint reads no more of a body than a post can hold.
        .route_layer(axum::extract::DefaultBodyLimit::max(MAX_TRACK_BODY))
}

/// The CORS preflight of `POST /t/events`: a transport detail of browsers, not an operation of
/// the API document.
pub fn preflight_router() -> axum::Router<AppState> {
    axum::Router::new().route("/t/events", axum::routing::options(preflight))
}

/// What a post recorded.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct TrackAnswer {
    /// Recorded as a lead's events (a known visitor's, or those merged when it became known).
    pub recorded: usize,
    /// Kept for a visitor not known yet.
    pub kept: usize,
}

static BOTS: LazyLock<isbot::Bots> = LazyLock::new(isbot::Bots::default);

/// The request's `Origin` when the playbook lists it as a tracking site; `Err` when it names
/// another; `Ok(None)` when there is none (a server posting, not a browser).
fn allowed_origin(state: &AppState, headers: &HeaderMap) -> Result<Option<HeaderValue>, ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let text = origin.to_str().unwrap_or_default().trim().to_ascii_lowercase();
    let playbook = state.engine.playbook();
    if playbook.rules.tracking.sites.contains(&text) {
        Ok(Some(origin.clone()))
    } else {
        Err(ApiError::Forbidden(format!(
            "origin {text:?} is not one of the playbook's tracking sites; add it to `tracking: {{ sites: [...] }}` in the Rules"
        )))
    }
}

fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match allowed_origin(&state, &headers) {
        Ok(origin) => {
            let response = (
                StatusCode::NO_CONTENT,
                [
                    (header::ACCESS_CONTROL_ALLOW_METHODS, "POST"),
                    (header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"),
                    (header::ACCESS_CONTROL_MAX_AGE, "86400"),
                ],
            )
                .into_response();
            with_cors(response, origin)
        }
        Err(e) => e.into_response(),
    }
}

async fn track(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: JsonBody<TrackBatch>,
) -> Response {
    let origin = match allowed_origin(&state, &headers) {
        Ok(origin) => origin,
        Err(e) => return e.into_response(),
    };
    let answer = tracked(&state, &headers, peer.as_ref().map(|p| &p.0), body).await;
    with_cors(answer.unwrap_or_else(IntoResponse::into_response), origin)
}

async fn tracked(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
    body: JsonBody<TrackBatch>,
) -> Result<Response, ApiError> {
    let ip = crate::tracking::client_ip(headers, peer);
    if let (Some(limiter), Some(ip)) = (&state.limiter, ip) {
        crate::auth::allowance(limiter, &format!("track:{ip}")).map_err(ApiError::TooManyFromAddress)?;
    }
    let raw = crate::body::bytes_within(body.raw, MAX_TRACK_BODY)?;
    let batch: TrackBatch = crate::body::object(&raw)?;
    let playbook = state.engine.playbook();
    let tracking = &playbook.rules.tracking;
    let header_says = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim) == Some("1");
    let refused = tracking.respect_dnt && (header_says("dnt") || header_says("sec-gpc"));
    let unconsented = tracking.consent == TrackingConsent::Required && batch.consent != Some(true);
    if refused || unconsented {
        return Ok(Json(TrackAnswer { recorded: 0, kept: 0 }).into_response());
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let fetch = Fetch {
        head: false,
        agent,
        ip,
        since_sent: None,
    };
    let bot = agent.trim().is_empty() || BOTS.is_bot(agent) || automated(&fetch).is_some();
    let tracked = state.engine.track(&batch, bot).await?;
    Ok(Json(TrackAnswer {
        recorded: tracked.recorded,
        kept: tracked.kept,
    })
    .into_response())
}

/// The script, with the playbook's consent and Do Not Track settings written in.
async fn script(State(state): State<AppState>) -> Response {
    let playbook = state.engine.playbook();
    let tracking = &playbook.rules.tracking;
    let settings = serde_json::json!({
        "consent": match tracking.consent {
            TrackingConsent::Required => "required",
            TrackingConsent::Implied => "implied",
        },
        "respectDnt": tracking.respect_dnt,
    });
    let body = include_str!("../capture/nurture.js").replace("/*SETTINGS*/{}", &settings.to_string());
    (
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
