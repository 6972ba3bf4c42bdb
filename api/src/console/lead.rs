//! The lead card (read-only for now): who the lead is, why they are here (the score by rule
//! and by person, the tags) and what happened to them, in the timeline's own words.

use super::*;

use nurture_engine::lead::{LeadId, TEXT_FIELDS};
use nurture_engine::store::{TimelineEntry, TimelineKind};
use serde_json::Value;

#[derive(Template)]
#[template(path = "lead.html")]
pub(super) struct LeadPage<'a> {
    t: &'static Text,
    user: &'a User,
    role: &'static str,
    csrf: &'a str,
    title: String,
    facts: Vec<(&'static str, String)>,
    score: i64,
    sources: Vec<SourceRow>,
    tags: Vec<String>,
    entries: Vec<EntryRow>,
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

/// `GET /leads/{id}`: the lead card, for any signed-in user.
pub(super) async fn lead_card(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Lang>,
) -> Response {
    let (user, _, csrf) = match viewer(&state, &jar).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let Some(id) = id.parse::<i64>().ok().map(LeadId) else {
        return message(StatusCode::NOT_FOUND, t.no_lead);
    };
    let view = match state.engine.get_lead(id).await {
        Ok(view) => view,
        Err(EngineError::NotFound) => return message(StatusCode::NOT_FOUND, t.no_lead),
        Err(e) => return failed(e),
    };
    let sources = match state.engine.score_sources(id).await {
        Ok(sources) => sources,
        Err(e) => return failed(e),
    };
    let entries = match state.engine.timeline(id, None, ENTRIES).await {
        Ok((entries, _)) => entries,
        Err(e) => return failed(e),
    };
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
    let mut facts: Vec<(&'static str, String)> = Vec::new();
    if let Some(email) = &lead.email {
        facts.push((t.email, email.clone()));
    }
    for field in TEXT_FIELDS {
        if let Some(value) = lead.fields.get(field).filter(|v| !v.is_empty()) {
            facts.push((field_label(t, field), value.clone()));
        }
    }
    facts.push((t.stage, stage_name(t, lead.stage).to_owned()));
    if let Some(owner) = &lead.owner {
        facts.push((t.owner, owner.clone()));
    }
    let body = LeadPage {
        t,
        role: role_name(t, user.role),
        user: &user,
        csrf: &csrf,
        title,
        facts,
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
        tags: view.tags.clone(),
        entries: entries.iter().map(|e| entry_row(t, e)).collect(),
    }
    .render();
    page(StatusCode::OK, body)
}

fn field(data: &serde_json::Map<String, Value>, name: &str) -> String {
    match data.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One timeline entry in words.
fn entry_row(t: &Text, e: &TimelineEntry) -> EntryRow {
    let d = &e.data;
    let by = d
        .get("by")
        .and_then(|b| b.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
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
    };
    EntryRow {
        at: e.at.format("%Y-%m-%d %H:%M UTC").to_string(),
        kind,
        text,
    }
}
