//! Reports add up: eight people go through the welcome series on the manual clock, their
//! e-mails sent over SMTP to a local server, and each does something known with them (opens
//! and clicks as a person and as a scanner, an unsubscribe, a soft bounce, a complaint, a
//! refusal by the relay, a time zone that moves the send to another day); every figure of the
//! campaign report, the message report and the CSV is checked exactly, on both backends.

use nurture_engine::access::Role;
use serde_json::{json, Value};

use crate::email::url;
use crate::support::TestApp;

both_backends!(crate::support::spawn_app_on;
    every_figure_of_a_campaign_report_adds_up,
    a_split_compares_its_arms_with_an_interval,
    time_spent_waiting_is_reported_per_wait_step,
    conversions_are_credited_to_the_last_step_and_every_campaign,
    flow_is_reported_per_version_in_the_window,
);

const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15";

/// Moves the manual clock as `clock/advance` does on a server with a mailer: what falls due is
/// sent at each stop, over SMTP to the test server's own SMTP server.
pub async fn advance(app: &TestApp, by: chrono::Duration) {
    let sender = nurture_engine::engine::Sender {
        mailer: nurture_engine::mail::mailer(Some(&app.mail.url()), std::path::Path::new("unused"), 2, None).unwrap(),
        from: "灵犀工业云 <news@lumen-cloud.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        concurrency: 2,
        wechat: None,
        limits: Default::default(),
    };
    app.engine.advance_clock(&app.clock, by, Some(&sender)).await.unwrap();
}

/// The first e-mail the server's SMTP server received for `to`, its quoted-printable decoded.
fn mail_to(app: &TestApp, to: &str) -> String {
    let raw = app
        .mail
        .messages()
        .into_iter()
        .find(|m| m.contains(&format!("To: {to}")))
        .unwrap_or_else(|| panic!("no e-mail to {to}"));
    crate::email::decoded(&raw)
}

/// The message id in an e-mail's `Message-ID: <mID.…>`.
fn message_id(mail: &str) -> i64 {
    let at = mail.find("Message-ID: <m").expect("a Message-ID") + "Message-ID: <m".len();
    mail[at..].split('.').next().unwrap().parse().unwrap()
}

/// The counters and rates of a figures object, as `name=value` in a fixed order.
fn figures(v: &Value) -> String {
    [
        "sent",
        "delivered",
        "failed",
        "skipped",
        "bounced_hard",
        "bounced_soft",
        "complained",
        "unsubscribed",
        "opened",
        "opens",
        "clicked",
        "clicks",
        "opens_automated",
        "clicks_automated",
        "open_rate",
        "click_rate",
        "click_to_open_rate",
        "bounce_rate",
        "unsubscribe_rate",
        "complaint_rate",
    ]
    .iter()
    .map(|k| format!("{k}={}", v[k]))
    .collect::<Vec<_>>()
    .join(" ")
}

async fn every_figure_of_a_campaign_report_adds_up(app: TestApp) {
    // Monday 2 November 2026, 09:00 UTC: 17:00 in Shanghai, the Rules' time zone, inside the
    // welcome series' send window. Eight people register.
    let mut leads = Vec::new();
    for (name, extra) in [
        ("a", json!({})),
        ("b", json!({})),
        ("c", json!({"attributes": {"language": "en"}})),
        ("d", json!({})),
        ("e", json!({})),
        ("f", json!({})),
        ("g", json!({})),
        // 01:00 in Los Angeles: the send waits for 09:00 there, 17:00 UTC, which is already
        // Tuesday in Shanghai.
        (
            "h",
            json!({"timezone": "America/Los_Angeles", "attributes": {"language": "en"}}),
        ),
    ] {
        let email = format!("{name}@acme.example");
        let mut body = json!({"email": email});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let id = app.lead(body).await;
        app.send_events(&id, &[("registered", json!({}))]).await;
        leads.push((email, id));
    }
    // The relay refuses g's address for good.
    app.mail.reject("g@acme.example");
    advance(&app, chrono::Duration::minutes(1)).await;
    assert_eq!(
        app.mail.messages().len(),
        6,
        "a to f; the relay refused g; h waits for its morning"
    );

    let mail = |n: usize| mail_to(&app, &leads[n].0);
    let client = crate::support::http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let answer = client.get(&url).header("user-agent", BROWSER).send().await.unwrap();
            assert!(
                answer.status().is_success() || answer.status().is_redirection(),
                "{url}"
            );
        }
    };
    // Machines first, right after delivery: a proxy fetches b's pixel, a scanner c's link.
    let head = client
        .head(url(&mail(1), &format!("{}/t/o/", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let head = client
        .head(url(&mail(2), &format!("{}/t/c/", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);

    // An hour on, people: a opens twice and clicks twice, b and c open once.
    advance(&app, chrono::Duration::hours(1)).await;
    let a = mail(0);
    for _ in 0..2 {
        get(url(&a, &format!("{}/t/o/", app.base))).await;
        get(url(&a, &format!("{}/t/c/", app.base))).await;
    }
    get(url(&mail(1), &format!("{}/t/o/", app.base))).await;
    get(url(&mail(2), &format!("{}/t/o/", app.base))).await;
    // d unsubscribes (twice: it counts once); e's mailbox is full; f marks it as spam.
    for _ in 0..2 {
        let unsubscribe = client
            .post(url(&mail(3), &format!("{}/u/", app.base)))
            .send()
            .await
            .unwrap();
        assert_eq!(unsubscribe.status(), 200);
    }
    app.send_events(
        &leads[4].1,
        &[(
            "email_bounced",
            json!({"kind": "soft", "message_id": message_id(&mail(4))}),
        )],
    )
    .await;
    app.send_events(
        &leads[5].1,
        &[("email_complained", json!({"message_id": message_id(&mail(5))}))],
    )
    .await;

    // Two days and a bit: h's welcome went at 17:00 UTC on Monday; the second e-mail goes to
    // a, b, c and e on Wednesday at 17:00 in Shanghai, and to h on Wednesday morning in Los
    // Angeles (Thursday in Shanghai); f and g are suppressed, d left the series.
    advance(&app, chrono::Duration::hours(57)).await;
    assert_eq!(app.mail.messages().len(), 6 + 1 + 5);

    let report = app
        .call(
            "GET",
            "/v1/reports/campaigns/welcome?from=2026-11-01&to=2026-11-05",
            Role::Marketer,
            None,
        )
        .await;
    assert_eq!(report.status, 200, "{:?}", report.body);
    let r = &report.body;
    assert_eq!(r["campaign"], "welcome");
    assert_eq!(r["tz"], "Asia/Shanghai");
    assert_eq!(r["by"], "day");
    let steps = r["steps"].as_array().unwrap();
    let names: Vec<(&str, &str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap(),
                s["template"].as_str().unwrap(),
                s["channel"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("welcome", "welcome", "email"),
            ("getting_started", "welcome-getting-started", "email")
        ]
    );
    // The welcome: 8 sent (g's refused by the relay: sent and hard-bounced), 6 delivered.
    assert_eq!(
        figures(&steps[0]),
        "sent=8 delivered=6 failed=0 skipped=0 bounced_hard=1 bounced_soft=1 complained=1 unsubscribed=1 \
         opened=3 opens=4 clicked=1 clicks=2 opens_automated=1 clicks_automated=1 \
         open_rate=0.5 click_rate=0.1667 click_to_open_rate=0.3333 bounce_rate=0.25 \
         unsubscribe_rate=0.1667 complaint_rate=0.1667"
    );
    assert_eq!(
        figures(&steps[1]),
        "sent=5 delivered=5 failed=0 skipped=2 bounced_hard=0 bounced_soft=0 complained=0 unsubscribed=0 \
         opened=0 opens=0 clicked=0 clicks=0 opens_automated=0 clicks_automated=0 \
         open_rate=0.0 click_rate=0.0 click_to_open_rate=null bounce_rate=0.0 \
         unsubscribe_rate=0.0 complaint_rate=0.0"
    );
    assert_eq!(
        figures(&r["totals"]),
        "sent=13 delivered=11 failed=0 skipped=2 bounced_hard=1 bounced_soft=1 complained=1 unsubscribed=1 \
         opened=3 opens=4 clicked=1 clicks=2 opens_automated=1 clicks_automated=1 \
         open_rate=0.2727 click_rate=0.0909 click_to_open_rate=0.3333 bounce_rate=0.1538 \
         unsubscribe_rate=0.0909 complaint_rate=0.0909"
    );
    // By day in Shanghai: h's e-mails fall a day after the others'.
    let days: Vec<(String, i64, i64, i64)> = r["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_owned(),
                p["sent"].as_i64().unwrap(),
                p["skipped"].as_i64().unwrap(),
                p["opened"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2026-11-01".into(), 0, 0, 0),
            ("2026-11-02".into(), 7, 0, 3),
            ("2026-11-03".into(), 1, 0, 0),
            ("2026-11-04".into(), 4, 2, 0),
            ("2026-11-05".into(), 1, 0, 0),
        ]
    );
    let parts = |key: &str| -> Vec<(String, i64, i64)> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["sent"].as_i64().unwrap(),
                    p["opened"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(parts("languages"), [("en".into(), 4, 1), ("zh".into(), 9, 2)]);
    assert_eq!(parts("channels"), [("email".into(), 13, 3)]);
    assert_eq!(parts("versions").len(), 1);
    assert_eq!(parts("versions")[0].1, 13);
    // The flow since the campaign was deployed.
    let flow = r["flow"].as_array().unwrap();
    let step = |id: &str| flow.iter().find(|s| s["step"] == id).unwrap().clone();
    assert_eq!(step("welcome")["entered"], 8);
    assert_eq!(step("getting_started")["entered"], 7);
    assert_eq!(step("getting_started")["outcomes"]["sent"], 5);
    assert_eq!(step("getting_started")["outcomes"]["skipped"], 2);
    assert_eq!(step("wait_3d")["waiting"], 7);

    // In UTC every e-mail of a send step falls on one day; by week, Monday first.
    let utc = app
        .call(
            "GET",
            "/v1/reports/campaigns/welcome?from=2026-11-01&to=2026-11-05&tz=UTC",
            Role::Marketer,
            None,
        )
        .await;
    let sent: Vec<i64> = utc.body["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sent"].as_i64().unwrap())
        .collect();
    assert_eq!(sent, [0, 8, 0, 5, 0]);
    let weekly = app
        .call(
            "GET",
            "/v1/reports/campaigns/welcome?from=2026-11-01&to=2026-11-05&by=week",
            Role::Crm,
            None,
        )
        .await;
    let weeks: Vec<(&str, i64)> = weekly.body["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["period"].as_str().unwrap(), p["sent"].as_i64().unwrap()))
        .collect();
    assert_eq!(weeks, [("2026-10-26", 0), ("2026-11-02", 13)]);
    // A window that starts after the welcome e-mails holds only the second ones.
    let later = app
        .call(
            "GET",
            "/v1/reports/campaigns/welcome?from=2026-11-04&to=2026-11-05",
            Role::Marketer,
            None,
        )
        .await;
    assert_eq!(later.body["totals"]["sent"], 5);
    assert_eq!(later.body["totals"]["skipped"], 2);

    // The template's report: the same welcome e-mails, from every campaign that sends them.
    let message = app
        .call(
            "GET",
            "/v1/reports/messages/welcome?from=2026-11-01&to=2026-11-05",
            Role::Marketer,
            None,
        )
        .await;
    assert_eq!(message.status, 200, "{:?}", message.body);
    assert_eq!(message.body["template"], "welcome");
    assert_eq!(figures(&message.body["totals"]), figures(&steps[0]));
    assert!(message.body.get("flow").is_none(), "{:?}", message.body);

    // As CSV: a line per day, step, version, template, channel and language.
    let csv = app
        .client
        .get(format!(
            "{}/v1/reports/campaigns/welcome?from=2026-11-01&to=2026-11-05",
            app.base
        ))
        .bearer_auth(&app.keys[&Role::Marketer])
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "period,campaign,step,version,template,channel,language,sent,failed,skipped,bounced_hard,\
         bounced_soft,complained,unsubscribed,opened,opens,clicked,clicks,opens_automated,\
         clicks_automated,delivered"
    );
    let version = r["versions"][0]["name"].as_str().unwrap();
    assert_eq!(
        lines[1..],
        [
            format!("2026-11-02,welcome,welcome,{version},welcome,email,en,1,0,0,0,0,0,0,1,1,0,0,0,1,1"),
            format!("2026-11-02,welcome,welcome,{version},welcome,email,zh,6,0,0,1,1,1,1,2,3,1,2,1,0,4"),
            format!("2026-11-03,welcome,welcome,{version},welcome,email,en,1,0,0,0,0,0,0,0,0,0,0,0,0,1"),
            format!(
                "2026-11-04,welcome,getting_started,{version},welcome-getting-started,email,en,1,0,0,0,0,0,0,0,0,0,0,0,0,1"
            ),
            format!(
                "2026-11-04,welcome,getting_started,{version},welcome-getting-started,email,zh,3,0,2,0,0,0,0,0,0,0,0,0,0,3"
            ),
            format!(
                "2026-11-05,welcome,getting_started,{version},welcome-getting-started,email,en,1,0,0,0,0,0,0,0,0,0,0,0,0,1"
            ),
        ]
    );

    // The command line reads the same counters: the same CSV, and tables for people.
    let report = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nurture"))
            .args([
                "report",
                "campaign",
                "welcome",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-05",
            ])
            .args(extra)
            .args(["--database-url", &app.database_url()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(report(&["--csv"]), text);
    let table = report(&[]);
    assert!(
        table.starts_with("欢迎系列 · Welcome series (welcome) · 2026-11-01 to 2026-11-05 (Asia/Shanghai), by day"),
        "{table}"
    );
    let total = table.lines().find(|l| l.trim_start().starts_with("total")).unwrap();
    let total: Vec<&str> = total.split_whitespace().collect();
    // sent, delivered, bounced, opened, open%, clicked, click%, unsubscribed, complaints.
    assert_eq!(
        total[1..],
        ["13", "11", "2", "3", "27.3%", "1", "9.1%", "1", "1"],
        "{table}"
    );

    // The process's own totals on /metrics: the same figures, as counters.
    let metrics = app.metrics().await;
    for (outcome, n) in [
        ("sent", 13),
        ("skipped", 2),
        ("bounced_hard", 1),
        ("bounced_soft", 1),
        ("complained", 1),
        ("unsubscribed", 1),
        ("opened", 3),
        ("opens", 4),
        ("clicked", 1),
        ("clicks", 2),
        ("opens_automated", 1),
        ("clicks_automated", 1),
    ] {
        let series = format!("nurture_messages_total{{campaign=\"welcome\",outcome=\"{outcome}\"}} {n}\n");
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }

    // What a report refuses, and why.
    for (query, says) in [
        ("?tz=Mars/Olympus", "tz \"Mars/Olympus\" is not an IANA time zone"),
        ("?by=month", "by \"month\" is neither day nor week"),
        ("?by=", "by \"\" is neither day nor week"),
        ("?tz=", "tz is empty"),
        (
            "?from=2026-11-05&to=2026-11-01",
            "from 2026-11-05 is after to 2026-11-01",
        ),
        ("?from=yesterday", "from \"yesterday\" is not a date (2026-11-01)"),
        ("?from=1969-12-31", "between 1970 and 9999"),
        ("?from=2025-01-01&to=2026-11-05", "more than 366 days"),
        ("?since=1h", "shorter than a day"),
        ("?since=99999999w", "more than 366 days"),
        ("?to=+262143-12-31", "is not a date (2026-11-01) between 1970 and 9999"),
    ] {
        let refused = app
            .call(
                "GET",
                &format!("/v1/reports/campaigns/welcome{query}"),
                Role::Marketer,
                None,
            )
            .await;
        assert_eq!(refused.status, 400, "{query}: {:?}", refused.body);
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
    let unknown = app
        .call("GET", "/v1/reports/campaigns/nope", Role::Marketer, None)
        .await;
    assert_eq!(unknown.status, 404);
    let sdr = app.call("GET", "/v1/reports/campaigns/welcome", Role::Sdr, None).await;
    assert_eq!(sdr.status, 403);
}

/// The counters' migration fills them from what an earlier release stored: messages with their
/// outcomes and first human opens and clicks, and the events that name them.
async fn the_counters_are_backfilled_from_messages_and_events(backend: crate::support::Backend) {
    use nurture_engine::report::{CountKey, MessageFigures};
    use nurture_engine::store::CountScope;
    let Some((t, db)) = crate::support::store_migrated_to(backend, 22, 21).await else {
        return;
    };
    // Hours 490000 and 490001 since the epoch; h0 + 600 s is in the first.
    let h0: i64 = 490_000 * 3_600_000_000;
    let h1 = h0 + 3_600_000_000;
    db.execute(
        "INSERT INTO leads (id, email, attributes, created_at, updated_at) VALUES \
         (1, 'a@x.example', '{}', 0, 0), (2, 'b@x.example', '{\"language\": \"en-GB\"}', 0, 0)",
    )
    .await;
    let m =
        |id: i64, lead: i64, step: &str, status: &str, created: i64, sent: Option<i64>, opened: bool, clicked: bool| {
            let or_null = |v: Option<i64>| v.map_or("NULL".to_owned(), |v| v.to_string());
            format!(
            "({id}, {id}, 1, {lead}, 'welcome', 'v1', '{step}', 'email', '{step}', '{status}', {created}, {}, {}, {})",
            or_null(sent),
            or_null(opened.then_some(h0 + 3_000_000_000)),
            or_null(clicked.then_some(h0 + 3_000_000_000)),
        )
        };
    db.execute(&format!(
        "INSERT INTO messages (id, enrollment_id, seq, lead_id, campaign_id, version, step, channel, template, status, \
         created_at, sent_at, opened_at, clicked_at) VALUES {}",
        [
            m(1, 1, "welcome", "sent", h0, Some(h0), true, true),
            m(2, 2, "welcome", "sent", h0, Some(h0 + 600_000_000), true, false),
            // Refused by the relay (its bounce event says so), skipped, pending, failed.
            m(3, 1, "guide", "failed", h1, None, false, false),
            m(4, 1, "guide", "skipped", h1, None, false, false),
            m(5, 2, "guide", "pending", h1, None, false, false),
            m(6, 1, "guide", "failed", h1, None, false, false),
        ]
        .join(", ")
    ))
    .await;
    let events = [
        (1, "email_opened", r#"{"message_id": 1}"#, None),
        (1, "email_opened", r#"{"message_id": 1, "automated": false}"#, None),
        (1, "email_opened", r#"{"message_id": 1, "automated": true}"#, None),
        (1, "email_clicked", r#"{"message_id": "1"}"#, None),
        (1, "email_complained", r#"{"message_id": 1}"#, None),
        (2, "email_opened", r#"{"message_id": 2}"#, None),
        (2, "email_bounced", r#"{"kind": "soft", "message_id": 2}"#, None),
        (
            1,
            "email_bounced",
            r#"{"kind": "hard", "message_id": 3}"#,
            Some("bounce:3"),
        ),
        (1, "email_opened", r#"{"message_id": 999}"#, None),
        (1, "email_opened", r#"{"message_id": "not a number"}"#, None),
        (1, "email_opened", r#"{}"#, None),
        // Another lead's message: not this lead's open.
        (2, "email_opened", r#"{"message_id": 1}"#, None),
    ];
    for (lead, kind, properties, key) in events {
        let key = key.map_or("NULL".to_owned(), |k| format!("'{k}'"));
        db.execute(&format!(
            "INSERT INTO events (lead_id, type, properties, occurred_at, received_at, idempotency_key) \
             VALUES ({lead}, '{kind}', '{properties}', {h1}, {h1}, {key})"
        ))
        .await;
    }
    t.store.migrate().await.unwrap();

    let mut rows = t
        .store
        .message_counts(CountScope::Campaign("welcome"), 0, i64::MAX)
        .await
        .unwrap();
    rows.sort_by(|a, b| (&a.key, a.hour).cmp(&(&b.key, b.hour)));
    let key = |step: &str, language: &str| CountKey {
        campaign: "welcome".into(),
        step: step.into(),
        version: "v1".into(),
        template: step.into(),
        channel: "email".into(),
        language: language.into(),
    };
    let got: Vec<(CountKey, i64, MessageFigures)> = rows.into_iter().map(|r| (r.key, r.hour, r.figures)).collect();
    assert_eq!(
        got,
        [
            (
                key("guide", "zh"),
                490_001,
                MessageFigures {
                    sent: 1,
                    bounced_hard: 1,
                    skipped: 1,
                    failed: 1,
                    ..Default::default()
                }
            ),
            (
                key("welcome", "en"),
                490_000,
                MessageFigures {
                    sent: 1,
                    bounced_soft: 1,
                    opened: 1,
                    opens: 1,
                    ..Default::default()
                }
            ),
            (
                key("welcome", "zh"),
                490_000,
                MessageFigures {
                    sent: 1,
                    complained: 1,
                    opened: 1,
                    opens: 2,
                    clicked: 1,
                    clicks: 1,
                    opens_automated: 1,
                    ..Default::default()
                }
            ),
        ]
    );
    assert_eq!(
        db.strings("SELECT COALESCE(language, '-') FROM messages ORDER BY id")
            .await,
        ["zh", "en", "zh", "zh", "-", "zh"],
        "a message's language is kept once it was decided"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_counters_are_backfilled_from_messages_and_events() {
    the_counters_are_backfilled_from_messages_and_events(crate::support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_counters_are_backfilled_from_messages_and_events() {
    the_counters_are_backfilled_from_messages_and_events(crate::support::Backend::Postgres).await;
}

const SUBJECT_TEST: &str = "kind: Campaign
id: subject-test
name: Subject test
type: custom
entry: { trigger: event, event: subject_test, reentry: never }
start: pick
steps:
  pick:
    split:
      - { weight: 50, next: plain }
      - { weight: 50, next: story }
  plain: { send: { channel: email, template: welcome }, next: plain_done }
  plain_done: { exit: done }
  story: { send: { channel: email, template: welcome-case-study }, next: call }
  call: { handoff: { queue: sdr, reason: Read the story } }
";

async fn a_split_compares_its_arms_with_an_interval(app: TestApp) {
    app.deploy_file("subject-test.yaml", SUBJECT_TEST).await;
    let events: Vec<Value> = (0..160)
        .map(|i| json!({"lead": {"email": format!("p{i}@acme.example")}, "type": "subject_test"}))
        .collect();
    let posted = app.call("POST", "/v1/events", Role::Crm, Some(json!(events))).await;
    assert_eq!(posted.body["accepted"], 160, "{:?}", posted.body);
    advance(&app, chrono::Duration::minutes(1)).await;

    // Each arm's messages, from the store: people open 60% of the plain ones and 25% of the
    // stories.
    let ids = |step: &str| {
        let store = &app.store;
        let sql = format!(
            "SELECT CAST(id AS TEXT) || ' ' || CAST(lead_id AS TEXT) FROM messages \
             WHERE campaign_id = 'subject-test' AND step = '{step}' ORDER BY id"
        );
        async move {
            crate::support::Db::connect(&store.postgres_url().unwrap_or_else(|| store.url.clone()))
                .await
                .strings(&sql)
                .await
        }
    };
    let (plain, story) = (ids("plain").await, ids("story").await);
    let (n1, n2) = (plain.len() as i64, story.len() as i64);
    assert_eq!(n1 + n2, 160);
    assert!(n1 >= 40 && n2 >= 40, "a 50/50 split of 160: {n1} and {n2}");
    let (o1, o2) = (n1 * 6 / 10, n2 / 4);
    let opens: Vec<Value> = plain[..o1 as usize]
        .iter()
        .chain(&story[..o2 as usize])
        .map(|row| {
            let (id, lead) = row.split_once(' ').unwrap();
            json!({"lead": {"id": lead}, "type": "email_opened", "properties": {"message_id": id.parse::<i64>().unwrap()}})
        })
        .collect();
    let posted = app.call("POST", "/v1/events", Role::Crm, Some(json!(opens))).await;
    assert_eq!(posted.body["accepted"], o1 + o2, "{:?}", posted.body);

    let answer = app
        .call(
            "GET",
            "/v1/reports/campaigns/subject-test?since=7d",
            Role::Marketer,
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let split = &answer.body["splits"][0];
    assert_eq!(split["step"], "pick");
    assert_eq!(split["rate"], "open");
    let arm = |i: usize, key: &str| split["arms"][i][key].clone();
    assert_eq!(
        (arm(0, "arm"), arm(0, "first_step"), arm(0, "weight"), arm(0, "entered")),
        (json!(1), json!("plain"), json!(50), json!(n1))
    );
    assert_eq!(
        (
            arm(1, "arm"),
            arm(1, "first_step"),
            arm(1, "entered"),
            arm(1, "handed_off")
        ),
        (json!(2), json!("story"), json!(n2), json!(n2))
    );
    assert_eq!(arm(0, "handed_off"), 0);
    assert_eq!(arm(0, "messages")["opened"], o1);
    assert_eq!(arm(1, "messages")["delivered"], n2);
    // The difference story − plain and its 95% Wald interval, worked out here from the counts.
    let (p1, p2) = (o1 as f64 / n1 as f64, o2 as f64 / n2 as f64);
    let se = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    let c = &split["comparisons"][0];
    assert_eq!(c["arm"], 2);
    assert_eq!(c["difference"].as_f64(), Some(round(p2 - p1)));
    assert_eq!(c["low"].as_f64(), Some(round(p2 - p1 - 1.96 * se)));
    assert_eq!(c["high"].as_f64(), Some(round(p2 - p1 + 1.96 * se)));
    assert_eq!(
        (c["significant"].clone(), c["too_small"].clone()),
        (json!(true), json!(false))
    );

    // On handoffs every story reader was handed off and no plain one: the difference is 1,
    // but no arm has ten leads each way, so it cannot be told.
    let answer = app
        .call(
            "GET",
            "/v1/reports/campaigns/subject-test?since=7d&rate=handoff",
            Role::Marketer,
            None,
        )
        .await;
    let c = &answer.body["splits"][0]["comparisons"][0];
    assert_eq!(c["difference"].as_f64(), Some(1.0));
    assert_eq!(
        (c["significant"].clone(), c["too_small"].clone()),
        (json!(false), json!(true))
    );
    let refused = app
        .call(
            "GET",
            "/v1/reports/campaigns/subject-test?rate=reply",
            Role::Marketer,
            None,
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rate \"reply\" is none of open, click, handoff"));
}

/// Folding finished hours' shards changes no figure, in hours or in days of any zone: it
/// leaves one row per key and hour and one per key and local day of the report zone, and the
/// hours not yet finished alone; a late addition to a folded hour counts before the next fold
/// and after it; a change of report zone builds the day rows again.
async fn folding_the_counters_keeps_every_figure(backend: crate::support::Backend) {
    use chrono_tz::Tz;
    use nurture_engine::report::queue::HandoffFact;
    use nurture_engine::report::{day_number, CountKey, MessageFigures, Span};
    use nurture_engine::store::{CountDelta, CountScope, HandoffCount};
    let Some(t) = crate::support::store(backend).await else {
        return;
    };
    let key = |step: &str| CountKey {
        campaign: "welcome".into(),
        step: step.into(),
        version: "v1".into(),
        template: step.into(),
        channel: "email".into(),
        language: "zh".into(),
    };
    let figures = |sent, opened| MessageFigures {
        sent,
        opened,
        ..Default::default()
    };
    let add = |deltas: Vec<CountDelta>, handoffs: Vec<HandoffCount>| {
        let store = t.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            tx.count_messages(&deltas).await.unwrap();
            tx.count_handoffs(&handoffs).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    // 15:00 and 16:00 UTC of day 20416 since the epoch: the same UTC day, two days in
    // Shanghai (23:00 and 00:00); `now` four days later, not finished.
    let (old_a, old_b, now) = (489_999, 490_000, 490_100);
    let mut deltas = Vec::new();
    let mut handoffs = Vec::new();
    for shard in 0..8 {
        for (step, hour, sent) in [("welcome", old_a, 1), ("guide", old_b, 2), ("later", now, 2)] {
            deltas.push(CountDelta {
                key: key(step),
                hour,
                shard,
                figures: figures(sent, if step == "welcome" { shard % 2 } else { 1 }),
            });
        }
        handoffs.push(HandoffCount {
            queue: "sdr".into(),
            hour: old_b,
            member: String::new(),
            fact: HandoffFact::Opened,
            detail: String::new(),
            shard,
            n: 1,
        });
    }
    add(deltas, handoffs).await;
    let hours = || async {
        let mut rows = t
            .store
            .message_counts(CountScope::Campaign("welcome"), 0, i64::MAX)
            .await
            .unwrap();
        rows.sort_by_key(|r| r.hour);
        rows.into_iter()
            .map(|r| (r.key.step, r.hour, r.figures.sent, r.figures.opened))
            .collect::<Vec<_>>()
    };
    fn span(tz: Tz) -> Span {
        Span {
            from: day_number(20_410),
            to: day_number(20_425),
            tz,
        }
    }
    // Per step: the day (since the epoch), sent and opened, in `tz` (read from the day rows
    // when they are kept in `zone`); and the queue's days.
    async fn days_as(t: &crate::support::TestStore, tz: Tz, zone: Tz) -> Vec<(String, i64, i64, i64)> {
        let mut rows: Vec<(String, i64, i64, i64)> = t
            .store
            .message_counts_by_day(CountScope::Campaign("welcome"), &span(tz), zone)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let day = (r.day - day_number(0)).num_days();
                (r.key.step, day, r.figures.sent, r.figures.opened)
            })
            .collect();
        rows.sort();
        rows
    }
    async fn days(t: &crate::support::TestStore, tz: Tz) -> Vec<(String, i64, i64, i64)> {
        days_as(t, tz, tz).await
    }
    async fn queue(t: &crate::support::TestStore, tz: Tz) -> Vec<(i64, i64)> {
        let rows = t.store.handoff_counts_by_day("sdr", &span(tz), tz).await.unwrap();
        rows.into_iter()
            .map(|r| ((r.day - day_number(0)).num_days(), r.n))
            .collect()
    }
    async fn same_everywhere(t: &crate::support::TestStore, welcome_opened: i64, moment: &str) {
        let steps = |guide, later, welcome| {
            vec![
                ("guide".to_owned(), guide, 16, 8),
                ("later".to_owned(), later, 16, 8),
                ("welcome".to_owned(), welcome, 8, welcome_opened),
            ]
        };
        assert_eq!(
            days(t, Tz::UTC).await,
            steps(20_416, 20_420, 20_416),
            "{moment}: UTC days"
        );
        let shanghai = steps(20_417, 20_421, 20_416);
        assert_eq!(days(t, Tz::Asia__Shanghai).await, shanghai, "{moment}: Shanghai days");
        // Another name for Shanghai's time: its own hours, or Shanghai's day rows.
        assert_eq!(days(t, Tz::Asia__Chongqing).await, shanghai, "{moment}: Chongqing");
        assert_eq!(
            days_as(t, Tz::Asia__Chongqing, Tz::Asia__Shanghai).await,
            shanghai,
            "{moment}: Chongqing as Shanghai"
        );
        assert_eq!(queue(t, Tz::UTC).await, [(20_416, 8)], "{moment}: UTC queue");
        assert_eq!(
            queue(t, Tz::Asia__Shanghai).await,
            [(20_417, 8)],
            "{moment}: Shanghai queue"
        );
    }
    let before = hours().await;
    assert_eq!(
        before,
        [
            ("welcome".into(), old_a, 8, 4),
            ("guide".into(), old_b, 16, 8),
            ("later".into(), now, 16, 8)
        ]
    );
    same_everywhere(&t, 4, "before a fold").await;

    let folded = t.store.fold_counters(now, Tz::Asia__Shanghai).await.unwrap();
    assert_eq!(folded, 3, "the two old hours' keys and the queue's hour folded");
    assert_eq!(hours().await, before, "no figure changes");
    same_everywhere(&t, 4, "after a fold").await;
    let rows = |sql: String| {
        let t = &t;
        async move { t.count(&sql).await }
    };
    let hour_rows = |hour: i64| rows(format!("SELECT COUNT(*) FROM message_counts WHERE hour = {hour}"));
    assert_eq!(hour_rows(old_a).await, 1, "one row for a finished hour");
    assert_eq!(
        rows(format!("SELECT COUNT(*) FROM handoff_counts WHERE hour = {old_b}")).await,
        1
    );
    let shards = match backend {
        crate::support::Backend::Postgres => 4,
        crate::support::Backend::Sqlite => 1,
    };
    assert_eq!(hour_rows(now).await, shards, "the hour not finished keeps its shards");
    assert_eq!(
        rows("SELECT COUNT(*) FROM message_days".into()).await,
        2,
        "a row per key and Shanghai day folded"
    );

    // A late open of an old message counts at once, and the same after the next fold.
    add(
        vec![CountDelta {
            key: key("welcome"),
            hour: old_a,
            shard: 3,
            figures: figures(0, 1),
        }],
        Vec::new(),
    )
    .await;
    assert_eq!(hours().await[0], ("welcome".into(), old_a, 8, 5));
    same_everywhere(&t, 5, "a late open").await;
    assert_eq!(t.store.fold_counters(now, Tz::Asia__Shanghai).await.unwrap(), 1);
    same_everywhere(&t, 5, "a late open folded").await;
    assert_eq!(hour_rows(old_a).await, 1);

    // The report zone changes: the day rows are built again in the new zone.
    assert_eq!(t.store.fold_counters(now, Tz::UTC).await.unwrap(), 0);
    assert_eq!(
        rows("SELECT COUNT(*) FROM counter_zone WHERE zone = 'UTC'".into()).await,
        1
    );
    assert_eq!(
        rows("SELECT COUNT(*) FROM message_days WHERE day = 20416".into()).await,
        2
    );
    same_everywhere(&t, 5, "days built again in UTC").await;
    assert_eq!(hours().await[0], ("welcome".into(), old_a, 8, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_folding_the_counters_keeps_every_figure() {
    folding_the_counters_keeps_every_figure(crate::support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_folding_the_counters_keeps_every_figure() {
    folding_the_counters_keeps_every_figure(crate::support::Backend::Postgres).await;
}

const WAIT_TEST: &str = "kind: Campaign
id: wait-test
name: Wait test
type: custom
entry: { trigger: event, event: wait_test, reentry: never }
start: pause
steps:
  pause: { wait: { for: 2d }, next: listen }
  listen: { wait: { until: { event: { type: signal } }, timeout: 5d }, next: done }
  done: { exit: done }
";

/// Ten leads wait two days at `pause`, then at `listen` until they signal (six, after an
/// hour and a half) or five days pass (four): the report's times, per step and version.
async fn time_spent_waiting_is_reported_per_wait_step(app: TestApp) {
    use nurture_engine::report::queue::{bucket_ceiling, wait_bucket};
    app.deploy_file("wait-test.yaml", WAIT_TEST).await;
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"lead": {"email": format!("w{i}@acme.example")}, "type": "wait_test"}))
        .collect();
    let posted = app.call("POST", "/v1/events", Role::Crm, Some(json!(events))).await;
    assert_eq!(posted.body["accepted"], 10, "{:?}", posted.body);
    advance(&app, chrono::Duration::minutes(1)).await;
    advance(&app, chrono::Duration::days(2)).await;
    advance(&app, chrono::Duration::minutes(90)).await;
    let signals: Vec<Value> = (0..6)
        .map(|i| json!({"lead": {"email": format!("w{i}@acme.example")}, "type": "signal"}))
        .collect();
    let posted = app.call("POST", "/v1/events", Role::Crm, Some(json!(signals))).await;
    assert_eq!(posted.body["accepted"], 6, "{:?}", posted.body);
    advance(&app, chrono::Duration::days(5)).await;

    let answer = app
        .call("GET", "/v1/reports/campaigns/wait-test?since=30d", Role::Marketer, None)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let flow_version = app
        .call("GET", "/v1/campaigns/wait-test", Role::Marketer, None)
        .await
        .body["version"]
        .clone();
    // Two days, an hour and a half, five days: each within its bucket, whatever minute the
    // runner took them on.
    let (two_days, ninety_minutes, five_days) = (
        bucket_ceiling(wait_bucket(2 * 86_400)),
        bucket_ceiling(wait_bucket(90 * 60)),
        bucket_ceiling(wait_bucket(5 * 86_400)),
    );
    assert_eq!((two_days, ninety_minutes, five_days), (180_223, 5_631, 458_751));
    let times = |p50: i64, p90: i64| json!({"went_on": 10, "p50_seconds": p50, "p90_seconds": p90});
    let mut expected = vec![
        json!({"step": "pause", "versions": [json!({"version": flow_version})]}),
        json!({"step": "listen", "versions": [json!({"version": flow_version})]}),
    ];
    for (part, (p50, p90)) in expected
        .iter_mut()
        .zip([(two_days, two_days), (ninety_minutes, five_days)])
    {
        let t = times(p50, p90);
        for (k, v) in t.as_object().unwrap() {
            part[k] = v.clone();
            part["versions"][0][k] = v.clone();
        }
    }
    assert_eq!(answer.body["waits"], json!(expected));
}

const FLOW_TEST: &str = "kind: Campaign
id: flow-test
name: Flow test
type: custom
entry: { trigger: event, event: flow_test, reentry: never }
start: pause
steps:
  pause: { wait: { for: 2d }, next: done }
  done: { exit: done }
";

/// Four leads enter version 1 (a two-day wait), three a minute later enter version 2 (one
/// day): the flow in a window counts each version's arrivals and moves in that window only,
/// and says the same once the days are rolled up.
async fn flow_is_reported_per_version_in_the_window(app: TestApp) {
    let enter = |from: usize, to: usize| {
        let app = &app;
        async move {
            let events: Vec<Value> = (from..to)
                .map(|i| json!({"lead": {"email": format!("f{i}@acme.example")}, "type": "flow_test"}))
                .collect();
            let posted = app.call("POST", "/v1/events", Role::Crm, Some(json!(events))).await;
            assert_eq!(posted.body["accepted"], to - from, "{:?}", posted.body);
        }
    };
    let version = || async {
        app.call("GET", "/v1/campaigns/flow-test", Role::Marketer, None)
            .await
            .body["version"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    app.deploy_file("flow-test.yaml", FLOW_TEST).await;
    let v1 = version().await;
    enter(0, 4).await;
    advance(&app, chrono::Duration::minutes(1)).await;
    app.deploy_file("flow-test.yaml", &FLOW_TEST.replace("for: 2d", "for: 1d"))
        .await;
    let v2 = version().await;
    assert_ne!(v1, v2);
    enter(4, 7).await;
    advance(&app, chrono::Duration::minutes(1)).await;
    advance(&app, chrono::Duration::days(1)).await;
    advance(&app, chrono::Duration::days(1)).await;
    let last_day = nurture_engine::clock::Clock::now(&app.clock).date_naive();

    let report = |query: String| {
        let app = &app;
        async move {
            let answer = app
                .call(
                    "GET",
                    &format!("/v1/reports/campaigns/flow-test?{query}"),
                    Role::Marketer,
                    None,
                )
                .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            answer.body
        }
    };
    let outcomes = |pairs: &[(&str, i64)]| -> Value { pairs.iter().map(|(o, n)| (o.to_string(), json!(n))).collect() };
    let part = |version: &str, entered: i64, pairs: &[(&str, i64)]| json!({"version": version, "entered": entered, "waiting": 0, "outcomes": outcomes(pairs)});
    let step = |name: &str, entered: i64, pairs: &[(&str, i64)], versions: Vec<Value>| json!({"step": name, "entered": entered, "waiting": 0, "outcomes": outcomes(pairs), "versions": versions});
    let all = report("since=30d&tz=UTC".into()).await;
    assert_eq!(
        all["flow_in_window"],
        json!([
            step(
                "pause",
                7,
                &[("waited", 7), ("waiting", 7)],
                vec![
                    part(&v1, 4, &[("waited", 4), ("waiting", 4)]),
                    part(&v2, 3, &[("waited", 3), ("waiting", 3)])
                ]
            ),
            step(
                "done",
                7,
                &[("completed", 7)],
                vec![part(&v1, 4, &[("completed", 4)]), part(&v2, 3, &[("completed", 3)])]
            ),
        ]),
        "{:#}",
        all["flow_in_window"]
    );
    // The last day: only version 1's leads went on, a day after version 2's.
    let last = report(format!("from={last_day}&to={last_day}&tz=UTC")).await;
    assert_eq!(
        last["flow_in_window"],
        json!([
            step("pause", 0, &[("waited", 4)], vec![part(&v1, 0, &[("waited", 4)])]),
            step("done", 4, &[("completed", 4)], vec![part(&v1, 4, &[("completed", 4)])]),
        ]),
        "{:#}",
        last["flow_in_window"]
    );
    // Rolled up once the days are over, every report says the same: whole UTC days, and
    // days of another zone that cut UTC days in two.
    let queries = [
        "since=30d&tz=UTC".to_owned(),
        format!("from={last_day}&to={last_day}&tz=UTC"),
        "since=30d&tz=Asia/Shanghai".to_owned(),
        format!("from={last_day}&to={last_day}&tz=Asia/Kolkata"),
    ];
    let mut before = Vec::new();
    for q in &queries {
        before.push(report(q.clone()).await);
    }
    advance(&app, chrono::Duration::days(2)).await;
    assert!(app.engine.fold_counters().await.unwrap() > 0, "days rolled up");
    for (q, was) in queries.iter().zip(before) {
        let now = report(q.clone()).await;
        for part in ["flow_in_window", "waits", "conversions"] {
            assert_eq!(now[part], was[part], "{q}: {part}");
        }
    }
    assert_eq!(app.engine.fold_counters().await.unwrap(), 0, "nothing more to roll up");
}

/// The migration fills the wait counters from the journey: a `waited` line right after a
/// `waiting` line at the same step.
async fn the_wait_counters_are_backfilled_from_the_journey(backend: crate::support::Backend) {
    use nurture_engine::report::queue::wait_bucket;
    use nurture_engine::report::HOUR_MICROS;
    use nurture_engine::store::WaitRow;
    let Some((t, db)) = crate::support::store_migrated_to(backend, 24, 24).await else {
        return;
    };
    let h0: i64 = 490_000 * HOUR_MICROS;
    let at = |seconds: i64| h0 + seconds * 1_000_000;
    db.execute(&format!(
        "INSERT INTO enrollments (id, campaign_id, version, lead_id, step, status, transitions, entered_at, updated_at) \
         VALUES (1, 'drip', 'v2', 1, 'done', 'completed', 4, {h0}, {h0}), \
                (2, 'drip', 'v1', 2, 'pause', 'waiting', 1, {h0}, {h0})",
    ))
    .await;
    let moves = [
        (1, 1, at(0), r#"[["start","sent",""],["pause","waiting","until …"]]"#),
        // Two hours later it goes on, and waits again at the next step.
        (
            2,
            1,
            at(7_200),
            r#"[["pause","waited","wait 2h passed"],["listen","waiting","until …"]]"#,
        ),
        (
            3,
            1,
            at(7_500),
            r#"[["listen","waited","until held"],["done","completed",""]]"#,
        ),
        // Still waiting: nothing counted; an `until` that held on arrival: no wait.
        (4, 2, at(0), r#"[["pause","waiting","until …"]]"#),
        (5, 2, at(10), r#"[["other","waited","until held on arrival"]]"#),
    ];
    for (id, enrollment, at, steps) in moves {
        db.execute(&format!(
            "INSERT INTO journey_moves (id, enrollment_id, lead_id, campaign_id, at, steps) \
             VALUES ({id}, {enrollment}, {enrollment}, 'drip', {at}, '{steps}')"
        ))
        .await;
    }
    t.store.migrate().await.unwrap();
    let mut rows = t.store.wait_counts("drip", 0, i64::MAX).await.unwrap();
    rows.sort_by(|a, b| a.step.cmp(&b.step));
    let row = |step: &str, seconds: i64| WaitRow {
        step: step.into(),
        version: "v2".into(),
        bucket: wait_bucket(seconds),
        n: 1,
    };
    assert_eq!(rows, vec![row("listen", 300), row("pause", 7_200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_wait_counters_are_backfilled_from_the_journey() {
    the_wait_counters_are_backfilled_from_the_journey(crate::support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_wait_counters_are_backfilled_from_the_journey() {
    the_wait_counters_are_backfilled_from_the_journey(crate::support::Backend::Postgres).await;
}

const CONVERSION_TEST: &str = "kind: Campaign
id: conv-a
name: Conversion A
type: custom
entry: { trigger: event, event: conv_a, reentry: never }
exit_when: { event: { type: bought } }
start: mail
steps:
  mail: { send: { channel: email, template: welcome }, next: rest }
  rest: { wait: { for: 60d }, next: done }
  done: { exit: done }
---
kind: Campaign
id: conv-b
name: Conversion B
type: custom
entry: { trigger: event, event: conv_b, reentry: never }
start: mail
steps:
  mail: { send: { channel: email, template: welcome-case-study }, next: rest }
  rest: { wait: { for: 60d }, next: done }
  done: { exit: done }
";

/// Three leads: all reached by campaign A, two of them five days later by B. Ten days in,
/// one of those two is handed off, accepted and converted (credited to B's step as the last,
/// to A and B as campaigns), the other reaches A's goal (A's alone), and the third, reached
/// by A only, is handed off. Within 30 days everything counts; within 7, only B's.
async fn conversions_are_credited_to_the_last_step_and_every_campaign(app: TestApp) {
    for (file, text) in CONVERSION_TEST.split("---\n").enumerate() {
        app.deploy_file(&format!("conv-{file}.yaml"), text).await;
    }
    let post = |events: Vec<Value>| {
        let app = &app;
        async move {
            let n = events.len();
            let posted = app.call("POST", "/v1/events", Role::Crm, Some(json!(events))).await;
            assert_eq!(posted.body["accepted"], n, "{:?}", posted.body);
        }
    };
    let event = |who: &str, kind: &str| json!({"lead": {"email": format!("{who}@acme.example")}, "type": kind});
    let people: Vec<Value> = ["l1", "l2", "l3"]
        .iter()
        .map(|who| json!({"email": format!("{who}@acme.example"), "company": "Acme"}))
        .collect();
    let created = app.call("POST", "/v1/leads/bulk", Role::Crm, Some(json!(people))).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let ids: Vec<String> = created.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    post(vec![
        event("l1", "conv_a"),
        event("l2", "conv_a"),
        event("l3", "conv_a"),
    ])
    .await;
    advance(&app, chrono::Duration::minutes(1)).await;
    advance(&app, chrono::Duration::days(5)).await;
    post(vec![event("l1", "conv_b"), event("l2", "conv_b")]).await;
    advance(&app, chrono::Duration::minutes(1)).await;
    advance(&app, chrono::Duration::days(5)).await;

    let hand_off = |id: String| {
        let app = &app;
        async move {
            let answer = app
                .call(
                    "POST",
                    "/v1/handoffs",
                    Role::Marketer,
                    Some(json!({"lead": {"id": id}, "queue": "sales", "reason": "Asked for a quote"})),
                )
                .await;
            assert_eq!(answer.status, 201, "{:?}", answer.body);
            answer.body["id"].as_str().unwrap().to_owned()
        }
    };
    let h1 = hand_off(ids[0].clone()).await;
    hand_off(ids[2].clone()).await;
    let accepted = app
        .call("POST", &format!("/v1/handoffs/{h1}/accept"), Role::Marketer, None)
        .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
    let converted = app
        .call(
            "POST",
            &format!("/v1/handoffs/{h1}/convert"),
            Role::Crm,
            Some(json!({})),
        )
        .await;
    assert_eq!(converted.status, 200, "{:?}", converted.body);
    post(vec![event("l2", "bought")]).await;

    let report = |campaign: &str, window: &str| {
        let app = &app;
        let path = format!("/v1/reports/campaigns/{campaign}?since=30d{window}");
        async move {
            let answer = app.call("GET", &path, Role::Marketer, None).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            answer.body["conversions"].clone()
        }
    };
    let figures = |goal: i64, handoff: i64, accepted: i64, converted: i64| json!({"goal": goal, "handoff": handoff, "accepted": accepted, "converted": converted});
    let step = |goal, handoff, accepted, converted| {
        let mut f = figures(goal, handoff, accepted, converted);
        f["step"] = json!("mail");
        f
    };
    // Campaign A: l1 and l3 handed off, l1 accepted and converted, l2's goal; as the last step
    // only l3's handoff (B reached l1 later) and l2's goal (a goal is A's alone).
    assert_eq!(
        report("conv-a", "").await,
        json!({"window_days": 30, "campaign": figures(1, 2, 1, 1), "last_step": [step(1, 1, 0, 0)]})
    );
    assert_eq!(
        report("conv-b", "").await,
        json!({"window_days": 30, "campaign": figures(0, 1, 1, 1), "last_step": [step(0, 1, 1, 1)]})
    );
    // A reached them ten days (and a few minutes) before: eleven days, rounded up, so within
    // the 14-day window and not the 7-day one.
    assert_eq!(
        report("conv-a", "&window=7d").await,
        json!({"window_days": 7, "campaign": figures(0, 0, 0, 0), "last_step": []})
    );
    assert_eq!(
        report("conv-a", "&window=2w").await,
        json!({"window_days": 14, "campaign": figures(1, 2, 1, 1), "last_step": [step(1, 1, 0, 0)]})
    );
    assert_eq!(
        report("conv-b", "&window=1w").await,
        json!({"window_days": 7, "campaign": figures(0, 1, 1, 1), "last_step": [step(0, 1, 1, 1)]})
    );
    // Windows are the few the counters keep.
    for bad in ["0d", "10d", "11d", "91d", "12h", "soon"] {
        let answer = app
            .call(
                "GET",
                &format!("/v1/reports/campaigns/conv-a?window={bad}"),
                Role::Marketer,
                None,
            )
            .await;
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
        assert!(
            answer.body["error"]["message"].as_str().unwrap().contains("window"),
            "{:?}",
            answer.body
        );
    }
    // Rolled up once the days are over, the credits are the same.
    let mut before = Vec::new();
    for (campaign, window) in [("conv-a", ""), ("conv-a", "&window=7d"), ("conv-b", "&window=1w")] {
        before.push(report(campaign, window).await);
    }
    advance(&app, chrono::Duration::days(2)).await;
    assert!(app.engine.fold_counters().await.unwrap() > 0, "days rolled up");
    for ((campaign, window), was) in [("conv-a", ""), ("conv-a", "&window=7d"), ("conv-b", "&window=1w")]
        .into_iter()
        .zip(before)
    {
        assert_eq!(report(campaign, window).await, was, "{campaign}{window}");
    }
}

/// The migration credits the outcomes already recorded (handoffs opened, accepted and
/// converted in the handoff log, goals in the journey) as the engine would have.
async fn the_conversion_counters_are_backfilled(backend: crate::support::Backend) {
    use nurture_engine::report::attribution::{Conversion, Credit};
    use nurture_engine::store::ConversionRow;
    let Some((t, db)) = crate::support::store_migrated_to(backend, 25, 25).await else {
        return;
    };
    const DAY: i64 = 86_400_000_000;
    let t0: i64 = 20_000 * DAY;
    // Lead 1: A's mail on day 0, B's on day 5; handed off on day 10, accepted, converted on
    // day 12. Lead 2: A's mail on day 0, A's goal on day 3. An A mail 100 days before: too old.
    let m = |id: i64, lead: i64, campaign: &str, sent: i64| {
        format!("({id}, {id}, 1, {lead}, '{campaign}', 'v1', 'mail', 'email', 'welcome', 'sent', {sent}, {sent})")
    };
    db.execute(&format!(
        "INSERT INTO messages (id, enrollment_id, seq, lead_id, campaign_id, version, step, channel, template, \
         status, created_at, sent_at) VALUES {}",
        [
            m(1, 1, "conv-a", t0),
            m(2, 1, "conv-b", t0 + 5 * DAY),
            m(3, 2, "conv-a", t0),
            m(4, 2, "conv-old", t0 - 100 * DAY),
        ]
        .join(", ")
    ))
    .await;
    db.execute(&format!(
        "INSERT INTO handoffs (id, lead_id, queue, reason, origin, status, created_at) \
         VALUES (1, 1, 'sales', 'r', 'api', 'converted', {})",
        t0 + 10 * DAY
    ))
    .await;
    for (action, at) in [
        ("opened", t0 + 10 * DAY),
        ("accepted", t0 + 10 * DAY),
        ("converted", t0 + 12 * DAY),
    ] {
        db.execute(&format!(
            "INSERT INTO handoff_log (handoff_id, action, actor, at, queue) VALUES (1, '{action}', 'x', {at}, 'sales')"
        ))
        .await;
    }
    db.execute(&format!(
        "INSERT INTO journey_moves (id, enrollment_id, lead_id, campaign_id, at, steps) \
         VALUES (1, 3, 2, 'conv-a', {}, '[[\"rest\",\"goal\",\"exit_when held\"]]')",
        t0 + 3 * DAY
    ))
    .await;
    t.store.migrate().await.unwrap();

    let read = |campaign: &'static str, window: i64| {
        let store = t.store.clone();
        async move {
            let mut rows = store.conversion_counts(campaign, 0, i64::MAX, window).await.unwrap();
            rows.sort_by_key(|r| (r.credit, r.outcome));
            rows
        }
    };
    let row = |credit, outcome, step: &str| ConversionRow {
        step: step.into(),
        credit,
        outcome,
        n: 1,
    };
    assert_eq!(
        read("conv-a", 90).await,
        vec![
            row(Credit::LastStep, Conversion::Goal, "mail"),
            row(Credit::Campaign, Conversion::Goal, ""),
            row(Credit::Campaign, Conversion::Handoff, ""),
            row(Credit::Campaign, Conversion::Accepted, ""),
            row(Credit::Campaign, Conversion::Converted, ""),
        ]
    );
    // A reached lead 1 ten and twelve days before; the goal came three days after.
    assert_eq!(
        read("conv-a", 7).await,
        vec![
            row(Credit::LastStep, Conversion::Goal, "mail"),
            row(Credit::Campaign, Conversion::Goal, ""),
        ]
    );
    assert_eq!(
        read("conv-b", 90).await,
        vec![
            row(Credit::LastStep, Conversion::Handoff, "mail"),
            row(Credit::LastStep, Conversion::Accepted, "mail"),
            row(Credit::LastStep, Conversion::Converted, "mail"),
            row(Credit::Campaign, Conversion::Handoff, ""),
            row(Credit::Campaign, Conversion::Accepted, ""),
            row(Credit::Campaign, Conversion::Converted, ""),
        ]
    );
    assert!(
        read("conv-old", 90).await.is_empty(),
        "a touch 100 days before gets nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_conversion_counters_are_backfilled() {
    the_conversion_counters_are_backfilled(crate::support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_conversion_counters_are_backfilled() {
    the_conversion_counters_are_backfilled(crate::support::Backend::Postgres).await;
}
