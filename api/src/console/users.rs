//! The admins' page: every user; invite, a new set-password link, deactivate.

use super::*;

#[derive(Template)]
#[template(path = "users.html")]
pub(super) struct UsersPage<'a> {
    t: &'static Text,
    nav: Nav,
    csrf: &'a str,
    users: Vec<UserRow>,
    link: Option<String>,
    error: Option<&'static str>,
}

pub(super) struct UserRow {
    email: String,
    role: &'static str,
    password: &'static str,
    active: bool,
}

/// The signed-in admin, or the answer to give instead (sign in; not an admin).
pub(super) async fn admin(state: &AppState, jar: &CookieJar, headers: &HeaderMap) -> Result<(User, String), Response> {
    let (user, _, csrf) = viewer(state, jar).await?;
    if user.role != Role::Admin {
        return Err(message(
            StatusCode::FORBIDDEN,
            text(None, Some(&user), headers).admins_only,
        ));
    }
    Ok((user, csrf))
}

/// The users page, with the link just made (shown once) or what went wrong.
pub(super) async fn render_users(
    state: &AppState,
    user: &User,
    csrf: &str,
    t: &'static Text,
    link: Option<String>,
    error: Option<&'static str>,
) -> Answer {
    let users = state.engine.users().await.map_err(failed)?;
    let rows = users
        .into_iter()
        .map(|u| UserRow {
            role: role_name(t, u.role),
            password: if u.has_password { t.set } else { t.not_yet },
            active: u.deactivated_at.is_none(),
            email: u.email,
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = UsersPage {
        t,
        nav: Nav::new(t, user, csrf, "users"),
        csrf,
        users: rows,
        link,
        error,
    }
    .render();
    Ok(page(status, body))
}

/// `GET /users` (admins): every user, and the forms to invite, reset and deactivate.
pub(super) async fn users_page(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
) -> Answer {
    let (user, csrf) = admin(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    render_users(&state, &user, &csrf, t, None, None).await
}

#[derive(Deserialize)]
pub(super) struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// `POST /users` (admins): invites a person; the page shows their link once.
pub(super) async fn invite(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Answer {
    user_change(state, jar, headers, form, "invite").await
}

/// `POST /users/reset` (admins): a new set-password link.
pub(super) async fn reset(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Answer {
    user_change(state, jar, headers, form, "reset").await
}

/// `POST /users/deactivate` (admins).
pub(super) async fn deactivate(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Answer {
    user_change(state, jar, headers, form, "deactivate").await
}

pub(super) async fn user_change(
    state: AppState,
    jar: CookieJar,
    headers: HeaderMap,
    form: UserForm,
    what: &str,
) -> Answer {
    let (user, csrf) = admin(&state, &jar, &headers).await?;
    if !csrf_holds(&csrf, &form.csrf) {
        return Err(message(
            StatusCode::FORBIDDEN,
            text(None, Some(&user), &headers).expired_form,
        ));
    }
    let t = text(None, Some(&user), &headers);
    let by = nurture_engine::audit::By::console(&user.email);
    let link = |token: &str| format!("{}/set-password/{token}", state.public_url);
    let outcome = match what {
        "invite" => match form.role.parse::<Role>() {
            Ok(role) => state
                .engine
                .create_user(&form.email, role, &by)
                .await
                .map(|i| Some(link(&i.token))),
            Err(_) => Err(EngineError::Invalid(Vec::new())),
        },
        "reset" => state
            .engine
            .reset_user(&form.email, &by)
            .await
            .map(|i| Some(link(&i.token))),
        _ => state.engine.deactivate_user(&form.email, &by).await.map(|_| None),
    };
    match outcome {
        Ok(link) => render_users(&state, &user, &csrf, t, link, None).await,
        Err(EngineError::Invalid(_)) => render_users(&state, &user, &csrf, t, None, Some(t.bad_email)).await,
        Err(EngineError::Conflict(_)) => render_users(&state, &user, &csrf, t, None, Some(t.already_user)).await,
        Err(EngineError::Missing(_)) => render_users(&state, &user, &csrf, t, None, Some(t.bad_email)).await,
        Err(e) => Err(failed(e)),
    }
}
