//! `nurture demo`: the shipped playbook run for 30 virtual days over about a thousand realistic
//! leads, on a temporary SQLite database and the manual clock, with the same engine `serve`
//! runs. It prints each campaign's funnel and the handoffs made; sample e-mails land in
//! `./outbox/`. Deterministic for a seed.

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use nurture_engine::clock::ManualClock;
use nurture_engine::engine::Deployer;
use nurture_engine::engine::{Engine, Sender};
use nurture_engine::event::EventInput;
use nurture_engine::lead::{LeadInput, LeadRef};
use nurture_engine::mail::{FileMailer, Mailer, OutgoingEmail, SendError};
use nurture_engine::playbook::bundle::Deployable;
use nurture_engine::tag::Actor;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SURNAMES: [&str; 16] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
];
const GIVEN: [&str; 16] = [
    "伟", "芳", "娜", "敏", "静", "磊", "强", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超",
];
const ENGLISH_FIRST: [&str; 10] = [
    "Anna", "David", "Emma", "James", "Laura", "Michael", "Olivia", "Peter", "Sophie", "Thomas",
];
const ENGLISH_LAST: [&str; 8] = [
    "Becker", "Clarke", "Duval", "Evans", "Fischer", "Moreau", "Smith", "Weber",
];
const INDUSTRIES: [&str; 5] = ["Manufacturing", "Energy", "Automotive", "Electronics", "Chemicals"];
const SIZES: [&str; 4] = ["1-50", "50-200", "200-1000", "1000+"];
const TITLES: [(&str, &str); 8] = [
    ("CEO", "cxo"),
    ("CTO", "cxo"),
    ("总经理", "cxo"),
    ("市场总监", "marketer"),
    ("Marketing Manager", "marketer"),
    ("生产经理", "other"),
    ("IT 经理", "other"),
    ("工程师", "other"),
];
const REGIONS: [&str; 5] = ["上海", "北京", "深圳", "苏州", "Hamburg"];
const TOPICS: [&str; 4] = ["iot", "quality", "energy", "maintenance"];

/// Writes the first few e-mails as `.eml` files and only counts the rest, so that a demo of
/// thousands of e-mails leaves a readable sample.
struct SampleMailer {
    files: FileMailer,
    keep: usize,
    seen: AtomicUsize,
}

#[async_trait]
impl Mailer for SampleMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) < self.keep {
            self.files.send(email).await
        } else {
            nurture_engine::mail::ComposeOnly.send(email).await
        }
    }

    fn describe(&self) -> String {
        format!("the first {} as files, the rest counted", self.keep)
    }
}

fn event(lead: &str, kind: &str, properties: Value) -> EventInput {
    EventInput {
        lead: LeadRef {
            id: None,
            email: Some(lead.to_owned()),
            external_id: None,
        },
        kind: kind.into(),
        occurred_at: None,
        properties: properties.as_object().cloned().unwrap_or_default(),
        idempotency_key: None,
        source: Some("demo".into()),
    }
}

/// Long on purpose: the demo's script, read top to bottom as it runs: a fresh store, the
/// shipped playbook, leads and their weeks of behaviour, then the funnel.
pub async fn run(
    leads: usize,
    days: i64,
    seed: u64,
    playbook_dir: &Path,
    templates: &Path,
    outbox: &Path,
) -> Result<()> {
    let started = std::time::Instant::now();
    let dir = std::env::temp_dir().join(format!("nurture-demo-{}-{}", std::process::id(), seed));
    std::fs::create_dir_all(&dir)?;
    let store = nurture_engine::store::connect(&format!("sqlite://{}", dir.join("demo.db").display())).await?;
    store.migrate().await?;
    let playbook = if playbook_dir.exists() || playbook_dir != Path::new(crate::cli::DEFAULT_PLAYBOOK) {
        Deployable::load(playbook_dir, templates)
    } else {
        println!("No campaigns/ here: running the playbook built into nurture.");
        crate::builtin::playbook()
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = Utc
        .with_ymd_and_hms(2026, 11, 2, 1, 0, 0)
        .single()
        .context("the start date")?;
    let clock = ManualClock::new(start);
    let engine = Arc::new(Engine::new(store.clone(), playbook, Arc::new(clock.clone())));
    engine.deploy_current(Deployer::cli()).await?;
    let sender = Sender {
        mailer: Arc::new(SampleMailer {
            files: FileMailer::new(outbox).with_context(|| format!("creating {}", outbox.display()))?,
            keep: 12,
            seen: AtomicUsize::new(0),
        }),
        from: "灵犀工业云 <news@lumen-cloud.example>".into(),
        public_url: "http://127.0.0.1:8080".into(),
        key: nurture_engine::tracking::TrackingKey::new(b"demo"),
        concurrency: 8,
        wechat: Some(Arc::new(nurture_engine::wechat::DropWechat)),
        limits: Default::default(),
    };
    let mut rng = StdRng::seed_from_u64(seed);

    // About a thousand leads, Chinese and English, over five industries.
    let mut emails = Vec::with_capacity(leads);
    let mut inputs = Vec::with_capacity(leads);
    for i in 0..leads {
        let english = rng.random_bool(0.3);
        let (first, last) = if english {
            (
                ENGLISH_FIRST[rng.random_range(0..ENGLISH_FIRST.len())].to_owned(),
                ENGLISH_LAST[rng.random_range(0..ENGLISH_LAST.len())].to_owned(),
            )
        } else {
            (
                GIVEN[rng.random_range(0..GIVEN.len())].to_owned(),
                SURNAMES[rng.random_range(0..SURNAMES.len())].to_owned(),
            )
        };
        let (title, persona) = TITLES[rng.random_range(0..TITLES.len())];
        let email = format!("lead{i}@company{}.example", i % 97);
        let mut attributes = Map::new();
        attributes.insert("language".into(), json!(if english { "en" } else { "zh-CN" }));
        if rng.random_bool(0.15) {
            attributes.insert("wechat_openid".into(), json!(format!("o{i:08}")));
        }
        let company = format!(
            "{} {}",
            ["华东", "华南", "Nord", "远航", "Delta"][i % 5],
            ["精工", "能源", "Motors", "电子", "Chem"][i % 5]
        );
        let source = ["website", "webinar", "expo"][i % 3];
        let input: LeadInput = serde_json::from_value(json!({
            "email": email,
            "first_name": first,
            "last_name": last,
            "title": title,
            "persona": persona,
            "company": company,
            "industry": if rng.random_bool(0.8) { Some(INDUSTRIES[rng.random_range(0..INDUSTRIES.len())]) } else { None },
            "company_size": SIZES[rng.random_range(0..SIZES.len())],
            "region": REGIONS[rng.random_range(0..REGIONS.len())],
            "source": source,
            "attributes": attributes,
        }))?;
        emails.push(email);
        inputs.push((nurture_engine::engine::Target::Keys, input));
    }
    for chunk in inputs.chunks(500) {
        engine
            .upsert_leads(chunk.to_vec(), &Actor::System("demo".into()))
            .await?;
    }
    println!("Created {leads} leads; replaying {days} days of behaviour.");

    let mut registered = vec![false; leads];
    // The webinar of the shipped webinar follow-up: on day 10, 14:00 in Shanghai. Leads
    // register in the first week (the CRM sends `webinar_registered` with the webinar's time,
    // title and link); nearly half of them attend, reported the day after.
    let webinar_day = 10;
    let webinar_at = start + Duration::days(webinar_day) + Duration::hours(5);
    let mut for_webinar = vec![false; leads];
    let mut delivered: Vec<(i64, i64)> = Vec::new();
    let mut sent = 0;
    for day in 0..days {
        let mut events = Vec::new();
        for (i, email) in emails.iter().enumerate() {
            if (1..=7).contains(&day) && !for_webinar[i] && rng.random_bool(0.05) {
                for_webinar[i] = true;
                events.push(event(
                    email,
                    "webinar_registered",
                    json!({
                        "webinar": "pdm-2026",
                        "starts_at": webinar_at.to_rfc3339(),
                        "title": "预测性维护：从试点到全厂 · Predictive maintenance, from pilot to plant",
                        "join_url": "https://www.lumen-cloud.example/live/pdm-2026",
                    }),
                ));
            }
            if day == webinar_day + 1 && for_webinar[i] && rng.random_bool(0.45) {
                let mut attended = event(
                    email,
                    "webinar_attended",
                    json!({"webinar": "pdm-2026", "topic": "predictive-maintenance"}),
                );
                attended.occurred_at = Some(webinar_at + Duration::minutes(30));
                events.push(attended);
            }
            if !registered[i] && rng.random_bool(if day == 0 { 0.3 } else { 0.03 }) {
                registered[i] = true;
                events.push(event(email, "registered", json!({})));
            }
            if rng.random_bool(0.05) {
                let path = if rng.random_bool(0.3) { "/pricing" } else { "/solutions" };
                events.push(event(email, "page_view", json!({"path": path})));
            }
            if rng.random_bool(0.01) {
                events.push(event(
                    email,
                    "webinar_attended",
                    json!({"topic": TOPICS[rng.random_range(0..TOPICS.len())]}),
                ));
            }
        }
        // Yesterday's e-mails: a third opened by people, some by image proxies, a few clicked.
        // Sent concurrently, so sorted first: the same seed gives the same run.
        delivered.sort_unstable();
        for (message, lead) in delivered.drain(..) {
            let who = LeadRef::by_id(lead);
            let mut on = |kind: &str, properties: Value| {
                let mut e = event("", kind, properties);
                e.lead = who.clone();
                events.push(e);
            };
            if rng.random_bool(0.1) {
                on("email_opened", json!({"message_id": message, "automated": true}));
            }
            if rng.random_bool(0.35) {
                on("email_opened", json!({"message_id": message}));
                if rng.random_bool(0.25) {
                    on("email_clicked", json!({"message_id": message, "link": ""}));
                    if rng.random_bool(0.3) {
                        on("whitepaper_downloaded", json!({}));
                    }
                    if rng.random_bool(0.1) {
                        let intent = ["buy_this_quarter", "evaluating", "researching"][rng.random_range(0..3)];
                        on("survey_completed", json!({"intent": intent}));
                    }
                }
            }
        }
        for chunk in events.chunks(2_000) {
            engine.ingest_events(chunk.to_vec()).await?;
        }
        engine.advance_clock(&clock, Duration::days(1), None).await?;
        loop {
            let report = engine.dispatch(&sender, 1_000).await?;
            if report.handled() == 0 {
                break;
            }
            sent += report.sent;
            delivered.extend(report.delivered);
        }
    }

    println!();
    crate::funnel::print(&crate::funnel::read(&engine).await?);
    let window = engine.last_days(days + 1, Default::default(), None);
    let mut reports = Vec::new();
    for id in engine.playbook().campaigns.keys() {
        reports.push(engine.campaign_report(id, window, Default::default()).await?);
    }
    crate::reports::print_messages(&reports);
    let stages: Vec<String> = crate::funnel::stages(store.as_ref())
        .await?
        .iter()
        .map(|(stage, n)| format!("{stage} {n}"))
        .collect();
    println!(
        "Leads by stage: {} (MQL by the rules; handed off by campaign steps).",
        stages.join(", ")
    );
    println!(
        "{sent} e-mails sent; samples in {}. Took {:.1} s.",
        outbox.display(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
