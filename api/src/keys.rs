//! `/v1/admin/keys`: API keys listed, created, revoked and rotated by an admin. A key is shown
//! once, when made; only its hash is stored. A revoked key stops working within a second on
//! every server of the database (servers cache a key for at most that long).

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::NewApiKey;
use nurture_engine::store::ApiKeyRecord;
use serde::Deserialize;

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::input::{Id, JsonBody, Unread};
use crate::openapi::Doc;
use crate::AppState;

const ADMINS: &[Role] = &[Role::Admin];

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/admin/keys",
            get_with(list, |o| {
                o.summary("Every API key, revoked ones too (never the key itself).")
                    .allow(ADMINS)
                    .answers::<KeyList>(200)
            })
            .post_with(create, |o| {
                o.summary("Create a key: {\"name\", \"role\"}. The key is in this answer only.")
                    .allow(ADMINS)
                    .answers::<NewApiKey>(201)
            }),
        )
        .api_route(
            "/v1/admin/keys/{id}/revoke",
            post_with(revoke, |o| {
                o.summary("Revoke a key: within a second it works on no server of this database.")
                    .allow(ADMINS)
                    .answers::<ApiKeyRecord>(200)
            }),
        )
        .api_route(
            "/v1/admin/keys/{id}/rotate",
            post_with(rotate, |o| {
                o.summary("Replace a key with a new one of the same name and role; the old one is revoked.")
                    .allow(ADMINS)
                    .answers::<NewApiKey>(200)
            }),
        )
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct KeyList {
    pub items: Vec<ApiKeyRecord>,
}

/// `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    /// Who or what uses it: an SDR is known by their key's name.
    pub name: String,
    pub role: Role,
}

fn key_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no API key has id {id:?}")))
}

/// An admin does not revoke or rotate the key of the request itself over the API (a typo
/// would lock them out mid-task): another admin key, or `nurture apikey`, does that.
fn not_own(caller: &Caller, id: i64) -> Result<(), ApiError> {
    if caller.0.id == id {
        return Err(ApiError::Conflict {
            code: "own_key",
            message: "this is the key of this request: revoke or rotate it with another admin key, or with \
                      `nurture apikey revoke|rotate --id N` on the server"
                .into(),
        });
    }
    Ok(())
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<KeyList>, ApiError> {
    caller.require(ADMINS)?;
    Ok(Json(KeyList {
        items: state.engine.api_keys().await?,
    }))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody { raw, .. }: JsonBody<NewKeyBody>,
) -> Result<(axum::http::StatusCode, Json<NewApiKey>), ApiError> {
    caller.require(ADMINS)?;
    let asked: NewKeyBody = body::object(&body::bytes(raw)?)?;
    let made = state
        .engine
        .create_api_key(&asked.name, asked.role, &caller.by())
        .await?;
    tracing::info!(by = %caller.0.name, key = made.id, name = %made.name, role = made.role.as_str(), "API key created.");
    Ok((axum::http::StatusCode::CREATED, Json(made)))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Unread(_): Unread,
) -> Result<Json<ApiKeyRecord>, ApiError> {
    caller.require(ADMINS)?;
    let id = key_id(&id)?;
    not_own(&caller, id)?;
    let record = state.engine.revoke_api_key(id, &caller.by()).await?;
    // This server forgets it at once; others within their cache's second.
    state.keys.invalidate_all();
    tracing::info!(by = %caller.0.name, key = id, "API key revoked.");
    Ok(Json(record))
}

async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Unread(_): Unread,
) -> Result<Json<NewApiKey>, ApiError> {
    caller.require(ADMINS)?;
    let id = key_id(&id)?;
    not_own(&caller, id)?;
    let made = state.engine.rotate_api_key(id, &caller.by()).await?;
    state.keys.invalidate_all();
    tracing::info!(by = %caller.0.name, old = %id, key = made.id, "API key rotated.");
    Ok(Json(made))
}
