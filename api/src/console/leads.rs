//! Leads (marketers, admins): search by the start of an e-mail, name or company, by tag,
//! stage and score range; erasing a person (admins), after typing its e-mail to confirm.

use super::*;

use nurture_engine::audit::By;
use nurture_engine::lead::{LeadId, Stage};
use nurture_engine::store::LeadSearch;

/// Leads a search page lists.
const PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "leads.html")]
pub(super) struct LeadsPage {
    t: &'static Text,
    nav: Nav,
    q: String,
    tag: String,
    stage: String,
    score_min: String,
    score_max: String,
    stages: Vec<(&'static str, &'static str)>,
    leads: Vec<LeadRow>,
    /// The next page's address, when there is one.
    next: Option<String>,
    /// A prefix search answered its first matches only.
    first_matches: bool,
    notice: Option<&'static str>,
    error: Option<String>,
}

pub(super) struct LeadRow {
    id: i64,
    email: String,
    name: String,
    company: String,
    stage: &'static str,
    score: i64,
    tags: String,
}

#[derive(Deserialize, Default)]
pub(super) struct SearchQuery {
    lang: Option<String>,
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    score_min: String,
    #[serde(default)]
    score_max: String,
    after: Option<i64>,
    notice: Option<String>,
}

/// A score bound as typed: empty for none, else a whole number.
fn bound(typed: &str) -> Result<Option<i64>, ()> {
    match typed.trim() {
        "" => Ok(None),
        n => n.parse().map(Some).map_err(|_| ()),
    }
}

/// `GET /leads`: the search form and what it finds.
pub(super) async fn search(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let stage = Stage::ALL.into_iter().find(|s| s.as_str() == q.stage);
    let mut error = None;
    let (score_min, score_max) = match (bound(&q.score_min), bound(&q.score_max)) {
        (Ok(min), Ok(max)) => (min, max),
        _ => {
            error = Some(format!("{}{}", t.search_bad, t.score_whole));
            (None, None)
        }
    };
    let search = LeadSearch {
        prefix: Some(q.q.trim().to_owned()).filter(|p| !p.is_empty()),
        tag: Some(q.tag.trim().to_owned()).filter(|p| !p.is_empty()),
        stage,
        score_min,
        score_max,
    };
    let (found, next) = if error.is_some() {
        (Vec::new(), None)
    } else {
        match state.engine.search_leads(&search, q.after.map(LeadId), PAGE).await {
            Ok(found) => found,
            Err(EngineError::Invalid(problems)) => {
                let said: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                error = Some(format!("{}{}", t.search_bad, said.join("; ")));
                (Vec::new(), None)
            }
            Err(e) => return Err(failed(e)),
        }
    };
    let first_matches = search.prefix.is_some() && found.len() as i64 == PAGE;
    let next = next.map(|after| {
        let query = serde_urlencoded::to_string([
            ("q", q.q.as_str()),
            ("tag", q.tag.as_str()),
            ("stage", q.stage.as_str()),
            ("score_min", q.score_min.as_str()),
            ("score_max", q.score_max.as_str()),
            ("after", &after.0.to_string()),
        ])
        .unwrap_or_default();
        format!("/leads?{query}")
    });
    let leads = found
        .into_iter()
        .map(|v| {
            let lead = v.lead;
            let name: Vec<&str> = ["last_name", "first_name"]
                .iter()
                .filter_map(|f| lead.fields.get(f).map(String::as_str))
                .collect();
            LeadRow {
                id: lead.id.0,
                email: lead.email.clone().unwrap_or_else(|| format!("#{}", lead.id.0)),
                name: name.join(if t.lang == "zh" { "" } else { " " }),
                company: lead.fields.get("company").cloned().unwrap_or_default(),
                stage: stage_name(t, lead.stage),
                score: lead.score,
                tags: v.tags.join(", "),
            }
        })
        .collect();
    let body = LeadsPage {
        t,
        nav: Nav::new(t, &user, &csrf, "leads"),
        stages: Stage::ALL.iter().map(|s| (s.as_str(), stage_name(t, *s))).collect(),
        q: q.q,
        tag: q.tag,
        stage: q.stage,
        score_min: q.score_min,
        score_max: q.score_max,
        leads,
        next,
        first_matches,
        notice: (q.notice.as_deref() == Some("erased")).then_some(t.erased),
        error,
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

#[derive(Template)]
#[template(path = "erase.html")]
pub(super) struct ErasePage<'a> {
    t: &'static Text,
    nav: Nav,
    csrf: &'a str,
    id: i64,
    /// What to type: the lead's e-mail, or its id when it has none.
    who: String,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
pub(super) struct EraseQuery {
    lang: Option<String>,
    error: Option<String>,
}

/// The refusal of anyone but an admin.
fn unless_admin(user: &User, headers: &HeaderMap) -> Option<Response> {
    (user.role != Role::Admin).then(|| message(StatusCode::FORBIDDEN, text(None, Some(user), headers).admins_erase))
}

/// The lead to erase, and what confirms it (its e-mail, else its id).
async fn erasable(state: &AppState, t: &Text, id: &str) -> Result<(LeadId, String), Response> {
    let Some(id) = id.parse::<i64>().ok().map(LeadId) else {
        return Err(message(StatusCode::NOT_FOUND, t.no_lead));
    };
    match state.engine.get_lead(id).await {
        Ok(view) => Ok((id, view.lead.email.unwrap_or_else(|| id.0.to_string()))),
        Err(EngineError::NotFound) => Err(message(StatusCode::NOT_FOUND, t.no_lead)),
        Err(e) => Err(failed(e)),
    }
}

/// `GET /leads/{id}/erase` (admins): what erasing deletes, and the confirmation.
pub(super) async fn erase_page(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EraseQuery>,
) -> Answer {
    let (user, _, csrf) = viewer(&state, &jar).await?;
    if let Some(refused) = unless_admin(&user, &headers) {
        return Err(refused);
    }
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let (id, who) = erasable(&state, t, &id).await?;
    let body = ErasePage {
        t,
        nav: Nav::new(t, &user, &csrf, "leads"),
        csrf: &csrf,
        id: id.0,
        who,
        error: (q.error.as_deref() == Some("mismatch")).then_some(t.erase_mismatch),
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

#[derive(Deserialize)]
pub(super) struct EraseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /leads/{id}/erase` (admins): erases the person when the confirmation names them.
pub(super) async fn erase(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EraseForm>,
) -> Answer {
    let (user, _, _) = posted(&state, &jar, &headers, &form.csrf).await?;
    if let Some(refused) = unless_admin(&user, &headers) {
        return Err(refused);
    }
    let t = text(None, Some(&user), &headers);
    let (id, who) = erasable(&state, t, &id).await?;
    if form.confirm.trim().to_lowercase() != who.to_lowercase() {
        return Ok(Redirect::to(&format!("/leads/{}/erase?error=mismatch", id.0)).into_response());
    }
    match state.engine.erase_lead(id, &By::console(&user.email)).await {
        Ok(()) | Err(EngineError::NotFound) => Ok(Redirect::to("/leads?notice=erased").into_response()),
        Err(e) => Err(failed(e)),
    }
}
