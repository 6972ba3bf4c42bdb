//! A queue's report page (marketers, admins): what became of its handoffs over the last 7, 30
//! or 90 days, by day or week in the viewer's time zone: arrivals, claims and how soon, the
//! decisions and their reasons, SLA breaches, per period (a bar chart made here as SVG) and
//! per member, and the CSV; all from `Engine::queue_report`.

use super::*;

use nurture_engine::engine::QueueReport;
use nurture_engine::report::queue::HandoffSummary;

#[derive(Template)]
#[template(path = "queue_report.html")]
pub(super) struct QueueReportPage {
    t: &'static Text,
    nav: Nav,
    queue: String,
    sla: String,
    /// The page's own path, where its window form goes.
    here: String,
    days: i64,
    weekly: bool,
    from: String,
    to: String,
    tz: String,
    open: i64,
    claimed_now: i64,
    overdue: i64,
    totals: HandoffRow,
    chart: String,
    members: Vec<HandoffRow>,
    reasons: Vec<(String, i64)>,
    csv: String,
}

/// A queue's or a member's figures as the page writes them.
pub(super) struct HandoffRow {
    name: String,
    arrived: i64,
    claimed: i64,
    claim_p50: String,
    claim_p90: String,
    released: i64,
    accepted: i64,
    accept_rate: String,
    rejected: i64,
    reject_rate: String,
    converted: i64,
    convert_rate: String,
    breached: i64,
    moved_out: i64,
}

#[derive(Deserialize)]
pub(super) struct QueueReportQuery {
    lang: Option<String>,
    days: Option<i64>,
    by: Option<String>,
}

fn row(t: &Text, name: String, s: &HandoffSummary) -> HandoffRow {
    let f = &s.figures;
    HandoffRow {
        name,
        arrived: s.arrived,
        claimed: f.claimed,
        claim_p50: within(t, s.claim_p50_seconds),
        claim_p90: within(t, s.claim_p90_seconds),
        released: f.released,
        accepted: f.accepted,
        accept_rate: report::percent(s.accept_rate),
        rejected: f.rejected,
        reject_rate: report::percent(s.reject_rate),
        converted: f.converted,
        convert_rate: report::percent(s.convert_rate),
        breached: f.breached,
        moved_out: f.moved_out,
    }
}

/// The report the page's query asks for, and its window; a page saying why when there is
/// none.
async fn load(
    state: &AppState,
    queue: &str,
    q: &QueueReportQuery,
    tz: chrono_tz::Tz,
    t: &Text,
) -> Result<(report::PageWindow, QueueReport), Response> {
    let asked = report::PageWindow::asked(state, q.days, q.by.as_deref(), tz);
    match state.engine.queue_report(queue, asked.window).await {
        Ok(report) => Ok((asked, report)),
        Err(EngineError::NotFound) => Err(message(StatusCode::NOT_FOUND, t.no_queue)),
        Err(e) => Err(failed(e)),
    }
}

/// `GET /queues/{queue}/report`.
pub(super) async fn queue_report(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(queue): Path<String>,
    Query(q): Query<QueueReportQuery>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let (asked, report) = load(&state, &queue, &q, tz, t).await?;
    let here = format!("/queues/{queue}/report");
    let bars: Vec<report::Bars> = report
        .periods
        .iter()
        .map(|p| report::Bars {
            period: p.period,
            values: vec![
                ("arrived", t.arrived, p.summary.arrived),
                ("claimed", t.claims, p.summary.figures.claimed),
                ("breached", t.breached, p.summary.figures.breached),
            ],
        })
        .collect();
    let body = QueueReportPage {
        t,
        nav: Nav::new(t, &user, &csrf, "queues"),
        sla: report.sla.clone().unwrap_or_else(|| "–".into()),
        csv: asked.csv(&here),
        here,
        days: asked.days,
        weekly: asked.weekly,
        from: report.from.to_string(),
        to: report.to.to_string(),
        tz: report.tz.clone(),
        open: report.now.open,
        claimed_now: report.now.claimed,
        overdue: report.now.overdue,
        totals: row(t, queue.clone(), &report.totals),
        chart: report::chart(t.queue_chart, t.nothing_handed_off, &bars),
        members: report
            .members
            .iter()
            .map(|m| row(t, m.member.clone(), &m.summary))
            .collect(),
        reasons: report.reasons.iter().map(|r| (r.reason.clone(), r.rejected)).collect(),
        queue,
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

/// `GET /queues/{queue}/report.csv`: the page's window as CSV.
pub(super) async fn queue_report_csv(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(queue): Path<String>,
    Query(q): Query<QueueReportQuery>,
) -> Answer {
    let (user, _) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let (_, report) = load(&state, &queue, &q, tz, t).await?;
    Ok(report::csv_file(
        &format!("queue-{queue}"),
        report.from,
        report.to,
        report.csv(),
    ))
}
