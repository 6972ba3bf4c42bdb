//! `nurture bench report`: the reports of `/v1/reports` over 90 days of counters, from a real
//! server on a local port. The counters are written as the engine writes them (the store's
//! `Tx::count_messages`, in transactions of a few thousand events' additions), for the
//! messages `--leads` leads get over `--days` days from the shipped playbook's send steps and
//! `--events` events about them (opens and clicks by people and by machines, bounces,
//! unsubscribes, complaints); each report is then loaded `--samples` times. Reports read the
//! counters alone, never leads, messages or events, so nothing else is filled. The queue
//! counters are filled likewise for one lead in twenty handed off (`fill_queues`), and the
//! wait and conversion counters a campaign report reads (`fill_outcomes`).

use anyhow::Result;
use nurture_engine::access::Role;
use nurture_engine::audit::By;
use nurture_engine::engine::Engine;
use nurture_engine::playbook::{Action, Wait};
use nurture_engine::report::{hour_of, CountKey, MessageFigures};
use nurture_engine::store::reports::merge_deltas;
use nurture_engine::store::CountDelta;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

use super::{open_store, time_loads, Load};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 1_000_000)]
    pub leads: usize,
    #[arg(long, default_value_t = 10_000_000)]
    pub events: usize,
    #[arg(long, default_value_t = 90)]
    pub days: i64,
    /// Loads of each report.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Leave the counters' shards unfolded, as they are before a server's first fold.
    #[arg(long)]
    pub unfolded: bool,
    /// Leave the filled database in place (a PostgreSQL schema, a SQLite file) and say where,
    /// for `--reuse`.
    #[arg(long)]
    pub keep: bool,
    /// Time the reports of a database an earlier run filled and kept: the schema of
    /// `--database-url` it named (PostgreSQL), or its SQLite file. Nothing is written to it
    /// but the bench's API key.
    #[arg(long, value_name = "SCHEMA|FILE")]
    pub reuse: Option<String>,
}

/// A send step of the shipped playbook, one of its templates.
struct Send {
    campaign: String,
    step: String,
    template: String,
    channel: String,
    version: String,
}

/// Long on purpose: the benchmark's script (the counters written, a server started, each
/// report timed), read as the method in BENCHMARKS.md describes it.
pub async fn run(options: Options) -> Result<()> {
    let (store, label, cleanup) = match &options.reuse {
        Some(kept) => reopen(options.database_url.as_deref(), kept).await?,
        None => open_store(options.database_url.as_deref()).await?,
    };
    let engine = super::shipped_engine(&store).await?;
    let sends: Vec<Send> = engine
        .playbook()
        .campaigns
        .values()
        .flat_map(|c| {
            c.steps().flat_map(move |s| match &s.action {
                Action::Send {
                    channel,
                    template,
                    variants,
                    ..
                } => std::iter::once(template)
                    .chain(variants.iter().map(|(_, t)| t))
                    .map(|t| Send {
                        campaign: c.id.clone(),
                        step: s.id.clone(),
                        template: t.clone(),
                        channel: channel.as_str().to_owned(),
                        version: c.version.clone(),
                    })
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
        })
        .collect();

    let filled = match &options.reuse {
        Some(_) => Filled::default(),
        None => fill(&store, &engine, &sends, &options).await?,
    };
    engine.refresh_statistics().await?;

    let key = engine
        .create_api_key("report-bench", Role::Marketer, &By::cli())
        .await?;
    let app = nurture_api::Application::bind("127.0.0.1:0", engine.clone())
        .await?
        .with_rate_limit(0);
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    nurture_engine::tls::install_provider();
    let client = reqwest::Client::builder().build()?;
    let bearer = ("authorization", format!("Bearer {}", key.key));
    let campaigns: Vec<String> = engine.playbook().campaigns.keys().cloned().collect();
    let since = format!("since={}d", options.days);
    let template = sends[0].template.clone();
    let loads = vec![
        Load::new("campaign, by day", &bearer, |k| {
            format!("/v1/reports/campaigns/{}?{since}", campaigns[k % campaigns.len()])
        }),
        Load::new("campaign, by week", &bearer, |k| {
            format!(
                "/v1/reports/campaigns/{}?{since}&by=week",
                campaigns[k % campaigns.len()]
            )
        }),
        Load::new("campaign, other zone", &bearer, |k| {
            format!(
                "/v1/reports/campaigns/{}?{since}&tz=America/Los_Angeles",
                campaigns[k % campaigns.len()]
            )
        }),
        Load::new("message, by day", &bearer, |_| {
            format!("/v1/reports/messages/{template}?{since}")
        }),
        Load::new("queue, by day", &bearer, |k| {
            format!("/v1/reports/queues/{}?{since}", QUEUES[k % QUEUES.len()])
        }),
        Load::new("queue, other zone", &bearer, |k| {
            format!(
                "/v1/reports/queues/{}?{since}&tz=America/Los_Angeles",
                QUEUES[k % QUEUES.len()]
            )
        }),
    ];
    let mut figures = time_loads(&client, &base, &loads, options.samples.max(1)).await?;
    // CSV: the same reports, another answer.
    let csv = client
        .get(format!("{base}/v1/reports/campaigns/{}?{since}", campaigns[0]))
        .header("authorization", &bearer.1)
        .header("accept", "text/csv");
    let started = Instant::now();
    let lines = csv.send().await?.text().await?.lines().count();
    figures.push(json!({"page": "campaign as CSV (one load)", "ms": (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0, "lines": lines}));
    println!(
        "{}",
        json!({
            "bench": "report",
            "backend": label,
            "leads": options.leads,
            "messages": options.leads * 3,
            "events": options.events,
            "days": options.days,
            "counter_additions": filled.written,
            "handoffs": filled.handoffs,
            "conversion_outcomes": filled.outcomes,
            "counter_key_hours": key_hours(store.as_ref(), &engine).await?,
            "seconds_to_fill": filled.seconds_to_fill.round(),
            "folded_key_hours_and_day_rows": filled.folded,
            "seconds_to_fold": filled.seconds_to_fold.round(),
            "samples": options.samples,
            "reports": figures,
        })
    );
    if options.keep || options.reuse.is_some() {
        eprintln!("kept: {label}");
    } else {
        cleanup.run().await;
    }
    Ok(())
}

/// What filling wrote.
#[derive(Default)]
struct Filled {
    written: usize,
    handoffs: usize,
    outcomes: usize,
    seconds_to_fill: f64,
    folded: u64,
    seconds_to_fold: f64,
}

/// A database a run with `--keep` filled: the schema `kept` of `database_url`, or the SQLite
/// file `kept`.
async fn reopen(
    database_url: Option<&str>,
    kept: &str,
) -> Result<(Arc<dyn nurture_engine::store::Store>, String, super::Cleanup)> {
    let cleanup = super::Cleanup {
        dir: std::env::temp_dir().join(format!("nurture-bench-{}", std::process::id())),
        schema: None,
    };
    Ok(match database_url {
        Some(url) if url.starts_with("postgres") => (
            Arc::new(nurture_engine::store::postgres::PgStore::connect_in_schema(url, kept).await?),
            format!("postgres (schema {kept})"),
            cleanup,
        ),
        _ => (
            nurture_engine::store::connect(&format!("sqlite://{kept}")).await?,
            format!("sqlite ({kept})"),
            cleanup,
        ),
    })
}

/// Writes the counters `--leads` leads' messages, `--events` events about them, their
/// handoffs and their campaigns' outcomes add up to, then folds and rolls them up as `serve`
/// would have over the days.
async fn fill(
    store: &Arc<dyn nurture_engine::store::Store>,
    engine: &Arc<Engine>,
    sends: &[Send],
    options: &Options,
) -> Result<Filled> {
    // Each lead gets three messages over the days; each event names one of them.
    let filled = Instant::now();
    let messages = options.leads * 3;
    let now_hour = hour_of(engine.now().timestamp_micros());
    let first_hour = now_hour - options.days * 24;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let message = |m: usize, rng: &mut rand::rngs::StdRng| {
        let lead = m % options.leads.max(1);
        let send = &sends[(m / 7) % sends.len()];
        // Sent in the send windows of Shanghai (01:00-10:00 UTC) or, for a lead in seven, of
        // Los Angeles (17:00-02:00 UTC), on any of the days.
        let day = rng.random_range(0..options.days);
        let hour = if lead.is_multiple_of(7) {
            (17 + rng.random_range(0..9)) % 24
        } else {
            1 + rng.random_range(0..9)
        };
        let key = CountKey {
            campaign: send.campaign.clone(),
            step: send.step.clone(),
            version: send.version.clone(),
            template: send.template.clone(),
            channel: send.channel.clone(),
            language: if lead.is_multiple_of(5) { "en" } else { "zh" }.into(),
        };
        (key, (first_hour + day * 24 + hour).min(now_hour))
    };
    let mut written = 0usize;
    let mut batch: Vec<CountDelta> = Vec::new();
    let mut first_open = vec![false; messages];
    let mut first_click = vec![false; messages];
    let flush = |batch: Vec<CountDelta>| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await?;
            tx.count_messages(&merge_deltas(batch)).await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
    };
    // The sends, then the events.
    for m in 0..messages + options.events {
        let (id, figures) = if m < messages {
            (
                m,
                MessageFigures {
                    sent: 1,
                    ..Default::default()
                },
            )
        } else {
            let id = rng.random_range(0..messages);
            let mut f = MessageFigures::default();
            match rng.random_range(0..100) {
                0..45 => {
                    f.opens = 1;
                    f.opened = i64::from(!std::mem::replace(&mut first_open[id], true));
                }
                45..60 => f.opens_automated = 1,
                60..80 => {
                    f.clicks = 1;
                    f.clicked = i64::from(!std::mem::replace(&mut first_click[id], true));
                }
                80..90 => f.clicks_automated = 1,
                90..94 => f.bounced_soft = 1,
                94..96 => f.bounced_hard = 1,
                96..98 => f.unsubscribed = 1,
                _ => f.complained = 1,
            }
            (id, f)
        };
        // The same message draws the same key and hour each time.
        let mut keyed = rand::rngs::StdRng::seed_from_u64(id as u64);
        let (key, hour) = message(id, &mut keyed);
        batch.push(CountDelta {
            key,
            hour,
            shard: id as i64,
            figures,
        });
        if batch.len() == 5_000 {
            flush(std::mem::take(&mut batch)).await?;
            written += 5_000;
        }
    }
    written += batch.len();
    flush(batch).await?;
    let handoffs = fill_queues(store.as_ref(), options.leads, first_hour, now_hour).await?;
    let outcomes = fill_outcomes(store.as_ref(), engine, options.leads, first_hour, now_hour).await?;
    let seconds_to_fill = filled.elapsed().as_secs_f64();
    // What `serve` does every five minutes over the days, done once: fold the shards of
    // finished hours, roll finished days up.
    let folding = Instant::now();
    let folded = if options.unfolded {
        0
    } else {
        engine.fold_counters().await?
    };
    let seconds_to_fold = folding.elapsed().as_secs_f64();
    engine.refresh_statistics().await?;
    Ok(Filled {
        written,
        handoffs,
        outcomes,
        seconds_to_fill,
        folded,
        seconds_to_fold,
    })
}

/// The queues handoffs go to, as in the shipped playbook.
const QUEUES: [&str; 2] = ["sdr", "sales"];

/// Fills the queue counters as the engine would for one lead in twenty handed off over the
/// hours: opened, claimed by one of ten members after up to a day, then accepted (six in ten,
/// a third of those converted), rejected for one of five reasons (three in ten) or released;
/// one in ten breaches its SLA and moves on. Returns the handoffs counted.
async fn fill_queues(
    store: &dyn nurture_engine::store::Store,
    leads: usize,
    first_hour: i64,
    now_hour: i64,
) -> Result<usize> {
    use nurture_engine::report::queue::{wait_bucket, HandoffFact};
    use nurture_engine::store::HandoffCount;
    const REASONS: [&str; 5] = [
        "No budget this year",
        "Student",
        "Competitor",
        "Wrong contact",
        "No project",
    ];
    let handoffs = leads / 20;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut batch = Vec::new();
    for h in 0..handoffs {
        let queue = QUEUES[h % QUEUES.len()];
        let member = format!("sdr-{}@corp.example", rng.random_range(0..10));
        let hour = rng.random_range(first_hour..=now_hour);
        let count = |fact, member: &str, detail: String, hour: i64| HandoffCount {
            queue: queue.to_owned(),
            hour: hour.min(now_hour),
            member: member.to_owned(),
            fact,
            detail,
            shard: h as i64,
            n: 1,
        };
        batch.push(count(HandoffFact::Opened, "", String::new(), hour));
        let waited = rng.random_range(60..86_400);
        let claimed = hour + waited / 3_600;
        if rng.random_range(0..10) == 0 {
            batch.push(count(HandoffFact::Breached, &member, String::new(), hour + 4));
        }
        batch.push(count(HandoffFact::Claimed, &member, String::new(), claimed));
        batch.push(count(
            HandoffFact::ClaimWait,
            &member,
            wait_bucket(waited).to_string(),
            claimed,
        ));
        let decided = claimed + rng.random_range(0..48);
        match rng.random_range(0..10) {
            0..6 => {
                batch.push(count(HandoffFact::Accepted, &member, String::new(), decided));
                if rng.random_range(0..3) == 0 {
                    let won = decided + rng.random_range(0..24 * 30);
                    batch.push(count(HandoffFact::Converted, &member, String::new(), won));
                }
            }
            6..9 => {
                let reason = REASONS[rng.random_range(0..REASONS.len())].to_owned();
                batch.push(count(HandoffFact::Rejected, &member, reason, decided));
            }
            _ => batch.push(count(HandoffFact::Released, &member, String::new(), decided)),
        }
        if batch.len() >= 5_000 || h + 1 == handoffs {
            let mut tx = store.begin().await?;
            tx.count_handoffs(&std::mem::take(&mut batch)).await?;
            tx.commit().await?;
        }
    }
    Ok(handoffs)
}

/// Fills the wait and conversion counters a campaign report also reads: every lead goes on
/// from each wait step of its campaign once (as long as the step says, an `until` early for
/// three in ten), and one in
/// ten reaches a goal, a handoff (with its accept and conversion, as `fill_queues` draws them)
/// credited to one to three campaigns, the last step one of their send steps, up to 90 days
/// after the touch. Returns the outcomes credited.
async fn fill_outcomes(
    store: &dyn nurture_engine::store::Store,
    engine: &Engine,
    leads: usize,
    first_hour: i64,
    now_hour: i64,
) -> Result<usize> {
    use nurture_engine::report::attribution::{window_of, Conversion, Credit};
    use nurture_engine::report::queue::wait_bucket;
    use nurture_engine::store::{ConversionCount, FlowCount, WaitCount};
    let playbook = engine.playbook();
    let campaigns: Vec<&nurture_engine::playbook::Campaign> = playbook.campaigns.values().map(|c| c.as_ref()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut waits = Vec::new();
    let mut credits = Vec::new();
    let mut flows = Vec::new();
    // Keyed as the tables are: campaign, hour, step, then the rest.
    type Sums<K, V> = std::collections::BTreeMap<K, V>;
    type StepKey = (String, i64, String);
    let mut wait_sums: Sums<(StepKey, String, i64), i64> = Sums::new();
    let mut credit_sums: Sums<(StepKey, Credit, Conversion, i64), i64> = Sums::new();
    let mut flow_sums: Sums<(StepKey, String, String), (i64, i64)> = Sums::new();
    let mut outcomes = 0;
    let flush = |waits: Vec<WaitCount>, credits: Vec<ConversionCount>, flows: Vec<FlowCount>| async move {
        let mut tx = store.begin().await?;
        tx.count_waits(&waits).await?;
        tx.count_conversions(&credits).await?;
        tx.count_flows(&flows).await?;
        tx.commit().await?;
        anyhow::Ok(())
    };
    for lead in 0..leads {
        let c = campaigns[lead % campaigns.len()];
        // The lead's way through the campaign: a line at every step, at some hour of the days
        // (a wait's end at another); a branch goes either way, a split to either arm.
        for step in c.steps() {
            let mut line = |outcome: &str, entered: i64| {
                flows.push(FlowCount {
                    campaign: c.id.clone(),
                    step: step.id.clone(),
                    version: c.version.clone(),
                    outcome: outcome.to_owned(),
                    hour: rng.random_range(first_hour..=now_hour),
                    shard: lead as i64,
                    entered,
                    lines: 1,
                })
            };
            match &step.action {
                Action::Send { .. } => line("sent", 1),
                Action::Wait(_) => {
                    line("waiting", 1);
                    line("waited", 0);
                }
                Action::Branch(_) => line(if lead % 3 == 0 { "yes" } else { "no" }, 1),
                Action::Split => line(if lead % 2 == 0 { "arm 1" } else { "arm 2" }, 1),
                Action::Handoff { .. } => line("handed_off", 1),
                Action::Exit { .. } => line("completed", 1),
                Action::Tag { .. } => line("tagged", 1),
                Action::Score(_) => line("scored", 1),
                Action::Enroll { .. } => line("enrolled", 1),
            }
        }
        for step in c.steps() {
            let Action::Wait(wait) = &step.action else {
                continue;
            };
            // A timed wait lasts its span and the runner's lateness (up to a minute); an
            // `until` holds early for three leads in ten, any time before its timeout; a
            // wait for a moment lasts anything up to a week.
            let lateness = rng.random_range(0..60);
            let seconds = match wait {
                Wait::For(span) => span.to_chrono().num_seconds() + lateness,
                Wait::Until { timeout, .. } => {
                    let timeout = timeout.to_chrono().num_seconds();
                    if rng.random_range(0..10) < 3 {
                        rng.random_range(60..timeout.max(61))
                    } else {
                        timeout + lateness
                    }
                }
                Wait::At(_) => rng.random_range(60..7 * 86_400),
            };
            waits.push(WaitCount {
                campaign: c.id.clone(),
                step: step.id.clone(),
                version: c.version.clone(),
                hour: rng.random_range(first_hour..=now_hour),
                bucket: wait_bucket(seconds),
                shard: lead as i64,
                n: 1,
            });
        }
        if lead % 10 == 0 {
            let hour = rng.random_range(first_hour..=now_hour);
            let mut reached = vec![Conversion::Handoff];
            if lead % 20 == 0 {
                reached = vec![Conversion::Goal];
            } else if rng.random_range(0..10) < 6 {
                reached.push(Conversion::Accepted);
                if rng.random_range(0..3) == 0 {
                    reached.push(Conversion::Converted);
                }
            }
            let touched: Vec<&nurture_engine::playbook::Campaign> = (0..rng.random_range(1..=3))
                .map(|k| campaigns[(lead + k) % campaigns.len()])
                .collect();
            let sends: Vec<String> = touched[0]
                .steps()
                .filter(|s| matches!(s.action, Action::Send { .. }))
                .map(|s| s.id.clone())
                .collect();
            for outcome in reached {
                outcomes += 1;
                let lag = rng.random_range(0..=90);
                if let Some(step) = sends.get(rng.random_range(0..sends.len().max(1))) {
                    credits.push(ConversionCount {
                        campaign: touched[0].id.clone(),
                        step: step.clone(),
                        credit: Credit::LastStep,
                        outcome,
                        hour,
                        within_days: window_of(lag),
                        shard: lead as i64,
                        n: 1,
                    });
                }
                for (k, t) in touched.iter().enumerate() {
                    credits.push(ConversionCount {
                        campaign: t.id.clone(),
                        step: String::new(),
                        credit: Credit::Campaign,
                        outcome,
                        hour,
                        within_days: window_of((lag + 7 * k as i64).min(90)),
                        shard: lead as i64,
                        n: 1,
                    });
                }
            }
        }
        if flows.len() >= 100_000 || lead + 1 == leads {
            for w in waits.drain(..) {
                *wait_sums
                    .entry(((w.campaign, w.hour, w.step), w.version, w.bucket))
                    .or_default() += w.n;
            }
            for c in credits.drain(..) {
                let key = ((c.campaign, c.hour, c.step), c.credit, c.outcome, c.within_days);
                *credit_sums.entry(key).or_default() += c.n;
            }
            for f in flows.drain(..) {
                let sum = flow_sums
                    .entry(((f.campaign, f.hour, f.step), f.version, f.outcome))
                    .or_default();
                sum.0 += f.entered;
                sum.1 += f.lines;
            }
        }
    }
    // Written summed, in key order, 5,000 rows a transaction: filled the way they were added
    // to over the days (each row a few times an hour), not a row at a random hour each time.
    let waits: Vec<WaitCount> = wait_sums
        .into_iter()
        .map(|(((campaign, hour, step), version, bucket), n)| WaitCount {
            campaign,
            step,
            version,
            hour,
            bucket,
            shard: 0,
            n,
        })
        .collect();
    let credits: Vec<ConversionCount> = credit_sums
        .into_iter()
        .map(
            |(((campaign, hour, step), credit, outcome, within_days), n)| ConversionCount {
                campaign,
                step,
                credit,
                outcome,
                hour,
                within_days,
                shard: 0,
                n,
            },
        )
        .collect();
    let flows: Vec<FlowCount> = flow_sums
        .into_iter()
        .map(
            |(((campaign, hour, step), version, outcome), (entered, lines))| FlowCount {
                campaign,
                step,
                version,
                outcome,
                hour,
                shard: 0,
                entered,
                lines,
            },
        )
        .collect();
    for chunk in waits.chunks(5_000) {
        flush(chunk.to_vec(), Vec::new(), Vec::new()).await?;
    }
    for chunk in credits.chunks(5_000) {
        flush(Vec::new(), chunk.to_vec(), Vec::new()).await?;
    }
    for chunk in flows.chunks(5_000) {
        flush(Vec::new(), Vec::new(), chunk.to_vec()).await?;
    }
    Ok(outcomes)
}

/// How many counter rows (shards summed) the reports read from, all campaigns and days.
async fn key_hours(store: &dyn nurture_engine::store::Store, engine: &Engine) -> Result<usize> {
    let mut rows = 0;
    for id in engine.playbook().campaigns.keys() {
        rows += store
            .message_counts(nurture_engine::store::CountScope::Campaign(id), 0, i64::MAX)
            .await?
            .len();
    }
    Ok(rows)
}
