//! `nurture bench claim`: SDRs pulling handoffs over HTTP. A real server on a local port, a
//! queue filled with open handoffs, and `--sdrs` concurrent clients (one API key each) that
//! claim until the queue answers 204. Reports claims/s and the latency of every claim request
//! (p50, p99, max), and checks that no handoff went out twice.

use anyhow::{bail, Result};
use nurture_engine::access::{key_hash, Role};
use nurture_engine::clock::SystemClock;
use nurture_engine::engine::Engine;
use nurture_engine::lead::LeadRef;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{create_leads, open_store};

/// SDRs claiming handoffs over HTTP: --sdrs concurrent clients pull a queue of --handoffs
/// until it is empty; prints claims/s and p50/p99/max latency, and checks each went out once.
#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 50)]
    pub sdrs: usize,
    #[arg(long, default_value_t = 5_000)]
    pub handoffs: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
}

/// Long on purpose: the benchmark's script (set-up, concurrent claims, latency percentiles, the
/// report), read as the method in BENCHMARKS.md describes it.
pub async fn run(options: Options) -> Result<()> {
    let (store, label, cleanup) = open_store(options.database_url.as_deref()).await?;
    store.migrate().await?;
    let engine = Arc::new(Engine::new(store.clone(), super::rules_only()?, Arc::new(SystemClock)));
    let ids = create_leads(
        &engine,
        options.handoffs,
        |i| json!({"email": format!("claim{i}@bench.example")}),
    )
    .await?;
    for (i, id) in ids.iter().enumerate() {
        engine
            .hand_off(
                &LeadRef::by_id(*id),
                "sales",
                "bench",
                Some((i % 5 * 20) as u8),
                "bench",
            )
            .await?;
    }
    let mut keys = Vec::new();
    for i in 0..options.sdrs {
        let key = format!("bench-sdr-{i}-{}", std::process::id());
        store
            .create_api_key(
                &format!("sdr{i}@bench.example"),
                Role::Sdr,
                &key_hash(&key),
                engine.now(),
                &nurture_engine::audit::By::cli().did(
                    nurture_engine::audit::AuditKind::KeyCreated,
                    "",
                    serde_json::json!({}),
                ),
            )
            .await?;
        keys.push(key);
    }
    let app = nurture_api::Application::bind("127.0.0.1:0", engine.clone())
        .await?
        .with_rate_limit(0);
    let base = format!("http://127.0.0.1:{}/v1/queues/sales/claim", app.port());
    tokio::spawn(app.run_until(std::future::pending()));

    nurture_engine::tls::install_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.sdrs)
        .build()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for key in keys {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut claimed = Vec::new();
            loop {
                let sent = Instant::now();
                let answer = client.post(&base).bearer_auth(&key).send().await?;
                let status = answer.status().as_u16();
                let body = answer.bytes().await?;
                latencies.push(sent.elapsed());
                match status {
                    200 => {
                        let handoff: serde_json::Value = serde_json::from_slice(&body)?;
                        claimed.push(handoff["id"].as_str().unwrap_or_default().to_owned());
                    }
                    204 => break,
                    other => bail!("claim answered {other}: {}", String::from_utf8_lossy(&body)),
                }
            }
            anyhow::Ok((latencies, claimed))
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut claimed: Vec<String> = Vec::new();
    for task in tasks {
        let (l, c) = task.await??;
        latencies.extend(l);
        claimed.extend(c);
    }
    let seconds = started.elapsed().as_secs_f64();
    let distinct: HashSet<&String> = claimed.iter().collect();
    if distinct.len() != claimed.len() || claimed.len() != options.handoffs {
        bail!(
            "{} claims of {} handoffs, {} distinct: a handoff went out twice or was lost",
            claimed.len(),
            options.handoffs,
            distinct.len()
        );
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    let ms = |v: f64| (v * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "bench": "claim",
            "backend": label,
            "sdrs": options.sdrs,
            "handoffs": options.handoffs,
            "requests": latencies.len(),
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "claims_per_s": (claimed.len() as f64 / seconds).round(),
            "p50_ms": ms(at(0.5)),
            "p99_ms": ms(at(0.99)),
            "max_ms": ms(at(1.0)),
            "each_claimed_once": true,
        })
    );
    cleanup.run().await;
    Ok(())
}
