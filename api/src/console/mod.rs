//! The console: the web app for the people who use nurture, served by `nurture serve`.
//! Server-rendered pages (askama templates in `api/console/`, escaped) in Chinese and English
//! (`text`). A person signs in with the e-mail and password of their user (`sign_in`), and
//! holds a session cookie (HttpOnly, SameSite=Lax, Secure behind an `https` public URL). Every
//! form carries a CSRF token: the session's, or, before there is one, a token in a cookie of
//! its own that the form must repeat. Sign-in attempts are limited per account and per address.
//! The start page (`home`) holds the queues and the campaigns; `users` is the admins' page.
//!
//! The pages call the same `Engine` methods as the API; they decide nothing about leads.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use nurture_engine::access::{Role, User};
use nurture_engine::engine::{EngineError, MIN_PASSWORD, SESSION};
use nurture_engine::handoff::{Amount, Decision, HandoffId, HandoffStatus};
use nurture_engine::store::CampaignStatus;
use serde::Deserialize;

use crate::AppState;

mod board;
mod campaigns;
mod home;
mod lead;
mod leads;
mod live;
mod playbook;
mod queue_report;
mod report;
mod sign_in;
mod text;
mod users;

pub use live::Live;
use text::*;
pub use text::{text, Text, EN, ZH};

/// The session cookie.
pub const SESSION_COOKIE: &str = "nurture_session";

/// The cookie holding the CSRF token of the forms shown before a session exists.
pub const FORM_COOKIE: &str = "nurture_form";

/// Sign-in attempts allowed per account and per address, each minute (bursts of as many).
pub const SIGN_INS_PER_MINUTE: u32 = 10;

/// How many accounts and addresses the sign-in limiter keeps before it forgets the idle ones.
pub const SIGN_IN_KEYS: usize = 10_000;

/// The limiter of sign-in attempts, keyed `account:EMAIL` and `address:IP`.
pub fn sign_in_limiter() -> Arc<governor::DefaultKeyedRateLimiter<String>> {
    let rate = std::num::NonZeroU32::new(SIGN_INS_PER_MINUTE).expect("a non-zero constant");
    Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(rate)))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/live", get(live::live))
        .route("/console.js", get(script))
        .route("/login", get(sign_in::login_page).post(sign_in::login))
        .route("/logout", post(sign_in::logout))
        .route("/logout-everywhere", post(sign_in::logout_everywhere))
        .route(
            "/set-password/{token}",
            get(sign_in::set_password_page).post(sign_in::set_password),
        )
        .route("/campaigns", get(campaigns::list))
        .route("/campaigns/{id}", get(campaigns::campaign))
        .route("/campaigns/{id}/steps/{step}", get(campaigns::at_step))
        .route("/campaigns/{id}/status", post(campaigns::set_status))
        .route("/campaigns/{id}/enroll", post(campaigns::enroll))
        .route("/campaigns/{id}/report", get(report::report))
        .route("/campaigns/{id}/report.csv", get(report::report_csv))
        .route("/playbook", get(playbook::files))
        .route("/playbook/edit", get(playbook::edit))
        .route("/playbook/check", post(playbook::check_text))
        .route("/playbook/deploy", post(playbook::deploy))
        .route("/queues", get(board::board))
        .route("/queues/{queue}/members/{member}", post(board::set_member))
        .route("/queues/{queue}/report", get(queue_report::queue_report))
        .route("/queues/{queue}/report.csv", get(queue_report::queue_report_csv))
        .route("/queues/{queue}/claim", post(home::claim))
        .route("/handoffs/{id}/{verb}", post(home::decide))
        .route("/leads", get(leads::search))
        .route("/leads/{id}", get(lead::lead_card))
        .route("/leads/{id}/erase", get(leads::erase_page).post(leads::erase))
        .route("/leads/{id}/notes", post(lead::add_note))
        .route("/leads/{id}/contact", post(lead::save_contact))
        .route("/users", get(users::users_page).post(users::invite))
        .route("/users/reset", post(users::reset))
        .route("/users/deactivate", post(users::deactivate))
}

/// The header of a signed-in page: the sections the person may open, who is signed in, and
/// the ways out.
pub(super) struct Nav {
    email: String,
    role: &'static str,
    csrf: String,
    oversees: bool,
    admin: bool,
    /// The section shown (`home`, `queues`, `users`), marked `aria-current`.
    at: &'static str,
}

impl Nav {
    pub(super) fn new(t: &Text, user: &User, csrf: &str, at: &'static str) -> Self {
        Self {
            email: user.email.clone(),
            role: role_name(t, user.role),
            csrf: csrf.to_owned(),
            oversees: user.role.oversees_queues(),
            admin: user.role == Role::Admin,
            at,
        }
    }
}

/// The cookie holding the IANA time zone of the person's browser (set by `console.js`).
pub const ZONE_COOKIE: &str = "nurture_tz";

/// The time zone a person reads times in: their browser's, else the playbook's default.
pub(super) fn zone(state: &AppState, jar: &CookieJar) -> chrono_tz::Tz {
    jar.get(ZONE_COOKIE)
        .and_then(|c| c.value().parse::<chrono_tz::Tz>().ok())
        .unwrap_or_else(|| state.engine.playbook().rules.default_timezone)
}

/// A time as a person reads it: in their time zone, to the minute, with the zone's name.
pub(super) fn local(at: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// The console's script (shortcuts, the live inbox, the browser's time zone): small, ours,
/// built into the binary.
const SCRIPT: &str = include_str!("../../console/console.js");

/// `GET /console.js`.
async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// What a console handler answers: the page, or what to answer instead (sign in first, a
/// refused form, a failure), so that `?` stops a handler at the first of those.
pub(super) type Answer = Result<Response, Response>;

/// A page, or a plain 500 that says nothing of why (logged) when a template fails.
pub(super) fn page(status: StatusCode, rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "A console page failed to render.");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

/// A failure of the engine, as a page: 503 when the database is unreachable.
pub(super) fn failed(e: EngineError) -> Response {
    let status = match e {
        EngineError::Store(nurture_engine::store::StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            tracing::error!(error = %e, "A console request failed.");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, "the console could not answer; try again").into_response()
}

/// Whether a form's CSRF token is the one expected, compared in constant time (of equal
/// length, as digests, so that the length does not show either).
pub(super) fn csrf_holds(expected: &str, given: &str) -> bool {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let (a, b) = (sha2::Sha256::digest(expected), sha2::Sha256::digest(given));
    !expected.is_empty() && bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// The signed-in user of the request, with the session's token and CSRF token.
pub(super) async fn signed_in(
    state: &AppState,
    jar: &CookieJar,
) -> Result<Option<(User, String, String)>, EngineError> {
    let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(None);
    };
    Ok(state
        .engine
        .session(&token)
        .await?
        .map(|(user, csrf)| (user, token, csrf)))
}

/// A short page that says one thing, with the way home.
pub(super) fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        Html(format!("<!doctype html><p>{text}</p><p><a href=\"/\">nurture</a></p>")),
    )
        .into_response()
}

/// The signed-in user of a form post and their session's token, once the form's CSRF token
/// (`given`) is the session's; else the answer to give (sign in; a 403 that says the form had
/// expired, in the user's language).
pub(super) async fn posted(
    state: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    given: &str,
) -> Result<(User, String, String), Response> {
    let (user, token, csrf) = viewer(state, jar).await?;
    if !csrf_holds(&csrf, given) {
        return Err(message(
            StatusCode::FORBIDDEN,
            text(None, Some(&user), headers).expired_form,
        ));
    }
    Ok((user, token, csrf))
}

/// The signed-in user of a page, their session's token and its CSRF token; else the answer
/// to give (sign in first).
pub(super) async fn viewer(state: &AppState, jar: &CookieJar) -> Result<(User, String, String), Response> {
    match signed_in(state, jar).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(failed(e)),
    }
}

/// The signed-in marketer or admin, or the answer to give instead.
pub(super) async fn overseer(
    state: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
) -> Result<(User, String), Response> {
    let (user, _, csrf) = viewer(state, jar).await?;
    if !user.role.oversees_queues() {
        return Err(message(
            StatusCode::FORBIDDEN,
            text(None, Some(&user), headers).marketers_only,
        ));
    }
    Ok((user, csrf))
}

/// The signed-in marketer or admin behind a form, or the answer to give instead.
pub(super) async fn overseer_posting(
    state: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<User, Response> {
    let (user, _, _) = posted(state, jar, headers, csrf).await?;
    if !user.role.oversees_queues() {
        return Err(message(
            StatusCode::FORBIDDEN,
            text(None, Some(&user), headers).marketers_only,
        ));
    }
    Ok(user)
}

#[derive(Deserialize)]
pub(super) struct Lang {
    lang: Option<String>,
    set: Option<String>,
    out: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    /// A queue where a claim just found nothing: the page says why.
    empty: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}
