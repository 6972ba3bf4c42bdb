//! The nurture REST API: the contract with CRMs, SDR tools and scripts (`shared/spec/api.md`).
//!
//! Architecture invariant: handlers parse, authorise and translate; every decision about
//! leads, tags and scores is the engine's. One [`error::ApiError`] type answers every failure.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use nurture_engine::engine::Engine;
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod campaigns;
pub mod capture;
pub mod console;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod input;
pub mod keys;
pub mod leads;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod playbook;
pub mod queues;
pub mod reports;
pub mod segments;
pub mod templates;
pub mod tracking;
pub mod webhooks;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<metrics::Metrics>,
    /// Set when the server runs on a manual clock (`--clock manual`).
    pub clock: Option<nurture_engine::clock::ManualClock>,
    /// On a manual clock, what `clock/advance` hands the messages that fell due to, before it
    /// answers (the server's mailer).
    pub sender: Option<nurture_engine::engine::Sender>,
    /// The server's mailer and link signer: previews sign their links with it, test e-mails
    /// go through it.
    pub mailer: Option<nurture_engine::engine::Sender>,
    /// The key that signs tracking links; without it every tracking link is 404.
    pub tracking: Option<nurture_engine::tracking::TrackingKey>,
    /// This server's own origins (`host`, `port`): a webhook may not point at them.
    pub own: Vec<(String, u16)>,
    /// Where webhooks may point: public addresses, and the networks the operator allowed.
    pub reach: nurture_engine::webhook::Reach,
    /// API keys looked up recently, by hash, for a second: most requests cost no key lookup,
    /// and a key revoked by another process stops working here within that second.
    pub keys: moka::sync::Cache<String, nurture_engine::access::ApiKey>,
    /// Requests per API key (by key hash), when limited.
    pub limiter: Option<Arc<governor::DefaultKeyedRateLimiter<String>>>,
    /// Console sign-in attempts, per account and per address.
    pub sign_ins: Arc<governor::DefaultKeyedRateLimiter<String>>,
    /// Console cookies are `Secure`: the public URL is `https`.
    pub secure_cookies: bool,
    /// Where people reach this server (`--public-url`): the base of set-password links.
    pub public_url: String,
    /// Queue changes pushed to open consoles.
    pub live: console::Live,
}

/// How long a server trusts a key it looked up: the bound on how long a revoked key works.
pub const KEY_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// The default rate limit: requests per second per API key (bursts of twice as many).
pub const DEFAULT_RATE_LIMIT: u32 = 1_000;

/// Every route, each with its documentation.
pub fn routes() -> ApiRouter<AppState> {
    use openapi::Doc;
    ApiRouter::new()
        .api_route(
            "/healthz",
            get_with(healthz, |o| o.summary("The process is up.").answers_plain(200, "Up.")),
        )
        .api_route(
            "/readyz",
            get_with(readyz, |o| {
                o.summary("The database answers and migrations are current (503 otherwise).")
                    .answers_plain(200, "Ready.")
            }),
        )
        .api_route(
            "/metrics",
            get_with(metrics::render, |o| {
                o.summary("Prometheus metrics (text format).")
                    .answers_plain(200, "The metrics.")
            }),
        )
        .api_route(
            "/openapi.json",
            get_with(openapi::serve, |o| {
                o.summary("This document.").answers_plain(200, "This document.")
            }),
        )
        .merge(leads::router())
        .merge(events::router())
        .merge(campaigns::router())
        .merge(playbook::router())
        .merge(templates::router())
        .merge(segments::router())
        .merge(admin::router())
        .merge(audit::router())
        .merge(reports::router())
        .merge(keys::router())
        .merge(queues::router())
        .merge(webhooks::router())
        .merge(tracking::router())
        .merge(capture::router())
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (router, document) = openapi::assemble(routes);
    router
        .merge(console::router())
        .merge(capture::preflight_router())
        .fallback(|| async { error::ApiError::NotFound("no such endpoint; see /openapi.json".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            error::ApiError::MethodNotAllowed(format!("this endpoint does not take {method}; see /openapi.json"))
        })
        .layer(axum::Extension(Arc::new(document)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// A server bound to a port, ready to run; tests bind port 0 and read [`Application::port`].
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn bind(address: &str, engine: Arc<Engine>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let local = listener.local_addr()?;
        Ok(Self {
            listener,
            state: AppState {
                engine,
                metrics: Arc::new(metrics::Metrics::new()),
                clock: None,
                sender: None,
                mailer: None,
                tracking: None,
                own: vec![(local.ip().to_string(), local.port())],
                public_url: format!("http://{local}"),
                reach: nurture_engine::webhook::Reach::public(),
                limiter: rate_limiter(DEFAULT_RATE_LIMIT),
                sign_ins: console::sign_in_limiter(),
                live: console::Live::default(),
                secure_cookies: false,
                keys: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(KEY_CACHE)
                    .build(),
            },
        })
    }

    /// Limits each API key to `per_second` requests a second (bursts of twice that); 0: no limit.
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.state.limiter = rate_limiter(per_second);
        self
    }

    /// The base of the server's public links (`--public-url`): also this server.
    pub fn with_public_url(mut self, url: &str) -> Self {
        if let Some(origin) = nurture_engine::webhook::origin(url) {
            self.state.own.push(origin);
        }
        self.state.secure_cookies = url.trim().to_ascii_lowercase().starts_with("https://");
        self.state.public_url = url.trim().trim_end_matches('/').to_owned();
        self
    }

    /// Lets webhooks point into these networks as well as at public addresses
    /// (`--webhook-allow-network`); the deliverer must be given the same `Reach`.
    pub fn with_webhook_reach(mut self, reach: nurture_engine::webhook::Reach) -> Self {
        self.state.reach = reach;
        self
    }

    /// Verifies tracking links with this key (the dispatcher's).
    pub fn with_tracking(mut self, key: nurture_engine::tracking::TrackingKey) -> Self {
        self.state.tracking = Some(key);
        self
    }

    /// Serves `POST /v1/admin/clock/advance` with this clock, which must be the engine's.
    pub fn with_manual_clock(mut self, clock: nurture_engine::clock::ManualClock) -> Self {
        self.state.clock = Some(clock);
        self
    }

    /// Has `clock/advance` send the messages that fall due in its span through `sender`, each
    /// at the time its step ran, before it answers.
    pub fn with_sender(mut self, sender: nurture_engine::engine::Sender) -> Self {
        self.state.sender = Some(sender);
        self
    }

    /// Renders previews and sends test e-mails with the server's mailer and link signer.
    pub fn with_mailer(mut self, mailer: nurture_engine::engine::Sender) -> Self {
        self.state.mailer = Some(mailer);
        self
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The peer's address classifies tracking fetches (Apple's prefetch network, …).
        let app = router(self.state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await
    }
}

fn rate_limiter(per_second: u32) -> Option<Arc<governor::DefaultKeyedRateLimiter<String>>> {
    let rate = std::num::NonZeroU32::new(per_second)?;
    let burst = std::num::NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some(Arc::new(governor::RateLimiter::keyed(
        governor::Quota::per_second(rate).allow_burst(burst),
    )))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "up"}))
}

/// How long `/readyz` waits for the database before it says it is unreachable.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn readyz(State(state): State<AppState>) -> Response {
    let unreachable = |why: String| {
        tracing::warn!(error = %why, "Readiness check failed: the database is unreachable.");
        let retry = [(
            axum::http::header::RETRY_AFTER,
            error::UNAVAILABLE_RETRY_AFTER.to_string(),
        )];
        (
            StatusCode::SERVICE_UNAVAILABLE,
            retry,
            Json(json!({"status": "database unreachable"})),
        )
            .into_response()
    };
    match tokio::time::timeout(READY_TIMEOUT, state.engine.ready()).await {
        Ok(Ok(true)) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "backend": state.engine.backend()})),
        )
            .into_response(),
        Ok(Ok(false)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "migrations pending"})),
        )
            .into_response(),
        Ok(Err(e)) => unreachable(e.to_string()),
        Err(_) => unreachable(format!("no answer within {} s", READY_TIMEOUT.as_secs())),
    }
}
