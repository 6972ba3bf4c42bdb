//! Campaign pages (marketers, admins): the list with live figures; one campaign with its graph
//! (each step a link to the leads at it now), its steps' figures, its versions, pause and
//! resume, and enrolling a segment once its dry run has been read.

use std::collections::HashMap;

use super::*;

use nurture_engine::audit::By;
use nurture_engine::engine::{CampaignCounts, EnrollDryRun};
use nurture_engine::playbook::draw;

use crate::campaigns::rate;

/// Leads listed per page at a step.
const AT_STEP_PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "campaigns.html")]
pub(super) struct ListPage {
    t: &'static Text,
    nav: Nav,
    campaigns: Vec<ListRow>,
}

pub(super) struct ListRow {
    id: String,
    name: String,
    campaign_type: String,
    status: &'static str,
    version: String,
    counts: Option<CampaignCounts>,
    opened_rate: String,
    clicked_rate: String,
}

/// `GET /campaigns`: every deployed campaign with its figures.
pub(super) async fn list(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let playbook = state.engine.playbook();
    let mut campaigns = Vec::new();
    for record in state.engine.campaigns().await.map_err(failed)? {
        let counts = match playbook.campaigns.get(&record.id) {
            Some(c) => Some(state.engine.campaign_counts(c).await.map_err(failed)?),
            None => None,
        };
        let (opened_rate, clicked_rate) = counts
            .as_ref()
            .map(|c| (rate(c.opened, c.sent), rate(c.clicked, c.sent)))
            .unwrap_or_default();
        campaigns.push(ListRow {
            name: record.name,
            campaign_type: record.campaign_type,
            status: campaign_status(t, record.status),
            version: format!("v{}", record.number),
            counts,
            opened_rate,
            clicked_rate,
            id: record.id,
        });
    }
    let body = ListPage {
        t,
        nav: Nav::new(t, &user, &csrf, "campaigns"),
        campaigns,
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

#[derive(Template)]
#[template(path = "campaign.html")]
pub(super) struct CampaignPage<'a> {
    t: &'static Text,
    nav: Nav,
    csrf: &'a str,
    id: String,
    name: String,
    campaign_type: String,
    status: &'static str,
    paused: bool,
    version: String,
    description: String,
    counts: CampaignCounts,
    opened_rate: String,
    clicked_rate: String,
    /// The graph as inline SVG, each step a link.
    graph: String,
    steps: Vec<StepRow>,
    versions: Vec<VersionRow>,
    segments: Vec<String>,
    dry_run: Option<DryRunView>,
    notice: Option<String>,
    error: Option<&'static str>,
}

pub(super) struct StepRow {
    id: String,
    kind: &'static str,
    does: String,
    entered: i64,
    here: i64,
    sent: i64,
    opened: i64,
    clicked: i64,
}

pub(super) struct VersionRow {
    number: i64,
    version: String,
    file: String,
    deployed: String,
}

pub(super) struct DryRunView {
    segment: String,
    would_enter: usize,
    unreachable: Vec<(&'static str, usize)>,
    skipped: Vec<(&'static str, usize)>,
}

#[derive(Deserialize)]
pub(super) struct CampaignQuery {
    lang: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    /// A segment to dry-run enrolling.
    segment: Option<String>,
    /// After an enroll: how many entered, and how many did not.
    n: Option<usize>,
    skipped: Option<usize>,
}

/// Why a dry run leaves a lead out or says no e-mail reaches it, in the page's language.
fn why(t: &Text, reason: &str) -> &'static str {
    match reason {
        "already_in" => t.why_already_in,
        "reentry" => t.why_reentry,
        "no_email" => t.why_no_email,
        "unsubscribed" => t.why_unsubscribed,
        "suppressed" => t.why_suppressed,
        _ => "—",
    }
}

fn dry_run_view(t: &Text, segment: String, report: EnrollDryRun) -> DryRunView {
    let words = |counts: std::collections::BTreeMap<String, usize>| {
        counts.into_iter().map(|(reason, n)| (why(t, &reason), n)).collect()
    };
    DryRunView {
        segment,
        would_enter: report.would_enter,
        unreachable: words(report.unreachable),
        skipped: words(report.skipped),
    }
}

/// `GET /campaigns/{id}`: the campaign, and with `?segment=` the dry run of enrolling it.
pub(super) async fn campaign(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<CampaignQuery>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let playbook = state.engine.playbook();
    let records = state.engine.campaigns().await.map_err(failed)?;
    let (Some(record), Some(campaign)) = (
        records.into_iter().find(|r| r.id == id),
        playbook.campaigns.get(&id).cloned(),
    ) else {
        return Err(message(StatusCode::NOT_FOUND, t.no_campaign));
    };
    let funnel = state.engine.funnel(&campaign).await.map_err(failed)?;
    let counts = state.engine.counts_of(&campaign, &funnel).await.map_err(failed)?;
    let graph = graph(&state, t, &campaign, &funnel).await;
    let steps = campaign
        .steps()
        .zip(&funnel)
        .map(|(step, count)| StepRow {
            id: step.id.clone(),
            kind: count.kind,
            does: draw::summary(&step.action),
            entered: count.entered,
            here: count.waiting,
            sent: count.outcomes.get("sent").copied().unwrap_or(0),
            opened: count.opened,
            clicked: count.clicked,
        })
        .collect();
    let versions = state
        .engine
        .campaign_versions(&id)
        .await
        .map_err(failed)?
        .into_iter()
        .rev()
        .map(|v| VersionRow {
            number: v.number,
            version: v.version.chars().take(12).collect(),
            file: v.file,
            deployed: local(v.deployed_at, tz),
        })
        .collect();
    let mut segments: Vec<String> = playbook.segments.keys().cloned().collect();
    segments.sort();
    let mut error = match q.error.as_deref() {
        Some("segment") => Some(t.enroll_bad),
        _ => None,
    };
    let dry_run = match q.segment.filter(|s| !s.is_empty()) {
        Some(segment) => match state.engine.enroll_dry_run(&id, &[], Some(&segment)).await {
            Ok(report) => Some(dry_run_view(t, segment, report)),
            Err(EngineError::Invalid(_)) => {
                error = Some(t.enroll_bad);
                None
            }
            Err(e) => return Err(failed(e)),
        },
        None => None,
    };
    let notice = match q.notice.as_deref() {
        Some("paused") => Some(t.paused_notice.to_owned()),
        Some("resumed") => Some(t.resumed_notice.to_owned()),
        Some("enrolled") => Some(format!(
            "{} {}; {} {}.",
            t.enrolled_notice,
            q.n.unwrap_or(0),
            t.skipped_word,
            q.skipped.unwrap_or(0)
        )),
        _ => None,
    };
    let body = CampaignPage {
        t,
        nav: Nav::new(t, &user, &csrf, "campaigns"),
        csrf: &csrf,
        name: record.name,
        campaign_type: record.campaign_type,
        status: campaign_status(t, record.status),
        paused: record.status == CampaignStatus::Paused,
        version: format!(
            "v{} · {}",
            record.number,
            record.version.chars().take(12).collect::<String>()
        ),
        description: campaign.description.clone().unwrap_or_default(),
        opened_rate: rate(counts.opened, counts.sent),
        clicked_rate: rate(counts.clicked, counts.sent),
        counts,
        graph,
        steps,
        versions,
        segments,
        dry_run,
        notice,
        error,
        id,
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

/// The campaign drawn with its counts, each step a link to the leads at it, titled with its
/// figures.
async fn graph(
    state: &AppState,
    t: &'static Text,
    campaign: &Arc<nurture_engine::playbook::Campaign>,
    funnel: &[nurture_engine::engine::StepFunnel],
) -> String {
    let edges = state.engine.edges_of(campaign, funnel);
    let figures: HashMap<String, (i64, i64)> = funnel
        .iter()
        .map(|s| (s.step.clone(), (s.entered, s.waiting)))
        .collect();
    let notes: draw::StepNotes = funnel
        .iter()
        .map(|s| {
            (
                s.step.clone(),
                format!("{} {} · {} {}", s.entered, t.entered, s.waiting, t.at_step_now),
            )
        })
        .collect();
    let campaign = campaign.clone();
    let drawn = tokio::task::spawn_blocking(move || {
        let id = campaign.id.clone();
        let link = move |step: &str| {
            let (entered, here) = figures.get(step).copied().unwrap_or_default();
            (
                format!("/campaigns/{id}/steps/{step}"),
                format!("{step}: {} {entered}, {} {here}", t.entered, t.at_step_now),
            )
        };
        draw::svg_linked(&campaign, Some(&edges), &notes, &link)
    })
    .await;
    match drawn {
        // Inline in HTML, the drawing's XML declaration has no place.
        Ok(Ok(svg)) => svg
            .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>"#)
            .map(str::to_owned)
            .unwrap_or(svg),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "A campaign graph could not be drawn.");
            String::new()
        }
        Err(e) => {
            tracing::error!(error = %e, "Drawing a campaign graph panicked.");
            String::new()
        }
    }
}

#[derive(Template)]
#[template(path = "at_step.html")]
pub(super) struct AtStepPage {
    t: &'static Text,
    nav: Nav,
    id: String,
    name: String,
    step: String,
    does: String,
    leads: Vec<AtStepRow>,
    /// The next page's address, when this one is full.
    next: Option<String>,
}

pub(super) struct AtStepRow {
    id: i64,
    lead: String,
    company: String,
    since: String,
    wakes: String,
}

#[derive(Deserialize)]
pub(super) struct AtStepQuery {
    lang: Option<String>,
    after: Option<i64>,
}

/// `GET /campaigns/{id}/steps/{step}`: the leads at a step now, 50 a page.
pub(super) async fn at_step(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<AtStepQuery>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let Some(at) = state
        .engine
        .at_step(&id, &step, q.after, AT_STEP_PAGE)
        .await
        .map_err(failed)?
    else {
        return Err(message(StatusCode::NOT_FOUND, t.no_campaign));
    };
    let playbook = state.engine.playbook();
    let campaign = playbook.campaigns.get(&id);
    let next = (at.len() as i64 == AT_STEP_PAGE)
        .then(|| {
            at.last()
                .map(|(a, _)| format!("/campaigns/{id}/steps/{step}?after={}", a.lead.0))
        })
        .flatten();
    let leads = at
        .into_iter()
        .map(|(a, lead)| AtStepRow {
            id: a.lead.0,
            lead: lead
                .as_ref()
                .and_then(|l| l.email.clone())
                .unwrap_or_else(|| a.lead.to_string()),
            company: lead
                .as_ref()
                .and_then(|l| l.fields.get("company").cloned())
                .unwrap_or_default(),
            since: local(a.since, tz),
            wakes: a.wakes_at.map(|w| local(w, tz)).unwrap_or_default(),
        })
        .collect();
    let body = AtStepPage {
        t,
        nav: Nav::new(t, &user, &csrf, "campaigns"),
        name: campaign.map(|c| c.name.clone()).unwrap_or_default(),
        does: campaign
            .and_then(|c| c.step(&step))
            .map(|s| draw::summary(&s.action))
            .unwrap_or_default(),
        id,
        step,
        leads,
        next,
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

#[derive(Deserialize)]
pub(super) struct StatusForm {
    #[serde(default)]
    csrf: String,
    /// `pause` or `resume`.
    #[serde(default)]
    to: String,
}

/// The refusal of a campaign that is not in the playbook in force (so that only a campaign's
/// own id, a checked identifier, goes into the address answered).
fn not_in_force(state: &AppState, user: &User, headers: &HeaderMap, id: &str) -> Option<Response> {
    (!state.engine.playbook().campaigns.contains_key(id))
        .then(|| message(StatusCode::NOT_FOUND, text(None, Some(user), headers).no_campaign))
}

/// `POST /campaigns/{id}/status`: pause or resume, as the API does.
pub(super) async fn set_status(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> Answer {
    let user = overseer_posting(&state, &jar, &headers, &form.csrf).await?;
    if let Some(refused) = not_in_force(&state, &user, &headers, &id) {
        return Err(refused);
    }
    let (status, notice) = match form.to.as_str() {
        "pause" => (CampaignStatus::Paused, "paused"),
        "resume" => (CampaignStatus::Active, "resumed"),
        _ => return Ok(Redirect::to(&format!("/campaigns/{id}")).into_response()),
    };
    match state
        .engine
        .set_campaign_status(&id, status, &By::console(&user.email))
        .await
    {
        Ok(()) => Ok(Redirect::to(&format!("/campaigns/{id}?notice={notice}")).into_response()),
        Err(EngineError::NotFound) => Err(message(
            StatusCode::NOT_FOUND,
            text(None, Some(&user), &headers).no_campaign,
        )),
        Err(e) => Err(failed(e)),
    }
}

#[derive(Deserialize)]
pub(super) struct EnrollForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    segment: String,
}

/// `POST /campaigns/{id}/enroll`: enrolls a segment (after its dry run was shown).
pub(super) async fn enroll(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EnrollForm>,
) -> Answer {
    let user = overseer_posting(&state, &jar, &headers, &form.csrf).await?;
    if let Some(refused) = not_in_force(&state, &user, &headers, &id) {
        return Err(refused);
    }
    match state
        .engine
        .enroll_segment(&id, &form.segment, &By::console(&user.email))
        .await
    {
        Ok(report) => Ok(Redirect::to(&format!(
            "/campaigns/{id}?notice=enrolled&n={}&skipped={}",
            report.enrolled, report.skipped
        ))
        .into_response()),
        Err(EngineError::Invalid(_)) => Ok(Redirect::to(&format!("/campaigns/{id}?error=segment")).into_response()),
        Err(EngineError::NotFound) => Err(message(
            StatusCode::NOT_FOUND,
            text(None, Some(&user), &headers).no_campaign,
        )),
        Err(e) => Err(failed(e)),
    }
}
