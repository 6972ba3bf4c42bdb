//! The Webhooks section of the API: subscriptions and their delivery logs.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::NewWebhook;
use nurture_engine::store::handoffs::{Delivery, Webhook};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{Id, JsonBody, Keyed, Paged, Params};
use crate::openapi::Doc;
use crate::{body, idempotency, page, AppState};

const CRMS: &[Role] = &[Role::Crm];

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/webhooks",
            get_with(list, |o| {
                o.summary("The active subscriptions.")
                    .allow(CRMS)
                    .answers::<WebhookList>(200)
            })
            .post_with(create, |o| {
                o.summary(
                    "Subscribe a CRM URL to event types; deliveries are signed (X-Nurture-Signature) \
                     and retried for 24 h. The secret is shown in this answer only.",
                )
                .allow(CRMS)
                .answers::<WebhookView>(201)
            }),
        )
        .api_route(
            "/v1/webhooks/{id}",
            get_with(read, |o| {
                o.summary("One subscription.").allow(CRMS).answers::<WebhookView>(200)
            })
            .delete_with(remove, |o| {
                o.summary("Unsubscribe; pending deliveries are dropped (204).")
                    .allow(CRMS)
                    .answers_plain(204, "Unsubscribed.")
            }),
        )
        .api_route(
            "/v1/webhooks/{id}/deliveries",
            get_with(deliveries, |o| {
                o.summary(
                    "The delivery log, newest first: each delivery with its id, status and every \
                     attempt; paginated.",
                )
                .allow(CRMS)
                .answers::<DeliveryPage>(200)
            }),
        )
}

/// The schema of `events`: at least one known event type, or `*`.
fn event_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut names: Vec<&str> = nurture_engine::engine::WEBHOOK_EVENTS.to_vec();
    names.push("*");
    schemars::json_schema!({"type": "array", "minItems": 1, "items": {"type": "string", "enum": names}})
}

/// `POST /v1/webhooks`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// Where deliveries are POSTed: http or https, not this server, not an internal address.
    #[schemars(regex(pattern = r"^https?://[^\s/?#@]+"))]
    pub url: String,
    /// Event types, e.g. `lead.handed_off`, `handoff.sla_breached`; `*` for all.
    #[schemars(length(min = 1), schema_with = "event_names")]
    pub events: Vec<String>,
    /// The HMAC key of `X-Nurture-Signature` (16 to 256 characters); made for you when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A subscription; `secret` only in the answer that created it.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct WebhookView {
    #[serde(flatten)]
    pub webhook: Webhook,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

fn webhook_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no webhook {raw:?}")))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Keyed(headers): Keyed,
    body: JsonBody<WebhookBody>,
) -> Response {
    let app = state.clone();
    let by = caller.by();
    idempotency::write(
        &state,
        &caller,
        CRMS,
        "webhooks",
        &headers,
        body.raw,
        |raw| async move {
            let input: WebhookBody = body::object(&raw)?;
            let webhook = app
                .engine
                .create_webhook(
                    NewWebhook {
                        url: input.url,
                        events: input.events,
                        secret: input.secret,
                    },
                    &app.own,
                    &app.reach,
                    &by,
                )
                .await?;
            let secret = Some(webhook.secret.clone());
            Ok((StatusCode::CREATED, json!(WebhookView { webhook, secret })))
        },
    )
    .await
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<WebhookList>, ApiError> {
    caller.require(CRMS)?;
    let items = state
        .engine
        .webhooks()
        .await?
        .into_iter()
        .map(|webhook| WebhookView { webhook, secret: None })
        .collect();
    Ok(Json(WebhookList { items }))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require(CRMS)?;
    let webhook = state.engine.webhook(webhook_id(&id)?).await?;
    Ok(Json(WebhookView { webhook, secret: None }))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<StatusCode, ApiError> {
    caller.require(CRMS)?;
    state.engine.delete_webhook(webhook_id(&id)?, &caller.by()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/webhooks/{id}/deliveries?limit=&cursor=`: newest first, each with its attempts.
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    query: Params<Paged>,
) -> Result<Json<DeliveryPage>, ApiError> {
    caller.require(CRMS)?;
    let (limit, before) = page::by_id(query.get("limit"), query.get("cursor"))?;
    let mut items = state.engine.deliveries(webhook_id(&id)?, before, limit + 1).await?;
    let next_cursor = page::cut_by_id(&mut items, limit, |d| d.seq);
    Ok(Json(DeliveryPage { items, next_cursor }))
}
