//! A campaign's report page (marketers, admins): what its messages did over the last 7, 30 or
//! 90 days, by day or week in the viewer's time zone: totals, a bar chart per period (SVG made
//! here), each send step, each language, each split's arms compared, and the CSV.

use super::*;

use nurture_engine::engine::{Report, ReportWindow};
use nurture_engine::report::{Grouping, SplitRate, Summary};

#[derive(Template)]
#[template(path = "report.html")]
pub(super) struct ReportPage {
    t: &'static Text,
    nav: Nav,
    id: String,
    name: String,
    /// The page's own path, where its window form goes.
    here: String,
    days: i64,
    weekly: bool,
    from: String,
    to: String,
    tz: String,
    totals: Figures,
    chart: String,
    steps: Vec<Row>,
    languages: Vec<Row>,
    splits: Vec<SplitView>,
    waits: Vec<WaitRow>,
    flow: Vec<FlowRow>,
    /// "Went on to, within 30 days": the heading, then (credit, goal, handoff, accepted,
    /// converted) rows.
    went_on_to: String,
    conversions: Vec<(String, [i64; 4])>,
    csv: String,
}

/// A wait step's times as the page writes them.
pub(super) struct WaitRow {
    step: String,
    went_on: i64,
    p50: String,
    p90: String,
}

/// A step's flow in the window, for all versions (`step` set) or one (`step` empty).
pub(super) struct FlowRow {
    step: String,
    version: String,
    entered: i64,
    waiting: i64,
    /// "sent 5 · waited 4", in the page's language.
    moves: String,
}

/// A row of figures as the page writes them.
pub(super) struct Row {
    name: String,
    detail: String,
    f: Figures,
}

pub(super) struct Figures {
    sent: i64,
    delivered: i64,
    skipped: i64,
    bounced: i64,
    opened: i64,
    open_rate: String,
    clicked: i64,
    click_rate: String,
    unsubscribed: i64,
    complained: i64,
    machine_opens: i64,
    machine_clicks: i64,
}

pub(super) struct SplitView {
    step: String,
    rate: &'static str,
    arms: Vec<ArmView>,
}

pub(super) struct ArmView {
    arm: u32,
    first_step: String,
    weight: u32,
    entered: i64,
    handed_off: i64,
    f: Figures,
    /// Against arm 1; empty for arm 1.
    difference: String,
    verdict: &'static str,
}

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    lang: Option<String>,
    days: Option<i64>,
    by: Option<String>,
    rate: Option<String>,
}

pub(super) fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".into(), |r| format!("{:.1}%", r * 100.0))
}

fn figures(s: &Summary) -> Figures {
    let f = &s.figures;
    Figures {
        sent: f.sent,
        delivered: s.delivered,
        skipped: f.skipped,
        bounced: f.bounced_hard + f.bounced_soft,
        opened: f.opened,
        open_rate: percent(s.open_rate),
        clicked: f.clicked,
        click_rate: percent(s.click_rate),
        unsubscribed: f.unsubscribed,
        complained: f.complained,
        machine_opens: f.opens_automated,
        machine_clicks: f.clicks_automated,
    }
}

/// The window a report page shows: the last 7, 30 or 90 days (30 unless asked) to today in
/// the viewer's zone, by day or by week.
pub(super) struct PageWindow {
    pub(super) days: i64,
    pub(super) weekly: bool,
    pub(super) window: ReportWindow,
}

impl PageWindow {
    pub(super) fn asked(state: &AppState, days: Option<i64>, by: Option<&str>, tz: chrono_tz::Tz) -> Self {
        let days = days.filter(|d| [7, 30, 90].contains(d)).unwrap_or(30);
        let weekly = by == Some("week");
        let grouping = if weekly { Grouping::Week } else { Grouping::Day };
        PageWindow {
            days,
            weekly,
            window: state.engine.last_days(days, grouping, Some(tz)),
        }
    }

    /// The same window as CSV, from the page at `here`.
    pub(super) fn csv(&self, here: &str) -> String {
        format!(
            "{here}.csv?days={}&by={}",
            self.days,
            if self.weekly { "week" } else { "day" }
        )
    }
}

/// The report the page's query asks for, and its window; a page saying why when there is
/// none.
async fn load(
    state: &AppState,
    id: &str,
    q: &ReportQuery,
    tz: chrono_tz::Tz,
    t: &Text,
) -> Result<(PageWindow, Report), Response> {
    let asked = PageWindow::asked(state, q.days, q.by.as_deref(), tz);
    let rate = q.rate.as_deref().and_then(SplitRate::parse).unwrap_or_default();
    match state.engine.campaign_report(id, asked.window, rate).await {
        Ok(report) => Ok((asked, report)),
        Err(EngineError::NotFound) => Err(message(StatusCode::NOT_FOUND, t.no_campaign)),
        Err(e) => Err(failed(e)),
    }
}

/// `GET /campaigns/{id}/report`.
pub(super) async fn report(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let (asked, report) = load(&state, &id, &q, tz, t).await?;
    let here = format!("/campaigns/{id}/report");
    let body = ReportPage {
        t,
        nav: Nav::new(t, &user, &csrf, "campaigns"),
        name: report.name.clone().unwrap_or_else(|| id.clone()),
        csv: asked.csv(&here),
        here,
        days: asked.days,
        weekly: asked.weekly,
        from: report.from.to_string(),
        to: report.to.to_string(),
        tz: report.tz.clone(),
        totals: figures(&report.totals),
        chart: chart(
            t.per_period_chart,
            t.nothing_sent,
            &report
                .periods
                .iter()
                .map(|p| Bars {
                    period: p.period,
                    values: vec![
                        ("sent", t.sent, p.summary.figures.sent),
                        ("opened", t.opened, p.summary.figures.opened),
                        ("clicked", t.clicked, p.summary.figures.clicked),
                    ],
                })
                .collect::<Vec<_>>(),
        ),
        steps: report
            .steps
            .iter()
            .map(|s| Row {
                name: s.step.clone(),
                detail: format!("{} · {}", s.template, s.channel),
                f: figures(&s.summary),
            })
            .collect(),
        languages: report
            .languages
            .iter()
            .map(|p| Row {
                name: p.name.clone(),
                detail: String::new(),
                f: figures(&p.summary),
            })
            .collect(),
        splits: splits(t, &report),
        went_on_to: report
            .conversions
            .as_ref()
            .map(|c| t.went_on_to.replace("{}", &c.window_days.to_string()))
            .unwrap_or_default(),
        conversions: report
            .conversions
            .iter()
            .flat_map(|c| {
                let row = |name: String, f: &nurture_engine::report::attribution::ConversionFigures| {
                    (name, [f.goal, f.handoff, f.accepted, f.converted])
                };
                std::iter::once(row(t.credit_campaign.to_owned(), &c.campaign)).chain(
                    c.last_step
                        .iter()
                        .map(move |s| row(format!("{}{}", t.credit_last_step, s.step), &s.figures)),
                )
            })
            .collect(),
        flow: report
            .flow_in_window
            .iter()
            .flatten()
            .flat_map(|s| {
                let moves = |outcomes: &std::collections::BTreeMap<String, i64>| {
                    let named: Vec<String> = outcomes
                        .iter()
                        .map(|(o, n)| format!("{} {n}", journey_outcome(t, o)))
                        .collect();
                    named.join(" · ")
                };
                let all = FlowRow {
                    step: s.step.clone(),
                    version: t.all_versions.to_owned(),
                    entered: s.entered,
                    waiting: s.waiting,
                    moves: moves(&s.outcomes),
                };
                // One version: its line would say the same again.
                let versions = if s.versions.len() > 1 { &s.versions[..] } else { &[] };
                let versions = versions.iter().map(|v| FlowRow {
                    step: String::new(),
                    version: v.version.clone(),
                    entered: v.entered,
                    waiting: v.waiting,
                    moves: moves(&v.outcomes),
                });
                std::iter::once(all).chain(versions).collect::<Vec<_>>()
            })
            .collect(),
        waits: report
            .waits
            .iter()
            .flatten()
            .map(|w| WaitRow {
                step: w.step.clone(),
                went_on: w.went_on,
                p50: within(t, w.p50_seconds),
                p90: within(t, w.p90_seconds),
            })
            .collect(),
        id,
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

/// `GET /campaigns/{id}/report.csv`: the page's window as CSV.
pub(super) async fn report_csv(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Answer {
    let (user, _) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let tz = zone(&state, &jar);
    let (_, report) = load(&state, &id, &q, tz, t).await?;
    Ok(csv_file(&id, report.from, report.to, report.csv()))
}

/// A CSV download named after its subject and days.
pub(super) fn csv_file(subject: &str, from: chrono::NaiveDate, to: chrono::NaiveDate, csv: String) -> Response {
    let subject = subject.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_");
    let file = format!("attachment; filename=\"{subject}-{from}-{to}.csv\"");
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, file),
        ],
        csv,
    )
        .into_response()
}

fn splits(t: &Text, report: &Report) -> Vec<SplitView> {
    report
        .splits
        .iter()
        .flatten()
        .map(|split| SplitView {
            step: split.step.clone(),
            rate: match split.rate {
                SplitRate::Open => t.open_rate,
                SplitRate::Click => t.click_rate,
                SplitRate::Handoff => t.handed_off,
            },
            arms: split
                .arms
                .iter()
                .map(|arm| {
                    let against = split.comparisons.iter().find(|c| c.arm == arm.arm);
                    let (difference, verdict) = match against {
                        Some(c) => {
                            let c = &c.comparison;
                            let verdict = if c.too_small {
                                t.too_few
                            } else if c.significant {
                                t.differs
                            } else {
                                t.no_difference
                            };
                            (
                                format!("{} ({} … {})", percent(c.difference), percent(c.low), percent(c.high)),
                                verdict,
                            )
                        }
                        None => (String::new(), ""),
                    };
                    ArmView {
                        arm: arm.arm,
                        first_step: arm.first_step.clone(),
                        weight: arm.weight,
                        entered: arm.entered,
                        handed_off: arm.handed_off,
                        f: figures(&arm.messages),
                        difference,
                        verdict,
                    }
                })
                .collect(),
        })
        .collect()
}

/// One period's bars: (CSS class, word, count) each.
pub(super) struct Bars {
    pub(super) period: chrono::NaiveDate,
    pub(super) values: Vec<(&'static str, &'static str, i64)>,
}

/// Grouped bars per period, each bar titled with its period and count, the whole described
/// for screen readers as `title` (or `empty` when every bar is zero); it scales to the page's
/// width. The first series sets the scale.
pub(super) fn chart(title: &str, empty: &str, periods: &[Bars]) -> String {
    // Wide bars for a few weeks, narrow ones for 90 days (the chart then scrolls sideways).
    let n = periods.len().max(1) as i64;
    let series = periods.first().map_or(1, |p| p.values.len().max(1)) as i64;
    let group = (900 / n).clamp(24, 120);
    let group_gap = (group / 4).max(6);
    let bar = (group - group_gap) / series;
    let (height, base) = (150_i64, 120_i64);
    let width = n * group;
    let most = periods
        .iter()
        .flat_map(|p| p.values.iter().map(|v| v.2))
        .max()
        .unwrap_or(0)
        .max(1);
    let said: Vec<String> = periods
        .iter()
        .filter(|p| p.values.iter().any(|v| v.2 != 0))
        .map(|p| {
            let values: Vec<String> = p.values.iter().map(|(_, word, n)| format!("{word} {n}")).collect();
            format!("{}: {}", p.period, values.join(", "))
        })
        .collect();
    let mut svg = format!(
        "<svg class=\"report-chart\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" \
         aria-label=\"{title}: {}\">",
        if said.is_empty() {
            empty.to_owned()
        } else {
            said.join("; ")
        }
    );
    // A label every 60 px or more.
    let label_every = ((60 + group - 1) / group).max(1) as usize;
    for (i, p) in periods.iter().enumerate() {
        let x0 = i as i64 * group + group_gap / 2;
        for (k, (class, word, n)) in p.values.iter().enumerate() {
            let h = if *n == 0 { 0 } else { (n * (base - 8) / most).max(2) };
            svg.push_str(&format!(
                "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{bar}\" height=\"{h}\"><title>{}: {word} {n}</title></rect>",
                x0 + k as i64 * bar,
                base - h,
                p.period
            ));
        }
        if i % label_every == 0 {
            let label = p.period.format("%m-%d");
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\">{label}</text>",
                x0 + group / 2 - group_gap / 2,
                height - 12
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}
