//! The playbook and its deployments: validate and deploy a bundle (a tar of `campaigns/` and
//! `templates/`, or one file laid over the bundle in force), every deployment kept, read back
//! and restored.

use aide::axum::routing::{get_with, post_with, put_with};
use aide::axum::ApiRouter;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::{Deployed, Deployer};
use nurture_engine::lead::FieldError;
use nurture_engine::playbook::bundle::{Bundle, BundleFile, Deployable, MAX_FILES, PLAYBOOK_FOLDER};
use nurture_engine::playbook::{is_playbook_file, Issue, Playbook, PlaybookIssue, Refused};
use nurture_engine::store::{DeployReport, DeploymentHead, Origin};
use nurture_engine::template::is_template_file;
use std::collections::BTreeMap;

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::input::{Id, Paged, Params, PlaybookBody, QueryParam, QuerySpec};
use crate::openapi::Doc;
use crate::page;
use crate::AppState;

const MARKETERS: &[Role] = &[Role::Marketer];

/// Long on purpose: the route table of the playbook section, one entry per operation with its
/// OpenAPI text.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/playbook/validate",
            post_with(validate, |o| {
                o.summary(
                    "Validate a bundle: a tar with campaigns/ and templates/ (a part left out is the \
                     deployed one), or one playbook YAML file or template laid over the deployed bundle; \
                     every error and warning with file, line and column.",
                )
                .allow(MARKETERS)
                .answers::<ValidationAnswer>(200)
            }),
        )
        .api_route(
            "/v1/playbook",
            put_with(deploy, |o| {
                o.summary(
                    "Validate and deploy a bundle, as validation takes it (422 with every error, nothing \
                     deployed); the deployment is recorded. A changed campaign becomes a new version, an \
                     unchanged one is left as it is.",
                )
                .allow(MARKETERS)
                .answers::<DeployAnswer>(200)
            }),
        )
        .api_route(
            "/v1/deployments",
            get_with(list, |o| {
                o.summary("Every deployment, newest first: who, when, from where, content hash, warnings.")
                    .allow(MARKETERS)
                    .answers::<DeploymentPage>(200)
            }),
        )
        .api_route(
            "/v1/deployments/{id}",
            get_with(read, |o| {
                o.summary("One deployment with its content: the playbook's files and its templates.")
                    .allow(MARKETERS)
                    .answers::<DeploymentView>(200)
            }),
        )
        .api_route(
            "/v1/deployments/{id}/restore",
            post_with(restore, |o| {
                o.summary(
                    "Deploy an earlier deployment's content again (a rollback), recorded as a new \
                     deployment; 422 when it no longer validates.",
                )
                .allow(MARKETERS)
                .answers::<DeployAnswer>(200)
            }),
        )
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

/// The answer to `PUT /v1/playbook` and to a restore: what the deploy changed, by campaign id,
/// and the deployment in force.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct DeployAnswer {
    #[serde(flatten)]
    pub report: DeployReport,
    pub warnings: Vec<PlaybookIssue>,
    /// Per new or changed segment-triggered campaign, the leads that match it now and enter
    /// it at once (in the background, right after the deploy).
    pub enrolling: BTreeMap<String, usize>,
    pub deployment: DeploymentRef,
}

/// The deployment a deploy recorded, or found already deployed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct DeploymentRef {
    pub id: i64,
    pub content_hash: String,
    /// The content was the latest deployment's already; nothing new was recorded.
    pub unchanged: bool,
}

/// `GET /v1/deployments`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct DeploymentPage {
    pub items: Vec<DeploymentHead>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/deployments/{id}`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct DeploymentView {
    #[serde(flatten)]
    pub head: DeploymentHead,
    /// Whether this deployment is the one the server runs.
    pub in_force: bool,
    /// `campaigns/…` and `templates/…`, as deployed.
    pub files: Vec<BundleFile>,
}

/// `?file=`: the name of an uploaded single file.
pub struct FileName;
impl QuerySpec for FileName {
    const PARAMS: &'static [QueryParam] = &[
        QueryParam {
            name: "file",
            schema: || serde_json::json!({"type": "string"}),
            description: "The name of an uploaded single file: a template when it ends in `.hbs` or starts with \
                          `templates/` (its path under templates/), else a playbook YAML file (by default it takes \
                          the path of the file it replaces).",
        },
        CONFIRM,
    ];
}

/// `?confirm=true`: the marketer has seen how many leads the deploy enrolls at once.
const CONFIRM: QueryParam = QueryParam {
    name: "confirm",
    schema: || serde_json::json!({"type": "boolean", "default": false}),
    description: "Deploy even though the new or changed segment-triggered campaigns would enroll more leads \
                  at once than the Rules' `deploy_confirm_over` (100 unless set): without it, such a deploy \
                  answers 409 `confirmation_required` with the counts, and nothing is deployed.",
};

/// `?confirm=` alone (a restore).
pub struct Confirm;
impl QuerySpec for Confirm {
    const PARAMS: &'static [QueryParam] = &[CONFIRM];
}

/// Whether `?confirm=true` was given; anything but `true` or `false` is refused.
fn confirmed(value: Option<&String>) -> Result<bool, ApiError> {
    match value.map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::Malformed(format!("confirm is true or false, not {other:?}"))),
    }
}

/// The leads `deployable` would enroll at once, by campaign; a 409 naming them when they are
/// more than the Rules allow without `confirm`.
pub(crate) async fn enrolling(
    state: &AppState,
    deployable: &Deployable,
    confirm: bool,
) -> Result<BTreeMap<String, usize>, ApiError> {
    let counts = state.engine.enrolling_at_once(&deployable.playbook).await?;
    let total: usize = counts.values().sum();
    let over = deployable.playbook.rules.deploy_confirm_over;
    if confirm || total as u64 <= over {
        return Ok(counts);
    }
    let details = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(campaign, n)| {
            FieldError::new(
                format!("enrolling.{campaign}"),
                format!(
                    "{n} {} its segment now and would enter it at once",
                    if *n == 1 { "lead matches" } else { "leads match" }
                ),
            )
        })
        .collect();
    Err(ApiError::Unconfirmed {
        message: format!(
            "this deploy would enroll {total} lead{} at once (more than {over}, the Rules' deploy_confirm_over); \
             nothing was deployed: check the segment, then send it again with ?confirm=true",
            if total == 1 { "" } else { "s" }
        ),
        details,
    })
}

/// The bundle an upload makes, and the names its playbook files were uploaded under (what
/// diagnostics call them; a file the upload left as deployed is `campaigns/…`).
pub(crate) struct Upload {
    pub(crate) bundle: Bundle,
    pub(crate) shown: BTreeMap<String, String>,
}

/// The bundle an upload makes: a tar replaces the parts it holds (`campaigns/`, `templates/`;
/// YAML files outside both are the playbook's, as a tar of the playbook directory holds them);
/// one file is laid over the bundle in force.
fn uploaded_bundle(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    query: &Params<FileName>,
    current: &Bundle,
) -> Result<Upload, ApiError> {
    let bytes = body::bytes(raw)?;
    if bytes.is_empty() {
        return Err(ApiError::Malformed(
            "the body is empty: send a tar with campaigns/ and templates/, one playbook YAML file, or one template"
                .into(),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_tar = content_type.contains("tar") || bytes.get(257..262) == Some(b"ustar".as_slice());
    if is_tar {
        let (bundle, shown) = tar_bundle(&bytes)?;
        return Ok(Upload {
            bundle: current.replaced_by(bundle),
            shown,
        });
    }
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::Malformed("the body is not UTF-8 text; save the file as UTF-8".into()))?;
    let name = query.get("file").map(String::as_str);
    if let Some(problem) = name.and_then(nurture_engine::lead::text_problem) {
        return Err(ApiError::invalid(vec![FieldError::new("file", problem)]));
    }
    let mut shown = BTreeMap::new();
    let bundle = match name {
        Some(name) if name.ends_with(".hbs") || name.starts_with("templates/") => current.with_template(name, text),
        _ => current.with_yaml(name, text).map(|(bundle, path)| {
            shown.insert(path, name.unwrap_or("request.yaml").to_owned());
            bundle
        }),
    }
    .map_err(|refused| refused_files(&refused))?;
    Ok(Upload { bundle, shown })
}

/// The files of a tar: `campaigns/…` and other YAML files as the playbook, `templates/…` as
/// templates; anything else (a README) is left out. The names of the playbook's entries, by
/// their path in the bundle.
fn tar_bundle(bytes: &[u8]) -> Result<(Bundle, BTreeMap<String, String>), ApiError> {
    let malformed = |e: std::io::Error| ApiError::Malformed(format!("the tar archive could not be read: {e}"));
    let mut archive = tar::Archive::new(bytes);
    let (mut playbook, mut templates) = (Vec::new(), Vec::new());
    let mut shown = BTreeMap::new();
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
        let (templated, rest) = if let Some(rest) = path.strip_prefix("templates/") {
            if !is_template_file(rest) {
                continue;
            }
            (true, rest.to_owned())
        } else if is_playbook_file(&path) {
            (false, path.strip_prefix("campaigns/").unwrap_or(&path).to_owned())
        } else {
            continue;
        };
        if playbook.len() + templates.len() == MAX_FILES {
            return Err(ApiError::TooLarge(format!(
                "the archive holds more than {MAX_FILES} files"
            )));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text)
            .map_err(|_| ApiError::Malformed(format!("{path} is not UTF-8 text; save it as UTF-8")))?;
        if templated {
            templates.push((rest, text));
        } else {
            shown.insert(rest.clone(), path.clone());
            playbook.push((rest, text));
        }
    }
    if !refused.is_empty() {
        return Err(ApiError::invalid(refused));
    }
    if playbook.is_empty() && templates.is_empty() {
        return Err(ApiError::Malformed(
            "the tar archive holds no playbook file (.yaml, .yml) and no template (templates/…)".into(),
        ));
    }
    let bundle = Bundle::new(playbook, templates).map_err(|refused| refused_files(&refused))?;
    Ok((bundle, shown))
}

/// A bundle refused for its paths: 422, one detail per file.
fn refused_files(refused: &Refused) -> ApiError {
    ApiError::invalid(
        refused
            .0
            .iter()
            .map(|issue| FieldError::new(issue.file.clone(), issue.message.clone()))
            .collect(),
    )
}

/// Validates off the request path: a large playbook is CPU work.
pub(crate) async fn check(upload: Upload) -> Result<Result<Deployable, Refused>, ApiError> {
    let Upload { bundle, shown } = upload;
    tokio::task::spawn_blocking(move || {
        bundle.build_shown(&|path| {
            shown
                .get(path)
                .cloned()
                .unwrap_or_else(|| format!("{PLAYBOOK_FOLDER}/{path}"))
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("validating the playbook: {e}")))
}

/// A refused playbook as a 422: every error at `file:line:column`.
fn refused_playbook(refused: &Refused) -> ApiError {
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
    ApiError::Invalid {
        message: format!(
            "the playbook has {n} error{}; nothing was deployed",
            if n == 1 { "" } else { "s" }
        ),
        details,
    }
}

async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Params<FileName>,
    PlaybookBody(raw): PlaybookBody,
) -> Result<Json<ValidationAnswer>, ApiError> {
    caller.require(MARKETERS)?;
    let bundle = uploaded_bundle(&headers, raw, &query, &state.engine.bundle())?;
    Ok(Json(match check(bundle).await? {
        Ok(Deployable { playbook, .. }) => ValidationAnswer {
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
        Err(refused) => ValidationAnswer {
            valid: false,
            errors: refused.errors().map(PlaybookIssue::from).collect(),
            warnings: refused.warnings().map(PlaybookIssue::from).collect(),
            campaigns: Vec::new(),
        },
    }))
}

/// A valid playbook's warnings: its own, then `stranded`, what deploying it would do to running
/// enrollments (campaigns it retires, earlier versions it can no longer build).
fn warnings_with(playbook: &Playbook, stranded: &[Issue]) -> Vec<PlaybookIssue> {
    warnings_of(playbook, stranded).map(PlaybookIssue::from).collect()
}

/// A valid playbook's warnings as issues: its own, then `stranded`.
pub(crate) fn warnings_of<'a>(playbook: &'a Playbook, stranded: &'a [Issue]) -> impl Iterator<Item = &'a Issue> {
    playbook.warnings.iter().filter(|i| !i.is_error()).chain(stranded)
}

async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Params<FileName>,
    PlaybookBody(raw): PlaybookBody,
) -> Result<Json<DeployAnswer>, ApiError> {
    caller.require(MARKETERS)?;
    let bundle = uploaded_bundle(&headers, raw, &query, &state.engine.bundle())?;
    let deployable = check(bundle).await?.map_err(|refused| refused_playbook(&refused))?;
    let enrolling = enrolling(&state, &deployable, confirmed(query.get("confirm"))?).await?;
    let by = Deployer {
        actor: caller.0.name.clone(),
        origin: Origin::Api,
        restored_from: None,
    };
    Ok(Json(put_in_force(&state, deployable, by, enrolling).await?))
}

/// Deploys, starts the scan for leads that already match new campaigns, and logs it.
pub(crate) async fn put_in_force(
    state: &AppState,
    deployable: Deployable,
    by: Deployer,
    enrolling: BTreeMap<String, usize>,
) -> Result<DeployAnswer, ApiError> {
    let actor = by.actor.clone();
    let Deployed {
        report,
        deployment,
        content_hash,
        unchanged,
        warnings,
    } = state.engine.deploy(deployable, by).await?;
    for warning in &warnings {
        tracing::warn!(by = %actor, file = %warning.file, "Deploying: {}", warning.message);
    }
    state.engine.enter_matching_after(&report);
    tracing::info!(
        by = %actor,
        deployment,
        unchanged,
        created = report.created.len(),
        changed = report.changed.len(),
        retired = report.retired.len(),
        "Playbook deployed."
    );
    Ok(DeployAnswer {
        report,
        warnings,
        enrolling,
        deployment: DeploymentRef {
            id: deployment,
            content_hash,
            unchanged,
        },
    })
}

/// A deployment id from the path: 404 for anything that is not one.
fn deployment_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no deployment {id:?}; ids are whole numbers")))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Params<Paged>,
) -> Result<Json<DeploymentPage>, ApiError> {
    caller.require(MARKETERS)?;
    let (limit, before) = page::by_id(query.get("limit"), query.get("cursor"))?;
    let mut items = state.engine.deployments(before, limit + 1).await?;
    let next_cursor = page::cut_by_id(&mut items, limit, |d| d.id);
    Ok(Json(DeploymentPage { items, next_cursor }))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Json<DeploymentView>, ApiError> {
    caller.require(MARKETERS)?;
    let number = deployment_id(&id)?;
    let deployment = state
        .engine
        .deployment(Some(number))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no deployment {number}")))?;
    Ok(Json(DeploymentView {
        in_force: state.engine.deployment_id() == Some(number),
        head: deployment.head,
        files: deployment.files,
    }))
}

async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    query: Params<Confirm>,
) -> Result<Json<DeployAnswer>, ApiError> {
    caller.require(MARKETERS)?;
    let number = deployment_id(&id)?;
    let deployable = match state.engine.deployable(number).await {
        Ok(deployable) => deployable,
        Err(nurture_engine::engine::EngineError::NotFound) => {
            return Err(ApiError::NotFound(format!("no deployment {number}")))
        }
        Err(nurture_engine::engine::EngineError::Failed(why)) => {
            return Err(ApiError::Invalid {
                message: why,
                details: Vec::new(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let by = Deployer {
        actor: caller.0.name.clone(),
        origin: Origin::Restore,
        restored_from: Some(number),
    };
    let enrolling = enrolling(&state, &deployable, confirmed(query.get("confirm"))?).await?;
    Ok(Json(put_in_force(&state, deployable, by, enrolling).await?))
}
