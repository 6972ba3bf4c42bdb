//! `nurture bench engine`: the campaign engine over N leads, in the two workloads of issue 4,
//! through the same code `serve` runs (hand enrollment, the runner, the dispatcher).
//!
//! - W1, first touch: every lead enters the drip and takes its first send (the enrollment, its
//!   journey lines and the outbox row, in one transaction per batch).
//! - The dispatcher renders those e-mails (templates, tracked links, MIME) and discards them:
//!   SMTP is measured by `bench dispatch`, this measures rendering.
//! - 30% of the leads open their e-mail (ingested as events, not timed).
//! - W2, wake and branch: the manual clock moves past the 3-day wait; every enrollment wakes,
//!   branches on `opened`, and sends its next e-mail.
//!
//! A "step" here is one enrollment moved through one transition with its journey line and
//! outbox row, as `floor.sh` counts it. W2's enrollments each take three (wait end, branch,
//! send), so its steps/s counts enrollments, not journey lines: the figure a floor compares with.

use anyhow::{bail, Context, Result};
use chrono::{Duration, Utc};
use nurture_engine::engine::{Engine, Sender};
use nurture_engine::event::EventInput;
use nurture_engine::lead::LeadRef;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The first stage of the shipped industry drip: insight e-mail, 3 days, opened? then deep
/// content (tagged) or the changed-angle e-mail.
const DRIP: &str = r#"
kind: Campaign
id: bench-drip
name: Bench drip
type: drip
entry: { trigger: manual }
start: insight
steps:
  insight:
    send: { channel: email, template: industry-insight }
    next: wait_insight
  wait_insight:
    wait: { for: 3d }
    next: opened_insight
  opened_insight:
    branch: { if: { opened: insight }, then: tag_deep, else: new_angle }
  tag_deep:
    tag: { add: [engagement:deep] }
    next: deep_content
  deep_content:
    send: { channel: email, template: deep-content }
    next: wait_more
  new_angle:
    send: { channel: email, template: industry-insight-new-angle }
    next: wait_more
  wait_more:
    wait: { for: 3d }
    next: done
  done:
    exit: completed
"#;

/// Run the campaign engine over N leads: W1 (first touch), the dispatcher's rendering, and
/// W2 (waits end, branch on opened, next send); print steps/s, e-mails/s and peak RSS.
#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 100_000)]
    pub leads: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Leads per transaction.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Concurrent engine workers (tasks sharing the store's pool); defaults to one per CPU core.
    #[arg(long)]
    pub workers: Option<usize>,
    /// The shipped templates the e-mails are rendered from.
    #[arg(long, default_value = "templates")]
    pub templates: std::path::PathBuf,
    /// The storage floor script (`floor.sh`), run with the same N; its figures and the ratio
    /// to their median are reported.
    #[arg(long)]
    pub floor: Option<std::path::PathBuf>,
    /// How many times the floor script runs (it swings more from run to run than the engine).
    #[arg(long, default_value_t = 3)]
    pub floor_runs: usize,
}

/// Long on purpose: the benchmark's script (set-up, W1, W2, the floor, the report), read as the
/// method in BENCHMARKS.md describes it.
pub async fn run(options: Options) -> Result<()> {
    let n = options.leads.max(1);
    let workers = options.workers.unwrap_or_else(crate::commands::cores).max(1);
    let batch = options.batch.max(1);
    let super::BenchEngine {
        engine,
        store,
        clock,
        start,
        label,
        cleanup,
    } = super::bench_engine(
        &options.templates,
        "bench-drip.yaml",
        DRIP,
        options.database_url.as_deref(),
    )
    .await?;

    // Leads, not timed.
    let made = Instant::now();
    let ids = super::create_leads(&engine, n, |i| {
        let (first, last) = [("伟", "王"), ("芳", "李"), ("Anna", "Becker"), ("David", "Smith")][i % 4];
        let industry = ["Manufacturing", "Energy", "Automotive"][i % 3];
        json!({
            "email": format!("lead{i}@company{}.example", i % 997),
            "first_name": first,
            "last_name": last,
            "industry": industry,
            "attributes": {"language": if i % 4 >= 2 { "en" } else { "zh-CN" }},
        })
    })
    .await?;
    eprintln!("{n} leads created in {:.1} s", made.elapsed().as_secs_f64());

    // W1: first touch.
    let phase = Phase::start("W1");
    let shares = split(&ids, workers);
    let mut tasks = Vec::new();
    for share in shares {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut entered = 0;
            for chunk in share.chunks(batch) {
                let refs: Vec<LeadRef> = chunk.iter().map(|id| LeadRef::by_id(*id)).collect();
                entered += engine
                    .enroll("bench-drip", &refs, &nurture_engine::audit::By::cli())
                    .await?
                    .enrolled;
            }
            anyhow::Ok(entered)
        }));
    }
    let mut entered = 0;
    for task in tasks {
        entered += task.await??;
    }
    let (w1, w1_cpu) = phase.end("W1");
    if entered != n {
        bail!("W1: {entered} of {n} leads entered the drip");
    }

    // The dispatcher renders the first e-mails.
    let sender = Sender {
        mailer: Arc::new(nurture_engine::mail::ComposeOnly),
        from: "灵犀工业云 <news@lumen-cloud.example>".into(),
        public_url: "http://127.0.0.1:8080".into(),
        key: nurture_engine::tracking::TrackingKey::new(b"bench"),
        concurrency: 16,
        wechat: None,
        limits: Default::default(),
    };
    // 30% of the leads open it (three in ten by lead id), ingested as events as the e-mails go
    // out, not timed; nothing of the size of N is kept.
    let (rendered_1, render_1, opened) = dispatch_all(&engine, &sender, true).await?;

    // W2: the waits end; each enrollment branches and sends.
    clock.advance_to(start + Duration::days(3) + Duration::seconds(1));
    let phase = Phase::start("W2");
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut moved = 0;
            loop {
                let n = engine.run_due(batch as i64).await?;
                if n == 0 {
                    return anyhow::Ok(moved);
                }
                moved += n;
            }
        }));
    }
    let mut woken = 0;
    for task in tasks {
        woken += task.await??;
    }
    let (w2, w2_cpu) = phase.end("W2");
    let (rendered_2, render_2, _) = dispatch_all(&engine, &sender, false).await?;

    // What happened, from the store: every lead once down one arm.
    let counts = store.step_counts("bench-drip").await?;
    let entered_at = |step: &str| counts.iter().find(|c| c.step == step).map_or(0, |c| c.entered);
    let (deep, angle) = (entered_at("deep_content"), entered_at("new_angle"));
    if (deep + angle) as usize != n || deep as usize != opened {
        bail!("W2: {deep} took the yes arm and {angle} the no arm, of {n} leads with {opened} opens");
    }

    let rss = peak_rss_mb();
    // The floor swings more from run to run than the engine does (one `sqlite3` or `psql`
    // process, a second or less): the median of a few runs, each of them reported.
    let mut floors = Vec::new();
    if let Some(script) = &options.floor {
        for _ in 0..options.floor_runs.max(1) {
            floors.extend(floor(script, n, options.database_url.as_deref(), &label)?);
        }
    }
    let floor = median(&floors);
    let ratio = |rate: f64| floor.map(|f| (rate / f * 1000.0).round() / 1000.0);
    let w1_rate = n as f64 / w1;
    let w2_rate = woken as f64 / w2;
    let render_rate = (rendered_1 + rendered_2) as f64 / (render_1 + render_2);
    println!(
        "{}",
        json!({
            "bench": "engine", "backend": label, "leads": n, "batch": batch, "workers": workers,
            "w1": {"enrollments": entered, "seconds": round3(w1), "steps_per_s": w1_rate.round(), "floor_ratio": ratio(w1_rate), "cpu_us_per_step": per_step_us(w1_cpu, n)},
            "w2": {"enrollments": woken, "yes": deep, "no": angle, "seconds": round3(w2), "steps_per_s": w2_rate.round(), "floor_ratio": ratio(w2_rate), "cpu_us_per_step": per_step_us(w2_cpu, woken)},
            "dispatch": {"rendered": rendered_1 + rendered_2, "seconds": round3(render_1 + render_2), "emails_per_s": render_rate.round()},
            "floor_steps_per_s": floor,
            "floor_runs": floors,
            "peak_rss_mb": rss,
        })
    );
    cleanup.run().await;
    Ok(())
}

/// The middle figure (the mean of the middle two of an even count); `None` for none.
fn median(figures: &[f64]) -> Option<f64> {
    let mut sorted = figures.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn split(ids: &[i64], parts: usize) -> Vec<Vec<i64>> {
    let mut out = vec![Vec::new(); parts];
    for (i, chunk) in ids.chunks(500).enumerate() {
        out[i % parts].extend_from_slice(chunk);
    }
    out
}

/// Dispatches until the outbox is empty; returns (sent, seconds spent dispatching, opens). With
/// `open`, three leads in ten open their e-mail: the events are ingested after each batch, and
/// that time is not counted.
async fn dispatch_all(engine: &Engine, sender: &Sender, open: bool) -> Result<(usize, f64, usize)> {
    let mut seconds = 0.0;
    let mut sent = 0;
    let mut opened = 0;
    loop {
        let started = Instant::now();
        let report = engine.dispatch(sender, 2_000).await?;
        seconds += started.elapsed().as_secs_f64();
        if report.handled() == 0 {
            break;
        }
        if report.failed + report.retrying > 0 {
            bail!("dispatch: {} failed, {} retrying", report.failed, report.retrying);
        }
        sent += report.sent;
        if open {
            let opens: Vec<EventInput> = report
                .delivered
                .iter()
                .filter(|(_, lead)| lead % 10 < 3)
                .map(|(message, lead)| EventInput {
                    lead: LeadRef::by_id(*lead),
                    kind: "email_opened".into(),
                    occurred_at: None,
                    properties: json!({"message_id": message}).as_object().cloned().unwrap_or_default(),
                    idempotency_key: None,
                    source: Some("bench".into()),
                })
                .collect();
            opened += opens.len();
            if !opens.is_empty() {
                engine.ingest_events(opens).await?;
            }
        }
    }
    Ok((sent, seconds, opened))
}

/// CPU time this process has used, user and system, all threads (`/proc/self/stat`, in the
/// kernel's fixed 100 ticks a second). On a shared machine it is a steadier figure than wall
/// time for comparing two builds; it leaves out a PostgreSQL server's own work.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Microseconds of this process's CPU per step, to one decimal.
fn per_step_us(cpu_seconds: f64, steps: usize) -> Option<f64> {
    (cpu_seconds.is_finite() && steps > 0).then(|| (cpu_seconds * 1e6 / steps as f64 * 10.0).round() / 10.0)
}

/// The process's peak resident set (VmHWM), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0).round())
}

/// Runs `floor.sh N` and returns the steps/s it measured for this backend.
fn floor(script: &Path, n: usize, database_url: Option<&str>, label: &str) -> Result<Option<f64>> {
    let mut command = std::process::Command::new("bash");
    command.arg(script).arg(n.to_string());
    if let Some(url) = database_url.filter(|u| u.starts_with("postgres")) {
        command.env("DATABASE_URL", url);
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let backend = if label.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if value["backend"] == backend {
            return Ok(value["steps_per_s"].as_f64());
        }
    }
    Ok(None)
}

/// A timed phase: its wall-clock start (printed with its end on stderr, so that a profile or a
/// database log taken during the run can be cut to it) and this process's CPU time.
struct Phase {
    wall: chrono::DateTime<Utc>,
    cpu: f64,
    started: Instant,
}

impl Phase {
    /// Starts timing a phase; says so on stderr, where a profiler's driver can watch for it.
    fn start(name: &str) -> Phase {
        eprintln!("{name}: starting");
        Phase {
            wall: Utc::now(),
            cpu: cpu_seconds(),
            started: Instant::now(),
        }
    }

    /// Seconds of wall time and of CPU since the start; prints the span.
    fn end(self, name: &str) -> (f64, f64) {
        let seconds = self.started.elapsed().as_secs_f64();
        let to = self.wall + Duration::microseconds((seconds * 1e6) as i64);
        eprintln!(
            "{name}: {seconds:.3} s, from {} to {}",
            self.wall.format("%H:%M:%S%.6f"),
            to.format("%H:%M:%S%.6f")
        );
        (seconds, cpu_seconds() - self.cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_floor_is_the_middle_of_its_runs() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[410_000.0]), Some(410_000.0));
        assert_eq!(median(&[520_000.0, 280_000.0, 430_000.0]), Some(430_000.0));
        assert_eq!(median(&[300_000.0, 500_000.0, 400_000.0, 200_000.0]), Some(350_000.0));
    }
}
