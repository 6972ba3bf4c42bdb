//! The queue board (marketers, admins): per queue what waits, what is worked and what is past
//! its SLA, the SLA breaches of the last seven days as a bar chart, and the members with their
//! availability, capacity, weight and load, each editable.

use super::*;

use nurture_engine::engine::QueueBoard;
use nurture_engine::handoff::MemberChange;
use nurture_engine::playbook::Routing;

#[derive(Template)]
#[template(path = "board.html")]
pub(super) struct BoardPage<'a> {
    t: &'static Text,
    nav: Nav,
    csrf: &'a str,
    queues: Vec<QueueCard>,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

pub(super) struct QueueCard {
    name: String,
    description: String,
    sla: String,
    routing: &'static str,
    moves_to: Option<String>,
    open: i64,
    assigned: i64,
    claimed: i64,
    overdue: i64,
    breaches: i64,
    /// The last seven days' breaches as an SVG bar chart.
    chart: String,
    members: Vec<MemberRow>,
}

pub(super) struct MemberRow {
    member: String,
    /// The member's form's id: its fields sit in the table's cells and name it.
    form: String,
    available: bool,
    capacity: String,
    weight: i64,
    load: i64,
}

/// `GET /queues`: the board.
pub(super) async fn board(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let boards = state.engine.queue_board(tz).await.map_err(failed)?;
    let today = state.engine.now().with_timezone(&tz).date_naive();
    let days: Vec<String> = (0..7)
        .rev()
        .map(|back| (today - chrono::Days::new(back)).format("%m-%d").to_string())
        .collect();
    let queues = boards.into_iter().map(|b| queue_card(t, b, &days)).collect();
    let body = BoardPage {
        t,
        nav: Nav::new(t, &user, &csrf, "queues"),
        csrf: &csrf,
        queues,
        notice: (q.notice.as_deref() == Some("saved")).then_some(t.member_saved),
        error: (q.error.as_deref() == Some("member")).then_some(t.member_bad),
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

fn queue_card(t: &Text, b: QueueBoard, days: &[String]) -> QueueCard {
    let name = b.queue.name.clone();
    QueueCard {
        description: b.queue.description.clone().unwrap_or_default(),
        sla: b.queue.sla.map_or_else(|| t.no_sla.to_owned(), |s| s.to_string()),
        routing: match b.queue.routing {
            Routing::RoundRobin => t.routing_round_robin,
            Routing::Claim => t.routing_claim,
        },
        moves_to: b.queue.move_on_breach.clone(),
        open: b.counts.open,
        assigned: b.counts.assigned,
        claimed: b.counts.claimed,
        overdue: b.counts.overdue,
        breaches: b.breaches.iter().sum(),
        chart: bars(t, &b.breaches, days),
        members: b
            .members
            .into_iter()
            .enumerate()
            .map(|(i, m)| MemberRow {
                form: format!("member-{name}-{i}"),
                available: m.available,
                capacity: m.capacity.map(|c| c.to_string()).unwrap_or_default(),
                weight: m.weight,
                load: m.load,
                member: m.member,
            })
            .collect(),
        name,
    }
}

/// Seven days' counts as a bar chart: each bar titled with its day and count, the whole
/// described for screen readers.
fn bars(t: &Text, counts: &[i64; 7], days: &[String]) -> String {
    let (width, height, bar, gap, base) = (7 * 44, 96, 32, 12, 72);
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let said: Vec<String> = days.iter().zip(counts).map(|(d, c)| format!("{d}: {c}")).collect();
    let mut svg = format!(
        "<svg class=\"bars\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" \
         aria-label=\"{}: {}\">",
        t.breaches_chart,
        said.join(", ")
    );
    for (i, (day, count)) in days.iter().zip(counts).enumerate() {
        let x = i as i64 * (bar + gap) + gap / 2;
        let h = if *count == 0 {
            1
        } else {
            (count * (base - 16) / most).max(3)
        };
        svg.push_str(&format!(
            "<g><title>{day}: {count}</title><rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{h}\" rx=\"2\"/>\
             <text x=\"{}\" y=\"{}\" class=\"count\">{count}</text><text x=\"{}\" y=\"{}\">{day}</text></g>",
            base - h,
            x + bar / 2,
            base - h - 4,
            x + bar / 2,
            height - 6,
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[derive(Deserialize)]
pub(super) struct MemberForm {
    #[serde(default)]
    csrf: String,
    available: Option<String>,
    #[serde(default)]
    capacity: String,
    #[serde(default)]
    weight: String,
}

/// `POST /queues/{queue}/members/{member}`: a member's availability, capacity and weight,
/// set by a marketer or admin as the API sets them (and recorded in the audit log as theirs).
pub(super) async fn set_member(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path((queue, member)): Path<(String, String)>,
    Form(form): Form<MemberForm>,
) -> Answer {
    let user = overseer_posting(&state, &jar, &headers, &form.csrf).await?;
    let capacity = match form.capacity.trim() {
        "" => Some(None),
        typed => match typed.parse::<i64>() {
            Ok(c) => Some(Some(c)),
            Err(_) => return Ok(Redirect::to("/queues?error=member").into_response()),
        },
    };
    let Ok(weight) = form.weight.trim().parse::<i64>() else {
        return Ok(Redirect::to("/queues?error=member").into_response());
    };
    let change = MemberChange {
        available: Some(form.available.is_some()),
        capacity,
        weight: Some(weight),
    };
    if !change.problems().is_empty() {
        return Ok(Redirect::to("/queues?error=member").into_response());
    }
    let by = nurture_engine::audit::By::console(&user.email);
    match state.engine.set_member(&queue, &member, &change, &by, true).await {
        Ok(_) => Ok(Redirect::to("/queues?notice=saved").into_response()),
        Err(EngineError::Missing(_)) => Err(message(
            StatusCode::NOT_FOUND,
            text(None, Some(&user), &headers).no_member,
        )),
        Err(e) => Err(failed(e)),
    }
}
