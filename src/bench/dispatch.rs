//! `nurture bench dispatch`: the dispatcher sending N e-mails over real SMTP to a local sink:
//! each is rendered (templates, tracked links, MIME), sent through lettre's connection pool,
//! and its outcome recorded. Prints messages/s and CPU per message, with the pool and rates used.

use super::DispatchOptions as Options;
use anyhow::{bail, Result};
use nurture_engine::engine::Sender;
use nurture_engine::lead::LeadRef;
use nurture_engine::mail::rate::SendLimits;
use nurture_engine::mail::sink::SmtpSink;
use nurture_engine::mail::SmtpMailer;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const ONE_SEND: &str = r#"
kind: Campaign
id: bench-send
name: Bench send
type: drip
entry: { trigger: manual }
start: insight
steps:
  insight:
    send: { channel: email, template: industry-insight }
    next: done
  done:
    exit: sent
"#;


pub async fn run(options: Options) -> Result<()> {
    let n = options.messages.max(1);
    let super::BenchEngine {
        engine, label, cleanup, ..
    } = super::bench_engine(
        &options.templates,
        "bench-send.yaml",
        ONE_SEND,
        options.database_url.as_deref(),
    )
    .await?;

    // The outbox, not timed: N leads each with one e-mail to send.
    let made = Instant::now();
    let ids = super::create_leads(&engine, n, |i| {
        json!({"email": format!("lead{i}@company{}.example", i % 997), "first_name": "伟", "industry": "Manufacturing"})
    })
    .await?;
    for chunk in ids.chunks(1_000) {
        let refs: Vec<LeadRef> = chunk.iter().map(|id| LeadRef::by_id(*id)).collect();
        engine.enroll("bench-send", &refs, &nurture_engine::audit::By::cli()).await?;
    }
    // As `serve` keeps them: the planner's statistics describe the outbox as it now is.
    engine.refresh_statistics().await?;
    eprintln!("{n} e-mails queued in {:.1} s", made.elapsed().as_secs_f64());

    let sink = SmtpSink::counting().await?;
    let sender = Sender {
        mailer: Arc::new(SmtpMailer::from_url(&sink.url(), options.pool).map_err(anyhow::Error::msg)?),
        from: "灵犀工业云 <news@lumen-cloud.example>".into(),
        public_url: "http://127.0.0.1:8080".into(),
        key: nurture_engine::tracking::TrackingKey::new(b"bench"),
        concurrency: options.pool.max(1) as usize,
        wechat: None,
        limits: Arc::new(SendLimits::new(options.send_rate, &[], 0, None)),
    };
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let report = engine.dispatch(&sender, options.batch).await?;
        if report.handled() == 0 {
            break;
        }
        if report.failed + report.retrying > 0 {
            bail!("dispatch: {} failed, {} retrying", report.failed, report.retrying);
        }
        sent += report.sent;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu).map(|(after, before)| after - before);
    if sent != n || sink.count() != n {
        bail!("{sent} sent and {} received of {n}", sink.count());
    }
    println!(
        "{}",
        json!({
            "bench": "dispatch", "backend": label, "messages": n, "smtp_pool": options.pool,
            "batch": options.batch, "send_rate": options.send_rate,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "messages_per_s": (n as f64 / seconds).round(),
            // The process's CPU, the in-process SMTP sink's share included.
            "cpu_ms_per_message": cpu.map(|c| (c * 1000.0 / n as f64 * 1000.0).round() / 1000.0),
        })
    );
    cleanup.run().await;
    Ok(())
}

/// CPU time of this process so far (user + system), from /proc/self/stat at 100 ticks a second.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (user, system): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((user + system) / 100.0)
}
