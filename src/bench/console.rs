//! `nurture bench console`: the console's pages as people load them, from a real server on a
//! local port, over a store of `--leads` leads with `--events-per-lead` behaviour events each
//! (made through the engine, as the API makes them), a queue of handoffs an SDR works, and a
//! campaign a share of the leads runs in (and a `/metrics` scrape beside the pages). Each page
//! is loaded `--samples` times one after another; reports p50, p99 and max of each, as the
//! browser waits for them (loopback HTTP).

use anyhow::{Context, Result};
use nurture_engine::access::Role;
use nurture_engine::audit::By;
use nurture_engine::lead::LeadRef;
use serde_json::json;
use std::time::Instant;

use super::{create_leads, open_store, Load};

/// The console's pages over a large store: p50/p99/max per page (inbox, lead card, lead
/// search, campaigns, a campaign, a step's leads).
#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 1_000_000)]
    pub leads: usize,
    #[arg(long, default_value_t = 10)]
    pub events_per_lead: usize,
    /// Loads of each page.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Keep the filled store (the SQLite file, or the PostgreSQL schema) and say where it is,
    /// to read the queries' plans on it afterwards.
    #[arg(long)]
    pub keep: bool,
}

const FIRST: [&str; 8] = ["Wei", "Fang", "Min", "Jun", "Anna", "Tom", "Maria", "芳"];
const LAST: [&str; 8] = ["Li", "Wang", "Zhang", "Liu", "Chen", "Smith", "Müller", "王"];
const SECTORS: [&str; 6] = ["Robotics", "Energy", "Logistics", "Foods", "Motors", "制造"];

/// Lead `i`: an e-mail, a name and one of 50,000 companies.
fn lead(i: usize) -> serde_json::Value {
    json!({
        "email": format!("lead{i}@bench.example"),
        "first_name": FIRST[i % FIRST.len()],
        "last_name": LAST[(i / FIRST.len()) % LAST.len()],
        "company": format!("{}{} {}", ["Acme", "Lumen", "Delta", "Orion", "Kite"][i % 5], i % 10_000, SECTORS[i % SECTORS.len()]),
    })
}

/// Long on purpose: the benchmark's script (the store filled, the people signed in, each page
/// timed), read as the method in BENCHMARKS.md describes it.
pub async fn run(options: Options) -> Result<()> {
    let (store, label, cleanup) = open_store(options.database_url.as_deref()).await?;
    let engine = super::shipped_engine(&store).await?;
    let filled = Instant::now();
    let ids = create_leads(&engine, options.leads, lead).await?;
    let total = options.leads * options.events_per_lead;
    let streams = crate::commands::cores().max(1);
    let mut tasks = Vec::new();
    for stream in 0..streams {
        let engine = engine.clone();
        let leads = options.leads;
        tasks.push(tokio::spawn(async move {
            let mut batch = Vec::with_capacity(5_000);
            for i in (stream..total).step_by(streams) {
                batch.push(super::synthetic(i, leads));
                if batch.len() == 5_000 {
                    engine.ingest_events(std::mem::take(&mut batch)).await?;
                }
            }
            if !batch.is_empty() {
                engine.ingest_events(batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    // An SDR's queue: 200 handoffs, 20 of them claimed by her; a campaign 10,000 leads run in.
    let sdr = "alice@corp.example";
    for (i, id) in ids.iter().take(200).enumerate() {
        engine
            .hand_off(&LeadRef::by_id(*id), "sdr", "bench", Some((i % 5 * 20) as u8), "bench")
            .await?;
    }
    let enrolled: Vec<LeadRef> = ids
        .iter()
        .skip(1_000)
        .take(10_000)
        .map(|id| LeadRef::by_id(*id))
        .collect();
    engine.enroll("welcome", &enrolled, &By::cli()).await?;
    let mut people = Vec::new();
    for (email, role) in [(sdr, Role::Sdr), ("mia@corp.example", Role::Marketer)] {
        let invited = engine.create_user(email, role, &By::cli()).await?;
        engine.set_password(&invited.token, "a bench password").await?;
        let signed = engine
            .sign_in(email, "a bench password")
            .await?
            .context("signing the bench's people in")?;
        people.push(signed.token);
    }
    for _ in 0..20 {
        engine.claim("sdr", sdr).await?;
    }
    let seconds_to_fill = filled.elapsed().as_secs_f64();
    // As `serve` keeps them (it looks every 10 s): the planner's statistics describe the
    // tables as filled, not as they were empty.
    engine.refresh_statistics().await?;

    let app = nurture_api::Application::bind("127.0.0.1:0", engine.clone())
        .await?
        .with_rate_limit(0);
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    nurture_engine::tls::install_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (sdr_cookie, marketer_cookie) = (
        format!("{}={}", nurture_api::console::SESSION_COOKIE, people[0]),
        format!("{}={}", nurture_api::console::SESSION_COOKIE, people[1]),
    );
    let samples = options.samples.max(1);
    let pick = |k: usize| ids[(k * 7_919) % ids.len()];
    let prefixes = [
        "wa", "li", "acme1", "lumen52", "orion", "zh", "王", "m", "delta9", "lead12",
    ];
    let sdr = ("cookie", sdr_cookie.clone());
    let marketer = ("cookie", marketer_cookie.clone());
    let loads = vec![
        Load::new("inbox", &sdr, |_| "/".to_owned()),
        Load::new("lead card", &sdr, move |k| format!("/leads/{}", pick(k))),
        Load::new("lead search (prefix)", &marketer, move |k| {
            format!("/leads?q={}", urlencode(prefixes[k % prefixes.len()]))
        }),
        Load::new("lead search (stage, score)", &marketer, |k| {
            format!("/leads?stage=nurturing&score_min={}", k % 40)
        }),
        Load::new("campaigns", &marketer, |_| "/campaigns".to_owned()),
        Load::new("campaign", &marketer, |_| "/campaigns/welcome".to_owned()),
        Load::new("a step's leads", &marketer, |_| {
            "/campaigns/welcome/steps/wait_2d".to_owned()
        }),
        // Not a page: what Prometheus reads, the backlog's counts among it.
        Load::new("metrics scrape", &marketer, |_| "/metrics".to_owned()),
    ];
    let figures = super::time_loads(&client, &base, &loads, samples).await?;
    println!(
        "{}",
        json!({
            "bench": "console",
            "backend": label,
            "leads": options.leads,
            "events": total,
            "samples": samples,
            "seconds_to_fill": seconds_to_fill.round(),
            "pages": figures,
        })
    );
    if options.keep {
        eprintln!("kept: {label}");
    } else {
        cleanup.run().await;
    }
    Ok(())
}

/// `text` as a query string's value.
fn urlencode(text: &str) -> String {
    let mut url = reqwest::Url::parse("http://localhost/").expect("a constant URL");
    url.query_pairs_mut().append_pair("q", text);
    url.query().unwrap_or_default().trim_start_matches("q=").to_owned()
}
