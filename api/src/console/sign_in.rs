//! Signing in and out, and setting a password through a one-time link.

use super::*;

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage<'a> {
    t: &'static Text,
    csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "set_password.html")]
pub(super) struct SetPasswordPage<'a> {
    t: &'static Text,
    csrf: &'a str,
    error: Option<&'a str>,
    min: usize,
}

pub(super) fn session_cookie(state: &AppState, value: String, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies)
        .path("/")
        .max_age(max_age)
        .build()
}

/// The pre-session CSRF token: the form cookie's, or a new one set in `jar`.
pub(super) fn form_token(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
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

pub(super) async fn login_page(
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
pub(super) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    lang: Option<String>,
}

pub(super) async fn login(
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
    // Keys of addresses and accounts that have not tried for a minute are forgotten, so that
    // a flood of made-up e-mails cannot grow the limiter without bound.
    if state.sign_ins.len() > SIGN_IN_KEYS {
        state.sign_ins.retain_recent();
    }
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

pub(super) async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Answer {
    sign_out(state, jar, headers, form, false).await
}

pub(super) async fn logout_everywhere(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Answer {
    sign_out(state, jar, headers, form, true).await
}

pub(super) async fn sign_out(
    state: AppState,
    jar: CookieJar,
    headers: HeaderMap,
    form: CsrfForm,
    everywhere: bool,
) -> Answer {
    let (user, token, _) = posted(&state, &jar, &headers, &form.csrf).await?;
    let ended = if everywhere {
        state.engine.sign_out_everywhere(&user).await.map(|_| ())
    } else {
        state.engine.sign_out(&token).await
    };
    ended.map_err(failed)?;
    let jar = jar.remove(session_cookie(&state, String::new(), time::Duration::ZERO));
    Ok((jar, Redirect::to("/login?out=1")).into_response())
}

pub(super) async fn set_password_page(
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
pub(super) struct SetPasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    csrf: String,
    lang: Option<String>,
}

pub(super) async fn set_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    let t = text(form.lang.as_deref(), None, &headers);
    let (jar, csrf) = form_token(&state, jar);
    let again = |status: StatusCode, error: &'static str, jar: CookieJar| {
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
        Err(EngineError::Missing(_)) => again(StatusCode::NOT_FOUND, t.link_expired, jar),
        Err(e) => failed(e),
    }
}
