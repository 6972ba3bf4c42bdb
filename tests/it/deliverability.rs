//! Deliverability on both backends, driven over HTTP with the manual clock: frequency caps
//! with priorities, send windows across time zones and a DST change, bounces and complaints
//! that suppress addresses (from events and from the relay itself), and opens by machines
//! that do not take a branch.

use nurture_engine::access::Role::{Admin, Crm};
use nurture_engine::engine::Sender;
use nurture_engine::mail::SmtpMailer;
use nurture_engine::tracking::Token;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::smtp::SmtpSink;
use crate::support::TestApp;

both_backends!(crate::support::spawn_app_on;
    a_frequency_cap_lets_the_higher_priority_send_and_defers_or_skips_the_rest,
    a_send_window_waits_for_each_lead_s_local_morning_across_a_dst_change,
    bounces_and_complaints_suppress_the_address,
    a_relay_refusing_the_recipient_is_a_hard_bounce,
    a_proxy_open_right_after_delivery_does_not_take_the_yes_branch,
    a_warm_up_keeps_mail_beyond_the_day_s_allowance_for_the_next_day,
    a_slow_domain_s_mail_goes_back_to_the_outbox_without_losing_an_attempt,
);

fn sender(app: &TestApp, mailer: Arc<dyn nurture_engine::mail::Mailer>) -> Sender {
    Sender {
        mailer,
        from: "Lumen <news@lumen-cloud.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        concurrency: 4,
        wechat: None,
        limits: Default::default(),
    }
}

/// The shipped rules with these lines added.
fn rules_with(extra: &str) -> String {
    let shipped = std::fs::read_to_string(crate::support::repo().join("campaigns/rules.yaml")).unwrap();
    format!("{shipped}\n{extra}\n")
}

/// A campaign entered on the event `trigger`, that sends `template` at step `step` and ends.
fn one_send(id: &str, trigger: &str, priority: u8, step: &str, extra: &str) -> String {
    format!(
        "kind: Campaign\nid: {id}\nname: {id}\ntype: custom\nentry: {{ trigger: event, event: {trigger}, reentry: always }}\n\
         priority: {priority}\n{extra}start: {step}\nsteps:\n  {step}: {{ send: {{ channel: email, template: welcome{on_cap} }}, next: done }}\n  done: {{ exit: done }}\n",
        on_cap = if step == "skip_me" { ", on_cap: skip" } else { "" },
    )
}

async fn lead(app: &TestApp, email: &str, extra: Value) -> String {
    let mut body = json!({"email": email, "first_name": "Wei"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let answer = app.call("PUT", "/v1/leads", Crm, Some(body)).await;
    assert!(answer.status == 201 || answer.status == 200, "{answer:?}");
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn event(app: &TestApp, email: &str, kind: &str, properties: Value) -> Value {
    let answer = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(json!({"lead": {"email": email}, "type": kind, "properties": properties})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

async fn advance(app: &TestApp, by: &str) -> chrono::DateTime<chrono::Utc> {
    let answer = app
        .call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": by})))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["now"].as_str().unwrap().parse().unwrap()
}

/// The journey's lines of one step: (outcome, detail, at).
async fn lines(app: &TestApp, lead: &str, step: &str) -> Vec<(String, String, String)> {
    app.timeline(lead, "campaign_step")
        .await
        .iter()
        .filter(|e| e["step"] == step)
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
                e["at"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn a_frequency_cap_lets_the_higher_priority_send_and_defers_or_skips_the_rest(app: TestApp) {
    app.deploy_file(
        "campaigns/rules.yaml",
        &rules_with("frequency: { email: { max: 1, per: 1d } }"),
    )
    .await;
    app.deploy_file(
        "campaigns/cap-low.yaml",
        &one_send("cap-low", "cap_test", 10, "low", ""),
    )
    .await;
    app.deploy_file(
        "campaigns/cap-high.yaml",
        &one_send("cap-high", "cap_test", 90, "high", ""),
    )
    .await;
    app.deploy_file(
        "campaigns/cap-skip.yaml",
        &one_send("cap-skip", "cap_test", 50, "skip_me", ""),
    )
    .await;
    let id = lead(&app, "cap@acme.example", json!({})).await;
    let start = advance(&app, "1m").await;
    event(&app, "cap@acme.example", "cap_test", json!({})).await;

    // One e-mail a day: the campaign that matters most sends; the others wait or step aside.
    let high = lines(&app, &id, "high").await;
    assert_eq!(high[0].0, "sent", "{high:?}");
    let low = lines(&app, &id, "low").await;
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0].0, "deferred");
    let until = (start + chrono::Duration::days(1)).to_rfc3339();
    assert!(
        low[0].1.contains(&format!("deferred to {until}"))
            && low[0].1.contains("frequency cap of 1 email per 1d reached"),
        "{low:?}"
    );
    let skipped = lines(&app, &id, "skip_me").await;
    assert_eq!(skipped[0].0, "skipped", "{skipped:?}");
    assert!(skipped[0].1.contains("on_cap: skip"), "{skipped:?}");
    let messages = app.messages(&id).await;
    assert_eq!(
        messages.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["high"],
        "only one message in the outbox: {messages:?}"
    );

    // A day later, the deferred send goes: not dropped.
    advance(&app, "1d").await;
    let low = lines(&app, &id, "low").await;
    assert_eq!(
        low.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        ["deferred", "sent"],
        "{low:?}"
    );
    assert_eq!(
        low[1].2.parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
        start + chrono::Duration::days(1)
    );
    assert_eq!(app.messages(&id).await.len(), 2);
}

async fn a_send_window_waits_for_each_lead_s_local_morning_across_a_dst_change(app: TestApp) {
    let window = "send_window: { days: [mon, tue, wed, thu, fri], from: \"09:00\", to: \"18:00\", spread: 10m }\n";
    app.deploy_file(
        "campaigns/window.yaml",
        &one_send("window", "window_test", 50, "hello", window),
    )
    .await;
    let ny = lead(&app, "ny@acme.example", json!({"timezone": "America/New_York"})).await;
    let sh = lead(&app, "sh@acme.example", json!({"timezone": "Asia/Shanghai"})).await;
    // The manual clock starts on Monday 2026-11-02 09:00 UTC. Move to Saturday 2027-03-13
    // 20:00 UTC: New York moves its clocks forward on Sunday 2027-03-14.
    let now = advance(&app, "131d11h").await;
    assert_eq!(now.to_rfc3339(), "2027-03-13T20:00:00+00:00");
    for email in ["ny@acme.example", "sh@acme.example"] {
        event(&app, email, "window_test", json!({})).await;
    }
    let deferred = |lines: &[(String, String, String)]| -> chrono::DateTime<chrono::Utc> {
        assert_eq!(lines[0].0, "deferred", "{lines:?}");
        let detail = &lines[0].1;
        let at = detail
            .split("deferred to ")
            .nth(1)
            .and_then(|rest| rest.split(": ").next())
            .unwrap_or_else(|| panic!("{detail}"));
        at.parse().unwrap_or_else(|e| panic!("{at}: {e}"))
    };
    // Monday 09:00 in New York is 13:00 UTC after the change (it was 14:00 the week before).
    let ny_until = deferred(&lines(&app, &ny, "hello").await);
    let monday_ny: chrono::DateTime<chrono::Utc> = "2027-03-15T13:00:00Z".parse().unwrap();
    assert!(
        ny_until >= monday_ny && ny_until < monday_ny + chrono::Duration::minutes(10),
        "{ny_until}"
    );
    // Monday 09:00 in Shanghai (no DST) is Monday 01:00 UTC.
    let sh_until = deferred(&lines(&app, &sh, "hello").await);
    let monday_sh: chrono::DateTime<chrono::Utc> = "2027-03-15T01:00:00Z".parse().unwrap();
    assert!(
        sh_until >= monday_sh && sh_until < monday_sh + chrono::Duration::minutes(10),
        "{sh_until}"
    );
    let detail = &lines(&app, &ny, "hello").await[0].1;
    assert!(
        detail.contains("America/New_York") && detail.contains("opens 2027-03-15T09:00:00-04:00"),
        "{detail}"
    );

    // Nothing goes over the weekend; each goes at its own morning.
    advance(&app, "1d").await;
    assert!(app.messages(&ny).await.is_empty() && app.messages(&sh).await.is_empty());
    advance(&app, "5h10m").await; // Monday 01:10 UTC
    assert_eq!(app.messages(&sh).await.len(), 1);
    assert!(app.messages(&ny).await.is_empty());
    advance(&app, "12h").await; // Monday 13:10 UTC
    assert_eq!(app.messages(&ny).await.len(), 1);
}

async fn bounces_and_complaints_suppress_the_address(app: TestApp) {
    let drip = "kind: Campaign\nid: bounce-drip\nname: Bounce drip\ntype: drip\n\
                entry: { trigger: event, event: bounce_test }\nstart: first\nsteps:\n\
                \x20 first: { send: { channel: email, template: welcome }, next: wait }\n\
                \x20 wait: { wait: { for: 1d }, next: second }\n\
                \x20 second: { send: { channel: email, template: welcome-getting-started }, next: done }\n\
                \x20 done: { exit: done }\n";
    app.deploy_file("campaigns/bounce-drip.yaml", drip).await;
    let hard = lead(&app, "hard@acme.example", json!({})).await;
    let soft = lead(&app, "soft@acme.example", json!({})).await;
    let spam = lead(&app, "spam@acme.example", json!({})).await;
    for email in ["hard@acme.example", "soft@acme.example", "spam@acme.example"] {
        event(&app, email, "bounce_test", json!({})).await;
    }

    // A bounce must say which kind it is.
    let refused = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(
                json!({"lead": {"email": "hard@acme.example"}, "type": "email_bounced", "properties": {"kind": "bad"}}),
            ),
        )
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(
        refused.body["error"]["details"][0]["field"], "properties.kind",
        "{refused:?}"
    );

    event(&app, "hard@acme.example", "email_bounced", json!({"kind": "hard"})).await;
    event(&app, "spam@acme.example", "email_complained", json!({})).await;
    event(&app, "soft@acme.example", "email_bounced", json!({"kind": "soft"})).await;
    event(&app, "soft@acme.example", "email_bounced", json!({"kind": "soft"})).await;
    advance(&app, "1d").await;
    let second = |messages: Vec<(String, String, Value)>| {
        messages
            .into_iter()
            .find(|m| m.0 == "second")
            .unwrap_or_else(|| panic!("no second message"))
    };
    assert_eq!(
        second(app.messages(&hard).await),
        ("second".into(), "skipped".into(), json!("suppressed: hard_bounce"))
    );
    assert_eq!(
        second(app.messages(&spam).await),
        ("second".into(), "skipped".into(), json!("suppressed: complaint"))
    );
    assert_eq!(
        second(app.messages(&soft).await).1,
        "pending",
        "two soft bounces do not suppress"
    );
    let skipped = lines(&app, &hard, "second").await;
    assert_eq!(skipped[0].0, "skipped", "the journey says why: {skipped:?}");
    assert!(skipped[0].1.contains("suppressed: hard_bounce"), "{skipped:?}");

    // The third soft bounce within 30 days suppresses, and stops the message already queued.
    event(&app, "soft@acme.example", "email_bounced", json!({"kind": "soft"})).await;
    let outbox = tempfile::tempdir().unwrap();
    let sender = sender(
        &app,
        Arc::new(nurture_engine::mail::FileMailer::new(outbox.path()).unwrap()),
    );
    app.engine.dispatch(&sender, 100).await.unwrap();
    let statuses: Vec<(String, String, Value)> = app.messages(&soft).await;
    assert_eq!(
        second(statuses),
        ("second".into(), "skipped".into(), json!("suppressed: soft_bounces"))
    );
    // The first messages (queued before any bounce) were not dispatched until now: they are
    // stopped too.
    for id in [&hard, &soft, &spam] {
        let first = app.messages(id).await.into_iter().find(|m| m.0 == "first").unwrap();
        assert_eq!(first.1, "skipped", "{first:?}");
    }
    assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 0, "nothing was sent");
}

async fn a_relay_refusing_the_recipient_is_a_hard_bounce(app: TestApp) {
    let sink = SmtpSink::start(0).await;
    sink.reject("gone@x.example");
    let sender = sender(&app, Arc::new(SmtpMailer::from_url(&sink.url(), 2).unwrap()));
    let gone = lead(&app, "gone@x.example", json!({})).await;
    event(&app, "gone@x.example", "registered", json!({})).await;
    let report = app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!((report.failed, report.bounced), (1, 1), "{report:?}");
    let bounces = app.events(&gone, "email_bounced").await;
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    assert_eq!(bounces[0]["kind"], "hard");
    assert!(bounces[0]["reason"].as_str().unwrap().contains("5.1.1"), "{bounces:?}");
    // Two days on, the welcome series' next e-mail is not even queued for sending.
    advance(&app, "2d").await;
    let next = app
        .messages(&gone)
        .await
        .into_iter()
        .find(|m| m.0 == "getting_started")
        .expect("the step ran");
    assert_eq!(next.1, "skipped");
    assert_eq!(next.2, json!("suppressed: hard_bounce"));
    assert_eq!(sink.count(), 0);
}

async fn a_proxy_open_right_after_delivery_does_not_take_the_yes_branch(app: TestApp) {
    let branch = "kind: Campaign\nid: open-test\nname: Open test\ntype: custom\n\
                  entry: { trigger: event, event: open_test }\nstart: mail\nsteps:\n\
                  \x20 mail: { send: { channel: email, template: welcome }, next: wait }\n\
                  \x20 wait: { wait: { for: 1d }, next: opened }\n\
                  \x20 opened: { branch: { if: { opened: mail }, then: yes, else: no } }\n\
                  \x20 yes: { exit: opened }\n\
                  \x20 no: { exit: unopened }\n";
    app.deploy_file("campaigns/open-test.yaml", branch).await;
    let outbox = tempfile::tempdir().unwrap();
    let sender = sender(
        &app,
        Arc::new(nurture_engine::mail::FileMailer::new(outbox.path()).unwrap()),
    );
    let proxy = lead(&app, "proxy@acme.example", json!({})).await;
    let person = lead(&app, "person@acme.example", json!({})).await;
    advance(&app, "1m").await;
    for email in ["proxy@acme.example", "person@acme.example"] {
        event(&app, email, "open_test", json!({})).await;
    }
    app.engine.dispatch(&sender, 100).await.unwrap();
    let pixel = |message: i64| format!("{}/t/o/{}", app.base, app.key.sign(&Token::Open { message }));
    let message_of = |id: String| {
        let app = &app;
        async move {
            let row = app.timeline(&id, "message").await;
            row.iter().find(|m| m["step"] == "mail").unwrap()["message"]
                .as_i64()
                .unwrap()
        }
    };
    let (proxy_message, person_message) = (message_of(proxy.clone()).await, message_of(person.clone()).await);
    // Both get fetched by a security gateway the second the mail arrives.
    for message in [proxy_message, person_message] {
        assert_eq!(app.client.get(pixel(message)).send().await.unwrap().status(), 200);
    }
    // An hour later the person opens it; Gmail's proxy fetches the other one again.
    advance(&app, "1h").await;
    let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
    let gmail = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
    for (message, agent) in [(person_message, browser), (proxy_message, gmail)] {
        let fetched = app
            .client
            .get(pixel(message))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(fetched.status(), 200);
    }
    let opens = app.events(&proxy, "email_opened").await;
    assert_eq!(
        opens.iter().map(|o| o["automated_by"].clone()).collect::<Vec<_>>(),
        [json!("0 s after sending"), json!("Gmail image proxy")],
        "both kinds are recorded: {opens:?}"
    );
    advance(&app, "1d").await;
    let no = lines(&app, &proxy, "opened").await;
    assert_eq!(no[0].0, "no", "{no:?}");
    assert!(no[0].1.contains("automated opens only"), "{no:?}");
    let yes = lines(&app, &person, "opened").await;
    assert_eq!(yes[0].0, "yes", "{yes:?}");
    assert!(
        yes[0].1.contains(&format!("human open of message {person_message}")),
        "{yes:?}"
    );
}

/// Leads `prefix-0..n@domain` that register, so that the welcome e-mail is queued for each.
async fn registered(app: &TestApp, prefix: &str, domain: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let email = format!("{prefix}-{i}@{domain}");
        ids.push(lead(app, &email, json!({})).await);
        event(app, &email, "registered", json!({})).await;
    }
    ids
}

async fn a_warm_up_keeps_mail_beyond_the_day_s_allowance_for_the_next_day(app: TestApp) {
    let sink = SmtpSink::start(0).await;
    let mut sender = sender(&app, Arc::new(SmtpMailer::from_url(&sink.url(), 2).unwrap()));
    let warmup: nurture_engine::mail::rate::Warmup = "3/d,2x".parse().unwrap();
    sender.limits = Arc::new(nurture_engine::mail::rate::SendLimits::new(0, &[], 0, Some(warmup)));
    let ids = registered(&app, "warm", "acme.example", 5).await;
    let first = app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!(first.sent, 3, "the first day allows 3: {first:?}");
    assert_eq!(app.engine.dispatch(&sender, 100).await.unwrap().handled(), 0);
    let mut pending = 0;
    for id in &ids {
        pending += app.messages(id).await.iter().filter(|m| m.1 == "pending").count();
    }
    assert_eq!(pending, 2, "the rest wait in the outbox");
    // The next day allows 6: the two go.
    advance(&app, "1d").await;
    assert_eq!(app.engine.dispatch(&sender, 100).await.unwrap().sent, 2);
    assert_eq!(sink.count(), 5);
}

async fn a_slow_domain_s_mail_goes_back_to_the_outbox_without_losing_an_attempt(app: TestApp) {
    let sink = SmtpSink::start(0).await;
    let mut sender = sender(&app, Arc::new(SmtpMailer::from_url(&sink.url(), 4).unwrap()));
    sender.limits = Arc::new(nurture_engine::mail::rate::SendLimits::new(
        0,
        &[("slow.example".into(), 1)],
        0,
        None,
    ));
    let ids = registered(&app, "slow", "slow.example", 9).await;
    // One a second to slow.example, and a message waits 5 s at most: some go, the rest are put
    // back for later, not failed.
    let report = app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!(report.sent + report.held, 9, "{report:?}");
    assert!(report.held >= 1 && report.sent >= 1, "{report:?}");
    assert_eq!((report.failed, report.retrying), (0, 0), "{report:?}");
    let mut held = Vec::new();
    for id in &ids {
        held.extend(app.messages(id).await.into_iter().filter(|m| m.1 == "pending"));
    }
    assert_eq!(held.len(), report.held);
    assert!(
        held.iter().all(|m| m.2 == json!("rate limited: slow.example 1/s")),
        "{held:?}"
    );
    // Held back again and again, a message is never given up on: attempts were not counted.
    for _ in 0..(nurture_engine::engine::MAX_ATTEMPTS + 2) {
        advance(&app, "2s").await;
        sender.limits = Arc::new(nurture_engine::mail::rate::SendLimits::new(
            0,
            &[("slow.example".into(), 1)],
            0,
            None,
        ));
        let again = app.engine.dispatch(&sender, 1).await.unwrap();
        assert_eq!(again.failed, 0, "{again:?}");
    }
    let mut failed = 0;
    for id in &ids {
        failed += app.messages(id).await.iter().filter(|m| m.1 == "failed").count();
    }
    assert_eq!(failed, 0);
}
