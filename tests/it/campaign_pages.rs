//! The console's campaign pages: the list's live figures (human opens and clicks among them),
//! a campaign's graph whose steps are links to the leads at them, its steps and versions,
//! pause and resume, and enrolling a segment once its dry run has been read.

use std::sync::Arc;

use nurture_engine::access::Role;
use nurture_engine::engine::Sender;
use nurture_engine::mail::SmtpMailer;
use nurture_engine::tracking::Token;
use serde_json::{json, Value};

use crate::console::{csrf_of, get, person, post, signed_in};
use crate::smtp::SmtpSink;
use crate::support::TestApp;

const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
const GMAIL_PROXY: &str = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";

async fn advance(app: &TestApp, by: &str) {
    let answer = app
        .call("POST", "/v1/admin/clock/advance", Role::Admin, Some(json!({"by": by})))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

/// The cells of each body row of the table `css` selects: (row header, cells).
fn rows(html: &str, css: &str) -> Vec<(String, Vec<String>)> {
    let doc = scraper::Html::parse_document(html);
    let rows = scraper::Selector::parse(&format!("{css} tbody tr")).unwrap();
    let head = scraper::Selector::parse("th").unwrap();
    let cell = scraper::Selector::parse("td").unwrap();
    let said = |e: scraper::ElementRef<'_>| {
        e.text()
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    doc.select(&rows)
        .map(|r| {
            (
                r.select(&head).next().map(said).unwrap_or_default(),
                r.select(&cell).map(said).collect(),
            )
        })
        .collect()
}

/// The welcome series' figures on the campaign list: running, waiting, sent, opened, clicked,
/// handed off, left early (the first number of each cell).
fn listed(html: &str, campaign: &str) -> Vec<i64> {
    let (_, cells) = rows(html, "table.figures")
        .into_iter()
        .find(|(head, _)| head.contains(campaign))
        .unwrap_or_else(|| panic!("{campaign} is not listed: {html}"));
    cells[2..]
        .iter()
        .map(|c| c.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// A marketer reads a campaign's figures, follows its graph to the leads at a step, pauses and
/// resumes it, and enrolls a segment after its dry run; an SDR may not.
async fn a_marketer_runs_a_campaign_from_the_console(app: TestApp) {
    person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    person(&app, "alice@corp.example", Role::Sdr, "correct horse battery").await;
    // Three people register: the welcome series e-mails each, over real SMTP.
    let mut leads = Vec::new();
    for email in ["li@acme.example", "mei@acme.example", "tom@acme.example"] {
        leads.push(app.register(email).await);
    }
    advance(&app, "1m").await;
    let sink = SmtpSink::start(0).await;
    let sender = Sender {
        mailer: Arc::new(SmtpMailer::from_url(&sink.url(), 2).unwrap()),
        from: "Lumen <news@lumen-cloud.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        concurrency: 2,
        wechat: None,
        limits: Default::default(),
    };
    app.engine.dispatch(&sender, 100).await.unwrap();
    let mut messages = Vec::new();
    for lead in &leads {
        let sent = app.timeline(lead, "message").await;
        let welcome = sent.iter().find(|m| m["step"] == "welcome").unwrap();
        assert_eq!(welcome["status"], "sent", "{sent:?}");
        messages.push(welcome["message"].as_i64().unwrap());
    }
    // An hour later li opens hers twice and clicks in it; Gmail's proxy fetches mei's.
    advance(&app, "1h").await;
    let pixel = |message: i64| format!("{}/t/o/{}", app.base, app.key.sign(&Token::Open { message }));
    for (message, agent) in [
        (messages[0], BROWSER),
        (messages[0], BROWSER),
        (messages[1], GMAIL_PROXY),
    ] {
        let fetched = app
            .client
            .get(pixel(message))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(fetched.status(), 200);
    }
    let click = Token::Click {
        message: messages[0],
        url: "https://lumen-cloud.example/start".into(),
        link: "start".into(),
    };
    let no_redirects = crate::support::http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let clicked = no_redirects
        .get(format!("{}/t/c/{}", app.base, app.key.sign(&click)))
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), 302);

    // A CRM reports tom's open twice in one batch (its id once as text): one open more. An
    // open it flags as a machine's is not counted.
    let tom = &leads[2];
    let batch = json!([
        {"lead": {"id": tom}, "type": "email_opened", "properties": {"message_id": messages[2]}},
        {"lead": {"id": tom}, "type": "email_opened", "properties": {"message_id": messages[2].to_string()}},
        {"lead": {"id": tom}, "type": "email_clicked", "properties": {"message_id": messages[2], "automated": true}},
    ]);
    let posted = app.call("POST", "/v1/events", Role::Crm, Some(batch)).await;
    assert_eq!(posted.body["accepted"], 3, "{:?}", posted.body);

    let base = &app.base;
    let (sdr, _) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    for page in ["/campaigns", "/campaigns/welcome", "/campaigns/welcome/steps/wait_2d"] {
        let (status, body, _) = get(&sdr, &format!("{base}{page}")).await;
        assert_eq!(status, 403, "{page}: {body}");
    }

    // The list: 3 running, all waiting; 3 sent, 2 opened by a person, 1 clicked.
    let (marketer, csrf) = signed_in(&app, "mia@corp.example", "a long enough password").await;
    let (status, list, _) = get(&marketer, &format!("{base}/campaigns")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(listed(&list, "welcome"), [3, 3, 3, 2, 1, 0, 0], "{list}");
    assert!(
        list.contains("66.7%") && list.contains("33.3%"),
        "the open and click rates: {list}"
    );
    let api = app.call("GET", "/v1/campaigns", Role::Marketer, None).await;
    let welcome = api.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "welcome")
        .unwrap()
        .clone();
    assert_eq!(
        welcome["counts"],
        json!({"running": 3, "waiting": 3, "sent": 3, "opened": 2, "clicked": 1, "handed_off": 0, "exited": 0})
    );

    // The campaign: each step of the graph links to the leads at it; the steps' figures.
    let (status, page, _) = get(&marketer, &format!("{base}/campaigns/welcome")).await;
    assert_eq!(status, 200, "{page}");
    let detail = app.call("GET", "/v1/campaigns/welcome", Role::Marketer, None).await;
    let steps: Vec<String> = detail.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(steps.len() > 3, "{:?}", detail.body);
    for step in &steps {
        assert!(
            page.contains(&format!("<a class=\"step\" href=\"/campaigns/welcome/steps/{step}\"")),
            "{step} is not a link in the graph: {page}"
        );
    }
    assert!(
        page.contains("<title>wait_2d: Entered 3, There now 3</title>"),
        "{page}"
    );
    let step_rows = rows(&page, "section[aria-labelledby=steps] table");
    let (_, welcome_step) = step_rows.iter().find(|(h, _)| h.starts_with("welcome ")).unwrap();
    // Does, entered, there now, sent, opened, clicked.
    assert_eq!(welcome_step[1..], ["3", "0", "3", "2", "1"], "{step_rows:?}");
    let (_, waiting) = step_rows.iter().find(|(h, _)| h.starts_with("wait_2d ")).unwrap();
    assert_eq!(waiting[1..3], ["3", "3"], "{step_rows:?}");
    assert!(page.contains("v1 · "), "its version: {page}");

    // The step's leads, each a link to its card.
    let (status, at, _) = get(&marketer, &format!("{base}/campaigns/welcome/steps/wait_2d")).await;
    assert_eq!(status, 200, "{at}");
    for (lead, email) in leads
        .iter()
        .zip(["li@acme.example", "mei@acme.example", "tom@acme.example"])
    {
        assert!(at.contains(&format!("<a href=\"/leads/{lead}\">{email}</a>")), "{at}");
    }
    let (_, at, _) = get(&marketer, &format!("{base}/campaigns/welcome/steps/welcome")).await;
    assert!(at.contains("No lead is at this step now."), "{at}");
    for missing in [
        "/campaigns/nope",
        "/campaigns/welcome/steps/nope",
        "/campaigns/nope/steps/wait_2d",
    ] {
        let (status, body, _) = get(&marketer, &format!("{base}{missing}")).await;
        assert_eq!(status, 404, "{missing}: {body}");
        assert!(body.contains("No such campaign."), "{body}");
    }

    // Pause, as the API would (recorded as mia's), then resume.
    let status_url = format!("{base}/campaigns/welcome/status");
    let (status, _, location, _) = post(&marketer, &status_url, &[("csrf", &csrf), ("to", "pause")]).await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/campaigns/welcome?notice=paused"))
    );
    let state = |app: &TestApp| {
        let engine = app.engine.clone();
        async move {
            let all = engine.campaigns().await.unwrap();
            all.into_iter()
                .find(|c| c.id == "welcome")
                .unwrap()
                .status
                .as_str()
                .to_owned()
        }
    };
    assert_eq!(state(&app).await, "paused");
    let (_, page, _) = get(&marketer, &format!("{base}/campaigns/welcome?notice=paused")).await;
    assert!(
        page.contains("Paused: no step runs") && page.contains(">Resume</button>"),
        "{page}"
    );
    let audit = app
        .call("GET", "/v1/audit?kind=campaign.paused", Role::Admin, None)
        .await;
    let entry = &audit.body["items"][0];
    assert_eq!(
        (&entry["actor"], &entry["via"]),
        (&json!("mia@corp.example"), &json!("console"))
    );
    let (_, _, location, _) = post(&marketer, &status_url, &[("csrf", &csrf), ("to", "resume")]).await;
    assert_eq!(location.as_deref(), Some("/campaigns/welcome?notice=resumed"));
    assert_eq!(state(&app).await, "active");
    let (status, _, _, _) = post(&marketer, &status_url, &[("to", "pause")]).await;
    assert_eq!(status, 403, "a form without its token changes nothing");
    assert_eq!(state(&app).await, "active");

    // Enroll a segment: the dry run's numbers first, nothing changed; then for real.
    let (_, page, _) = get(&marketer, &format!("{base}/campaigns/activation?segment=in-nurture")).await;
    assert!(page.contains("Dry run: nothing has changed yet"), "{page}");
    let facts = |html: &str| -> Vec<(String, String)> {
        let doc = scraper::Html::parse_document(html);
        let dt = scraper::Selector::parse("[aria-labelledby=dry-run] dt").unwrap();
        let dd = scraper::Selector::parse("[aria-labelledby=dry-run] dd").unwrap();
        let text = |e: scraper::ElementRef<'_>| e.text().collect::<String>().trim().to_owned();
        doc.select(&dt).map(text).zip(doc.select(&dd).map(text)).collect()
    };
    assert_eq!(facts(&page), [("Would enter".to_owned(), "3".to_owned())], "{page}");
    let activation = |body: &Value| -> Value {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "activation")
            .unwrap()["counts"]["running"]
            .clone()
    };
    let before = app.call("GET", "/v1/campaigns", Role::Marketer, None).await;
    assert_eq!(activation(&before.body), json!(0), "a dry run enrolls nobody");
    let enroll = csrf_of(&page);
    let (status, _, location, _) = post(
        &marketer,
        &format!("{base}/campaigns/activation/enroll"),
        &[("csrf", &enroll), ("segment", "in-nurture")],
    )
    .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/campaigns/activation?notice=enrolled&n=3&skipped=0"))
    );
    let after = app.call("GET", "/v1/campaigns", Role::Marketer, None).await;
    assert_eq!(activation(&after.body), json!(3));
    let (_, page, _) = get(
        &marketer,
        &format!("{base}/campaigns/activation?notice=enrolled&n=3&skipped=0&segment=in-nurture"),
    )
    .await;
    assert!(page.contains("Enrolled 3; skipped 0."), "{page}");
    assert_eq!(
        facts(&page),
        [
            ("Would enter".to_owned(), "0".to_owned()),
            ("Would not enter: already in it".to_owned(), "3".to_owned())
        ],
        "{page}"
    );
    assert!(
        !page.contains("/campaigns/activation/enroll"),
        "nothing to enroll, no button: {page}"
    );
    // A segment that does not exist is said so, and enrolls nobody.
    let (_, page, _) = get(&marketer, &format!("{base}/campaigns/activation?segment=nope")).await;
    assert!(page.contains("No such segment."), "{page}");
    let (_, _, location, _) = post(
        &marketer,
        &format!("{base}/campaigns/activation/enroll"),
        &[("csrf", &enroll), ("segment", "nope")],
    )
    .await;
    assert_eq!(location.as_deref(), Some("/campaigns/activation?error=segment"));
}

both_backends!(crate::support::spawn_app_on;
    a_marketer_runs_a_campaign_from_the_console,
);
