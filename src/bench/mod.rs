//! `nurture bench ingest`: synthetic behaviour events through the same engine path the API
//! uses (leads resolved or created, events stored, rules applied, MQL checked).
//! `nurture bench playbook`: validating a large generated campaign, as a deploy does.

use anyhow::Result;
use nurture_engine::clock::SystemClock;
use nurture_engine::engine::Deployer;
use nurture_engine::engine::Engine;
use nurture_engine::event::EventInput;
use nurture_engine::lead::LeadRef;
use nurture_engine::playbook::bundle::{Bundle, Deployable, PLAYBOOK_FOLDER};
use nurture_engine::playbook::Playbook;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

pub mod claim;
pub mod console;
pub mod engine;
pub mod report;
pub mod track;
pub mod wake;

const RULES: &str = include_str!("../../campaigns/rules.yaml");
const ICP: &str = include_str!("../../campaigns/segments/icp.yaml");
const QUEUES: &str = include_str!("../../campaigns/queues.yaml");
const TOPICS: [&str; 3] = ["IoT", "AI", "Energy"];

/// Ingest synthetic behaviour events through the engine, rules applied, and print events/s.
#[derive(clap::Args)]
pub struct IngestOptions {
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Events per batch (one request, one transaction).
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// Concurrent clients, each sending batches for its own share of the leads; defaults to
    /// one per CPU core, as a server takes requests from several CRM connections at once.
    #[arg(long)]
    pub streams: Option<usize>,
}

/// Validate a generated campaign of this many steps, as a deploy does, and print the time.
#[derive(clap::Args)]
pub struct PlaybookOptions {
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
}

/// The real `serve` end to end: N leads and N events over HTTP from concurrent clients,
/// each event starting a drip whose first step sends an e-mail (W1), then the manual clock
/// advanced past its 3-day wait (W2); prints e-mails/s reaching a local SMTP server.
#[derive(clap::Args)]
pub struct E2eOptions {
    #[arg(long, default_value_t = 20_000)]
    pub leads: usize,
    /// `postgres://…` (a fresh database is made on that server, and dropped), or
    /// `sqlite://…`; defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Leads or events per request.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// The server's SMTP connections (`serve --smtp-pool`).
    #[arg(long, default_value_t = 8)]
    pub smtp_pool: u32,
    /// Keep the PostgreSQL database the run made (its URL is printed), to look at its
    /// tables and plans afterwards; drop it by hand when done.
    #[arg(long)]
    pub keep_database: bool,
}

/// Send N e-mails over SMTP to a local sink through the dispatcher (render, send, record);
/// print messages/s and CPU per message.
#[derive(clap::Args)]
pub struct DispatchOptions {
    #[arg(long, default_value_t = 50_000)]
    pub messages: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// SMTP connections (and messages on the wire at once).
    #[arg(long = "smtp-pool", default_value_t = 16)]
    pub pool: u32,
    /// Messages claimed per dispatch pass.
    #[arg(long, default_value_t = 2_000)]
    pub batch: i64,
    /// E-mails a second in all (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub send_rate: u32,
    /// The shipped templates the e-mails are rendered from.
    #[arg(long, default_value = "templates")]
    pub templates: std::path::PathBuf,
}

nurture_engine::with_smtp_sink! {
    mod dispatch;
    mod e2e;

    pub async fn e2e(options: E2eOptions) -> Result<()> {
        e2e::run(options).await
    }

    pub async fn dispatch(options: DispatchOptions) -> Result<()> {
        dispatch::run(options).await
    }
}

nurture_engine::without_smtp_sink! {
    const NO_SINK: &str = "this benchmark sends to an in-process SMTP server, which this build leaves out; \
        build with it: cargo run --release --features smtp-sink -- bench …";

    pub async fn e2e(_: E2eOptions) -> Result<()> {
        anyhow::bail!(NO_SINK)
    }

    pub async fn dispatch(_: DispatchOptions) -> Result<()> {
        anyhow::bail!(NO_SINK)
    }
}

pub async fn ingest(options: IngestOptions) -> Result<()> {
    let IngestOptions {
        events: total,
        database_url,
        batch,
        streams,
    } = options;
    let streams = streams.unwrap_or_else(crate::commands::cores).max(1);
    let (store, label, cleanup) = open_store(database_url.as_deref()).await?;
    store.migrate().await?;
    let engine = Arc::new(Engine::new(store, rules_only()?, Arc::new(SystemClock)));
    let leads = (total / 10).max(1);
    // The events are made before the clock starts: the figure is the engine's, not the generator's.
    // Each stream is one client sending batches one after another, for its own share of the
    // leads (as CRM connections partitioned by account would).
    let mut per_stream: Vec<Vec<EventInput>> = vec![Vec::new(); streams];
    for i in 0..total {
        per_stream[(i % leads) % streams].push(synthetic(i, leads));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for events in per_stream {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            let mut events = events.into_iter().peekable();
            while events.peek().is_some() {
                let chunk: Vec<EventInput> = events.by_ref().take(batch).collect();
                accepted += engine.ingest_events(chunk).await?.accepted;
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "ingest", "backend": label, "events": accepted, "leads": leads, "batch": batch, "streams": streams, "seconds": (seconds * 1000.0).round() / 1000.0, "events_per_s": (accepted as f64 / seconds).round()})
    );
    cleanup.run().await;
    Ok(())
}

/// Event `i`: a mix of page views (half on pricing pages), whitepaper downloads and webinars.
pub(super) fn synthetic(i: usize, leads: usize) -> EventInput {
    let lead = i % leads;
    let (kind, properties) = match i % 4 {
        0 => ("page_view", json!({"path": "/pricing/enterprise"})),
        1 => ("page_view", json!({"path": "/blog/iot-at-scale"})),
        2 => ("whitepaper_downloaded", json!({"title": "Industrial IoT"})),
        _ => ("webinar_attended", json!({"topic": TOPICS[i % 3]})),
    };
    EventInput {
        lead: LeadRef {
            id: None,
            email: Some(format!("lead{lead}@bench.example")),
            external_id: None,
        },
        kind: kind.into(),
        occurred_at: None,
        properties: properties.as_object().cloned().unwrap_or_default(),
        idempotency_key: Some(format!("bench-{i}")),
        source: Some("website".into()),
    }
}

/// Creates `n` leads through the engine, lead `i` from `make(i)` (lead fields as JSON), in
/// batches of 1,000; returns their ids in order.
pub async fn create_leads(
    engine: &nurture_engine::engine::Engine,
    n: usize,
    make: impl Fn(usize) -> serde_json::Value,
) -> Result<Vec<i64>> {
    use nurture_engine::engine::{Target, Upserted};
    let mut ids = Vec::with_capacity(n);
    for first in (0..n).step_by(1_000) {
        let chunk = (first..(first + 1_000).min(n))
            .map(|i| Ok((Target::Keys, serde_json::from_value(make(i))?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        for item in engine
            .upsert_leads(chunk, &nurture_engine::tag::Actor::System("bench".into()))
            .await?
        {
            match item {
                Ok(Upserted::Created(view) | Upserted::Updated(view)) => ids.push(view.lead.id.0),
                Err(e) => anyhow::bail!("creating bench leads: {e:?}"),
            }
        }
    }
    Ok(ids)
}

/// What a bench leaves behind: its PostgreSQL schema or its SQLite directory.
pub struct Cleanup {
    dir: std::path::PathBuf,
    schema: Option<(String, String)>,
}

impl Cleanup {
    pub async fn run(self) {
        if let Some((url, schema)) = &self.schema {
            if let Err(e) = drop_schema(url, schema).await {
                eprintln!("dropping the bench schema {schema}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The store migrated and an engine on the system clock with the shipped playbook deployed,
/// as `serve` starts on a new database.
pub async fn shipped_engine(store: &Arc<dyn nurture_engine::store::Store>) -> Result<Arc<Engine>> {
    store.migrate().await?;
    let playbook = crate::builtin::playbook().map_err(|e| anyhow::anyhow!("the shipped playbook: {e}"))?;
    let engine = Arc::new(Engine::new(
        store.clone(),
        playbook,
        Arc::new(nurture_engine::clock::SystemClock),
    ));
    engine.deploy_current(nurture_engine::engine::Deployer::cli()).await?;
    Ok(engine)
}

/// A bench's engine: the shipped templates (checked to be there), a playbook of one campaign
/// file, a migrated store (a fresh SQLite file, or a schema of `database_url`) and a manual
/// clock at the benches' start (Monday 2 November 2026, 09:00 in Shanghai), deployed.
pub struct BenchEngine {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn nurture_engine::store::Store>,
    pub clock: nurture_engine::clock::ManualClock,
    pub start: chrono::DateTime<chrono::Utc>,
    pub label: String,
    pub cleanup: Cleanup,
}

pub async fn bench_engine(
    templates: &std::path::Path,
    file: &str,
    campaign: &str,
    database_url: Option<&str>,
) -> Result<BenchEngine> {
    use anyhow::Context;
    use chrono::TimeZone;
    if !templates.join("industry-insight.hbs").is_file() {
        anyhow::bail!(
            "the shipped templates are not in {}: run from the repository root, or give --templates DIR",
            templates.display()
        );
    }
    let (templates, _) = nurture_engine::template::read_dir(templates);
    let playbook = deployable(vec![(file.into(), campaign.into())], templates)?;
    let (store, label, cleanup) = open_store(database_url).await?;
    store.migrate().await?;
    let start = chrono::Utc
        .with_ymd_and_hms(2026, 11, 2, 1, 0, 0)
        .single()
        .context("start")?;
    let clock = nurture_engine::clock::ManualClock::new(start);
    let engine = Arc::new(Engine::new(store.clone(), playbook, Arc::new(clock.clone())));
    engine.deploy_current(Deployer::cli()).await?;
    Ok(BenchEngine {
        engine,
        store,
        clock,
        start,
        label,
        cleanup,
    })
}

/// A fresh store for a bench: a schema of its own on PostgreSQL, else a new SQLite file in a
/// temporary directory. Returns it with a label for the report.
pub async fn open_store(
    database_url: Option<&str>,
) -> Result<(Arc<dyn nurture_engine::store::Store>, String, Cleanup)> {
    let dir = std::env::temp_dir().join(format!("nurture-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        schema: None,
    };
    let (store, label): (Arc<dyn nurture_engine::store::Store>, String) = match database_url {
        Some(url) if url.starts_with("postgres") => {
            let schema = format!("bench_{}", std::process::id());
            create_schema(url, &schema).await?;
            cleanup.schema = Some((url.to_owned(), schema.clone()));
            (
                Arc::new(nurture_engine::store::postgres::PgStore::connect_in_schema(url, &schema).await?),
                format!("postgres (schema {schema})"),
            )
        }
        Some(url) => (nurture_engine::store::connect(url).await?, url.to_owned()),
        None => {
            let path = dir.join("bench.db");
            (
                nurture_engine::store::connect(&format!("sqlite://{}", path.display())).await?,
                format!("sqlite ({})", path.display()),
            )
        }
    };
    Ok((store, label, cleanup))
}

async fn create_schema(url: &str, schema: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await?;
    Ok(())
}

async fn drop_schema(url: &str, schema: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// A campaign of `steps` steps in blocks of five (send, wait, branch on opened, tag, score),
/// every block's branch asking about its own send, so dominance is checked on every block.
pub fn generated_campaign(steps: usize) -> String {
    let blocks = (steps / 5).max(1);
    let mut yaml = String::from(
        "kind: Campaign\nid: generated\nname: Generated\ntype: drip\nentry: { trigger: manual }\nstart: send_0\nsteps:\n",
    );
    for i in 0..blocks {
        let next = if i + 1 == blocks {
            "done".to_owned()
        } else {
            format!("send_{}", i + 1)
        };
        let block = [
            format!("  send_{i}:\n    send: {{ channel: email, template: hello }}\n    next: wait_{i}\n"),
            format!("  wait_{i}:\n    wait: {{ for: 1d }}\n    next: branch_{i}\n"),
            format!("  branch_{i}:\n    branch: {{ if: {{ any: [ {{ opened: send_{i} }}, {{ tag: interest:topic/iot }} ] }}, then: tag_{i}, else: score_{i} }}\n"),
            format!("  tag_{i}:\n    tag: {{ add: [engagement:block-{i}] }}\n    next: {next}\n"),
            format!("  score_{i}:\n    score: -1\n    next: {next}\n"),
        ];
        yaml.push_str(&block.concat());
    }
    yaml.push_str("  done:\n    exit: done\n");
    yaml
}

pub fn playbook(options: PlaybookOptions) -> Result<()> {
    let PlaybookOptions { steps, runs } = options;
    let campaign = generated_campaign(steps);
    let templates = Arc::new(nurture_engine::template::Templates::from_sources(
        None,
        vec![
            ("hello.hbs".into(), "<p>Hello {{first_name}}</p>".into()),
            ("hello.subject.hbs".into(), "Hello".into()),
        ],
    ));
    let files = vec![
        ("generated.yaml".to_owned(), campaign.clone()),
        ("queues.yaml".to_owned(), QUEUES.to_owned()),
    ];
    let mut times = Vec::with_capacity(runs);
    let mut built = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let playbook = Playbook::from_files(&files, templates.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(started.elapsed());
        built = playbook.campaigns["generated"].graph.node_count();
    }
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "Validated a {built}-step campaign ({} lines of YAML) {} times: min {:.2} ms, median {:.2} ms, max {:.2} ms.",
        campaign.lines().count(),
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    Ok(())
}

/// A bench's playbook: these YAML files and templates, validated as a deploy does.
pub fn deployable(playbook: Vec<(String, String)>, templates: Vec<(String, String)>) -> Result<Deployable> {
    Bundle::new(playbook, templates)
        .and_then(|bundle| bundle.build(PLAYBOOK_FOLDER))
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The rules, segment and queues the ingestion and claim benchmarks run with.
pub fn rules_only() -> Result<Deployable> {
    deployable(
        vec![
            ("rules.yaml".into(), RULES.into()),
            ("icp.yaml".into(), ICP.into()),
            ("queues.yaml".into(), QUEUES.into()),
        ],
        Vec::new(),
    )
}

/// One address a bench loads over HTTP, as a browser or a client would: its name in the
/// figures, the header that says who asks (a session cookie, a bearer key), and the address
/// of its `k`-th load.
pub struct Load<'a> {
    pub name: &'a str,
    pub header: (&'static str, String),
    pub address: Box<dyn Fn(usize) -> String + 'a>,
}

impl<'a> Load<'a> {
    pub fn new(name: &'a str, header: &(&'static str, String), address: impl Fn(usize) -> String + 'a) -> Self {
        Load {
            name,
            header: header.clone(),
            address: Box::new(address),
        }
    }
}

/// Loads each address `samples` times, one after another, each load to its last byte; per
/// load p50, p99 and max in ms, the slowest address, and the slowest first load of an address
/// (which reads what no load before it brought into memory). A load that does not succeed
/// stops the bench.
pub async fn time_loads(
    client: &reqwest::Client,
    base: &str,
    loads: &[Load<'_>],
    samples: usize,
) -> Result<Vec<serde_json::Value>> {
    let mut figures = Vec::new();
    for load in loads {
        let mut took: Vec<std::time::Duration> = Vec::with_capacity(samples);
        let mut slowest = (std::time::Duration::ZERO, String::new());
        let mut seen = std::collections::HashSet::new();
        let mut first_loads = std::time::Duration::ZERO;
        for k in 0..samples {
            let address = (load.address)(k);
            let url = format!("{base}{address}");
            let started = Instant::now();
            let answer = client.get(&url).header(load.header.0, &load.header.1).send().await?;
            let status = answer.status();
            answer.bytes().await?;
            let elapsed = started.elapsed();
            if seen.insert(address.clone()) {
                first_loads = first_loads.max(elapsed);
            }
            if elapsed > slowest.0 {
                slowest = (elapsed, address);
            }
            took.push(elapsed);
            if !status.is_success() {
                anyhow::bail!("{}: {url} answered {status}", load.name);
            }
        }
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
        let ms = |v: f64| (v * 100.0).round() / 100.0;
        figures.push(json!({"page": load.name, "p50_ms": ms(at(0.5)), "p99_ms": ms(at(0.99)), "max_ms": ms(at(1.0)),
            "slowest": slowest.1, "first_load_max_ms": ms(first_loads.as_secs_f64() * 1000.0), "addresses": seen.len()}));
    }
    Ok(figures)
}
