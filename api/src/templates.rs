//! Templates seen before they go: `preview` renders one for a lead as the dispatcher would send
//! it; `test-send` mails one to the marketer through the server's mailer, recorded nowhere.

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::{Preview, PreviewFor, PreviewLead, Sender, TestSent};
use nurture_engine::lead::{EmailAddress, FieldError, LeadInput};
use nurture_engine::template::Language;
use serde::Deserialize;

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::input::{JsonBody, TemplateName};
use crate::openapi::Doc;
use crate::AppState;

const MARKETERS: &[Role] = &[Role::Marketer];

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/templates/{name}/preview",
            post_with(preview, |o| {
                o.summary(
                    "An e-mail template rendered for a stored lead (`lead_id`), a lead given as in \
                     PUT /v1/leads (`lead`), or a sample lead: subject, HTML and text as they would be \
                     sent, links tracked and the footer in the template's language.",
                )
                .allow(MARKETERS)
                .answers::<Preview>(200)
            }),
        )
        .api_route(
            "/v1/templates/{name}/test-send",
            post_with(test_send, |o| {
                o.summary(
                    "Send one test e-mail of a template to `to` through the server's mailer, rendered as \
                     the preview is, its subject marked as a test. No message is recorded: no tracking \
                     counted, no frequency cap or send rate used.",
                )
                .allow(MARKETERS)
                .answers::<TestSent>(200)
                .fails(502, "The mail server refused or failed the send; nothing was recorded.")
            }),
        )
}

/// `POST /v1/templates/{name}/preview`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// A stored lead to render for, with its tags.
    #[serde(default)]
    pub lead_id: Option<String>,
    /// A lead as given (the fields of `PUT /v1/leads`), stored nowhere.
    #[serde(default)]
    pub lead: Option<LeadInput>,
    /// The copy to render (`en`, `zh`), over the lead's `language`.
    #[serde(default)]
    pub language: Option<Language>,
    /// Properties of the event that enrolls the lead (`{"title": …, "join_url": …}`), for the
    /// template's `{{event.…}}`; empty text without it.
    #[serde(default)]
    pub event: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/templates/{name}/test-send`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendBody {
    /// Where the test e-mail goes.
    pub to: String,
    #[serde(default)]
    pub lead_id: Option<String>,
    #[serde(default)]
    pub lead: Option<LeadInput>,
    #[serde(default)]
    pub language: Option<Language>,
    #[serde(default)]
    pub event: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Whom to render for: a stored lead, a given one, or the sample lead; not both.
fn whom(lead_id: Option<String>, lead: Option<LeadInput>) -> Result<PreviewLead, ApiError> {
    match (lead_id, lead) {
        (Some(_), Some(_)) => Err(ApiError::invalid(vec![FieldError::new(
            "lead",
            "give `lead_id` (a stored lead) or `lead` (a lead as given), not both",
        )])),
        (Some(id), None) => crate::leads::lead_id(&id).map(PreviewLead::Stored),
        (None, Some(lead)) => Ok(PreviewLead::Given(Box::new(lead))),
        (None, None) => Ok(PreviewLead::Sample),
    }
}

/// The server's mailer and link signer.
fn sender(state: &AppState) -> Result<&Sender, ApiError> {
    state
        .mailer
        .as_ref()
        .ok_or_else(|| ApiError::Internal("the server was started without a mailer".into()))
}

async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(TemplateName { name }): Path<TemplateName>,
    JsonBody { raw, .. }: JsonBody<PreviewBody>,
) -> Result<Json<Preview>, ApiError> {
    caller.require(MARKETERS)?;
    let asked: PreviewBody = body::object(&body::bytes(raw)?)?;
    let of = PreviewFor {
        lead: whom(asked.lead_id, asked.lead)?,
        language: asked.language,
        event: asked.event,
    };
    let preview = state.engine.preview(&name, of, sender(&state)?).await?;
    Ok(Json(preview))
}

async fn test_send(
    State(state): State<AppState>,
    caller: Caller,
    Path(TemplateName { name }): Path<TemplateName>,
    JsonBody { raw, .. }: JsonBody<TestSendBody>,
) -> Result<Json<TestSent>, ApiError> {
    caller.require(MARKETERS)?;
    let asked: TestSendBody = body::object(&body::bytes(raw)?)?;
    let to = EmailAddress::parse(&asked.to)
        .map_err(|why| ApiError::invalid(vec![FieldError::new("to", why)]))?
        .into_string();
    let of = PreviewFor {
        lead: whom(asked.lead_id, asked.lead)?,
        language: asked.language,
        event: asked.event,
    };
    let sent = state.engine.test_send(&name, &to, of, sender(&state)?).await?;
    tracing::info!(by = %caller.0.name, template = %name, to = %sent.to, "Test e-mail sent.");
    Ok(Json(sent))
}
