//! Seeing an e-mail before it goes: a template previewed for a stored lead, a given lead or a
//! sample one, as the dispatcher would send it, and one test e-mail over real SMTP that is
//! recorded nowhere. On SQLite and on PostgreSQL.

use nurture_engine::access::Role::{Marketer, Sdr};
use serde_json::{json, Value};

use crate::support::{Db, TestApp};

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let answer = app.call("POST", path, Marketer, Some(body)).await;
    (answer.status, answer.body)
}

async fn previews_render_as_sent_and_a_test_send_records_nothing(app: TestApp) {
    let lead = app
        .call(
            "PUT",
            "/v1/leads",
            Marketer,
            Some(json!({"email": "ada@acme.example", "first_name": "Ada", "attributes": {"language": "en"}})),
        )
        .await;
    assert_eq!(lead.status, 201, "{:?}", lead.body);
    let id = lead.body["id"].as_str().unwrap().to_owned();

    // The stored English lead: the English copy, its footer, and links through the tracker.
    let (status, english) = post(&app, "/v1/templates/welcome-cxo/preview", json!({"lead_id": id})).await;
    assert_eq!(status, 200, "{english}");
    assert_eq!(
        (&english["template"], &english["language"]),
        (&json!("en/welcome-cxo"), &json!("en"))
    );
    assert_eq!(
        english["subject"],
        "Ada, three pages for decision makers: when digital investment pays back"
    );
    let html = english["html"].as_str().unwrap();
    assert!(html.contains(">Unsubscribe</a>") && !html.contains("退订"), "{html}");
    assert!(
        html.contains(&format!("{}/t/c/", app.base)),
        "links are tracked: {html}"
    );
    assert!(!html.contains("href=\"https://www.lumen-cloud.example"), "{html}");
    assert!(english["text"].as_str().unwrap().contains("Unsubscribe: "));

    // The same lead in Chinese, by asking; a lead given in the body; the sample lead.
    let (_, chinese) = post(
        &app,
        "/v1/templates/welcome-cxo/preview",
        json!({"lead_id": id, "language": "zh"}),
    )
    .await;
    assert_eq!(
        (&chinese["template"], &chinese["language"]),
        (&json!("welcome-cxo"), &json!("zh"))
    );
    assert!(chinese["subject"].as_str().unwrap().starts_with("Ada，"), "{chinese}");
    assert!(chinese["html"].as_str().unwrap().contains(">退订</a>"));
    let (_, given) = post(
        &app,
        "/v1/templates/welcome-cxo/preview",
        json!({"lead": {"first_name": "Wei"}}),
    )
    .await;
    assert!(given["subject"].as_str().unwrap().starts_with("Wei，"), "{given}");
    let (status, sample) = post(&app, "/v1/templates/welcome-cxo/preview", json!({})).await;
    assert_eq!(status, 200, "{sample}");
    assert!(sample["subject"].as_str().unwrap().starts_with("Mei，"), "{sample}");

    // What cannot be previewed says why.
    for (path, body, status) in [
        ("/v1/templates/no-such/preview", json!({}), 404),
        ("/v1/templates/welcome-cxo/preview", json!({"lead_id": "999999"}), 404),
        (
            "/v1/templates/welcome-cxo/preview",
            json!({"lead_id": id, "lead": {}}),
            422,
        ),
        ("/v1/templates/welcome-cxo/preview", json!({"language": "fr"}), 422),
        (
            "/v1/templates/welcome-cxo/preview",
            json!({"lead": {"email": "not an address"}}),
            422,
        ),
        ("/v1/templates/welcome-cxo/test-send", json!({"to": "nobody"}), 422),
    ] {
        let (got, answer) = post(&app, path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
    }
    assert_eq!(
        app.call("POST", "/v1/templates/welcome-cxo/preview", Sdr, Some(json!({})))
            .await
            .status,
        403
    );

    // A test send reaches the SMTP server, marked, and leaves no message behind.
    let (status, sent) = post(
        &app,
        "/v1/templates/welcome-cxo/test-send",
        json!({"to": "marketer@lumen-cloud.example", "lead_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["to"], "marketer@lumen-cloud.example");
    assert!(
        sent["subject"].as_str().unwrap().starts_with("[Test] Ada, three pages"),
        "{sent}"
    );
    app.mail
        .wait_for(1, std::time::Duration::from_secs(10))
        .await
        .expect("the test e-mail reaches the SMTP server");
    let arrived = app.mail.messages().join("\n");
    assert!(arrived.contains("marketer@lumen-cloud.example"), "{arrived}");
    assert!(arrived.contains(sent["message_id"].as_str().unwrap()), "{arrived}");
    let db = Db::connect(&app.store.postgres_url().unwrap_or_else(|| app.store.url.clone())).await;
    assert_eq!(
        db.strings("SELECT CAST(COUNT(*) AS TEXT) FROM messages").await,
        ["0"],
        "a test e-mail is not a message: nothing is tracked or counted against caps"
    );
}

both_backends!(crate::support::spawn_app_on; previews_render_as_sent_and_a_test_send_records_nothing);
