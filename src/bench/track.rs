//! `nurture bench track`: page views through `POST /t/events` over HTTP from concurrent
//! clients, as the tracking script in visitors' browsers posts them, to a real server on a
//! local port with the shipped playbook (its tracking site and pricing page rule). Each
//! visitor makes four posts of `--batch` page views, one after another; one visitor in
//! `--identify-every` says who it is on its second post, so its first post's views are merged
//! into a new lead and its last two go to the lead at once. Prints page views a second and
//! each post's time (p50, p99).

use anyhow::Result;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::open_store;

#[derive(clap::Args)]
pub struct Options {
    /// Page views in all.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Browsers posting at once.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Page views a post carries (what the script gathered in its second).
    #[arg(long, default_value_t = 5)]
    pub batch: usize,
    /// One visitor in this many identifies itself (0: none).
    #[arg(long, default_value_t = 10)]
    pub identify_every: usize,
    /// Defaults to a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
}

const SITE: &str = "https://www.lumen-cloud.example";
const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const PAGES: [&str; 5] = [
    "/",
    "/pricing",
    "/blog/iot-in-factories",
    "/docs/getting-started",
    "/pricing/enterprise",
];
/// Posts each visitor makes.
const POSTS: usize = 4;

pub async fn run(options: Options) -> Result<()> {
    let (store, label, cleanup) = open_store(options.database_url.as_deref()).await?;
    let engine = super::shipped_engine(&store).await?;
    let app = nurture_api::Application::bind("127.0.0.1:0", engine.clone())
        .await?
        .with_rate_limit(0);
    let url = format!("http://127.0.0.1:{}/t/events", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    nurture_engine::tls::install_provider();
    let client = reqwest::Client::builder().build()?;
    let batch = options.batch.max(1);
    let visitors = options.events.div_ceil(batch * POSTS);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..options.clients.max(1) {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        let identify_every = options.identify_every;
        tasks.spawn(async move {
            let mut took: Vec<Duration> = Vec::new();
            loop {
                let v = next.fetch_add(1, Ordering::Relaxed);
                if v >= visitors {
                    return anyhow::Ok(took);
                }
                for post in 0..POSTS {
                    let events: Vec<serde_json::Value> = (0..batch)
                        .map(|i| {
                            let page = PAGES[(v + post * batch + i) % PAGES.len()];
                            json!({"type": "page_view", "url": format!("{SITE}{page}?utm_source=bench"), "title": "Lumen Cloud", "referrer": "https://www.baidu.com/"})
                        })
                        .collect();
                    let mut body = json!({"visitor": format!("v_bench{v:016}"), "events": events});
                    if identify_every > 0 && v % identify_every == 0 && post == 1 {
                        body["identify"] = json!({"email": format!("visitor{v}@bench.example")});
                    }
                    let at = Instant::now();
                    let answer = client
                        .post(&url)
                        .header("origin", SITE)
                        .header("user-agent", BROWSER)
                        .header("content-type", "text/plain;charset=UTF-8")
                        .body(body.to_string())
                        .send()
                        .await?;
                    let status = answer.status();
                    let text = answer.text().await?;
                    took.push(at.elapsed());
                    anyhow::ensure!(status.is_success(), "POST /t/events answered {status}: {text}");
                }
            }
        });
    }
    let mut took: Vec<Duration> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        took.extend(done??);
    }
    let seconds = started.elapsed().as_secs_f64();
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let events = visitors * POSTS * batch;
    println!(
        "{}",
        json!({
            "bench": "track",
            "backend": label,
            "page_views": events,
            "posts": took.len(),
            "visitors": visitors,
            "identified": if options.identify_every > 0 { visitors.div_ceil(options.identify_every) } else { 0 },
            "clients": options.clients,
            "batch": batch,
            "seconds": round(seconds),
            "page_views_per_s": (events as f64 / seconds).round(),
            "post_p50_ms": round(at(0.5)),
            "post_p99_ms": round(at(0.99)),
        })
    );
    cleanup.run().await;
    Ok(())
}
