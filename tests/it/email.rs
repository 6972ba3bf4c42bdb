//! E-mail end to end: a lead posted over REST enters the welcome series, the e-mail arrives over
//! real SMTP (a server in this process) with the headers it must have, its pixel counts as an
//! open, advancing the clock takes the lead down the yes branch, and unsubscribing stops it.
//! Also: retries with backoff, bounces, and the `.eml` outbox.

use nurture_engine::access::Role::{Admin, Crm, Sdr};
use nurture_engine::engine::Sender;
use nurture_engine::mail::{FileMailer, SmtpMailer};
use serde_json::json;
use std::sync::Arc;

use crate::smtp::SmtpSink;
use crate::support::{spawn_app, TestApp};

fn sender(app: &TestApp, mailer: Arc<dyn nurture_engine::mail::Mailer>) -> Sender {
    Sender {
        mailer,
        from: "灵犀工业云 <news@lumen-cloud.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        concurrency: 4,
        wechat: None,
        limits: Default::default(),
    }
}

/// The raw message with quoted-printable bodies decoded, so that URLs read whole.
pub(crate) fn decoded(raw: &str) -> String {
    String::from_utf8_lossy(&quoted_printable::decode(raw.as_bytes(), quoted_printable::ParseMode::Robust).unwrap())
        .into_owned()
}

/// The first URL in `text` that starts with `prefix`.
pub(crate) fn url(text: &str, prefix: &str) -> String {
    let start = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
    text[start..]
        .split(['"', '>', ' ', '\r', '\n'])
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

#[tokio::test]
async fn a_posted_lead_gets_the_welcome_over_smtp_and_its_open_takes_the_yes_branch() {
    let sink = SmtpSink::start(0).await;
    let app = spawn_app().await;
    let sender = sender(&app, Arc::new(SmtpMailer::from_url(&sink.url(), 4).unwrap()));
    let id = app.register("li.wei@acme.example").await;
    let report = app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!((report.sent, report.failed), (1, 0));
    assert_eq!(
        app.engine.dispatch(&sender, 100).await.unwrap().handled(),
        0,
        "sent once"
    );

    let raw = &sink.messages()[0];
    assert!(raw.contains("To: li.wei@acme.example"), "{raw}");
    assert!(
        raw.contains("Subject: =?utf-8?"),
        "the Chinese subject is RFC 2047-encoded: {raw}"
    );
    assert!(raw.contains("Message-ID: <m1."), "{raw}");
    assert!(raw.contains(&format!("List-Unsubscribe: <{}/u/", app.base)), "{raw}");
    assert!(
        raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{raw}"
    );
    assert!(raw.contains("multipart/alternative") && raw.contains("text/plain") && raw.contains("text/html"));
    let body = decoded(raw);
    assert!(
        body.contains("感谢您注册成为灵犀工业云会员"),
        "the default template, in Chinese"
    );
    let pixel = url(&body, &format!("{}/t/o/", app.base));
    let click = url(&body, &format!("{}/t/c/", app.base));
    assert!(
        !body.contains("href=\"https://www.lumen-cloud.example"),
        "every outside link is tracked"
    );

    // A scanner's HEAD and a prefetch right after delivery are machines; the person's GET an
    // hour later is the open that counts.
    let client = crate::support::http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(client.head(&pixel).send().await.unwrap().status(), 200);
    assert_eq!(client.get(&pixel).send().await.unwrap().status(), 200);
    app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "1h"})))
        .await;
    let fetched = client
        .get(&pixel)
        .header(
            "user-agent",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.headers()["content-type"], "image/gif");
    assert_eq!(fetched.bytes().await.unwrap().len(), 43);
    let opens = app.events(&id, "email_opened").await;
    let kinds: Vec<(bool, Option<&str>)> = opens
        .iter()
        .map(|e| (e["automated"].as_bool().unwrap(), e["automated_by"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (true, Some("HEAD request")),
            (true, Some("0 s after sending")),
            (false, None)
        ],
        "{opens:?}"
    );
    let tampered = format!("{}x", &pixel[..pixel.len() - 1]);
    assert_eq!(client.get(&tampered).send().await.unwrap().status(), 404);

    // The click goes where the e-mail linked, and only there.
    let redirect = client.get(&click).send().await.unwrap();
    assert_eq!(redirect.status(), 302);
    assert!(redirect.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://www.lumen-cloud.example/members"));

    // Five days on: the second e-mail went at day 2, and at day 5 the branch saw the open.
    // Day 5 is a Saturday: the case study waits for Monday's send window (Asia/Shanghai).
    let advanced = app
        .call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "5d"})))
        .await;
    assert_eq!(advanced.status, 200);
    let steps = app.journey(&id).await;
    assert!(steps.contains(&"opened_any:yes".to_string()), "{steps:?}");
    assert_eq!(
        steps.last().map(String::as_str),
        Some("case_study:deferred"),
        "{steps:?}"
    );
    app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "2d"})))
        .await;
    let steps = app.journey(&id).await;
    assert!(steps.contains(&"case_study:sent".to_string()), "{steps:?}");
    let tags = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.body["tags"].clone();
    assert!(
        tags.as_array().unwrap().contains(&json!("engagement:welcomed")),
        "{tags}"
    );
    let report = app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!(report.sent, 2, "getting started and the case study");
    assert_eq!(sink.messages().len(), 3);
}

#[tokio::test]
async fn get_on_the_unsubscribe_link_changes_nothing_and_post_stops_queued_mail() {
    let sink = SmtpSink::start(0).await;
    let app = spawn_app().await;
    let sender = sender(&app, Arc::new(SmtpMailer::from_url(&sink.url(), 2).unwrap()));
    let id = app.register("zhang@beta.example").await;
    app.engine.dispatch(&sender, 100).await.unwrap();
    let body = decoded(&sink.messages()[0]);
    let unsubscribe = url(&body, &format!("{}/u/", app.base));
    let client = crate::support::http().build().unwrap();

    let page = client.get(&unsubscribe).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=\"post\">"));
    let lead = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.body;
    assert_eq!(
        lead["consent"]["email"]["status"], "opted_in",
        "GET asks, it does not unsubscribe"
    );

    // Queue the next e-mail, then unsubscribe before it is sent (RFC 8058 one-click POST).
    app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "2d"})))
        .await;
    let posted = client
        .post(&unsubscribe)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let lead = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.body;
    assert_eq!(lead["consent"]["email"]["status"], "opted_out");
    let report = app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!((report.sent, report.skipped), (0, 1));
    assert_eq!(sink.messages().len(), 1, "nothing more went out");
    let statuses = app.messages(&id).await;
    assert_eq!(
        statuses[1],
        ("getting_started".into(), "skipped".into(), json!("unsubscribed"))
    );
    let steps = app.journey(&id).await;
    assert!(
        steps.last().unwrap().ends_with(":goal"),
        "exit_when (unsubscribed) ended the series: {steps:?}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_and_a_bounce_fails_once() {
    let sink = SmtpSink::start(3).await;
    sink.reject("gone@x.example");
    let app = spawn_app().await;
    let sender = sender(&app, Arc::new(SmtpMailer::from_url(&sink.url(), 1).unwrap()));
    let kept = app.register("kept@x.example").await;
    let gone = app.register("gone@x.example").await;
    let mut rounds = 0;
    while sink.messages().is_empty() {
        rounds += 1;
        assert!(rounds < 10, "never delivered");
        app.engine.dispatch(&sender, 100).await.unwrap();
        // The next attempt is minutes away: move the clock, no sleeping.
        app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "2h"})))
            .await;
    }
    assert!(rounds >= 2, "the first attempts were refused and retried later");
    assert_eq!(sink.messages().len(), 1);
    assert!(sink.messages()[0].contains("To: kept@x.example"));
    let kept_status = app.messages(&kept).await;
    assert_eq!(
        (kept_status[0].0.as_str(), kept_status[0].1.as_str()),
        ("welcome", "sent")
    );
    let gone_status = app.messages(&gone).await;
    assert_eq!(gone_status[0].1, "failed", "{gone_status:?}");
    assert!(gone_status[0].2.as_str().unwrap().contains("550"), "{gone_status:?}");
    // Nothing is sent again.
    app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "1h"})))
        .await;
    let again = app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!((again.sent, again.failed), (0, 0), "{again:?}");
}

#[tokio::test]
async fn the_file_outbox_writes_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app().await;
    let sender = sender(&app, Arc::new(FileMailer::new(dir.path()).unwrap()));
    let id = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": "anna@gamma.example", "first_name": "Anna", "attributes": {"language": "en"}})),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(
        "POST",
        "/v1/events",
        Crm,
        Some(json!({"lead": {"id": id}, "type": "registered"})),
    )
    .await;
    assert_eq!(app.engine.dispatch(&sender, 100).await.unwrap().sent, 1);
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    let body = decoded(&raw);
    assert!(
        body.contains("Thank you for joining Lumen Industrial Cloud"),
        "the English version for an English reader"
    );
    assert!(body.contains(">Unsubscribe</a>"));
}

/// The test key's public half, as DNS would serve it.
struct TestDns;

#[async_trait::async_trait]
impl mailrs_dkim::DkimResolver for TestDns {
    async fn lookup_txt(&self, domain: &str) -> Result<Vec<String>, mailrs_dkim::DkimError> {
        let public = include_str!("../fixtures/dkim-test.pub.b64").trim();
        Ok(match domain.trim_end_matches('.') {
            "nurture._domainkey.lumen-cloud.example" => vec![format!("v=DKIM1; k=rsa; p={public}")],
            _ => Vec::new(),
        })
    }
}

#[tokio::test]
async fn outgoing_mail_is_dkim_signed_and_the_signature_verifies() {
    let sink = SmtpSink::start(0).await;
    let app = spawn_app().await;
    let key = include_str!("../fixtures/dkim-test.pem");
    let dkim = Arc::new(nurture_engine::mail::Dkim::new("nurture", "lumen-cloud.example", key).unwrap());
    let mailer = SmtpMailer::from_url(&sink.url(), 2).unwrap().with_dkim(Some(dkim));
    let sender = sender(&app, Arc::new(mailer));
    app.register("li.wei@acme.example").await;
    assert_eq!(app.engine.dispatch(&sender, 100).await.unwrap().sent, 1);
    let raw = sink.messages()[0].clone();
    let signature = raw
        .split("\r\n")
        .skip_while(|l| !l.starts_with("DKIM-Signature:"))
        .take_while(|l| l.starts_with("DKIM-Signature:") || l.starts_with([' ', '\t']))
        .collect::<String>();
    assert!(
        signature.contains("d=lumen-cloud.example") && signature.contains("s=nurture"),
        "{signature}"
    );
    assert!(
        signature
            .to_lowercase()
            .contains("list-unsubscribe:list-unsubscribe-post"),
        "the one-click pair is signed: {signature}"
    );
    assert_eq!(
        mailrs_dkim::verify(&TestDns, raw.as_bytes()).await,
        mailrs_dkim::DkimResult::Pass,
        "{raw}"
    );
    // Altered in transit: the signature no longer holds.
    let altered = raw
        .replacen("感谢", "谢谢", 1)
        .replacen("Subject: =?utf-8?", "Subject: =?UTF-8?", 1);
    assert_ne!(altered, raw);
    assert_eq!(
        mailrs_dkim::verify(&TestDns, altered.as_bytes()).await,
        mailrs_dkim::DkimResult::Fail
    );
    // A key in the wrong format is refused with a way out.
    let pkcs8 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    let refused = nurture_engine::mail::Dkim::new("nurture", "lumen-cloud.example", pkcs8).unwrap_err();
    assert!(refused.contains("openssl rsa -traditional"), "{refused}");
}
