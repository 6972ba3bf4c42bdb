//! The lead card: who the lead is (contact details an SDR keeps up to date), why they are here
//! (the score by rule and by person, the behaviours that counted, survey answers, tags), their
//! handoffs and what came of them, and what happened to them in the timeline's own words. An
//! SDR (or an admin) decides the current handoff here, writes notes and logs calls; marketers
//! read the same card.

use super::*;

use chrono::NaiveDate;
use nurture_engine::handoff::Handoff;
use nurture_engine::lead::{LeadId, LeadInput, TEXT_FIELDS};
use nurture_engine::note::{CallInput, CallOutcome, NoteInput};
use nurture_engine::store::{TimelineEntry, TimelineKind};
use nurture_engine::tag::Actor;
use serde_json::Value;

#[derive(Template)]
#[template(path = "lead.html")]
pub(super) struct LeadPage<'a> {
    t: &'static Text,
    nav: Nav,
    csrf: &'a str,
    id: i64,
    title: String,
    facts: Vec<(&'static str, String)>,
    /// The SDR's or admin's forms: contact details, decisions, notes and calls.
    works: bool,
    contact: Vec<ContactField>,
    current: Option<CurrentHandoff>,
    outcomes: Vec<(&'static str, &'static str)>,
    today: String,
    score: i64,
    sources: Vec<SourceRow>,
    counted: Vec<EntryRow>,
    survey: Option<(String, Vec<(String, String)>)>,
    tags: Vec<String>,
    handoffs: Vec<HandoffLine>,
    entries: Vec<EntryRow>,
    notice: Option<&'static str>,
    error: Option<String>,
}

pub(super) struct ContactField {
    name: &'static str,
    label: &'static str,
    value: String,
    kind: &'static str,
}

pub(super) struct CurrentHandoff {
    id: i64,
    queue: String,
    reason: String,
    status: &'static str,
    /// Open or claimed: accept, reject, release (claimed only) as well as convert.
    undecided: bool,
    claimed: bool,
}

pub(super) struct HandoffLine {
    at: String,
    queue: String,
    reason: String,
    status: &'static str,
    by: String,
    outcome: String,
}

pub(super) struct SourceRow {
    name: String,
    points: i64,
    changes: i64,
}

pub(super) struct EntryRow {
    at: String,
    kind: &'static str,
    text: String,
}

/// How many timeline entries the card shows, newest first.
const ENTRIES: i64 = 100;
/// How many of the rules' points, and how many handoffs, the card lists.
const LISTED: i64 = 20;
/// The event whose properties are the survey's answers.
const SURVEY: &str = "survey_submitted";
/// The contact details an SDR keeps up to date on the card.
const CONTACT: [(&str, &str); 3] = [("phone", "tel"), ("title", "text"), ("company", "text")];

/// `GET /leads/{id}`: the lead card, for any signed-in user.
pub(super) async fn lead_card(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Lang>,
) -> Answer {
    let (user, _, csrf) = viewer(&state, &jar).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let Some(id) = id.parse::<i64>().ok().map(LeadId) else {
        return Err(message(StatusCode::NOT_FOUND, t.no_lead));
    };
    let view = match state.engine.get_lead(id).await {
        Ok(view) => view,
        Err(EngineError::NotFound) => return Err(message(StatusCode::NOT_FOUND, t.no_lead)),
        Err(e) => return Err(failed(e)),
    };
    let engine = &state.engine;
    let read = async {
        let sources = engine.score_sources(id).await?;
        let entries = engine.timeline(id, None, ENTRIES).await?.0;
        let points = engine.rule_points(id, LISTED).await?;
        let survey = engine.latest_event(id, SURVEY).await?;
        let handoffs = engine.lead_handoffs(id, LISTED).await?;
        Ok::<_, EngineError>((sources, entries, points, survey, handoffs))
    };
    let (sources, entries, points, survey, handoffs) = read.await.map_err(failed)?;
    let lead = &view.lead;
    let name: Vec<&str> = ["last_name", "first_name"]
        .iter()
        .filter_map(|f| lead.fields.get(f).map(String::as_str))
        .collect();
    let title = match (name.is_empty(), &lead.email) {
        (false, _) => name.join(if t.lang == "zh" { "" } else { " " }),
        (true, Some(email)) => email.clone(),
        (true, None) => format!("#{}", lead.id.0),
    };
    let works = user.role.works_leads();
    let mut facts: Vec<(&'static str, String)> = Vec::new();
    if let Some(email) = &lead.email {
        facts.push((t.email, email.clone()));
    }
    for field in TEXT_FIELDS {
        let editable = works && CONTACT.iter().any(|(c, _)| *c == field);
        if let Some(value) = lead.fields.get(field).filter(|v| !v.is_empty() && !editable) {
            facts.push((field_label(t, field), value.clone()));
        }
    }
    facts.push((t.stage, stage_name(t, lead.stage).to_owned()));
    if let Some(owner) = &lead.owner {
        facts.push((t.owner, owner.clone()));
    }
    let contact = CONTACT
        .iter()
        .filter(|_| works)
        .map(|(name, kind)| ContactField {
            name,
            label: field_label(t, name),
            value: lead.fields.get(name).cloned().unwrap_or_default(),
            kind,
        })
        .collect();
    let current = handoffs
        .iter()
        .find(|h| {
            matches!(
                h.status,
                HandoffStatus::Open | HandoffStatus::Claimed | HandoffStatus::Accepted
            )
        })
        .filter(|_| works)
        .map(|h| CurrentHandoff {
            id: h.id.0,
            queue: h.queue.clone(),
            reason: h.reason.clone(),
            status: handoff_status(t, h.status),
            undecided: h.status != HandoffStatus::Accepted,
            claimed: h.status == HandoffStatus::Claimed,
        });
    let survey = survey.filter(|(_, answers)| !answers.is_empty()).map(|(at, answers)| {
        let answers = answers
            .into_iter()
            .map(|(question, answer)| {
                let answer = match answer {
                    Value::String(s) => s,
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                (question, answer)
            })
            .collect();
        (local(at, tz), answers)
    });
    let body = LeadPage {
        t,
        nav: Nav::new(t, &user, &csrf, ""),
        csrf: &csrf,
        id: id.0,
        title,
        facts,
        works,
        contact,
        current,
        outcomes: CallOutcome::ALL
            .iter()
            .map(|o| (o.as_str(), outcome_name(t, *o)))
            .collect(),
        today: state.engine.now().with_timezone(&tz).date_naive().to_string(),
        score: lead.score,
        sources: sources
            .into_iter()
            .map(|s| SourceRow {
                name: match s.kind.as_str() {
                    "rule" => format!("{} {}", t.rule, s.name),
                    "user" => format!("{} {}", t.by_hand, s.name),
                    _ => s.name,
                },
                points: s.points,
                changes: s.changes,
            })
            .collect(),
        counted: points
            .into_iter()
            .map(|p| EntryRow {
                at: local(nurture_engine::clock::from_micros(p.at), tz),
                kind: t.rule,
                text: format!("{:+} {} ({})", p.delta, p.reason, p.rule),
            })
            .collect(),
        survey,
        tags: view.tags.clone(),
        handoffs: handoffs.iter().map(|h| handoff_line(t, h, tz)).collect(),
        entries: entries.iter().map(|e| entry_row(t, e, tz)).collect(),
        notice: match q.notice.as_deref() {
            Some("decided") => Some(t.decided),
            Some("noted") => Some(t.note_saved),
            Some("contact") => Some(t.contact_saved),
            _ => None,
        },
        error: match q.error.as_deref() {
            Some("changed") => Some(t.changed_meanwhile.to_owned()),
            Some("not_yours") => Some(t.not_yours.to_owned()),
            Some("say_why") => Some(t.say_why.to_owned()),
            Some("amount") => Some(t.amount_bad.to_owned()),
            Some("empty_note") => Some(t.empty_note.to_owned()),
            Some(other) if other.starts_with("contact:") => {
                Some(format!("{}{}", t.contact_bad, &other["contact:".len()..]))
            }
            _ => None,
        },
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

/// An earlier (or the current) handoff and what came of it.
fn handoff_line(t: &Text, h: &Handoff, tz: chrono_tz::Tz) -> HandoffLine {
    let outcome = match (&h.reject_reason, h.amount) {
        (Some(reason), _) => reason.clone(),
        (None, Some(amount)) => format!("{} {amount}", t.amount),
        (None, None) => String::new(),
    };
    HandoffLine {
        at: local(h.created_at, tz),
        queue: h.queue.clone(),
        reason: h.reason.clone(),
        status: handoff_status(t, h.status),
        by: h
            .decided_by
            .clone()
            .or_else(|| h.claimed_by.clone())
            .unwrap_or_default(),
        outcome,
    }
}

fn field(data: &serde_json::Map<String, Value>, name: &str) -> String {
    match data.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One timeline entry in words.
fn entry_row(t: &Text, e: &TimelineEntry, tz: chrono_tz::Tz) -> EntryRow {
    let d = &e.data;
    let by = match d.get("by") {
        Some(Value::String(name)) => name.as_str(),
        Some(by) => by.get("name").and_then(Value::as_str).unwrap_or_default(),
        None => "",
    };
    let (kind, text) = match e.kind {
        TimelineKind::Event => {
            let properties = d
                .get("properties")
                .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()));
            let text = match properties {
                Some(p) => format!("{} {p}", field(d, "type")),
                None => field(d, "type"),
            };
            (t.kind_event, text)
        }
        TimelineKind::TagChange => {
            let change = if field(d, "change") == "added" {
                t.added
            } else {
                t.removed
            };
            (t.kind_tag, format!("{} {change} · {by}", field(d, "tag")))
        }
        TimelineKind::ScoreChange => {
            let delta = d.get("delta").and_then(Value::as_i64).unwrap_or_default();
            (t.kind_score, format!("{delta:+} {} · {by}", field(d, "reason")))
        }
        TimelineKind::Handoff => (
            t.kind_handoff,
            format!(
                "{} · {} · {}",
                field(d, "queue"),
                field(d, "reason"),
                field(d, "status")
            ),
        ),
        TimelineKind::CampaignStep => (
            t.kind_step,
            format!(
                "{} · {}: {} {}",
                field(d, "campaign"),
                field(d, "step"),
                field(d, "outcome"),
                field(d, "detail")
            ),
        ),
        TimelineKind::Message => (
            t.kind_message,
            format!(
                "{} {} · {}",
                field(d, "channel"),
                field(d, "template"),
                field(d, "status")
            ),
        ),
        TimelineKind::Note => note_words(t, d, by),
    };
    EntryRow {
        at: local(e.at, tz),
        kind,
        text,
    }
}

/// A note in words: the call's outcome and follow-up day, the decision it came with, the text.
fn note_words(t: &Text, d: &serde_json::Map<String, Value>, by: &str) -> (&'static str, String) {
    let mut parts = Vec::new();
    let call = d.get("call").filter(|c| !c.is_null());
    if let Some(call) = call {
        if let Some(outcome) = call
            .get("outcome")
            .and_then(Value::as_str)
            .and_then(|o| o.parse::<CallOutcome>().ok())
        {
            parts.push(outcome_name(t, outcome).to_owned());
        }
        if let Some(day) = call.get("follow_up_on").and_then(Value::as_str) {
            parts.push(format!("{} {day}", t.follow_up));
        }
    }
    if let Some(decision) = d.get("decision").and_then(Value::as_str) {
        parts.push(decision.to_owned());
    }
    let text = field(d, "text");
    if !text.is_empty() {
        parts.push(text);
    }
    parts.push(by.to_owned());
    let kind = if call.is_some() { t.kind_call } else { t.kind_note };
    (kind, parts.join(" · "))
}

#[derive(Deserialize)]
pub(super) struct NoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    follow_up_on: String,
}

/// The page that says there is no such lead, in the user's language.
fn no_lead(user: &User, headers: &HeaderMap) -> Response {
    message(StatusCode::NOT_FOUND, text(None, Some(user), headers).no_lead)
}

/// The signed-in SDR or admin of a form posted on a lead's card, the lead, and the card to go
/// back to; else what to answer instead (sign in; a stale form; no such lead; a marketer,
/// who reads the card but does not work the lead).
async fn working_on(
    state: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    csrf: &str,
    id: &str,
) -> Result<(User, LeadId, String), Response> {
    let (user, _, _) = posted(state, jar, headers, csrf).await?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(no_lead(&user, headers));
    };
    let back = format!("/leads/{id}");
    if !user.role.works_leads() {
        return Err(home::back_to(&back, "error=not_yours").into_response());
    }
    Ok((user, LeadId(id), back))
}

/// `POST /leads/{id}/notes`: a note or a call, written by the signed-in SDR or admin.
pub(super) async fn add_note(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<NoteForm>,
) -> Answer {
    let (user, id, back) = working_on(&state, &jar, &headers, &form.csrf, &id).await?;
    let call = match form.outcome.parse::<CallOutcome>() {
        Ok(outcome) => Some(CallInput {
            outcome,
            follow_up_on: form.follow_up_on.parse::<NaiveDate>().ok(),
        }),
        Err(_) => None,
    };
    let input = NoteInput {
        text: Some(form.text),
        call,
    };
    let by = nurture_engine::audit::By::console(&user.email);
    Ok(match state.engine.add_note(id, input, &by).await {
        Ok(_) => home::back_to(&back, "notice=noted").into_response(),
        Err(EngineError::Invalid(_)) => home::back_to(&back, "error=empty_note").into_response(),
        Err(EngineError::NotFound) => return Err(no_lead(&user, &headers)),
        Err(e) => return Err(failed(e)),
    })
}

#[derive(Deserialize)]
pub(super) struct ContactForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    company: String,
}

/// `POST /leads/{id}/contact`: the phone, title and company as the SDR knows them now (an
/// emptied field is cleared).
pub(super) async fn save_contact(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ContactForm>,
) -> Answer {
    let (user, id, back) = working_on(&state, &jar, &headers, &form.csrf, &id).await?;
    let given = |v: String| {
        let v = v.trim().to_owned();
        Some((!v.is_empty()).then_some(v))
    };
    let input = LeadInput {
        phone: given(form.phone),
        title: given(form.title),
        company: given(form.company),
        ..LeadInput::default()
    };
    Ok(
        match state
            .engine
            .patch_lead(id, input, &Actor::User(user.email.clone()))
            .await
        {
            Ok(_) => home::back_to(&back, "notice=contact").into_response(),
            Err(EngineError::Invalid(errors)) => {
                let said: Vec<String> = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect();
                let query = serde_urlencoded::to_string([("error", format!("contact:{}", said.join("; ")))])
                    .unwrap_or_default();
                home::back_to(&back, &query).into_response()
            }
            Err(EngineError::NotFound) => return Err(no_lead(&user, &headers)),
            Err(e) => return Err(failed(e)),
        },
    )
}
