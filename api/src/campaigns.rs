//! The Campaigns and the playbook section of the API: validate and deploy a playbook, list
//! campaigns, show one as a graph (JSON, SVG, DOT), pause and resume.

use aide::axum::routing::{get_with, post_with, put_with};
use aide::axum::ApiRouter;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use nurture_engine::access::Role;
use nurture_engine::condition::Condition;
use nurture_engine::lead::FieldError;
use nurture_engine::playbook::{draw, Campaign, Issue, Playbook, Refused, Severity};
use nurture_engine::store::{CampaignStatus, DeployReport};
use nurture_engine::template::Templates;
use serde::Deserialize;
use std::sync::Arc;

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::input::{Id, JsonBody, Keyed, Params, PlaybookBody, QueryParam, QuerySpec};
use crate::openapi::Doc;
use crate::AppState;

const MARKETERS: &[Role] = &[Role::Marketer];
const EVERYONE: &[Role] = &[Role::Admin, Role::Marketer, Role::Sdr, Role::Crm];
/// The most files a playbook upload may hold.
const MAX_FILES: usize = 1_000;

const ENROLLERS: &[Role] = &[Role::Marketer, Role::Crm];

/// Long on purpose: the route table of the Campaigns section, one entry per operation with its
/// OpenAPI text.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/playbook/validate",
            post_with(validate, |o| {
                o.summary(
                    "Validate one playbook YAML file (checked against the playbook in force) or a tar \
                     of the playbook directory; every error and warning with file, line and column.",
                )
                .allow(MARKETERS)
                .answers::<ValidationAnswer>(200)
            }),
        )
        .api_route(
            "/v1/playbook",
            put_with(deploy, |o| {
                o.summary(
                    "Validate and deploy (422 with every error, nothing deployed); a changed campaign \
                     becomes a new version, an unchanged one is left as it is.",
                )
                .allow(MARKETERS)
                .answers::<DeployAnswer>(200)
            }),
        )
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
                o.summary("The campaign drawn as SVG.")
                    .allow(EVERYONE)
                    .answers_plain(200, "An SVG image.")
            }),
        )
        .api_route(
            "/v1/campaigns/{id}/graph.dot",
            get_with(graph_dot, |o| {
                o.summary("The campaign as Graphviz DOT.")
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
                .answers::<nurture_engine::engine::EnrollReport>(200)
            }),
        )
}

/// One problem of a playbook, positioned.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct PlaybookIssue {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub severity: Severity,
    pub message: String,
}

impl From<&Issue> for PlaybookIssue {
    fn from(issue: &Issue) -> Self {
        Self {
            file: issue.file.clone(),
            line: issue.position.map(|p| p.line),
            column: issue.position.map(|p| p.column),
            severity: issue.severity,
            message: issue.message.clone(),
        }
    }
}

/// The answer to `POST /v1/playbook/validate`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ValidationAnswer {
    pub valid: bool,
    pub errors: Vec<PlaybookIssue>,
    pub warnings: Vec<PlaybookIssue>,
    /// The campaigns of the validated playbook, with their versions (when valid).
    pub campaigns: Vec<CampaignVersionView>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CampaignVersionView {
    pub id: String,
    pub version: String,
}

/// The answer to `PUT /v1/playbook`: what the deploy changed, by campaign id.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct DeployAnswer {
    #[serde(flatten)]
    pub report: DeployReport,
    pub warnings: Vec<PlaybookIssue>,
}

/// One campaign in `GET /v1/campaigns`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CampaignSummary {
    #[serde(flatten)]
    pub head: CampaignHead,
    /// How many steps its graph has.
    pub steps: usize,
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

/// `?file=`: the name errors give an uploaded single file.
pub struct FileName;
impl QuerySpec for FileName {
    const PARAMS: &'static [QueryParam] = &[QueryParam {
        name: "file",
        schema: || serde_json::json!({"type": "string"}),
        description: "The name errors give an uploaded single file (default `request.yaml`).",
    }];
}

/// The files of an upload: a tar of the playbook directory (the whole playbook), or one YAML
/// file (laid over the playbook in force, replacing the file that defines the same thing).
fn uploaded_files(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    query: &Params<FileName>,
    current: &Playbook,
) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = body::bytes(raw)?;
    if bytes.is_empty() {
        return Err(ApiError::Malformed(
            "the body is empty: send one playbook YAML file, or a tar of the playbook directory".into(),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_tar = content_type.contains("tar") || bytes.get(257..262) == Some(b"ustar".as_slice());
    if is_tar {
        return tar_files(&bytes);
    }
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::Malformed("the body is not UTF-8 text; save the YAML file as UTF-8".into()))?;
    let name = query.get("file").cloned().unwrap_or_else(|| "request.yaml".to_owned());
    if let Some(problem) = nurture_engine::lead::text_problem(&name) {
        return Err(ApiError::invalid(vec![FieldError::new("file", problem)]));
    }
    Ok(current.overlay(vec![(name, text)]))
}

fn tar_files(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let malformed = |e: std::io::Error| ApiError::Malformed(format!("the tar archive could not be read: {e}"));
    let mut archive = tar::Archive::new(bytes);
    let mut files = Vec::new();
    let mut refused = Vec::new();
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let path = entry.path().map_err(malformed)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            // A link would make the deployed playbook depend on what the link pointed at on
            // the marketer's machine; it is refused, never silently left out.
            let target = entry.link_name().ok().flatten();
            let target = target.map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            let what = if kind.is_symlink() {
                format!("is a symbolic link to {target:?}")
            } else if kind.is_hard_link() {
                format!("is a hard link to {target:?}")
            } else {
                format!("is not a regular file (tar entry type {:?})", kind.as_byte() as char)
            };
            refused.push(FieldError::new(
                path,
                format!("{what}; put the file itself in the archive (tar --dereference, or tar -h)"),
            ));
            continue;
        }
        if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            continue;
        }
        if files.len() == MAX_FILES {
            return Err(ApiError::TooLarge(format!(
                "the archive holds more than {MAX_FILES} playbook files"
            )));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text)
            .map_err(|_| ApiError::Malformed(format!("{path} is not UTF-8 text; save it as UTF-8")))?;
        files.push((path, text));
    }
    if !refused.is_empty() {
        return Err(ApiError::invalid(refused));
    }
    if files.is_empty() {
        return Err(ApiError::Malformed(
            "the tar archive holds no .yaml or .yml file".into(),
        ));
    }
    files.sort();
    Ok(files)
}

/// Validates off the request path: a large playbook is CPU work.
async fn check(files: Vec<(String, String)>, templates: Arc<Templates>) -> Result<Result<Playbook, Refused>, ApiError> {
    tokio::task::spawn_blocking(move || Playbook::from_files(&files, templates))
        .await
        .map_err(|e| ApiError::Internal(format!("validating the playbook: {e}")))
}

fn split(issues: &[Issue]) -> (Vec<PlaybookIssue>, Vec<PlaybookIssue>) {
    let errors = issues
        .iter()
        .filter(|i| i.is_error())
        .map(PlaybookIssue::from)
        .collect();
    let warnings = issues
        .iter()
        .filter(|i| !i.is_error())
        .map(PlaybookIssue::from)
        .collect();
    (errors, warnings)
}

/// A valid playbook's warnings: its own, then `stranded`, what deploying it would do to running
/// enrollments (campaigns it retires, earlier versions it can no longer build).
fn warnings_with(playbook: &Playbook, stranded: &[Issue]) -> Vec<PlaybookIssue> {
    let mut warnings = split(&playbook.warnings).1;
    warnings.extend(stranded.iter().map(PlaybookIssue::from));
    warnings
}

async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Params<FileName>,
    PlaybookBody(raw): PlaybookBody,
) -> Result<Json<ValidationAnswer>, ApiError> {
    caller.require(MARKETERS)?;
    let current = state.engine.playbook();
    let files = uploaded_files(&headers, raw, &query, &current)?;
    Ok(Json(match check(files, current.templates.clone()).await? {
        Ok(playbook) => ValidationAnswer {
            valid: true,
            errors: Vec::new(),
            warnings: warnings_with(&playbook, &state.engine.deploy_warnings(&playbook).await?),
            campaigns: playbook
                .campaigns
                .values()
                .map(|c| CampaignVersionView {
                    id: c.id.clone(),
                    version: c.version.clone(),
                })
                .collect(),
        },
        Err(refused) => {
            let (errors, warnings) = split(&refused.0);
            ValidationAnswer {
                valid: false,
                errors,
                warnings,
                campaigns: Vec::new(),
            }
        }
    }))
}

async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Params<FileName>,
    PlaybookBody(raw): PlaybookBody,
) -> Result<Json<DeployAnswer>, ApiError> {
    caller.require(MARKETERS)?;
    let current = state.engine.playbook();
    let files = uploaded_files(&headers, raw, &query, &current)?;
    // Templates are read from disk again, so that edited templates go live with the deploy.
    let templates = match current.templates.dir() {
        Some(dir) => {
            let dir = dir.to_path_buf();
            Arc::new(
                tokio::task::spawn_blocking(move || Templates::load_dir(&dir))
                    .await
                    .map_err(|e| ApiError::Internal(format!("loading templates: {e}")))?,
            )
        }
        None => current.templates.clone(),
    };
    let playbook = match check(files, templates).await? {
        Ok(playbook) => playbook,
        Err(refused) => {
            let details: Vec<FieldError> = refused
                .errors()
                .map(|issue| {
                    let at = match issue.position {
                        Some(p) => format!("{}:{}:{}", issue.file, p.line, p.column),
                        None => issue.file.clone(),
                    };
                    FieldError::new(at, issue.message.clone())
                })
                .collect();
            let n = details.len();
            return Err(ApiError::Invalid {
                message: format!(
                    "the playbook has {n} error{}; nothing was deployed",
                    if n == 1 { "" } else { "s" }
                ),
                details,
            });
        }
    };
    let stranded = state.engine.deploy_warnings(&playbook).await?;
    for warning in &stranded {
        tracing::warn!(by = %caller.0.name, file = %warning.file, "Deploying: {}", warning.message);
    }
    let warnings = warnings_with(&playbook, &stranded);
    let report = state.engine.deploy(playbook).await?;
    state.engine.enter_matching_after(&report);
    tracing::info!(
        by = %caller.0.name,
        created = report.created.len(),
        changed = report.changed.len(),
        retired = report.retired.len(),
        "Playbook deployed."
    );
    Ok(Json(DeployAnswer { report, warnings }))
}

fn summary(record: &nurture_engine::store::CampaignRecord, campaign: Option<&Campaign>) -> CampaignSummary {
    CampaignSummary {
        head: head(record),
        steps: campaign.map(|c| c.graph.node_count()).unwrap_or(0),
    }
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
    let items = state
        .engine
        .campaigns()
        .await?
        .iter()
        .map(|r| summary(r, playbook.campaigns.get(&r.id).map(|c| c.as_ref())))
        .collect();
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
    let counts = state.engine.edge_counts(&campaign).await?;
    tokio::task::spawn_blocking(move || draw::draw(&campaign, format, Some(&counts)))
        .await
        .map_err(|e| ApiError::Internal(format!("drawing: {e}")))?
        .map_err(ApiError::Internal)
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
        .set_campaign_status(id, status)
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
            let report = enroll_request(state, &id, &bytes).await?;
            Ok((StatusCode::OK, serde_json::to_value(report).unwrap_or_default()))
        },
    )
    .await
}

async fn enroll_request(
    state: &AppState,
    id: &str,
    bytes: &[u8],
) -> Result<nurture_engine::engine::EnrollReport, ApiError> {
    let input: EnrollBody = body::object(bytes)?;
    in_force(state, id)?;
    let not_found = |e: nurture_engine::engine::EngineError| match e {
        nurture_engine::engine::EngineError::NotFound => ApiError::NotFound(format!("no campaign {id:?} is deployed")),
        other => ApiError::from(other),
    };
    let report = match (input.leads, input.segment) {
        (Some(leads), None) => {
            if leads.len() > body::MAX_BATCH {
                return Err(ApiError::TooLarge(format!(
                    "at most {} leads per request; nothing was enrolled",
                    body::MAX_BATCH
                )));
            }
            let refs: Vec<nurture_engine::lead::LeadRef> = leads
                .into_iter()
                .map(|item| match item {
                    LeadItem::Id(id) => nurture_engine::lead::LeadRef {
                        id: Some(id),
                        email: None,
                        external_id: None,
                    },
                    LeadItem::Ref(r) => r,
                })
                .collect();
            state.engine.enroll(id, &refs).await.map_err(not_found)?
        }
        (None, Some(segment)) => state.engine.enroll_segment(id, &segment).await.map_err(not_found)?,
        _ => {
            return Err(ApiError::invalid(vec![FieldError::new(
                "leads",
                "give either `leads` (ids or {\"email\": …} refs) or `segment`, not both",
            )]))
        }
    };
    Ok(report)
}
