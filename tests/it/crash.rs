//! Crash safety: `nurture serve` killed with SIGKILL while a large campaign is mid-run, then
//! restarted on the same database. Every lead takes every step exactly once, no message row is
//! made twice, and every e-mail arrives; e-mails that were on the wire at the kill may arrive
//! twice, and the test counts and reports them. And two `nurture serve` processes on one
//! PostgreSQL database running one campaign: no step runs twice, none is lost.

use serde_json::json;
use sqlx::sqlite::SqlitePoolOptions;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{ready, serve_with, Server};
use crate::smtp::SmtpSink;
use crate::support::Db;

const LEADS: i64 = 2_000;
/// SMTP connections (`--smtp-pool`): the dispatcher writes outcomes as sends complete, so at
/// the kill at most this many e-mails are on the wire and as many sent but not yet recorded.
const POOL: usize = 32;

const CAMPAIGN: &str = r#"
kind: Campaign
id: crash-drip
name: Crash drip
type: drip
entry: { trigger: segment, when: { field: { name: email, exists: true } } }
start: first
steps:
  first:
    send: { channel: email, template: note }
    next: wait_1
  wait_1:
    wait: { for: 1d }
    next: second
  second:
    send: { channel: email, template: note }
    next: wait_2
  wait_2:
    wait: { for: 1d }
    next: third
  third:
    send: { channel: email, template: note }
    next: done
  done:
    exit: completed
"#;

fn playbook(dir: &Path) {
    playbook_with(dir, CAMPAIGN);
}

/// `dir/campaigns/` holding `campaign`, and `dir/templates/` the `note` e-mail it sends.
pub(crate) fn playbook_with(dir: &Path, campaign: &str) {
    std::fs::create_dir_all(dir.join("campaigns")).unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("campaigns/campaign.yaml"), campaign).unwrap();
    std::fs::write(
        dir.join("templates/note.hbs"),
        "<p>Hello {{first_name}}, step {{step}}.</p>",
    )
    .unwrap();
    std::fs::write(dir.join("templates/note.subject.hbs"), "Step {{step}}").unwrap();
}

fn start(dir: &Path, smtp: &str) -> Server {
    start_on(dir, smtp, "sqlite://crash.db")
}

/// `serve` on a manual clock with `dir`'s playbook, mail to `smtp`, on `database_url`.
pub(crate) fn start_on(dir: &Path, smtp: &str, database_url: &str) -> Server {
    serve_with(
        dir,
        &[
            "--clock",
            "manual",
            "--playbook",
            "campaigns",
            "--templates",
            "templates",
            "--smtp-url",
            smtp,
            "--database-url",
            database_url,
            "--smtp-pool",
            &POOL.to_string(),
        ],
    )
}

/// `n` leads `lead{i}@{domain}`, posted in bulk requests of 1,000.
async fn create_leads(client: &reqwest::Client, base: &str, key: &str, n: i64, domain: &str) {
    for first in (0..n).step_by(1_000) {
        let leads: Vec<_> = (first..(first + 1_000).min(n))
            .map(|i| json!({"email": format!("lead{i}@{domain}"), "first_name": "Ada"}))
            .collect();
        let answer = client
            .post(format!("{base}/v1/leads/bulk"))
            .bearer_auth(key)
            .json(&leads)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
}

async fn advance(client: &reqwest::Client, base: &str, key: &str, by: &str) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/v1/admin/clock/advance"))
        .bearer_auth(key)
        .json(&json!({"by": by}))
        .send()
        .await
}

#[tokio::test]
async fn sigkill_mid_campaign_then_restart_runs_every_step_exactly_once() {
    let sink = SmtpSink::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    playbook(dir.path());
    let key = crate::cli::api_key(dir.path(), "admin", "sqlite://crash.db");
    let client = crate::support::http()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    let mut server = start(dir.path(), &sink.url());
    ready(&server.base).await;
    create_leads(&client, &server.base, &key, LEADS, "crash.example").await;
    let db = Db::Sqlite(
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite://{}?mode=ro", dir.path().join("crash.db").display()))
            .await
            .unwrap(),
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM enrollments").await,
        LEADS,
        "every lead entered"
    );

    // Two days at once: the runner works through the first wave of waits in batches while the
    // dispatcher sends the first e-mails; the server is killed as soon as the first batch of
    // the second send is committed.
    sink.wait_for(1, Duration::from_secs(60))
        .await
        .expect("an e-mail is sent");
    let base = server.base.clone();
    let (advancing_client, advancing_key) = (client.clone(), key.clone());
    let advancing = tokio::spawn(async move { advance(&advancing_client, &base, &advancing_key, "2d").await });
    let deadline = Instant::now() + Duration::from_secs(120);
    while db.count("SELECT COUNT(*) FROM journey WHERE step = 'second'").await == 0 {
        assert!(Instant::now() < deadline, "the second step never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    assert!(advancing.await.unwrap().is_err(), "the advance was cut off by the kill");
    let at_kill = db.count("SELECT COUNT(*) FROM journey WHERE step = 'second'").await;
    let sent_at_kill = sink.count();
    assert!(
        at_kill < LEADS,
        "the kill came after the whole wave ({at_kill} of {LEADS} at the second step): not mid-run"
    );

    // Restarted on the same database: the clock starts again from now, so two more days take
    // every wait to its end.
    let server = start(dir.path(), &sink.url());
    ready(&server.base).await;
    let answer = advance(&client, &server.base, &key, "3d").await.unwrap();
    assert_eq!(answer.status(), 200);
    let expected = (3 * LEADS) as usize;
    let deadline = Instant::now() + Duration::from_secs(180);
    while db.count("SELECT COUNT(*) FROM messages WHERE status = 'sent'").await < 3 * LEADS {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} messages were sent",
            db.count("SELECT COUNT(*) FROM messages WHERE status = 'sent'").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);

    assert_eq!(
        db.count("SELECT COUNT(*) FROM enrollments WHERE status = 'completed'")
            .await,
        LEADS,
        "every lead finished the campaign"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM enrollments").await,
        LEADS,
        "one enrollment per lead"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM (SELECT enrollment_id, step, outcome FROM journey GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)"
        )
        .await,
        0,
        "no step ran twice for any lead"
    );
    for step in ["first", "second", "third", "done"] {
        assert_eq!(
            db.count(&format!(
                "SELECT COUNT(DISTINCT enrollment_id) FROM journey WHERE step = '{step}'"
            ))
            .await,
            LEADS,
            "every lead took step {step}"
        );
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM messages").await,
        3 * LEADS,
        "no message row twice"
    );

    // Every e-mail arrived; those on the wire at the kill may have arrived twice.
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for raw in sink.messages() {
        let id = raw
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("every e-mail has a Message-ID")
            .to_owned();
        *by_id.entry(id).or_default() += 1;
    }
    let twice = by_id.values().filter(|n| **n > 1).count();
    eprintln!(
        "crash test: killed with {at_kill} of {LEADS} leads at the second step and {sent_at_kill} e-mails delivered; \
         after the restart {} distinct e-mails arrived, {twice} of them twice (on the wire at the kill)",
        by_id.len()
    );
    assert_eq!(by_id.len(), expected, "no e-mail was lost");
    assert!(
        by_id.values().all(|n| *n <= 2) && twice <= 2 * POOL,
        "only e-mails on the wire at the kill go twice: {twice}"
    );
}

#[tokio::test]
async fn two_serve_processes_on_one_postgres_database_run_each_step_once() {
    let Some(store) = crate::support::store(crate::support::Backend::Postgres).await else {
        return;
    };
    let url = store.postgres_url().expect("a PostgreSQL store has a schema");
    const N: i64 = 3_000;
    let sink = SmtpSink::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    playbook(dir.path());
    let key = crate::cli::api_key(dir.path(), "admin", &url);
    let client = crate::support::http()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let one = start_on(dir.path(), &sink.url(), &url);
    let two = start_on(dir.path(), &sink.url(), &url);
    ready(&one.base).await;
    ready(&two.base).await;
    create_leads(&client, &one.base, &key, N, "two.example").await;

    // Both processes advance their clocks over both waits at once and share the due work.
    let (a, b) = tokio::join!(
        advance(&client, &one.base, &key, "2d"),
        advance(&client, &two.base, &key, "2d")
    );
    let moved = |answer: reqwest::Response| async move {
        assert_eq!(answer.status(), 200);
        answer.json::<serde_json::Value>().await.unwrap()["moved"]
            .as_i64()
            .unwrap()
    };
    let (a, b) = (moved(a.unwrap()).await, moved(b.unwrap()).await);
    eprintln!("two processes: one moved {a} enrollments, the other {b}");
    assert_eq!(a + b, 2 * N, "each enrollment moved once at the end of each wait");

    let db = Db::Postgres(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while db.count("SELECT COUNT(*) FROM messages WHERE status = 'sent'").await < 3 * N {
        assert!(Instant::now() < deadline, "not every message was sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((one, two));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM enrollments WHERE status = 'completed'")
            .await,
        N
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM (SELECT enrollment_id, step, outcome FROM journey GROUP BY 1, 2, 3 HAVING COUNT(*) > 1) d"
        )
        .await,
        0,
        "no step ran twice"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM messages").await, 3 * N);
    let mut ids: Vec<String> = sink
        .messages()
        .iter()
        .map(|raw| {
            raw.lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (ids.len(), total),
        ((3 * N) as usize, (3 * N) as usize),
        "every e-mail once: the two dispatchers never took the same message"
    );
}
