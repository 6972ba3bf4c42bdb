//! WeChat template messages through the Official Account API, against a local HTTP server that
//! plays WeChat and checks every request: the access token is fetched once and reused, an
//! expired one is refreshed and the send retried, a follower who left fails the message for
//! good, and the campaign goes on either way.

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use nurture_engine::access::Role::*;
use nurture_engine::engine::Sender;
use nurture_engine::mail::FileMailer;
use nurture_engine::wechat::{Wechat, WechatConfig, WechatSender};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::support::{spawn_app, TestApp};

#[derive(Default)]
struct Fake {
    tokens_issued: usize,
    /// Template sends as received: (access_token, body).
    sends: Vec<(String, Value)>,
    /// The first send is told its token expired, as WeChat does when another client refreshed.
    expire_first: bool,
}

type Shared = Arc<Mutex<Fake>>;

async fn token(State(fake): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let mut fake = fake.lock().unwrap();
    if q.get("grant_type").map(String::as_str) != Some("client_credential")
        || q.get("appid").map(String::as_str) != Some("wx-test-app")
        || q.get("secret").map(String::as_str) != Some("s3cret")
    {
        return Json(json!({"errcode": 40013, "errmsg": "invalid appid"}));
    }
    fake.tokens_issued += 1;
    Json(json!({"access_token": format!("T{}", fake.tokens_issued), "expires_in": 7200}))
}

async fn send(
    State(fake): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut fake = fake.lock().unwrap();
    let token = q.get("access_token").cloned().unwrap_or_default();
    fake.sends.push((token.clone(), body.clone()));
    let current = format!("T{}", fake.tokens_issued);
    if fake.expire_first {
        fake.expire_first = false;
        return Json(json!({"errcode": 42001, "errmsg": "access_token expired"}));
    }
    if token != current {
        return Json(json!({"errcode": 40001, "errmsg": "invalid credential"}));
    }
    if body["touser"] == "o-left-the-account" {
        return Json(json!({"errcode": 43004, "errmsg": "require subscribe"}));
    }
    Json(json!({"errcode": 0, "errmsg": "ok", "msgid": 200228332 + fake.sends.len() as i64}))
}

async fn fake_wechat(expire_first: bool) -> (String, Shared) {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        expire_first,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/cgi-bin/token", get(token))
        .route("/cgi-bin/message/template/send", post(send))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fake)
}

fn sender(app: &TestApp, wechat: Option<Arc<dyn WechatSender>>, outbox: &std::path::Path) -> Sender {
    Sender {
        mailer: Arc::new(FileMailer::new(outbox).unwrap()),
        from: "灵犀工业云 <news@lumen-cloud.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        // One at a time, so that the order of requests the fake sees is fixed.
        concurrency: 1,
        wechat,
        limits: Default::default(),
    }
}

fn client(url: &str, secret: &str) -> Arc<dyn WechatSender> {
    Arc::new(
        Wechat::new(WechatConfig {
            api_url: url.into(),
            appid: "wx-test-app".into(),
            secret: secret.into(),
        })
        .unwrap(),
    )
}

/// A lead with this openid registers; returns its id.
async fn register(app: &TestApp, email: &str, openid: &str) -> String {
    let created = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": email, "first_name": "伟", "attributes": {"wechat_openid": openid}})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let posted = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(json!({"lead": {"email": email}, "type": "registered"})),
        )
        .await;
    assert_eq!(posted.body["accepted"], 1, "{}", posted.body);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn dispatch_all(app: &TestApp, sender: &Sender) -> nurture_engine::engine::DispatchReport {
    let mut total = nurture_engine::engine::DispatchReport::default();
    loop {
        let report = app.engine.dispatch(sender, 100).await.unwrap();
        if report.handled() == 0 {
            return total;
        }
        total.sent += report.sent;
        total.failed += report.failed;
        total.retrying += report.retrying;
        total.skipped += report.skipped;
    }
}

#[tokio::test]
async fn unopened_welcome_mail_falls_back_to_a_wechat_template_message() {
    let (url, fake) = fake_wechat(true).await;
    let app = spawn_app().await;
    let outbox = tempfile::tempdir().unwrap();
    let sender = sender(&app, Some(client(&url, "s3cret")), outbox.path());
    let follower = register(&app, "wang.wei@acme.example", "o-follower-1").await;
    let gone = register(&app, "li.na@acme.example", "o-left-the-account").await;

    // Nobody opens the two welcome e-mails; at day 5 (a Saturday) the branch takes the WeChat
    // arm, whose message waits for Monday's send window.
    for _ in 0..8 {
        app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "1d"})))
            .await;
        dispatch_all(&app, &sender).await;
    }

    let (tokens_issued, sends) = {
        let fake = fake.lock().unwrap();
        (fake.tokens_issued, fake.sends.clone())
    };
    let tokens: Vec<&str> = sends.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        (tokens_issued, tokens.as_slice()),
        (2, ["T1", "T2", "T2"].as_slice()),
        "one token, fetched again once when WeChat said it had expired, then reused"
    );
    let delivered = sends
        .iter()
        .rev()
        .find(|(_, b)| b["touser"] == "o-follower-1")
        .map(|(_, b)| b.clone())
        .expect("the follower's message reached WeChat");
    assert_eq!(delivered["template_id"], "OPENTM_WELCOME_01");
    assert_eq!(
        delivered["url"],
        "https://www.lumen-cloud.example/members?utm_source=nurture&utm_medium=wechat&utm_campaign=welcome"
    );
    assert_eq!(delivered["data"]["first"]["value"], "伟，欢迎加入灵犀工业云会员");
    assert_eq!(delivered["data"]["keyword1"], json!({"value": "会员注册成功"}));

    let follower_messages = app.messages(&follower).await;
    assert!(
        follower_messages.contains(&("wechat_hello".into(), "sent".into(), Value::Null)),
        "{follower_messages:?}"
    );
    let gone_messages = app.messages(&gone).await;
    let failed = gone_messages
        .iter()
        .find(|m| m.0 == "wechat_hello")
        .expect("a message row for the WeChat step");
    assert_eq!(failed.1, "failed", "{gone_messages:?}");
    assert!(
        failed.2.as_str().unwrap().contains("43004"),
        "the reason names WeChat's code: {failed:?}"
    );
    for lead in [&follower, &gone] {
        let steps = app.journey(lead).await;
        assert!(
            steps.iter().any(|s| s.starts_with("case_study")),
            "the flow goes on after the WeChat step: {steps:?}"
        );
    }
}

#[tokio::test]
async fn wrong_credentials_and_no_account_keep_the_message_for_later() {
    let (url, fake) = fake_wechat(false).await;
    let app = spawn_app().await;
    let outbox = tempfile::tempdir().unwrap();
    let lead = register(&app, "zhao.min@acme.example", "o-follower-2").await;
    let unconfigured = sender(&app, None, outbox.path());
    // Through day 5 (a Saturday) and the weekend, to the send window on Monday.
    for _ in 0..7 {
        app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "1d"})))
            .await;
        dispatch_all(&app, &unconfigured).await;
    }
    let pending = app.messages(&lead).await;
    let wechat = pending
        .iter()
        .find(|m| m.0 == "wechat_hello")
        .expect("the WeChat step ran");
    assert_eq!(wechat.1, "pending", "kept for a server with an account: {pending:?}");
    assert!(wechat.2.as_str().unwrap().contains("--wechat-appid"), "{wechat:?}");

    // Wrong secret: WeChat refuses the token; the message waits again, nothing reaches WeChat.
    app.clock.advance(chrono::Duration::hours(2));
    let wrong = sender(&app, Some(client(&url, "typo")), outbox.path());
    let report = dispatch_all(&app, &wrong).await;
    assert_eq!((report.sent, report.failed, report.retrying), (0, 0, 1));
    assert!(fake.lock().unwrap().sends.is_empty());
    let reason = app.messages(&lead).await;
    let wechat = reason.iter().find(|m| m.0 == "wechat_hello").unwrap();
    assert!(wechat.2.as_str().unwrap().contains("40013"), "{wechat:?}");

    // Fixed: the retry goes out.
    app.clock.advance(chrono::Duration::hours(2));
    let right = sender(&app, Some(client(&url, "s3cret")), outbox.path());
    assert_eq!(dispatch_all(&app, &right).await.sent, 1);
    assert_eq!(fake.lock().unwrap().sends[0].1["touser"], "o-follower-2");
}
