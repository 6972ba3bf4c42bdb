//! `nurture report campaign|message`: what the engine's counters say, as tables for people or
//! CSV for spreadsheets; the same `Engine` methods the API's `/v1/reports` answers with. The
//! tables are also what `demo` prints after its run.

use anyhow::{Context, Result};
use nurture_engine::engine::{Engine, Report, WindowAsked};
use nurture_engine::report::Summary;
use std::sync::Arc;

use crate::cli::{ReportCommand, ReportWindowArgs};

pub async fn run(command: ReportCommand) -> Result<()> {
    let (args, campaign, template) = match &command {
        ReportCommand::Campaign { id, window } => (window, Some(id.as_str()), None),
        ReportCommand::Message { template, window } => (window, None, Some(template.as_str())),
        ReportCommand::Queue { queue, window } => return run_queue(queue, window).await,
    };
    let engine = crate::deployments::engine(
        &args.db.database_url,
        &args.playbook,
        Arc::new(nurture_engine::clock::SystemClock),
    )
    .await?;
    let window = window(&engine, args).map_err(anyhow::Error::msg)?;
    let report = match (campaign, template) {
        (Some(id), _) => engine
            .campaign_report(id, window, rate(args)?)
            .await
            .with_context(|| format!("reading the report of campaign {id:?}"))?,
        (_, Some(name)) => engine
            .message_report(name, window)
            .await
            .with_context(|| format!("reading the report of template {name:?}"))?,
        _ => unreachable!("a report names a campaign or a template"),
    };
    if args.csv {
        print!("{}", report.csv());
    } else {
        print(&report);
    }
    Ok(())
}

async fn run_queue(queue: &str, args: &ReportWindowArgs) -> Result<()> {
    let engine = crate::deployments::engine(
        &args.db.database_url,
        &args.playbook,
        Arc::new(nurture_engine::clock::SystemClock),
    )
    .await?;
    let window = window(&engine, args).map_err(anyhow::Error::msg)?;
    let report = engine
        .queue_report(queue, window)
        .await
        .with_context(|| format!("reading the report of queue {queue:?}"))?;
    if args.csv {
        print!("{}", report.csv());
    } else {
        print_queue(&report);
    }
    Ok(())
}

fn rate(args: &ReportWindowArgs) -> Result<nurture_engine::report::SplitRate> {
    nurture_engine::report::SplitRate::parse(&args.rate)
        .ok_or_else(|| anyhow::anyhow!("--rate {:?} is none of open, click, handoff", args.rate))
}

fn window(engine: &Engine, args: &ReportWindowArgs) -> Result<nurture_engine::engine::ReportWindow, String> {
    engine.report_window(WindowAsked {
        from: args.from.as_deref(),
        to: args.to.as_deref(),
        since: args.since.as_deref(),
        by: Some(&args.by),
        tz: args.tz.as_deref(),
        window: args.window.as_deref(),
    })
}

/// A rate as a percentage with one decimal, `-` when there is nothing to divide by.
fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

const HEAD: &str = "    sent  delivered  bounced  opened   open%  clicked  click%  unsub  spam";

fn figures(s: &Summary) -> String {
    let f = &s.figures;
    format!(
        "{:>8} {:>10} {:>8} {:>7} {:>7} {:>8} {:>7} {:>6} {:>5}",
        f.sent,
        s.delivered,
        f.bounced_hard + f.bounced_soft,
        f.opened,
        percent(s.open_rate),
        f.clicked,
        percent(s.click_rate),
        f.unsubscribed,
        f.complained
    )
}

/// The report as tables: the title, messages per step with the total, per day (or week), per
/// language, and a campaign's flow.
pub fn print(report: &Report) {
    let title = match (&report.campaign, &report.name, &report.template) {
        (Some(id), Some(name), _) => format!("{name} ({id})"),
        (_, _, Some(template)) => format!("Template {template}"),
        _ => String::new(),
    };
    println!(
        "{title} · {} to {} ({}), by {}",
        report.from,
        report.to,
        report.tz,
        match report.by {
            nurture_engine::report::Grouping::Day => "day",
            nurture_engine::report::Grouping::Week => "week",
        }
    );
    println!("Messages sent in the window, and what became of them (people only; rates over delivered)");
    let names: Vec<String> = report
        .steps
        .iter()
        .map(|step| match report.template {
            Some(_) => format!("{} / {}", step.campaign, step.step),
            None => format!("{} ({})", step.step, step.template),
        })
        .collect();
    let w = names.iter().map(String::len).max().unwrap_or(0).max(16) + 2;
    println!("  {:<w$}{HEAD}", "step (template)");
    for (name, step) in names.iter().zip(&report.steps) {
        println!("  {name:<w$}{}", figures(&step.summary));
    }
    println!("  {:<w$}{}", "total", figures(&report.totals));
    let machines = report.totals.figures.opens_automated + report.totals.figures.clicks_automated;
    if machines > 0 {
        println!(
            "  Apart: {} opens and {} clicks by mail proxies and link scanners.",
            report.totals.figures.opens_automated, report.totals.figures.clicks_automated
        );
    }
    println!();
    println!("  {:<w$}{HEAD}", "period");
    for period in report.periods.iter().filter(|p| !p.summary.figures.is_empty()) {
        println!("  {:<w$}{}", period.period.to_string(), figures(&period.summary));
    }
    if report.languages.len() > 1 {
        println!();
        println!("  {:<w$}{HEAD}", "language");
        for part in &report.languages {
            println!("  {:<w$}{}", part.name, figures(&part.summary));
        }
    }
    for split in report.splits.iter().flatten() {
        println!();
        println!(
            "Split {} (compared on {:?} rate, each arm against arm 1)",
            split.step, split.rate
        );
        for arm in &split.arms {
            println!(
                "  arm {} → {:<24} weight {:>3}  entered {:>7}  handed off {:>6}  {}",
                arm.arm,
                arm.first_step,
                arm.weight,
                arm.entered,
                arm.handed_off,
                figures(&arm.messages)
            );
        }
        for c in &split.comparisons {
            let c2 = &c.comparison;
            let verdict = if c2.too_small {
                "too few to tell".to_owned()
            } else if c2.significant {
                "differs at 95%".to_owned()
            } else {
                "no difference at 95%".to_owned()
            };
            println!(
                "  arm {} − arm 1: {} [{} … {}]: {verdict}",
                c.arm,
                percent(c2.difference),
                percent(c2.low),
                percent(c2.high)
            );
        }
    }
    if let Some(flow) = &report.flow {
        println!();
        println!("Flow since first deployed");
        println!("  {:<w$} {:>8} {:>8}  outcomes", "step", "entered", "waiting");
        for step in flow.iter().filter(|s| s.entered > 0 || s.waiting > 0) {
            let outcomes: Vec<String> = step.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            println!(
                "  {:<w$} {:>8} {:>8}  {}",
                step.step,
                step.entered,
                step.waiting,
                outcomes.join(", ")
            );
        }
    }
    if let Some(flow) = report.flow_in_window.as_ref().filter(|f| !f.is_empty()) {
        println!();
        println!("Flow in the window, per version (waiting: now)");
        println!(
            "  {:<w$} {:<14} {:>8} {:>8}  outcomes",
            "step", "version", "entered", "waiting"
        );
        let line = |step: &str,
                    version: &str,
                    entered: i64,
                    waiting: i64,
                    outcomes: &std::collections::BTreeMap<String, i64>| {
            let outcomes: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            println!(
                "  {step:<w$} {version:<14} {entered:>8} {waiting:>8}  {}",
                outcomes.join(", ")
            );
        };
        for step in flow {
            line(&step.step, "all", step.entered, step.waiting, &step.outcomes);
            if step.versions.len() > 1 {
                for v in &step.versions {
                    line("", &v.version, v.entered, v.waiting, &v.outcomes);
                }
            }
        }
    }
    if let Some(c) = &report.conversions {
        println!();
        println!(
            "Went on to, within {} days of the campaign reaching them (credited to every campaign that did, and to the last step)",
            c.window_days
        );
        let cw = w + 10;
        println!(
            "  {:<cw$} {:>8} {:>8} {:>8} {:>9}",
            "credit", "goal", "handoff", "accepted", "converted"
        );
        let line = |name: &str, f: &nurture_engine::report::attribution::ConversionFigures| {
            println!(
                "  {name:<cw$} {:>8} {:>8} {:>8} {:>9}",
                f.goal, f.handoff, f.accepted, f.converted
            );
        };
        line("every campaign", &c.campaign);
        for step in &c.last_step {
            line(&format!("last step {}", step.step), &step.figures);
        }
    }
    if let Some(waits) = report.waits.as_ref().filter(|w| !w.is_empty()) {
        println!();
        println!("Time spent waiting, by those that went on in the window (within 12.5% above)");
        println!("  {:<w$} {:>8} {:>10} {:>10}", "step", "went on", "p50", "p90");
        for wait in waits {
            println!(
                "  {:<w$} {:>8} {:>10} {:>10}",
                wait.step,
                wait.went_on,
                duration(wait.p50_seconds),
                duration(wait.p90_seconds)
            );
        }
    }
    println!();
}

/// Every send step of these campaign reports in one table: the per-message engagement table
/// `demo` ends with.
pub fn print_messages(reports: &[Report]) {
    let Some(first) = reports.first() else {
        return;
    };
    println!(
        "Messages, {} to {} ({}): people only, rates over delivered",
        first.from, first.to, first.tz
    );
    let rows: Vec<(String, &Summary)> = reports
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| !s.summary.figures.is_empty())
        .map(|s| (format!("{} / {} ({})", s.campaign, s.step, s.template), &s.summary))
        .collect();
    let w = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(26) + 2;
    println!("  {:<w$}{HEAD}", "campaign / step (template)");
    for (name, summary) in rows {
        println!("  {name:<w$}{}", figures(summary));
    }
    println!();
}

/// A bound in seconds as its largest two units, rounded up so as never to say less (`2h 8m`
/// for 7,679 s), `-` when there is none.
fn duration(seconds: Option<i64>) -> String {
    let Some(s) = seconds else {
        return "-".into();
    };
    if s < 3_600 {
        return match s / 60 {
            0 => format!("{s}s"),
            m => format!("{m}m {}s", s % 60),
        };
    }
    let m = (s + 59) / 60;
    if m < 24 * 60 {
        return format!("{}h {}m", m / 60, m % 60);
    }
    let h = (s + 3_599) / 3_600;
    format!("{}d {}h", h / 24, h % 24)
}

const QUEUE_HEAD: &str =
    " arrived  claimed  claim p50  claim p90  released  accepted  rejected  converted  accept%  breached";

fn handoff_figures(s: &nurture_engine::report::queue::HandoffSummary) -> String {
    let f = &s.figures;
    format!(
        "{:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9}",
        s.arrived,
        f.claimed,
        duration(s.claim_p50_seconds),
        duration(s.claim_p90_seconds),
        f.released,
        f.accepted,
        f.rejected,
        f.converted,
        percent(s.accept_rate),
        f.breached
    )
}

/// A queue report as tables: now, per period with the total, per member, and the reasons.
pub fn print_queue(report: &nurture_engine::engine::QueueReport) {
    println!(
        "Queue {} · {} to {} ({}), by {}{}",
        report.queue,
        report.from,
        report.to,
        report.tz,
        match report.by {
            nurture_engine::report::Grouping::Day => "day",
            nurture_engine::report::Grouping::Week => "week",
        },
        report.sla.as_ref().map(|s| format!(", SLA {s}")).unwrap_or_default()
    );
    let now = &report.now;
    println!(
        "Now: {} open ({} assigned), {} claimed, {} past the SLA",
        now.open, now.assigned, now.claimed, now.overdue
    );
    println!("Handoffs, counted when each thing happened (claim times are within 12.5%)");
    let w = report
        .members
        .iter()
        .map(|m| m.member.chars().count())
        .max()
        .unwrap_or(0)
        .max(12)
        + 2;
    println!("  {:<w$}{QUEUE_HEAD}", "period");
    for period in report
        .periods
        .iter()
        .filter(|p| p.summary.figures != Default::default())
    {
        println!(
            "  {:<w$}{}",
            period.period.to_string(),
            handoff_figures(&period.summary)
        );
    }
    println!("  {:<w$}{}", "total", handoff_figures(&report.totals));
    if !report.members.is_empty() {
        println!();
        println!("  {:<w$}{QUEUE_HEAD}", "member");
        for member in &report.members {
            println!("  {:<w$}{}", member.member, handoff_figures(&member.summary));
        }
    }
    if !report.reasons.is_empty() {
        println!();
        println!("Rejected, by reason");
        for r in &report.reasons {
            println!("  {:>6}  {}", r.rejected, r.reason);
        }
    }
    println!();
}
