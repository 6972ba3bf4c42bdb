//! `nurture bench wake`: how late waits end, on the system clock, with the runner `serve` runs.
//! Leads enter a campaign at a steady rate over `--spread`; each waits `--wait` and then takes
//! its next send. Lateness is when the wait actually ended (its `waited` journey line) minus
//! when it was due (its `waiting` line plus the wait), for every enrollment.

use anyhow::{bail, Context, Result};
use nurture_engine::clock::SystemClock;
use nurture_engine::engine::Engine;
use nurture_engine::lead::LeadRef;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How late waits end on the system clock: leads enter at a steady rate over --spread
/// seconds, each waits --wait seconds; prints p50/p90/p99/max lateness.
#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 20_000)]
    pub leads: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Seconds over which the leads enter.
    #[arg(long, default_value_t = 20)]
    pub spread: u64,
    /// Seconds each lead waits.
    #[arg(long, default_value_t = 5)]
    pub wait: u64,
}

fn campaign(wait: u64) -> String {
    format!(
        r#"
kind: Campaign
id: bench-wake
name: Bench wake
type: drip
entry: {{ trigger: manual }}
start: first
steps:
  first:
    send: {{ channel: email, template: note }}
    next: wait
  wait:
    wait: {{ for: {wait}s }}
    next: second
  second:
    send: {{ channel: email, template: note }}
    next: done
  done:
    exit: completed
"#
    )
}

pub async fn run(options: Options) -> Result<()> {
    let n = options.leads.max(1);
    let templates = vec![
        ("note.hbs".into(), "<p>Hello {{first_name}}</p>".into()),
        ("note.subject.hbs".into(), "Hello".into()),
    ];
    let playbook = super::deployable(vec![("bench-wake.yaml".into(), campaign(options.wait))], templates)?;
    let (store, label, cleanup) = super::open_store(options.database_url.as_deref()).await?;
    store.migrate().await?;
    let engine = Arc::new(Engine::new(store.clone(), playbook, Arc::new(SystemClock)));
    engine.deploy_current(nurture_engine::engine::Deployer::cli()).await?;
    let ids = super::create_leads(&engine, n, |i| json!({"email": format!("wake{i}@bench.example")})).await?;

    let runner = tokio::spawn(engine.clone().run_campaigns());
    // Enter in slices every 100 ms, so that waits fall due all through the spread.
    let slices = (options.spread * 10).max(1) as usize;
    let per_slice = n.div_ceil(slices);
    let started = Instant::now();
    for (k, chunk) in ids.chunks(per_slice).enumerate() {
        let due = Duration::from_millis(100 * k as u64);
        if let Some(rest) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let refs: Vec<LeadRef> = chunk.iter().map(|id| LeadRef::by_id(*id)).collect();
        engine
            .enroll("bench-wake", &refs, &nurture_engine::audit::By::cli())
            .await?;
    }
    // Every wait is over by now, give or take the runner.
    let deadline = Instant::now() + Duration::from_secs(options.wait + 60);
    loop {
        let counts = store.step_counts("bench-wake").await?;
        let done = counts.iter().find(|c| c.step == "second").map_or(0, |c| c.entered);
        if done as usize >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {n} waits ended within a minute of their time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    runner.abort();

    let mut late: Vec<i64> = lateness(options.database_url.as_deref(), &label)
        .await?
        .into_iter()
        .map(|waited| waited - options.wait as i64 * 1_000_000)
        .collect();
    if late.len() != n {
        bail!("{} lateness figures for {n} leads", late.len());
    }
    late.sort_unstable();
    let ms = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "bench": "wake", "backend": label, "leads": n, "spread_s": options.spread, "wait_s": options.wait,
            "lateness_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": ms(1.0)},
        })
    );
    cleanup.run().await;
    Ok(())
}

/// Microseconds from each wait's start to its end, from the journey log.
async fn lateness(database_url: Option<&str>, label: &str) -> Result<Vec<i64>> {
    let sql = "SELECT w.at - s.at FROM journey s JOIN journey w ON w.enrollment_id = s.enrollment_id \
               AND w.step = 'wait' AND w.outcome = 'waited' WHERE s.step = 'wait' AND s.outcome = 'waiting'";
    let offsets: Vec<i64> = match database_url {
        Some(url) if url.starts_with("postgres") => {
            let schema = label
                .split("schema ")
                .nth(1)
                .and_then(|s| s.strip_suffix(')'))
                .context("the bench schema")?;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}")))
                .execute(&pool)
                .await?;
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await?
        }
        _ => {
            let path = label
                .strip_prefix("sqlite (")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or(label);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&format!("sqlite://{path}"))
                .await?;
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await?
        }
    };
    Ok(offsets)
}
