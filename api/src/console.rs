//! The console's sign-in: server-rendered pages (askama, escaped) in Chinese and English. A
//! person signs in with the e-mail and password of their user (`nurture user create`), and
//! holds a session cookie (HttpOnly, SameSite=Lax, Secure behind an `https` public URL). Every
//! form carries a CSRF token: the session's, or, before there is one, a token in a cookie of
//! its own that the form must repeat. Sign-in attempts are limited per account and per address.
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
use nurture_engine::handoff::{Decision, HandoffId, HandoffStatus};
use nurture_engine::store::CampaignStatus;
use serde::Deserialize;

use crate::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "nurture_session";
/// The cookie holding the CSRF token of the forms shown before a session exists.
pub const FORM_COOKIE: &str = "nurture_form";

/// Sign-in attempts allowed per account and per address, each minute (bursts of as many).
pub const SIGN_INS_PER_MINUTE: u32 = 10;

/// The limiter of sign-in attempts, keyed `account:EMAIL` and `address:IP`.
pub fn sign_in_limiter() -> Arc<governor::DefaultKeyedRateLimiter<String>> {
    let rate = std::num::NonZeroU32::new(SIGN_INS_PER_MINUTE).expect("a non-zero constant");
    Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(rate)))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/set-password/{token}", get(set_password_page).post(set_password))
        .route("/queues/{queue}/claim", post(claim))
        .route("/handoffs/{id}/{verb}", post(decide))
}

/// Every word a console page shows, in one language.
pub struct Text {
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub other_lang_name: &'static str,
    pub sign_in: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub wrong: &'static str,
    pub too_many: &'static str,
    pub expired_form: &'static str,
    pub password_set: &'static str,
    pub signed_out: &'static str,
    pub set_password: &'static str,
    pub new_password: &'static str,
    pub confirm_password: &'static str,
    pub password_rule: &'static str,
    pub mismatch: &'static str,
    pub home: &'static str,
    pub sign_out: &'static str,
    pub sign_out_everywhere: &'static str,
    pub my_queues: &'static str,
    pub queues: &'static str,
    pub queue_empty: &'static str,
    pub lead: &'static str,
    pub reason: &'static str,
    pub status: &'static str,
    pub sla: &'static str,
    pub yours: &'static str,
    pub campaigns: &'static str,
    pub campaign: &'static str,
    pub version: &'static str,
    pub due_in: &'static str,
    pub overdue: &'static str,
    pub hours: &'static str,
    pub minutes: &'static str,
    pub claim_next: &'static str,
    pub claimed: &'static str,
    pub nothing_to_claim: &'static str,
    pub accept: &'static str,
    pub convert: &'static str,
    pub release: &'static str,
    pub reject: &'static str,
    pub reject_reason: &'static str,
    pub recycle: &'static str,
    pub decided: &'static str,
    pub changed_meanwhile: &'static str,
    pub not_yours: &'static str,
    pub say_why: &'static str,
    pub actions: &'static str,
    pub my_handoffs: &'static str,
    pub queue: &'static str,
}

pub const ZH: Text = Text {
    lang: "zh",
    other_lang: "en",
    other_lang_name: "English",
    sign_in: "登录",
    email: "邮箱",
    password: "密码",
    wrong: "邮箱或密码不正确。",
    too_many: "尝试次数过多，请一分钟后再试。",
    expired_form: "页面已过期，请重新提交。",
    password_set: "密码已设置，请登录。",
    signed_out: "您已退出登录。",
    set_password: "设置密码",
    new_password: "新密码",
    confirm_password: "再次输入新密码",
    password_rule: "至少 10 个字符；几个词连在一起就是好密码。",
    mismatch: "两次输入的密码不一致。",
    home: "首页",
    sign_out: "退出",
    sign_out_everywhere: "在所有设备上退出",
    my_queues: "我的队列",
    queues: "队列",
    queue_empty: "队列中没有待处理的线索。",
    lead: "线索",
    reason: "原因",
    status: "状态",
    sla: "SLA",
    yours: "归您",
    campaigns: "营销活动",
    campaign: "活动",
    version: "版本",
    due_in: "剩余",
    overdue: "已超时",
    hours: "小时",
    minutes: "分钟",
    claim_next: "领取下一条",
    claimed: "已领取一条线索。",
    nothing_to_claim: "队列中没有可领取的线索。",
    accept: "接受",
    convert: "成交",
    release: "放回队列",
    reject: "退回",
    reject_reason: "退回原因",
    recycle: "冷却后回到培育",
    decided: "已记录。",
    changed_meanwhile: "这条线索刚被其他人处理过，请刷新后再试。",
    not_yours: "这条线索不归您处理。",
    say_why: "退回时请写明原因。",
    actions: "操作",
    my_handoffs: "我领取的线索",
    queue: "队列",
};

pub const EN: Text = Text {
    lang: "en",
    other_lang: "zh",
    other_lang_name: "中文",
    sign_in: "Sign in",
    email: "E-mail",
    password: "Password",
    wrong: "The e-mail or the password is wrong.",
    too_many: "Too many attempts; try again in a minute.",
    expired_form: "This page had expired; please send it again.",
    password_set: "Your password is set; sign in.",
    signed_out: "You are signed out.",
    set_password: "Set your password",
    new_password: "New password",
    confirm_password: "The new password again",
    password_rule: "At least 10 characters; a few words together make a good one.",
    mismatch: "The two passwords differ.",
    home: "Home",
    sign_out: "Sign out",
    sign_out_everywhere: "Sign out everywhere",
    my_queues: "My queues",
    queues: "Queues",
    queue_empty: "Nothing waits in this queue.",
    lead: "Lead",
    reason: "Reason",
    status: "Status",
    sla: "SLA",
    yours: "yours",
    campaigns: "Campaigns",
    campaign: "Campaign",
    version: "Version",
    due_in: "due in",
    overdue: "overdue by",
    hours: "h",
    minutes: "min",
    claim_next: "Claim next",
    claimed: "You claimed a lead.",
    nothing_to_claim: "Nothing in this queue can be claimed now.",
    accept: "Accept",
    convert: "Convert",
    release: "Release",
    reject: "Reject",
    reject_reason: "Why reject",
    recycle: "Back to nurture after the cool-down",
    decided: "Done.",
    changed_meanwhile: "Someone acted on this lead meanwhile; reload and try again.",
    not_yours: "This lead is not yours to decide.",
    say_why: "Say why you reject it.",
    actions: "Actions",
    my_handoffs: "My claimed leads",
    queue: "Queue",
};

/// The language of a page: asked for (`?lang=`, a form's `lang`), else the user's, else the
/// browser's first choice; Chinese unless English is preferred.
pub fn text(asked: Option<&str>, user: Option<&User>, headers: &HeaderMap) -> &'static Text {
    let pick = |code: &str| {
        if code.starts_with("en") {
            Some(&EN)
        } else if code.starts_with("zh") {
            Some(&ZH)
        } else {
            None
        }
    };
    asked
        .and_then(pick)
        .or_else(|| user.and_then(|u| u.language.as_deref()).and_then(pick))
        .or_else(|| {
            let accept = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
            accept
                .split(',')
                .map(|part| part.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
                .find_map(|code| pick(&code))
        })
        .unwrap_or(&ZH)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    t: &'static Text,
    csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage<'a> {
    t: &'static Text,
    csrf: &'a str,
    error: Option<&'a str>,
    min: usize,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    t: &'static Text,
    user: &'a User,
    role: &'static str,
    csrf: &'a str,
    /// "My queues" for an SDR, "Queues" for those who oversee them all.
    queues_title: &'static str,
    queues: Vec<QueueRows>,
    /// What the user has claimed and is to decide.
    mine: Vec<HandoffRow>,
    campaigns: Vec<CampaignRow>,
    notice: Option<String>,
    error: Option<&'static str>,
}

struct QueueRows {
    name: String,
    /// The signed-in user may claim from it (a member, or an admin).
    claimable: bool,
    handoffs: Vec<HandoffRow>,
}

struct HandoffRow {
    id: i64,
    queue: String,
    lead: String,
    reason: String,
    status: String,
    mine: bool,
    sla: String,
}

struct CampaignRow {
    id: String,
    name: String,
    status: String,
    version: String,
}

/// A page, or a plain 500 that says nothing of why (logged) when a template fails.
fn page(status: StatusCode, rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "A console page failed to render.");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

/// A failure of the engine, as a page: 503 when the database is unreachable.
fn failed(e: EngineError) -> Response {
    let status = match e {
        EngineError::Store(nurture_engine::store::StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            tracing::error!(error = %e, "A console request failed.");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, "the console could not answer; try again").into_response()
}

fn session_cookie(state: &AppState, value: String, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies)
        .path("/")
        .max_age(max_age)
        .build()
}

/// The pre-session CSRF token: the form cookie's, or a new one set in `jar`.
fn form_token(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    if let Some(token) = jar
        .get(FORM_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| t.len() == 64)
    {
        return (jar, token);
    }
    let token = nurture_engine::engine::random_hex();
    let cookie = Cookie::build((FORM_COOKIE, token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookies)
        .path("/")
        .build();
    (jar.add(cookie), token)
}

/// Whether a form's CSRF token is the one expected, compared in constant time.
fn csrf_holds(expected: &str, given: &str) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(expected), sha2::Sha256::digest(given));
    !expected.is_empty() && a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signed-in user of the request, with the session's token and CSRF token.
async fn signed_in(state: &AppState, jar: &CookieJar) -> Result<Option<(User, String, String)>, EngineError> {
    let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(None);
    };
    Ok(state
        .engine
        .session(&token)
        .await?
        .map(|(user, csrf)| (user, token, csrf)))
}

#[derive(Deserialize)]
struct Lang {
    lang: Option<String>,
    set: Option<String>,
    out: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    /// A queue where a claim just found nothing: the page says why.
    empty: Option<String>,
}

async fn login_page(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
) -> Response {
    let t = text(q.lang.as_deref(), None, &headers);
    let (jar, csrf) = form_token(&state, jar);
    let notice = if q.set.is_some() {
        Some(t.password_set)
    } else if q.out.is_some() {
        Some(t.signed_out)
    } else {
        None
    };
    let body = LoginPage {
        t,
        csrf: &csrf,
        email: "",
        error: None,
        notice,
    }
    .render();
    (jar, page(StatusCode::OK, body)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    lang: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let t = text(form.lang.as_deref(), None, &headers);
    let (jar, csrf) = form_token(&state, jar);
    let again = |status: StatusCode, error: &'static str, jar: CookieJar| {
        let body = LoginPage {
            t,
            csrf: &csrf,
            email: &form.email,
            error: Some(error),
            notice: None,
        }
        .render();
        (jar, page(status, body)).into_response()
    };
    if !csrf_holds(&csrf, &form.csrf) {
        return again(StatusCode::FORBIDDEN, t.expired_form, jar);
    }
    let email = form.email.trim().to_lowercase();
    let limited = [format!("account:{email}"), format!("address:{}", peer.ip())]
        .iter()
        .any(|key| state.sign_ins.check_key(key).is_err());
    if limited {
        return again(StatusCode::TOO_MANY_REQUESTS, t.too_many, jar);
    }
    match state.engine.sign_in(&email, &form.password).await {
        Ok(Some(signed)) => {
            tracing::info!(user = %signed.user.email, "Signed in to the console.");
            let max_age = time::Duration::seconds(SESSION.num_seconds());
            let jar = jar.add(session_cookie(&state, signed.token, max_age));
            (jar, Redirect::to("/")).into_response()
        }
        Ok(None) => again(StatusCode::UNAUTHORIZED, t.wrong, jar),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<AppState>, jar: CookieJar, Form(form): Form<CsrfForm>) -> Response {
    sign_out(state, jar, form, false).await
}

async fn logout_everywhere(State(state): State<AppState>, jar: CookieJar, Form(form): Form<CsrfForm>) -> Response {
    sign_out(state, jar, form, true).await
}

async fn sign_out(state: AppState, jar: CookieJar, form: CsrfForm, everywhere: bool) -> Response {
    let (user, token, csrf) = match signed_in(&state, &jar).await {
        Ok(Some(found)) => found,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return failed(e),
    };
    if !csrf_holds(&csrf, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "this form had expired; go back, reload and try again",
        )
            .into_response();
    }
    let ended = if everywhere {
        state.engine.sign_out_everywhere(&user).await.map(|_| ())
    } else {
        state.engine.sign_out(&token).await
    };
    if let Err(e) = ended {
        return failed(e);
    }
    let jar = jar.remove(session_cookie(&state, String::new(), time::Duration::ZERO));
    (jar, Redirect::to("/login?out=1")).into_response()
}

async fn set_password_page(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
) -> Response {
    let t = text(q.lang.as_deref(), None, &headers);
    let (jar, csrf) = form_token(&state, jar);
    let body = SetPasswordPage {
        t,
        csrf: &csrf,
        error: None,
        min: MIN_PASSWORD,
    }
    .render();
    (jar, page(StatusCode::OK, body)).into_response()
}

#[derive(Deserialize)]
struct SetPasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    csrf: String,
    lang: Option<String>,
}

async fn set_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    let t = text(form.lang.as_deref(), None, &headers);
    let (jar, csrf) = form_token(&state, jar);
    let again = |status: StatusCode, error: &str, jar: CookieJar| {
        let body = SetPasswordPage {
            t,
            csrf: &csrf,
            error: Some(error),
            min: MIN_PASSWORD,
        }
        .render();
        (jar, page(status, body)).into_response()
    };
    if !csrf_holds(&csrf, &form.csrf) {
        return again(StatusCode::FORBIDDEN, t.expired_form, jar);
    }
    if form.password != form.confirm {
        return again(StatusCode::UNPROCESSABLE_ENTITY, t.mismatch, jar);
    }
    match state.engine.set_password(&token, &form.password).await {
        Ok(user) => {
            tracing::info!(user = %user.email, "Password set.");
            (jar, Redirect::to(&format!("/login?set=1&lang={}", t.lang))).into_response()
        }
        Err(EngineError::Invalid(_)) => again(StatusCode::UNPROCESSABLE_ENTITY, t.password_rule, jar),
        Err(EngineError::Missing(why)) => again(StatusCode::NOT_FOUND, &why, jar),
        Err(e) => failed(e),
    }
}

fn role_name(t: &Text, role: Role) -> &'static str {
    match (t.lang, role) {
        ("zh", Role::Admin) => "管理员",
        ("zh", Role::Marketer) => "市场",
        ("zh", Role::Sdr) => "SDR",
        (_, Role::Admin) => "admin",
        (_, Role::Marketer) => "marketer",
        (_, Role::Sdr) => "SDR",
        (_, Role::Crm) => "CRM",
    }
}

/// A handoff as a row of the start page.
fn handoff_row(
    t: &Text,
    user: &User,
    h: nurture_engine::handoff::Handoff,
    lead: Option<nurture_engine::engine::LeadView>,
    now: chrono::DateTime<chrono::Utc>,
) -> HandoffRow {
    HandoffRow {
        id: h.id.0,
        queue: h.queue.clone(),
        lead: lead
            .map(|l| l.lead.email.unwrap_or_else(|| l.lead.id.to_string()))
            .unwrap_or_default(),
        reason: h.reason.clone(),
        status: handoff_status(t, h.status).to_owned(),
        mine: h.claimed_by.as_deref() == Some(user.email.as_str())
            || h.assigned_to.as_deref() == Some(user.email.as_str()),
        sla: match h.status {
            HandoffStatus::Open => h.sla_due_at.map(|due| countdown(t, due, now)).unwrap_or_default(),
            _ => String::new(),
        },
    }
}

/// Why a claim of `queue` found nothing, in the page's language: "2 open in sdr, all assigned to
/// bob@corp.example (2)".
fn explain_empty(t: &Text, queue: &str, why: &nurture_engine::engine::NothingToClaim) -> String {
    let zh = t.lang == "zh";
    if why.open == 0 {
        return if zh {
            format!("{queue} 队列中没有待领取的线索。")
        } else {
            format!("Nothing is open in {queue}.")
        };
    }
    let others: Vec<String> = why.others.iter().map(|(m, n)| format!("{m} ({n})")).collect();
    let assigned: usize = why.others.values().sum();
    match (zh, assigned == why.open) {
        (true, true) => format!(
            "{queue} 队列有 {} 条待领取，均已分配给：{}。",
            why.open,
            others.join("、")
        ),
        (false, true) => format!("{} open in {queue}, all assigned to {}.", why.open, others.join(", ")),
        (true, false) => format!(
            "{queue} 队列有 {} 条待领取，其中 {assigned} 条已分配给：{}；请稍后再试。",
            why.open,
            others.join("、")
        ),
        (false, false) => format!(
            "{} open in {queue}, {assigned} of them assigned to {}; try again in a moment.",
            why.open,
            others.join(", ")
        ),
    }
}

/// A handoff's status in the page's language.
fn handoff_status(t: &Text, status: HandoffStatus) -> &'static str {
    let zh = t.lang == "zh";
    match status {
        HandoffStatus::Open => {
            if zh {
                "待领取"
            } else {
                "open"
            }
        }
        HandoffStatus::Claimed => {
            if zh {
                "已领取"
            } else {
                "claimed"
            }
        }
        HandoffStatus::Accepted => {
            if zh {
                "已接受"
            } else {
                "accepted"
            }
        }
        HandoffStatus::Rejected => {
            if zh {
                "已退回"
            } else {
                "rejected"
            }
        }
        HandoffStatus::Converted => {
            if zh {
                "已成交"
            } else {
                "converted"
            }
        }
        HandoffStatus::Superseded => {
            if zh {
                "已被取代"
            } else {
                "superseded"
            }
        }
    }
}

/// A campaign's status in the page's language.
fn campaign_status(t: &Text, status: CampaignStatus) -> &'static str {
    let zh = t.lang == "zh";
    match status {
        CampaignStatus::Active => {
            if zh {
                "运行中"
            } else {
                "active"
            }
        }
        CampaignStatus::Paused => {
            if zh {
                "已暂停"
            } else {
                "paused"
            }
        }
        CampaignStatus::Retired => {
            if zh {
                "已下线"
            } else {
                "retired"
            }
        }
    }
}

/// "due in 3 h 20 min" / "overdue by 15 min".
fn countdown(t: &Text, due: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let left = due - now;
    let minutes = left.num_minutes().abs();
    let span = if minutes >= 60 {
        format!("{} {} {} {}", minutes / 60, t.hours, minutes % 60, t.minutes)
    } else {
        format!("{minutes} {}", t.minutes)
    };
    if left >= chrono::Duration::zero() {
        format!("{} {span}", t.due_in)
    } else {
        format!("{} {span}", t.overdue)
    }
}

/// The start page: an SDR's queues (what waits, what is theirs, how long the SLA has left);
/// for marketers and admins also the campaigns.
async fn home(State(state): State<AppState>, jar: CookieJar, headers: HeaderMap, Query(q): Query<Lang>) -> Response {
    let (user, _, csrf) = match signed_in(&state, &jar).await {
        Ok(Some(found)) => found,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return failed(e),
    };
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let playbook = state.engine.playbook();
    let now = state.engine.now();
    let mut queues = Vec::new();
    for (name, queue) in &playbook.queues.queues {
        let member = queue.members.contains(&user.email);
        if !member && user.role == Role::Sdr {
            continue;
        }
        let handoffs = match state.engine.queue(name, None, 50).await {
            Ok(handoffs) => handoffs,
            Err(e) => return failed(e),
        };
        let rows = handoffs
            .into_iter()
            .map(|(h, lead)| handoff_row(t, &user, h, lead, now))
            .collect();
        queues.push(QueueRows {
            claimable: member || user.role == Role::Admin,
            name: name.clone(),
            handoffs: rows,
        });
    }
    // A claim that found nothing says why: nothing open, or all of it someone else's.
    let why_empty = match q.empty.as_deref() {
        Some(queue) => match state.engine.nothing_to_claim(queue, &user.email).await {
            Ok(why) => Some(explain_empty(t, queue, &why)),
            Err(EngineError::Missing(_)) => None,
            Err(e) => return failed(e),
        },
        None => None,
    };
    let mine = match state.engine.claimed_by(&user.email, 100).await {
        Ok(claimed) => claimed
            .into_iter()
            .map(|(h, lead)| handoff_row(t, &user, h, lead, now))
            .collect(),
        Err(e) => return failed(e),
    };
    let mut campaigns = Vec::new();
    if user.role != Role::Sdr {
        match state.engine.campaigns().await {
            Ok(records) => campaigns.extend(records.into_iter().map(|c| CampaignRow {
                id: c.id,
                name: c.name,
                status: campaign_status(t, c.status).to_owned(),
                version: c.version.chars().take(12).collect(),
            })),
            Err(e) => return failed(e),
        }
    }
    let body = HomePage {
        t,
        role: role_name(t, user.role),
        user: &user,
        csrf: &csrf,
        queues_title: if user.role == Role::Sdr { t.my_queues } else { t.queues },
        queues,
        mine,
        campaigns,
        notice: match q.notice.as_deref() {
            Some("claimed") => Some(t.claimed.to_owned()),
            Some("empty") => Some(t.nothing_to_claim.to_owned()),
            Some("decided") => Some(t.decided.to_owned()),
            _ => why_empty,
        },
        error: match q.error.as_deref() {
            Some("changed") => Some(t.changed_meanwhile),
            Some("not_yours") => Some(t.not_yours),
            Some("say_why") => Some(t.say_why),
            _ => None,
        },
    }
    .render();
    page(StatusCode::OK, body)
}

/// `POST /queues/{queue}/claim`: the next handoff of a queue for the signed-in user.
async fn claim(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(queue): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (user, _, csrf) = match signed_in(&state, &jar).await {
        Ok(Some(found)) => found,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return failed(e),
    };
    if !csrf_holds(&csrf, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "this form had expired; go back, reload and try again",
        )
            .into_response();
    }
    if !matches!(user.role, Role::Sdr | Role::Admin) {
        return Redirect::to("/?error=not_yours").into_response();
    }
    match state.engine.claim(&queue, &user.email).await {
        Ok(Some((handoff, _))) => {
            tracing::info!(user = %user.email, handoff = handoff.id.0, "Claimed in the console.");
            Redirect::to("/?notice=claimed").into_response()
        }
        Ok(None) => {
            let query = serde_urlencoded::to_string([("empty", queue.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/?{query}")).into_response()
        }
        Err(EngineError::Missing(_) | EngineError::NotFound) => Redirect::to("/?notice=empty").into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    recycle: Option<String>,
}

/// `POST /handoffs/{id}/{accept|reject|convert|release}`: a decision of the signed-in user,
/// recorded under their e-mail.
async fn decide(
    State(state): State<AppState>,
    jar: CookieJar,
    Path((id, verb)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let (user, _, csrf) = match signed_in(&state, &jar).await {
        Ok(Some(found)) => found,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return failed(e),
    };
    if !csrf_holds(&csrf, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "this form had expired; go back, reload and try again",
        )
            .into_response();
    }
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, "no such handoff").into_response();
    };
    let decision = match verb.as_str() {
        "accept" => Decision::Accept,
        "convert" => Decision::Convert,
        "release" => Decision::Release,
        "reject" => Decision::Reject {
            reason: form.reason.trim().to_owned(),
            recycle: form.recycle.is_some(),
        },
        _ => return (StatusCode::NOT_FOUND, "no such decision").into_response(),
    };
    let by = nurture_engine::audit::By::console(&user.email);
    match state
        .engine
        .decide(HandoffId(id), &decision, &by, user.role.oversees_queues())
        .await
    {
        Ok(_) => Redirect::to("/?notice=decided").into_response(),
        Err(EngineError::Invalid(_)) => Redirect::to("/?error=say_why").into_response(),
        Err(EngineError::Forbidden(_)) => Redirect::to("/?error=not_yours").into_response(),
        Err(EngineError::Conflict(_) | EngineError::Missing(_)) => Redirect::to("/?error=changed").into_response(),
        Err(e) => failed(e),
    }
}
