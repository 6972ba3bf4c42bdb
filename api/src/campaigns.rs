//! The Campaigns and the playbook section of the API: validate and deploy a playbook, list
//! campaigns, show one as a graph (JSON, SVG, DOT), pause and resume.

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use nurture_engine::access::Role;
use nurture_engine::condition::Condition;
use nurture_engine::lead::FieldError;
use nurture_engine::playbook::{draw, Campaign};
use nurture_engine::store::CampaignStatus;
use serde::Deserialize;
use std::sync::Arc;

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::input::{Id, JsonBody, Keyed};
use crate::openapi::Doc;
use crate::AppState;

const MARKETERS: &[Role] = &[Role::Marketer];
const EVERYONE: &[Role] = &[Role::Admin, Role::Marketer, Role::Sdr, Role::Crm];

const ENROLLERS: &[Role] = &[Role::Marketer, Role::Crm];

/// Long on purpose: the route table of the Campaigns section, one entry per operation with its
/// OpenAPI text.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/campaigns",
            get_with(list, |o| {
                o.summary("Deployed campaigns: id, name, type, version, status.")
                    .allow(EVERYONE)
                    .answers::<CampaignList>(200)
            }),
        )
        .api_route(
            "/v1/campaigns/{id}",
            get_with(read, |o| {
                o.summary("A campaign's graph (steps and edges) and its deployed versions.")
                    .allow(EVERYONE)
                    .answers::<CampaignDetail>(200)
            }),
        )
        .api_route(
            "/v1/campaigns/{id}/graph.svg",
            get_with(graph_svg, |o| {
                o.summary(
                    "The campaign drawn as SVG: counts on the edges; under each step how many wait there \
                     now, and under a send what it sent and the share people opened and clicked.",
                )
                .allow(EVERYONE)
                .answers_plain(200, "An SVG image.")
            }),
        )
        .api_route(
            "/v1/campaigns/{id}/graph.dot",
            get_with(graph_dot, |o| {
                o.summary("The campaign as Graphviz DOT, with the same counts and figures as graph.svg.")
                    .allow(EVERYONE)
                    .answers_plain(200, "A Graphviz DOT text.")
            }),
        )
        .api_route(
            "/v1/campaigns/{id}/pause",
            post_with(pause, |o| {
                o.summary("Pause: no step runs; waits keep counting.")
                    .allow(MARKETERS)
                    .answers_plain(200, "Paused.")
            }),
        )
        .api_route(
            "/v1/campaigns/{id}/resume",
            post_with(resume, |o| {
                o.summary("Resume a paused campaign.")
                    .allow(MARKETERS)
                    .answers_plain(200, "Resumed.")
            }),
        )
        .api_route(
            "/v1/campaigns/{id}/enroll",
            post_with(enroll, |o| {
                o.summary(
                    "Enroll leads by hand: {\"leads\": [ids or refs]} or {\"segment\": \"icp\"}; the \
                     campaign's re-entry rule holds.",
                )
                .allow(ENROLLERS)
                .answers::<EnrollAnswer>(200)
            }),
        )
        .api_route(
            "/v1/campaigns/{id}/exit",
            post_with(exit, |o| {
                o.summary(
                    "Take leads out by hand: {\"leads\": [ids or refs], \"reason\": \"…\"}; each running \
                     enrollment of theirs in the campaign ends at once, its journey saying who and why.",
                )
                .allow(MARKETERS)
                .answers::<nurture_engine::engine::ExitReport>(200)
            }),
        )
}

/// One campaign in `GET /v1/campaigns`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CampaignSummary {
    #[serde(flatten)]
    pub head: CampaignHead,
    /// How many steps its graph has.
    pub steps: usize,
    /// Its figures; null for a retired campaign.
    pub counts: Option<nurture_engine::engine::CampaignCounts>,
}

/// What the list and the detail of a campaign share.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CampaignHead {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub campaign_type: String,
    pub version: String,
    /// 1 for the first version deployed, then 2, 3, …
    pub version_number: i64,
    /// `active`, `paused` or `retired`.
    pub status: String,
    pub deployed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CampaignList {
    pub items: Vec<CampaignSummary>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/campaigns/{id}`: the graph and the versions deployed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CampaignDetail {
    #[serde(flatten)]
    pub head: CampaignHead,
    pub description: Option<String>,
    /// The graph's fields are null for a retired campaign (no longer in the playbook).
    pub priority: Option<u8>,
    pub entry: Option<EntryView>,
    pub start: Option<String>,
    pub steps: Vec<StepView>,
    pub edges: Vec<EdgeView>,
    pub versions: Vec<VersionView>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct EntryView {
    /// `segment`, `event` or `manual`.
    pub trigger: String,
    pub event: Option<String>,
    /// How the entry condition reads, in a few words.
    pub when: Option<String>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct StepView {
    pub id: String,
    /// `send`, `wait`, `branch`, `split`, `tag`, `score`, `handoff`, `enroll` or `exit`.
    pub kind: String,
    pub summary: String,
    pub description: Option<String>,
    /// Times enrollments arrived at the step (a lead that loops back counts again), those
    /// waiting there now, and journey lines by outcome (`yes`/`no` per branch, `sent`, `waited`, …).
    pub entered: i64,
    pub waiting: i64,
    pub outcomes: std::collections::BTreeMap<String, i64>,
    /// Of the messages a send step sent, those a person opened at least once, and those a
    /// person clicked in (0 for other steps).
    pub opened: i64,
    pub clicked: i64,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct EdgeView {
    pub from: String,
    pub to: String,
    /// `yes`, `no`, a split's share, how long a wait lasts, or empty.
    pub label: String,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct VersionView {
    pub version: String,
    pub number: i64,
    pub file: String,
    pub deployed_at: DateTime<Utc>,
}

async fn summary(
    state: &AppState,
    record: &nurture_engine::store::CampaignRecord,
    campaign: Option<&Campaign>,
) -> Result<CampaignSummary, ApiError> {
    let counts = match campaign {
        Some(c) => Some(state.engine.campaign_counts(c).await?),
        None => None,
    };
    Ok(CampaignSummary {
        head: head(record),
        steps: campaign.map(|c| c.graph.node_count()).unwrap_or(0),
        counts,
    })
}

fn head(record: &nurture_engine::store::CampaignRecord) -> CampaignHead {
    CampaignHead {
        id: record.id.clone(),
        name: record.name.clone(),
        campaign_type: record.campaign_type.clone(),
        version: record.version.clone(),
        version_number: record.number,
        status: record.status.as_str().to_owned(),
        deployed_at: record.deployed_at,
        updated_at: record.updated_at,
    }
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<CampaignList>, ApiError> {
    caller.require(EVERYONE)?;
    let playbook = state.engine.playbook();
    let mut items = Vec::new();
    for record in state.engine.campaigns().await? {
        let campaign = playbook.campaigns.get(&record.id).map(|c| c.as_ref());
        items.push(summary(&state, &record, campaign).await?);
    }
    Ok(Json(CampaignList {
        items,
        next_cursor: None,
    }))
}

/// The campaign in force: deployed and in the playbook.
fn in_force(state: &AppState, id: &str) -> Result<Arc<Campaign>, ApiError> {
    state
        .engine
        .playbook()
        .campaigns
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no campaign {id:?} is deployed")))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Json<CampaignDetail>, ApiError> {
    caller.require(EVERYONE)?;
    let records = state.engine.campaigns().await?;
    let record = records
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no campaign {id:?} was ever deployed")))?;
    let campaign = in_force(&state, &id).ok();
    let versions = state
        .engine
        .campaign_versions(&id)
        .await?
        .into_iter()
        .map(|v| VersionView {
            version: v.version,
            number: v.number,
            file: v.file,
            deployed_at: v.deployed_at,
        })
        .collect();
    let funnel = match &campaign {
        Some(c) => state.engine.funnel(c).await?,
        None => Vec::new(),
    };
    let (steps, edges, entry, start, description, priority) = match &campaign {
        Some(c) => (
            c.steps()
                .zip(funnel)
                .map(|(s, count)| StepView {
                    id: count.step,
                    kind: count.kind.to_owned(),
                    summary: draw::summary(&s.action),
                    description: s.description.clone(),
                    entered: count.entered,
                    waiting: count.waiting,
                    outcomes: count.outcomes,
                    opened: count.opened,
                    clicked: count.clicked,
                })
                .collect(),
            draw::edges(c)
                .into_iter()
                .map(|(from, to, label)| EdgeView { from, to, label })
                .collect(),
            Some(EntryView {
                trigger: serde_json::to_value(c.entry.trigger)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                event: c.entry.event.clone(),
                when: c.entry.when.as_ref().map(Condition::label),
            }),
            Some(c.graph[c.start].id.clone()),
            c.description.clone(),
            Some(c.priority),
        ),
        None => (Vec::new(), Vec::new(), None, None, None, None),
    };
    Ok(Json(CampaignDetail {
        head: head(record),
        description,
        priority,
        entry,
        start,
        steps,
        edges,
        versions,
    }))
}

async fn graph(state: &AppState, caller: &Caller, id: &str, format: draw::Format) -> Result<String, ApiError> {
    caller.require(EVERYONE)?;
    let campaign = in_force(state, id)?;
    let funnel = state.engine.funnel(&campaign).await?;
    let counts = state.engine.edges_of(&campaign, &funnel);
    let notes = step_notes(&funnel);
    tokio::task::spawn_blocking(move || draw::draw(&campaign, format, Some(&counts), Some(&notes)))
        .await
        .map_err(|e| ApiError::Internal(format!("drawing: {e}")))?
        .map_err(ApiError::Internal)
}

/// `part` of `whole` as a percentage, or a dash when there is no whole.
pub(crate) fn rate(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The line under each step of a drawing: how many wait there now, and for a send step how
/// many it sent and the share of those a person opened and clicked in.
fn step_notes(funnel: &[nurture_engine::engine::StepFunnel]) -> draw::StepNotes {
    funnel
        .iter()
        .map(|s| {
            let mut note = format!("{} waiting", s.waiting);
            if s.kind == "send" {
                let sent = s.outcomes.get("sent").copied().unwrap_or(0);
                note.push_str(&format!(
                    " · sent {sent} · opened {} · clicked {}",
                    rate(s.opened, sent),
                    rate(s.clicked, sent)
                ));
            }
            (s.step.clone(), note)
        })
        .collect()
}

async fn graph_svg(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Response, ApiError> {
    let svg = graph(&state, &caller, &id, draw::Format::Svg).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn graph_dot(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Response, ApiError> {
    let dot = graph(&state, &caller, &id, draw::Format::Dot).await?;
    Ok(([(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")], dot).into_response())
}

async fn set_status(state: &AppState, caller: &Caller, id: &str, status: CampaignStatus) -> Result<Response, ApiError> {
    caller.require(MARKETERS)?;
    state
        .engine
        .set_campaign_status(id, status, &caller.by())
        .await
        .map_err(|e| match e {
            nurture_engine::engine::EngineError::NotFound => {
                ApiError::NotFound(format!("no campaign {id:?} is deployed"))
            }
            other => ApiError::from(other),
        })?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({"id": id, "status": status.as_str()})),
    )
        .into_response())
}

async fn pause(State(state): State<AppState>, caller: Caller, Path(Id { id }): Path<Id>) -> Result<Response, ApiError> {
    set_status(&state, &caller, &id, CampaignStatus::Paused).await
}

async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Response, ApiError> {
    set_status(&state, &caller, &id, CampaignStatus::Active).await
}

/// `POST /v1/campaigns/{id}/enroll`: `{"leads": [ids or refs]}` or `{"segment": "icp"}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"type": "object", "required": ["leads"], "properties": {"leads": {"type": "array", "items": {}}}},
    {"type": "object", "required": ["segment"], "properties": {"segment": {"type": "string"}}}
]))]
pub struct EnrollBody {
    #[serde(default)]
    pub leads: Option<Vec<LeadItem>>,
    #[serde(default)]
    pub segment: Option<String>,
    /// Decide and report who would enter and who would not, and why; enroll nobody.
    #[serde(default)]
    pub dry_run: bool,
}

/// What an enroll answers: what it did, or with `dry_run`, what it would do.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum EnrollAnswer {
    Done(nurture_engine::engine::EnrollReport),
    DryRun(nurture_engine::engine::EnrollDryRun),
}

/// A lead by id, or by `{"email": …}` / `{"external_id": …}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum LeadItem {
    Id(String),
    Ref(nurture_engine::lead::LeadRef),
}

/// Enrolls leads or a segment, at most once per `Idempotency-Key`.
async fn enroll(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: JsonBody<EnrollBody>,
) -> Response {
    let route = format!("POST /v1/campaigns/{id}/enroll");
    let (state, caller) = (&state, &caller);
    crate::idempotency::write(
        state,
        caller,
        ENROLLERS,
        &route,
        &headers,
        body.raw,
        |bytes| async move {
            let report = enroll_request(state, caller, &id, &bytes).await?;
            Ok((StatusCode::OK, serde_json::to_value(report).unwrap_or_default()))
        },
    )
    .await
}

async fn enroll_request(state: &AppState, caller: &Caller, id: &str, bytes: &[u8]) -> Result<EnrollAnswer, ApiError> {
    let input: EnrollBody = body::object(bytes)?;
    in_force(state, id)?;
    let not_found = |e: nurture_engine::engine::EngineError| match e {
        nurture_engine::engine::EngineError::NotFound => ApiError::NotFound(format!("no campaign {id:?} is deployed")),
        other => ApiError::from(other),
    };
    let answer = match (input.leads, input.segment) {
        (Some(leads), None) => {
            let refs = lead_refs(leads, "nothing was enrolled")?;
            if input.dry_run {
                EnrollAnswer::DryRun(state.engine.enroll_dry_run(id, &refs, None).await.map_err(not_found)?)
            } else {
                EnrollAnswer::Done(state.engine.enroll(id, &refs, &caller.by()).await.map_err(not_found)?)
            }
        }
        (None, Some(segment)) if input.dry_run => {
            state.engine.check_segment(&segment)?;
            EnrollAnswer::DryRun(
                state
                    .engine
                    .enroll_dry_run(id, &[], Some(&segment))
                    .await
                    .map_err(not_found)?,
            )
        }
        (None, Some(segment)) => EnrollAnswer::Done(
            state
                .engine
                .enroll_segment(id, &segment, &caller.by())
                .await
                .map_err(not_found)?,
        ),
        _ => {
            return Err(ApiError::invalid(vec![FieldError::new(
                "leads",
                "give either `leads` (ids or {\"email\": …} refs) or `segment`, not both",
            )]))
        }
    };
    Ok(answer)
}

/// `POST /v1/campaigns/{id}/exit`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitBody {
    pub leads: Vec<LeadItem>,
    /// Why they leave: kept in each lead's journey.
    pub reason: String,
}

/// Takes leads out of a campaign, at most once per `Idempotency-Key`.
async fn exit(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: JsonBody<ExitBody>,
) -> Response {
    let route = format!("POST /v1/campaigns/{id}/exit");
    let (state, caller) = (&state, &caller);
    crate::idempotency::write(
        state,
        caller,
        MARKETERS,
        &route,
        &headers,
        body.raw,
        |bytes| async move {
            let input: ExitBody = body::object(&bytes)?;
            let refs = lead_refs(input.leads, "nobody was taken out")?;
            let report = state.engine.exit(&id, &refs, &input.reason, &caller.by()).await?;
            tracing::info!(by = %caller.0.name, campaign = %id, exited = report.exited, "Leads taken out by hand.");
            Ok((StatusCode::OK, serde_json::to_value(report).unwrap_or_default()))
        },
    )
    .await
}

/// Lead items as references; more than a batch is refused (`nothing` says what was not done).
fn lead_refs(items: Vec<LeadItem>, nothing: &str) -> Result<Vec<nurture_engine::lead::LeadRef>, ApiError> {
    if items.len() > body::MAX_BATCH {
        return Err(ApiError::TooLarge(format!(
            "at most {} leads per request; {nothing}",
            body::MAX_BATCH
        )));
    }
    Ok(items
        .into_iter()
        .map(|item| match item {
            LeadItem::Id(id) => nurture_engine::lead::LeadRef {
                id: Some(id),
                email: None,
                external_id: None,
            },
            LeadItem::Ref(r) => r,
        })
        .collect())
}
