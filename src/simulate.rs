//! `nurture simulate`: a what-if run of a playbook over the marketer's own leads, with the
//! engine `serve` runs, on a temporary SQLite database and the manual clock. No message
//! leaves: e-mails are rendered and composed (so a template that fails shows up), then dropped;
//! opens, clicks and replies are drawn at the given rates. Prints each campaign's funnel per
//! step, or JSON with `--json`. The same seed gives the same report.

use anyhow::{bail, Context, Result};
use chrono::{Duration, TimeZone, Utc};
use nurture_engine::clock::ManualClock;
use nurture_engine::engine::{Engine, Sender};
use nurture_engine::event::EventInput;
use nurture_engine::lead::LeadRef;
use nurture_engine::playbook::bundle::Deployable;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Options {
    pub playbook: PathBuf,
    pub templates: PathBuf,
    pub leads: PathBuf,
    pub days: i64,
    pub open_rate: f64,
    pub click_rate: f64,
    pub reply_rate: f64,
    /// Events every lead sends when the simulation starts (`registered`, …).
    pub events: Vec<String>,
    pub seed: u64,
    pub json: bool,
}

/// What happened to the messages.
#[derive(Debug, Default, Serialize)]
struct Messages {
    emails_sent: usize,
    wechat_sent: usize,
    opened: usize,
    clicked: usize,
    replied: usize,
    /// Messages that could not be rendered or composed: the reason is in each lead's timeline.
    failed: usize,
}

fn event(lead: i64, kind: &str, properties: Value) -> EventInput {
    EventInput {
        lead: LeadRef::by_id(lead),
        kind: kind.into(),
        occurred_at: None,
        properties: properties.as_object().cloned().unwrap_or_default(),
        idempotency_key: None,
        source: Some("simulation".into()),
    }
}

/// Long on purpose: the simulation's script, read top to bottom as it runs: leads drawn, days
/// advanced, behaviour drawn at the given rates, then the funnel.
pub async fn run(options: Options) -> Result<()> {
    for (name, rate) in [
        ("--open-rate", options.open_rate),
        ("--click-rate", options.click_rate),
        ("--reply-rate", options.reply_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("{name} must be a share between 0 and 1 (0.25 is a quarter), not {rate}");
        }
    }
    if options.days < 1 {
        bail!("--days must be at least 1, not {}", options.days);
    }
    let playbook = match Deployable::load(&options.playbook, &options.templates) {
        Ok(playbook) => playbook,
        Err(refused) => {
            for issue in refused.errors() {
                eprintln!("{}", crate::report::issue(issue));
            }
            bail!(
                "the playbook in {} is not valid ({} errors); `nurture playbook validate` shows them too",
                options.playbook.display(),
                refused.errors().count()
            );
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("nurture-simulate-")
        .tempdir()
        .context("creating a temporary directory")?;
    let store =
        nurture_engine::store::connect(&format!("sqlite://{}", dir.path().join("simulate.db").display())).await?;
    store.migrate().await?;
    // A Monday, 09:00 in Beijing: every run of the same input starts at the same moment.
    let start = Utc
        .with_ymd_and_hms(2026, 11, 2, 1, 0, 0)
        .single()
        .context("the start")?;
    let clock = ManualClock::new(start);
    let engine = Arc::new(Engine::new(store.clone(), playbook, Arc::new(clock.clone())));
    engine.deploy_current(nurture_engine::engine::Deployer::cli()).await?;

    let imported = crate::import::load(&engine, &options.leads, false).await?;
    for (line, reason) in &imported.rejected {
        eprintln!("{}:{line}: skipped: {reason}", options.leads.display());
    }
    let ids = lead_ids(&engine).await?;
    if ids.is_empty() {
        bail!(
            "no lead in {} could be read; see the reasons above",
            options.leads.display()
        );
    }
    for kind in &options.events {
        let events: Vec<EventInput> = ids.iter().map(|id| event(*id, kind, json!({}))).collect();
        for chunk in events.chunks(2_000) {
            let report = engine.ingest_events(chunk.to_vec()).await?;
            if let Some(first) = report.rejected.first() {
                bail!("--event {kind}: {}", first.error.message);
            }
        }
    }

    let sender = Sender {
        mailer: Arc::new(nurture_engine::mail::ComposeOnly),
        from: "nurture simulation <simulation@nurture.invalid>".into(),
        public_url: "http://127.0.0.1:8080".into(),
        key: nurture_engine::tracking::TrackingKey::new(b"simulation"),
        concurrency: 8,
        wechat: Some(Arc::new(nurture_engine::wechat::DropWechat)),
        limits: Default::default(),
    };
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut messages = Messages::default();
    for day in 0..=options.days {
        let mut delivered = Vec::new();
        loop {
            let report = engine.dispatch(&sender, 1_000).await?;
            if report.handled() == 0 {
                break;
            }
            messages.emails_sent += report.sent - report.wechat;
            messages.wechat_sent += report.wechat;
            messages.failed += report.failed;
            delivered.extend(report.delivered);
        }
        if day == options.days {
            break;
        }
        // Sent concurrently, so sorted first: the same seed draws the same responses.
        delivered.sort_unstable();
        let mut events = Vec::new();
        for (message, lead) in delivered {
            if !rng.random_bool(options.open_rate) {
                continue;
            }
            messages.opened += 1;
            events.push(event(lead, "email_opened", json!({"message_id": message})));
            if rng.random_bool(options.click_rate) {
                messages.clicked += 1;
                events.push(event(lead, "email_clicked", json!({"message_id": message, "link": ""})));
            }
            if rng.random_bool(options.reply_rate) {
                messages.replied += 1;
                events.push(event(lead, "email_replied", json!({"message_id": message})));
            }
        }
        for chunk in events.chunks(2_000) {
            engine.ingest_events(chunk.to_vec()).await?;
        }
        engine.advance_clock(&clock, Duration::days(1), None).await?;
    }

    let funnels = crate::funnel::read(&engine).await?;
    let stages = crate::funnel::stages(store.as_ref()).await?;
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "leads": ids.len(),
                "rejected_rows": imported.rejected.len(),
                "days": options.days,
                "seed": options.seed,
                "rates": {"open": options.open_rate, "click": options.click_rate, "reply": options.reply_rate},
                "messages": messages,
                "stages": stages,
                "campaigns": funnels,
            }))?
        );
    } else {
        println!(
            "Simulated {} days for {} leads from {} (seed {}; opens {:.0}%, clicks {:.0}% and replies {:.0}% of opens). No message left.\n",
            options.days,
            ids.len(),
            options.leads.display(),
            options.seed,
            options.open_rate * 100.0,
            options.click_rate * 100.0,
            options.reply_rate * 100.0
        );
        crate::funnel::print(&funnels);
        let stages: Vec<String> = stages.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("Leads by stage: {}.", stages.join(", "));
        println!(
            "Messages: {} e-mails sent ({} opened, {} clicked, {} replied), {} WeChat messages, {} could not be rendered.",
            messages.emails_sent,
            messages.opened,
            messages.clicked,
            messages.replied,
            messages.wechat_sent,
            messages.failed
        );
    }
    Ok(())
}

/// Every lead's id, in order.
async fn lead_ids(engine: &Engine) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = engine.lead_page(after, 1_000).await?;
        ids.extend(page.iter().map(|l| l.id.0));
        match page.last() {
            Some(last) if page.len() == 1_000 => after = Some(last.id),
            _ => return Ok(ids),
        }
    }
}
