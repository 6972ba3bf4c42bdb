//! `nurture serve --clock manual` as a demo or a test drives it: `clock/advance` answers once
//! the e-mails that fell due in its span have reached the SMTP server, each recorded as sent
//! at the time its step ran; and a restart resumes the clock where it stood, never at the
//! wall clock behind it. On SQLite and on PostgreSQL, through the real binary.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::cli::ready;
use crate::crash::start_on as start;
use crate::smtp::SmtpSink;
use crate::support::{call_ok as call, Backend, Db};

pub(crate) const CAMPAIGN: &str = r#"
kind: Campaign
id: clock-drip
name: Clock drip
type: drip
entry: { trigger: segment, when: { field: { name: email, exists: true } } }
start: hello
steps:
  hello:
    send: { channel: email, template: note }
    next: three_days
  three_days:
    wait: { for: 3d }
    next: again
  again:
    send: { channel: email, template: note }
    next: done
  done:
    exit: completed
"#;

async fn clock_now(base: &str, key: &str) -> DateTime<Utc> {
    call(base, key, "GET", "/v1/admin/clock", None).await["now"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn manual_clock_sends_at_step_time_and_resumes_after_restart(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // A PostgreSQL schema of its own (dropped with `_store`), or an SQLite file in `dir`.
    let (_store, url, db) = match backend {
        Backend::Postgres => {
            let Some(store) = crate::support::store(backend).await else {
                return;
            };
            let url = store.postgres_url().expect("a PostgreSQL store has a schema");
            let db = Db::connect(&url).await;
            (Some(store), url, db)
        }
        Backend::Sqlite => {
            let url = format!("sqlite://{}", dir.path().join("clock.db").display());
            let db = Db::Sqlite(sqlx::SqlitePool::connect_lazy(&format!("{url}?mode=ro")).unwrap());
            (None, url, db)
        }
    };
    crate::crash::playbook_with(dir.path(), CAMPAIGN);
    let key = crate::cli::api_key(dir.path(), "admin", &url);
    let sink = SmtpSink::start(0).await;
    let server = start(dir.path(), &sink.url(), &url);
    ready(&server.base).await;

    let t0 = clock_now(&server.base, &key).await;
    call(
        &server.base,
        &key,
        "PUT",
        "/v1/leads",
        Some(json!({"email": "mei@clock.example", "first_name": "Mei"})),
    )
    .await;
    let advanced = call(
        &server.base,
        &key,
        "POST",
        "/v1/admin/clock/advance",
        Some(json!({"by": "4d"})),
    )
    .await;
    assert_eq!(
        advanced["now"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap(),
        t0 + Duration::days(4)
    );
    // No waiting: both e-mails are at the SMTP server when the advance answers.
    assert_eq!(sink.count(), 2, "the advance answered before its e-mails were sent");
    let sent = db
        .strings("SELECT CAST(sent_at AS TEXT) FROM messages WHERE status = 'sent' ORDER BY seq")
        .await;
    let sent: Vec<DateTime<Utc>> = sent
        .iter()
        .map(|us| DateTime::from_timestamp_micros(us.parse().unwrap()).unwrap())
        .collect();
    assert_eq!(
        sent,
        [t0, t0 + Duration::days(3)],
        "each e-mail is recorded at the time its step ran, not when the advance ended"
    );

    // A restart resumes at the manual clock's time, days ahead of the wall clock.
    drop(server);
    let server = start(dir.path(), &sink.url(), &url);
    ready(&server.base).await;
    assert_eq!(clock_now(&server.base, &key).await, t0 + Duration::days(4));
    call(
        &server.base,
        &key,
        "POST",
        "/v1/admin/clock/advance",
        Some(json!({"by": "1h"})),
    )
    .await;
    drop(server);
    let server = start(dir.path(), &sink.url(), &url);
    ready(&server.base).await;
    assert_eq!(
        clock_now(&server.base, &key).await,
        t0 + Duration::days(4) + Duration::hours(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_manual_clock_sends_at_step_time_and_resumes_after_restart() {
    manual_clock_sends_at_step_time_and_resumes_after_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_manual_clock_sends_at_step_time_and_resumes_after_restart() {
    manual_clock_sends_at_step_time_and_resumes_after_restart(Backend::Postgres).await;
}
