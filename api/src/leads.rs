//! The Leads section of the API.

use aide::axum::routing::{get_with, post_with, put_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::{ItemError, LeadView, Target, Upserted};
use nurture_engine::lead::{FieldError, LeadId, LeadInput, LeadRef, Stage};
use nurture_engine::store::{LeadFilter, TimelineCursor, TimelineKind};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::body::{self, MAX_BATCH};
use crate::error::ApiError;
use crate::input::{Id, JsonBody, Keyed, Paged, Params, QueryParam, QuerySpec, CURSOR, LIMIT};
use crate::openapi::Doc;
use crate::{idempotency, page, AppState};

const WRITERS: &[Role] = &[Role::Crm, Role::Marketer];
const EVERYONE: &[Role] = &[Role::Admin, Role::Marketer, Role::Sdr, Role::Crm];
const TAGGERS: &[Role] = &[Role::Sdr, Role::Marketer, Role::Crm];
const SCORERS: &[Role] = &[Role::Sdr, Role::Marketer];
/// Who writes notes: the people who work leads, and the CRM (a call logged there).
const NOTERS: &[Role] = &[Role::Sdr, Role::Marketer, Role::Crm];

/// A page of a lead's notes, newest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct NotePage {
    pub items: Vec<nurture_engine::note::Note>,
    pub next_cursor: Option<String>,
}

/// A page of leads.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct LeadPage {
    pub items: Vec<LeadView>,
    pub next_cursor: Option<String>,
}

/// A page of a lead's timeline, newest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct TimelinePage {
    pub items: Vec<nurture_engine::store::TimelineEntry>,
    pub next_cursor: Option<String>,
}

/// The answer to `POST /v1/leads/bulk`: counts, and one result per item in order.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct BulkAnswer {
    pub created: usize,
    pub updated: usize,
    pub rejected: usize,
    pub items: Vec<BulkItem>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct BulkItem {
    pub index: usize,
    /// `created`, `updated` or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<LeadId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/leads",
            put_with(upsert, |o| {
                o.summary("Upsert one lead by external_id, else e-mail (201 created, 200 updated).")
                    .allow(WRITERS)
                    .answers::<LeadView>(201)
                    .answers::<LeadView>(200)
            })
            .get_with(list, |o| {
                o.summary("Search leads: tag, stage, segment, q, email, external_id; paginated.")
                    .allow(EVERYONE)
                    .answers::<LeadPage>(200)
            }),
        )
        .api_route(
            "/v1/leads/bulk",
            post_with(bulk, |o| {
                o.summary("Upsert up to 10,000 leads; one result per item, in order.")
                    .allow(WRITERS)
                    .answers::<BulkAnswer>(200)
            }),
        )
        .api_route(
            "/v1/leads/{id}",
            get_with(read, |o| {
                o.summary("A lead with its tags, score, stage, owner and consent.")
                    .allow(EVERYONE)
                    .answers::<LeadView>(200)
            })
            .patch_with(patch, |o| {
                o.summary("Change fields (absent: kept, null: cleared).")
                    .allow(WRITERS)
                    .answers::<LeadView>(200)
            })
            .delete_with(erase, |o| {
                o.summary("Erase the person; a suppression hash of the e-mail is kept.")
                    .allow(&[Role::Admin])
                    .answers_plain(204, "Erased.")
            }),
        )
        .api_route(
            "/v1/leads/{id}/tags",
            post_with(tags, |o| {
                o.summary("Add and remove manual tags, recorded with who did it.")
                    .allow(TAGGERS)
                    .answers::<LeadView>(200)
            }),
        )
        .api_route(
            "/v1/leads/{id}/score",
            post_with(score, |o| {
                o.summary("Manual scoring, recorded in the ledger.")
                    .allow(SCORERS)
                    .answers::<LeadView>(200)
            }),
        )
        .api_route(
            "/v1/leads/{id}/notes",
            post_with(add_note, |o| {
                o.summary(
                    "Write a note, a call's outcome (reached, voicemail, wrong_number, not_interested, \
                     meeting_booked) with the next follow-up day, or both: shown in the timeline and \
                     sent as `lead.note_added`.",
                )
                .allow(NOTERS)
                .answers::<nurture_engine::note::Note>(201)
            })
            .get_with(notes, |o| {
                o.summary("A lead's notes and call outcomes, newest first; paginated.")
                    .allow(EVERYONE)
                    .answers::<NotePage>(200)
            }),
        )
        .api_route(
            "/v1/leads/{id}/timeline",
            get_with(timeline, |o| {
                o.summary("Events, tag and score changes and handoffs, newest first; paginated.")
                    .allow(EVERYONE)
                    .answers::<TimelinePage>(200)
            }),
        )
}

pub(crate) fn lead_id(raw: &str) -> Result<LeadId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no lead has id {raw:?}")))
}

fn lead_json(view: &LeadView) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

fn item_error(e: ItemError) -> ApiError {
    match e {
        ItemError::Invalid(details) => ApiError::invalid(details),
        ItemError::Conflict(message) => ApiError::Conflict {
            code: "conflict",
            message,
        },
        ItemError::NotFound(message) => ApiError::NotFound(message),
    }
}

async fn upsert(
    State(state): State<AppState>,
    caller: Caller,
    Keyed(headers): Keyed,
    body: JsonBody<LeadInput>,
) -> Response {
    let (state, caller) = (&state, &caller);
    idempotency::write(
        state,
        caller,
        WRITERS,
        "PUT /v1/leads",
        &headers,
        body.raw,
        |raw| async move {
            let input: LeadInput = body::object(&raw)?;
            let mut results = state
                .engine
                .upsert_leads(vec![(Target::Keys, input)], &caller.actor())
                .await?;
            match results.pop() {
                Some(Ok(Upserted::Created(view))) => {
                    state.metrics.leads(1, 0, 0);
                    Ok((StatusCode::CREATED, lead_json(&view)))
                }
                Some(Ok(Upserted::Updated(view))) => {
                    state.metrics.leads(0, 1, 0);
                    Ok((StatusCode::OK, lead_json(&view)))
                }
                Some(Err(e)) => Err(item_error(e)),
                None => Err(ApiError::Internal("an upsert returned no result".into())),
            }
        },
    )
    .await
}

async fn bulk(
    State(state): State<AppState>,
    caller: Caller,
    Keyed(headers): Keyed,
    body: JsonBody<Vec<LeadInput>>,
) -> Response {
    let (state, caller) = (&state, &caller);
    idempotency::write(
        state,
        caller,
        WRITERS,
        "POST /v1/leads/bulk",
        &headers,
        body.raw,
        |raw| async move {
            let items = match body::one_or_many(&raw)? {
                body::OneOrMany::Many(items) => items,
                body::OneOrMany::One(_) => {
                    return Err(ApiError::invalid(vec![FieldError::new(
                        "body",
                        format!("must be a JSON array of up to {MAX_BATCH} leads"),
                    )]))
                }
            };
            let mut parsed: Vec<Result<LeadInput, FieldError>> = items.into_iter().map(body::typed).collect();
            let inputs: Vec<(Target, LeadInput)> = parsed
                .iter_mut()
                .filter_map(|p| p.as_mut().ok().map(|i| (Target::Keys, std::mem::take(i))))
                .collect();
            let mut results = state.engine.upsert_leads(inputs, &caller.actor()).await?.into_iter();
            let (mut created, mut updated, mut rejected) = (0, 0, 0);
            let mut out = Vec::with_capacity(parsed.len());
            for (index, p) in parsed.into_iter().enumerate() {
                let result = match p {
                    Err(e) => Err(ApiError::invalid(vec![e])),
                    Ok(_) => results
                        .next()
                        .unwrap_or(Err(ItemError::Conflict("not written".into())))
                        .map_err(item_error),
                };
                let (status, id, error) = match result {
                    Ok(Upserted::Created(v)) => {
                        created += 1;
                        ("created", Some(v.lead.id), None)
                    }
                    Ok(Upserted::Updated(v)) => {
                        updated += 1;
                        ("updated", Some(v.lead.id), None)
                    }
                    Err(e) => {
                        rejected += 1;
                        ("rejected", None, Some(e.detail()))
                    }
                };
                out.push(BulkItem {
                    index,
                    status,
                    id,
                    error,
                });
            }
            Ok((StatusCode::OK, {
                state.metrics.leads(created, updated, rejected);
                json!(BulkAnswer {
                    created,
                    updated,
                    rejected,
                    items: out
                })
            }))
        },
    )
    .await
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Json<Value>, ApiError> {
    caller.require(EVERYONE)?;
    let view = state.engine.get_lead(lead_id(&id)?).await?;
    Ok(Json(lead_json(&view)))
}

/// The query of `GET /v1/leads`.
pub struct LeadSearch;
impl QuerySpec for LeadSearch {
    const PARAMS: &'static [QueryParam] = &[
        QueryParam {
            name: "tag",
            schema: || json!({"type": "string", "pattern": nurture_engine::tag::TAG_PATTERN}),
            description: "Only leads with this tag, e.g. `industry:manufacturing`.",
        },
        QueryParam {
            name: "stage",
            schema: || json!({"type": "string", "enum": nurture_engine::lead::Stage::ALL}),
            description: "Only leads in this lifecycle stage.",
        },
        QueryParam {
            name: "segment",
            schema: || json!({"type": "string"}),
            description: "Only leads in this segment of the playbook in force (422 for a segment it does not define).",
        },
        QueryParam {
            name: "q",
            schema: || json!({"type": "string"}),
            description: "Text in the e-mail, name or company.",
        },
        QueryParam {
            name: "email",
            schema: || json!({"type": "string"}),
            description: "The lead with this e-mail (a page of at most one).",
        },
        QueryParam {
            name: "external_id",
            schema: || json!({"type": "string"}),
            description: "The lead with this CRM id (a page of at most one).",
        },
        LIMIT,
        CURSOR,
    ];
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params<LeadSearch>,
) -> Result<Json<Value>, ApiError> {
    caller.require(EVERYONE)?;
    let limit = page::limit(params.get("limit").map(String::as_str))?;
    let after = params
        .get("cursor")
        .map(|c| {
            page::decode(c).and_then(|p| {
                p.parse::<i64>()
                    .map_err(|_| ApiError::Malformed("cursor is not valid".into()))
            })
        })
        .transpose()?
        .map(LeadId);
    // Every parameter is checked, also those a lookup by e-mail or external id leaves unused.
    let stage = params
        .get("stage")
        .map(|s| s.parse::<Stage>())
        .transpose()
        .map_err(|m| ApiError::invalid(vec![FieldError::new("stage", m)]))?;
    let tag = params
        .get("tag")
        .map(|t| nurture_engine::tag::normalize_tag(t))
        .transpose()
        .map_err(|m| ApiError::invalid(vec![FieldError::new("tag", m)]))?;
    if let Some(segment) = params.get("segment") {
        state.engine.check_segment(segment)?;
    }
    if params.contains_key("email") || params.contains_key("external_id") {
        let by = LeadRef {
            id: None,
            email: params.get("email").cloned(),
            external_id: params.get("external_id").cloned(),
        };
        let items = match state.engine.find_lead(&by).await {
            Ok(view) => vec![view],
            Err(nurture_engine::engine::EngineError::NotFound) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        return Ok(Json(json!(LeadPage {
            items,
            next_cursor: None
        })));
    }
    let filter = LeadFilter {
        tag,
        stage,
        q: params.get("q").cloned().filter(|q| !q.is_empty()),
    };
    let (views, next) = state
        .engine
        .list_leads(&filter, params.get("segment").map(String::as_str), after, limit)
        .await?;
    Ok(Json(json!(LeadPage {
        items: views,
        next_cursor: next.map(|id| page::encode(&id.to_string())),
    })))
}

async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: JsonBody<LeadInput>,
) -> Response {
    let route = format!("PATCH /v1/leads/{id}");
    let (state, caller) = (&state, &caller);
    idempotency::write(state, caller, WRITERS, &route, &headers, body.raw, |raw| async move {
        let id = lead_id(&id)?;
        let input: LeadInput = body::object(&raw)?;
        let view = state.engine.patch_lead(id, input, &caller.actor()).await?;
        Ok((StatusCode::OK, lead_json(&view)))
    })
    .await
}

async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    state.engine.erase_lead(lead_id(&id)?, &caller.by()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/leads/{id}/tags`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    #[serde(default)]
    #[schemars(schema_with = "tag_list")]
    add: Vec<String>,
    #[serde(default)]
    #[schemars(schema_with = "tag_list")]
    remove: Vec<String>,
}

/// Tags as [`nurture_engine::tag::normalize_tag`] accepts them.
fn tag_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": {"type": "string", "pattern": nurture_engine::tag::TAG_PATTERN}})
}

async fn tags(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: JsonBody<TagsBody>,
) -> Response {
    let route = format!("POST /v1/leads/{id}/tags");
    let (state, caller) = (&state, &caller);
    idempotency::write(state, caller, TAGGERS, &route, &headers, body.raw, |raw| async move {
        let id = lead_id(&id)?;
        let body: TagsBody = body::object(&raw)?;
        let view = state.engine.tag_lead(id, &body.add, &body.remove, &caller.by()).await?;
        Ok((StatusCode::OK, lead_json(&view)))
    })
    .await
}

/// `POST /v1/leads/{id}/score`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreBody {
    /// Points to add (negative: to take away), at most 1,000,000 either way.
    #[serde(deserialize_with = "crate::body::whole")]
    #[schemars(range(min = -1_000_000, max = 1_000_000), extend("not" = {"const": 0}))]
    delta: i64,
    reason: String,
}

async fn score(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: JsonBody<ScoreBody>,
) -> Response {
    let route = format!("POST /v1/leads/{id}/score");
    let (state, caller) = (&state, &caller);
    idempotency::write(state, caller, SCORERS, &route, &headers, body.raw, |raw| async move {
        let id = lead_id(&id)?;
        let body: ScoreBody = body::object(&raw)?;
        let view = state
            .engine
            .score_lead(id, body.delta, &body.reason, &caller.by())
            .await?;
        Ok((StatusCode::OK, lead_json(&view)))
    })
    .await
}

async fn add_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: JsonBody<nurture_engine::note::NoteInput>,
) -> Response {
    let route = format!("POST /v1/leads/{id}/notes");
    let (state, caller) = (&state, &caller);
    idempotency::write(state, caller, NOTERS, &route, &headers, body.raw, |raw| async move {
        let id = lead_id(&id)?;
        let input: nurture_engine::note::NoteInput = body::object(&raw)?;
        let note = state.engine.add_note(id, input, &caller.by()).await?;
        Ok((StatusCode::CREATED, json!(note)))
    })
    .await
}

async fn notes(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    params: Params<Paged>,
) -> Result<Json<NotePage>, ApiError> {
    caller.require(EVERYONE)?;
    let id = lead_id(&id)?;
    let (limit, before) = page::by_id(params.get("limit"), params.get("cursor"))?;
    let mut items = state.engine.notes(id, before, limit + 1).await?;
    let next_cursor = page::cut_by_id(&mut items, limit, |n| n.id);
    Ok(Json(NotePage { items, next_cursor }))
}

async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    params: Params<Paged>,
) -> Result<Json<Value>, ApiError> {
    caller.require(EVERYONE)?;
    let id = lead_id(&id)?;
    let limit = page::limit(params.get("limit").map(String::as_str))?;
    let before = params
        .get("cursor")
        .map(|c| page::decode(c).and_then(|p| parse_timeline_cursor(&p)))
        .transpose()?;
    let (entries, next) = state.engine.timeline(id, before, limit).await?;
    Ok(Json(json!(TimelinePage {
        items: entries,
        next_cursor: next.map(|c| page::encode(&format!("{}.{}.{}", c.at, c.kind as u8, c.seq))),
    })))
}

fn parse_timeline_cursor(text: &str) -> Result<TimelineCursor, ApiError> {
    let bad = page::foreign;
    let mut parts = text.split('.');
    let at = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let kind: u8 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let kind = TimelineKind::ALL
        .into_iter()
        .find(|k| *k as u8 == kind)
        .ok_or_else(bad)?;
    Ok(TimelineCursor { at, kind, seq })
}
