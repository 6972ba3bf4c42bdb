//! `nurture bench e2e`: the server as users run it, black box. It starts the real `nurture
//! serve` (a child process, manual clock) on a fresh database with a TCP SMTP sink, upserts N
//! leads and posts N events over HTTP from concurrent clients (each event enters the lead in a
//! drip whose first step sends an e-mail), then advances the clock past the drip's 3-day wait
//! (the second e-mail). It prints e-mails/s for each wave: W1 from the first event posted to
//! the last first e-mail at the sink, W2 from the advance to the last second e-mail. For each
//! wave it says where the time went: the engine's time per phase (ingest, runner, dispatch and
//! its claim, render, send and record), read from the server's `/metrics`, and the dispatcher's
//! idle time.

use super::E2eOptions as Options;
use anyhow::{bail, Context, Result};
use nurture_engine::mail::sink::SmtpSink;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DRIP: &str = r#"
kind: Campaign
id: e2e-drip
name: E2E drip
type: drip
entry: { trigger: event, event: e2e_signup }
start: first
steps:
  first:
    send: { channel: email, template: note }
    next: three_days
  three_days:
    wait: { for: 3d }
    next: second
  second:
    send: { channel: email, template: note }
    next: done
  done:
    exit: completed
"#;


/// The server under test; killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(options: Options) -> Result<()> {
    let n = options.leads.max(1);
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("campaigns"))?;
    std::fs::create_dir_all(dir.path().join("templates"))?;
    std::fs::write(dir.path().join("campaigns/drip.yaml"), DRIP)?;
    std::fs::write(dir.path().join("templates/note.hbs"), "<p>Hello {{first_name}}.</p>")?;
    std::fs::write(dir.path().join("templates/note.subject.hbs"), "Hello")?;

    let (url, label, dropped) = match options.database_url.as_deref() {
        Some(url) if url.starts_with("postgres") => {
            let fresh = fresh_postgres(url).await?;
            (fresh.clone(), "postgres".to_owned(), Some((url.to_owned(), fresh)))
        }
        Some(url) => (url.to_owned(), "sqlite".to_owned(), None),
        None => (
            format!("sqlite://{}", dir.path().join("e2e.db").display()),
            "sqlite".to_owned(),
            None,
        ),
    };
    let result = measure(&options, n, dir.path(), &url, &label).await;
    match dropped {
        Some((_, fresh)) if options.keep_database => eprintln!("The database is kept: {fresh}"),
        Some((admin, fresh)) => drop_postgres(&admin, &fresh).await,
        None => {}
    }
    result
}

/// Long on purpose: the benchmark's script (start `serve`, W1 over HTTP, clock advance, W2,
/// phases from `/metrics`), read as the method in BENCHMARKS.md describes it.
async fn measure(options: &Options, n: usize, dir: &Path, url: &str, label: &str) -> Result<()> {
    let me = std::env::current_exe().context("finding the nurture binary")?;
    let migrated = Command::new(&me).args(["migrate", "--database-url", url]).output()?;
    if !migrated.status.success() {
        bail!("migrate: {}", String::from_utf8_lossy(&migrated.stderr));
    }
    let created = Command::new(&me)
        .args([
            "apikey",
            "create",
            "--role",
            "admin",
            "--name",
            "e2e",
            "--database-url",
            url,
        ])
        .output()?;
    if !created.status.success() {
        bail!("apikey create: {}", String::from_utf8_lossy(&created.stderr));
    }
    let key = String::from_utf8(created.stdout)?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();

    let sink = SmtpSink::counting().await?;
    let mut child = Command::new(&me)
        .current_dir(dir)
        .args([
            "serve",
            "--clock",
            "manual",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit",
            "0",
        ])
        .args([
            "--playbook",
            "campaigns",
            "--templates",
            "templates",
            "--database-url",
            url,
        ])
        .args(["--smtp-url", &sink.url(), "--smtp-pool", &options.smtp_pool.to_string()])
        .env("RUST_LOG", "warn,nurture=info")
        .stderr(Stdio::piped())
        .spawn()
        .context("starting nurture serve")?;
    let stderr = child.stderr.take().context("the server's stderr")?;
    let server = Serve(child);
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines.next().context("the server exited before listening")??;
        if let Some(rest) = line.split("port=").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let base = format!("http://127.0.0.1:{port}");
    nurture_engine::tls::install_provider();
    // A wave that has not ended after this long (ten minutes, or 100 e-mails a second at
    // scale) has stalled: the run fails rather than waits.
    let patience = Duration::from_secs(600.max(n as u64 / 100));
    let http = reqwest::Client::builder().timeout(patience).build()?;

    // Leads first (not timed), then the events that start the drip: W1 runs from the first
    // event posted to the last first e-mail received.
    let loaded = Instant::now();
    post_all(
        &http,
        &base,
        &key,
        "/v1/leads/bulk",
        n,
        options,
        |i| json!({"email": format!("lead{i}@company{}.example", i % 997), "first_name": "Mei"}),
    )
    .await?;
    eprintln!(
        "{n} leads upserted over HTTP in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );

    let before = read_metrics(&http, &base).await?;
    let w1_started = Instant::now();
    post_all(&http, &base, &key, "/v1/events", n, options, |i| {
        json!({"lead": {"email": format!("lead{i}@company{}.example", i % 997)}, "type": "e2e_signup", "idempotency_key": format!("e2e-{i}")})
    })
    .await?;
    let posted = w1_started.elapsed().as_secs_f64();
    sink.wait_for(n, patience)
        .await
        .map_err(|got| anyhow::anyhow!("W1: {got} of {n} e-mails arrived"))?;
    let w1 = w1_started.elapsed().as_secs_f64();
    let after_w1 = read_settled(&http, &base, before.dispatched + n as u64, patience).await?;
    let w1_phases = spent(&before.phases, &after_w1.phases, w1);

    // W2: the advance answers once the e-mails that fell due were handed to the mail server.
    let w2_started = Instant::now();
    let advanced = http
        .post(format!("{base}/v1/admin/clock/advance"))
        .bearer_auth(&key)
        .json(&json!({"by": "3d1h"}))
        .send()
        .await?;
    if !advanced.status().is_success() {
        bail!("advance: {} {}", advanced.status(), advanced.text().await?);
    }
    let answered = w2_started.elapsed().as_secs_f64();
    sink.wait_for(2 * n, patience)
        .await
        .map_err(|got| anyhow::anyhow!("W2: {} of {n} e-mails arrived", got - n))?;
    let w2 = w2_started.elapsed().as_secs_f64();
    let after_w2 = read_settled(&http, &base, after_w1.dispatched + n as u64, patience).await?;
    let w2_phases = spent(&after_w1.phases, &after_w2.phases, w2);
    drop(server);
    for (wave, seconds, spent) in [("W1", w1, &w1_phases), ("W2", w2, &w2_phases)] {
        eprintln!("{wave}: {seconds:.2} s; where the time went:");
        for (phase, s) in spent {
            eprintln!("  {phase:<16} {s:>8.2} s  {:>5.1}%", 100.0 * s / seconds);
        }
    }

    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    println!(
        "{}",
        json!({
            "bench": "e2e", "backend": label, "leads": n, "clients": options.clients,
            "batch": options.batch, "smtp_pool": options.smtp_pool,
            "w1_seconds": round(w1), "w1_events_posted_seconds": round(posted),
            "w1_emails_per_s": (n as f64 / w1).round(),
            "w2_seconds": round(w2), "w2_advance_answered_seconds": round(answered),
            "w2_emails_per_s": (n as f64 / w2).round(),
            "received": sink.count(),
            "w1_phases_seconds": phase_json(&w1_phases), "w2_phases_seconds": phase_json(&w2_phases),
        })
    );
    Ok(())
}

/// The engine's time per phase so far, from the server's `/metrics`, and how many messages
/// its ended dispatch passes claimed.
struct Reading {
    phases: Vec<(String, f64)>,
    dispatched: u64,
}

async fn read_metrics(http: &reqwest::Client, base: &str) -> Result<Reading> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let phases: Vec<(String, f64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("nurture_engine_seconds_total{phase=\""))
        .filter_map(|rest| {
            let (phase, value) = rest.split_once("\"}")?;
            Some((phase.to_owned(), value.trim().parse().ok()?))
        })
        .collect();
    if phases.is_empty() {
        bail!("the server's /metrics has no nurture_engine_seconds_total");
    }
    let dispatched = text
        .lines()
        .find_map(|line| line.strip_prefix("nurture_dispatched_messages_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("the server's /metrics has no nurture_dispatched_messages_total"))?;
    Ok(Reading {
        phases,
        dispatched: dispatched as u64,
    })
}

/// Reads the metrics once the dispatch passes of `at_least` messages have ended: an e-mail
/// arrives before its pass has written its outcome, and the wave's phases include that write.
async fn read_settled(http: &reqwest::Client, base: &str, at_least: u64, patience: Duration) -> Result<Reading> {
    let started = Instant::now();
    loop {
        let reading = read_metrics(http, base).await?;
        if reading.dispatched >= at_least {
            return Ok(reading);
        }
        if started.elapsed() > patience {
            bail!(
                "the dispatch passes of {at_least} messages had not ended after {patience:?} ({} had)",
                reading.dispatched
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Per phase, the seconds spent between two readings, and the dispatcher's idle time: the
/// part of the wave's `wall` seconds in no dispatch pass.
fn spent(before: &[(String, f64)], after: &[(String, f64)], wall: f64) -> Vec<(String, f64)> {
    let mut spent: Vec<(String, f64)> = after
        .iter()
        .map(|(phase, total)| {
            let earlier = before.iter().find(|(p, _)| p == phase).map_or(0.0, |(_, v)| *v);
            (phase.clone(), total - earlier)
        })
        .collect();
    let busy = spent.iter().find(|(p, _)| p == "dispatch").map_or(0.0, |(_, v)| *v);
    spent.push(("dispatcher idle".to_owned(), (wall - busy).max(0.0)));
    spent
}

fn phase_json(spent: &[(String, f64)]) -> Value {
    Value::Object(
        spent
            .iter()
            .map(|(phase, s)| (phase.replace(' ', "_"), json!((s * 1000.0).round() / 1000.0)))
            .collect(),
    )
}

/// POSTs `n` items made by `item(i)` to `path`, `batch` per request, from `clients` concurrent
/// clients each taking every `clients`-th batch.
async fn post_all(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    n: usize,
    options: &Options,
    item: impl Fn(usize) -> Value,
) -> Result<()> {
    let batch = options.batch.max(1);
    let clients = options.clients.max(1);
    let bodies: Vec<Value> = (0..n)
        .step_by(batch)
        .map(|first| Value::Array((first..(first + batch).min(n)).map(&item).collect()))
        .collect();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mine: Vec<Value> = bodies.iter().skip(c).step_by(clients).cloned().collect();
        let (http, url, key) = (http.clone(), format!("{base}{path}"), key.to_owned());
        tasks.push(tokio::spawn(async move {
            for body in mine {
                let answer = http.post(&url).bearer_auth(&key).json(&body).send().await?;
                if !answer.status().is_success() {
                    bail!("{url}: {} {}", answer.status(), answer.text().await?);
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// A fresh database on the server `url` names; its URL.
async fn fresh_postgres(url: &str) -> Result<String> {
    use sqlx::Connection;
    let name = format!("nurture_e2e_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let mut fresh = reqwest::Url::parse(url)?;
    fresh.set_path(&format!("/{name}"));
    Ok(fresh.to_string())
}

async fn drop_postgres(admin: &str, fresh: &str) {
    use sqlx::Connection;
    let Some(name) = fresh
        .rsplit('/')
        .next()
        .map(|n| n.split('?').next().unwrap_or(n).to_owned())
    else {
        return;
    };
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await {
            eprintln!("dropping the bench database {name}: {e}");
        }
    }
}
