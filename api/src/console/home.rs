//! The start page: an SDR's queues and claimed leads (claim next; accept, convert, release,
//! reject), every queue and the campaigns for marketers and admins.

use super::*;

#[derive(Template)]
#[template(path = "home.html")]
pub(super) struct HomePage<'a> {
    t: &'static Text,
    nav: Nav,
    csrf: &'a str,
    /// "My queues" for an SDR, "Queues" for those who oversee them all.
    queues_title: &'static str,
    queues: Vec<QueueRows>,
    /// What the user has claimed and is to decide.
    mine: Vec<HandoffRow>,
    campaigns: Vec<CampaignRow>,
    notice: Option<String>,
    error: Option<&'static str>,
}

pub(super) struct QueueRows {
    name: String,
    /// The signed-in user may claim from it (a member, or an admin).
    claimable: bool,
    handoffs: Vec<HandoffRow>,
}

pub(super) struct HandoffRow {
    id: i64,
    lead_id: i64,
    queue: String,
    lead: String,
    reason: String,
    status: String,
    mine: bool,
    sla: String,
}

pub(super) struct CampaignRow {
    id: String,
    name: String,
    status: String,
    version: String,
}

/// A handoff as a row of the start page.
pub(super) fn handoff_row(
    t: &Text,
    user: &User,
    h: nurture_engine::handoff::Handoff,
    lead: Option<nurture_engine::engine::LeadView>,
    now: chrono::DateTime<chrono::Utc>,
) -> HandoffRow {
    HandoffRow {
        id: h.id.0,
        lead_id: h.lead_id.0,
        queue: h.queue.clone(),
        lead: lead
            .map(|l| l.lead.email.unwrap_or_else(|| l.lead.id.to_string()))
            .unwrap_or_default(),
        reason: h.reason.clone(),
        status: handoff_status(t, h.status).to_owned(),
        mine: h.claimed_by.as_deref() == Some(user.email.as_str())
            || h.assigned_to.as_deref() == Some(user.email.as_str()),
        sla: match h.status {
            HandoffStatus::Open => h.sla_due_at.map(|due| countdown(t, due, now)).unwrap_or_default(),
            _ => String::new(),
        },
    }
}

/// The start page: an SDR's queues (what waits, what is theirs, how long the SLA has left);
/// for marketers and admins also the campaigns.
pub(super) async fn home(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
) -> Answer {
    let (user, _, csrf) = viewer(&state, &jar).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let playbook = state.engine.playbook();
    let now = state.engine.now();
    let mut queues = Vec::new();
    for (name, queue) in &playbook.queues.queues {
        let member = queue.members.contains(&user.email);
        if !member && user.role == Role::Sdr {
            continue;
        }
        let handoffs = state.engine.queue(name, None, 50).await.map_err(failed)?;
        let rows = handoffs
            .into_iter()
            .map(|(h, lead)| handoff_row(t, &user, h, lead, now))
            .collect();
        queues.push(QueueRows {
            claimable: member || user.role == Role::Admin,
            name: name.clone(),
            handoffs: rows,
        });
    }
    // A claim that found nothing says why: nothing open, or all of it someone else's.
    let why_empty = match q.empty.as_deref() {
        Some(queue) => match state.engine.nothing_to_claim(queue, &user.email).await {
            Ok(why) => Some(explain_empty(t, queue, &why)),
            Err(EngineError::Missing(_)) => None,
            Err(e) => return Err(failed(e)),
        },
        None => None,
    };
    let mine = state
        .engine
        .claimed_by(&user.email, 100)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|(h, lead)| handoff_row(t, &user, h, lead, now))
        .collect();
    let mut campaigns = Vec::new();
    if user.role != Role::Sdr {
        let records = state.engine.campaigns().await.map_err(failed)?;
        campaigns.extend(records.into_iter().map(|c| CampaignRow {
            id: c.id,
            name: c.name,
            status: campaign_status(t, c.status).to_owned(),
            version: c.version.chars().take(12).collect(),
        }));
    }
    let body = HomePage {
        t,
        nav: Nav::new(t, &user, &csrf, "home"),
        csrf: &csrf,
        queues_title: if user.role == Role::Sdr { t.my_queues } else { t.queues },
        queues,
        mine,
        campaigns,
        notice: match q.notice.as_deref() {
            Some("claimed") => Some(t.claimed.to_owned()),
            Some("empty") => Some(t.nothing_to_claim.to_owned()),
            Some("decided") => Some(t.decided.to_owned()),
            _ => why_empty,
        },
        error: match q.error.as_deref() {
            Some("changed") => Some(t.changed_meanwhile),
            Some("not_yours") => Some(t.not_yours),
            Some("say_why") => Some(t.say_why),
            _ => None,
        },
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

/// `POST /queues/{queue}/claim`: the next handoff of a queue for the signed-in user.
pub(super) async fn claim(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(queue): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Answer {
    let (user, _, _) = posted(&state, &jar, &headers, &form.csrf).await?;
    if !user.role.works_leads() {
        return Ok(Redirect::to("/?error=not_yours").into_response());
    }
    Ok(match state.engine.claim(&queue, &user.email).await {
        Ok(Some((handoff, _))) => {
            tracing::info!(user = %user.email, handoff = handoff.id.0, "Claimed in the console.");
            Redirect::to("/?notice=claimed").into_response()
        }
        Ok(None) => {
            let query = serde_urlencoded::to_string([("empty", queue.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/?{query}")).into_response()
        }
        Err(EngineError::Missing(_) | EngineError::NotFound) => Redirect::to("/?notice=empty").into_response(),
        Err(e) => return Err(failed(e)),
    })
}

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    recycle: Option<String>,
    /// A conversion's value, as typed (`12,000.50`).
    #[serde(default)]
    amount: String,
    #[serde(default)]
    note: String,
    /// The page to return to: the lead card it was decided on, else the start page.
    #[serde(default)]
    back: String,
}

/// Where a form returns: `back` when it is a lead card, else the start page; with `query`.
pub(super) fn back_to(back: &str, query: &str) -> Redirect {
    let card = back
        .strip_prefix("/leads/")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    let path = if card { back } else { "/" };
    Redirect::to(&format!("{path}?{query}"))
}

/// `POST /handoffs/{id}/{accept|reject|convert|release}`: a decision of the signed-in user,
/// recorded under their e-mail, with their note (and a conversion's value).
pub(super) async fn decide(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Answer {
    let (user, _, _) = posted(&state, &jar, &headers, &form.csrf).await?;
    let no_handoff = || message(StatusCode::NOT_FOUND, text(None, Some(&user), &headers).no_handoff);
    let Ok(id) = id.parse::<i64>() else {
        return Err(no_handoff());
    };
    let decision = match verb.as_str() {
        "accept" => Decision::Accept,
        "convert" => match read_amount(&form.amount) {
            Ok(amount) => Decision::Convert { amount },
            Err(()) => return Ok(back_to(&form.back, "error=amount").into_response()),
        },
        "release" => Decision::Release,
        "reject" => Decision::Reject {
            reason: form.reason.trim().to_owned(),
            recycle: form.recycle.is_some(),
        },
        _ => return Err(no_handoff()),
    };
    let by = nurture_engine::audit::By::console(&user.email);
    let note = Some(form.note.as_str()).filter(|n| !n.trim().is_empty());
    let outcome = match state
        .engine
        .decide(HandoffId(id), &decision, note, &by, user.role.oversees_queues())
        .await
    {
        Ok(_) => "notice=decided",
        Err(EngineError::Invalid(_)) => "error=say_why",
        Err(EngineError::Forbidden(_)) => "error=not_yours",
        Err(EngineError::Conflict(_) | EngineError::Missing(_)) => "error=changed",
        Err(e) => return Err(failed(e)),
    };
    Ok(back_to(&form.back, outcome).into_response())
}

/// An amount as a person types it: empty for none; digits with `,` or spaces between
/// thousands, and at most two decimals.
pub(super) fn read_amount(typed: &str) -> Result<Option<Amount>, ()> {
    let digits: String = typed.chars().filter(|c| !matches!(c, ',' | ' ' | '，')).collect();
    if digits.is_empty() {
        return Ok(None);
    }
    let value: f64 = digits.parse().map_err(|_| ())?;
    Amount::from_decimal(value).map(Some).map_err(|_| ())
}
