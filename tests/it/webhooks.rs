//! Webhooks to a CRM, on both backends: a real receiver on a local port that fails, redirects
//! or stalls; signatures checked by the README's own Python and JavaScript snippets.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Duration;
use nurture_engine::access::Role;
use nurture_engine::webhook::WebhookClient;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{loopback, repo, TestApp};

both_backends!(crate::support::spawn_app_on;
    a_receiver_that_fails_three_times_gets_everything_signed_and_in_order,
    bad_receivers_are_bounded_and_block_nobody,
    webhooks_do_not_reach_into_the_network_unless_allowed,
    notes_calls_and_decisions_reach_the_crm,
);

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    path: String,
    pub(crate) event: String,
    delivery: String,
    signature: String,
    pub(crate) body: String,
    answered: u16,
}

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Requests to `/hook` answered 500 before it starts answering 200.
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    pub(crate) fn got(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }
}

fn record(receiver: &Receiver, path: &str, headers: &HeaderMap, body: &Bytes, answered: u16) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    receiver.got.lock().unwrap().push(Got {
        path: path.to_owned(),
        event: header("x-nurture-event"),
        delivery: header("x-nurture-delivery"),
        signature: header("x-nurture-signature"),
        body: String::from_utf8_lossy(body).into_owned(),
        answered,
    });
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let failing = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    record(&r, "/hook", &headers, &body, status.as_u16());
    status
}

async fn redirect(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    record(&r, "/redirect", &headers, &body, 302);
    (StatusCode::FOUND, [("location", "http://elsewhere.invalid/steal")]).into_response()
}

/// Never answers: only the client's own time limit ends the attempt.
async fn slow(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    record(&r, "/slow", &headers, &body, 200);
    std::future::pending::<()>().await;
    StatusCode::OK
}

/// A CRM's webhook receiver on a local port (`/hook` answers 200 after `fail_first` 500s).
pub(crate) async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .route("/redirect", post(redirect))
        .route("/slow", post(slow))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, base)
}

pub(crate) async fn subscribe(app: &TestApp, url: &str, events: Value) -> Value {
    let answer = app
        .call(
            "POST",
            "/v1/webhooks",
            Role::Crm,
            Some(json!({"url": url, "events": events, "secret": "whsec_test_0123456789abcdef"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body
}

async fn one_lead_handed_off(app: &TestApp, email: &str) -> Value {
    let lead = app.lead(json!({"email": email})).await;
    app.hand_off(&lead, "sales", "Asked for pricing").await
}

/// Checks every delivery is what /openapi.json's `webhooks` says its event type carries, and
/// that the schema is one a payload can fail (without its `data`).
async fn as_documented(app: &TestApp, delivered: &[&Got]) {
    let document = app.send("GET", "/openapi.json", None, None, &[]).await.body;
    for got in delivered {
        let mut root = document.clone();
        root["$ref"] = json!(format!(
            "#/webhooks/{}/post/requestBody/content/application~1json/schema",
            got.event
        ));
        let validator = jsonschema::validator_for(&root).unwrap();
        let payload: Value = serde_json::from_str(&got.body).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&payload)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} delivery unlike its documented schema: {errors:?}",
            got.event
        );
        assert_eq!(payload["type"], got.event.as_str());
        let mut without = payload.clone();
        without["data"] = json!({});
        assert!(
            !validator.is_valid(&without),
            "{} accepts a payload without its data",
            got.event
        );
    }
}

/// A code block of the README's webhook section, by language.
fn readme_snippet(language: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme
        .find("### Webhooks for your CRM")
        .expect("the README has a webhook section")..];
    let fence = format!("```{language}\n");
    let start = section.find(&fence).unwrap_or_else(|| panic!("no {language} snippet")) + fence.len();
    section[start..][..section[start..].find("```").unwrap()].to_owned()
}

/// Runs the README's snippet in `language` on a received delivery, with its default tolerance
/// of five minutes against the real time (the test's server runs on a manual clock weeks
/// behind); true when it verifies.
fn verified_by_readme(language: &str, got: &Got, secret: &str) -> bool {
    let snippet = readme_snippet(language);
    let (program, script) = match language {
        "python" => (
            "python3",
            format!(
                "{snippet}\nimport os, sys\nok = verify(os.environ['SECRET'], os.environ['SIGNATURE'], os.environ['BODY'].encode())\nsys.stdout.write('yes' if ok else 'no')\n"
            ),
        ),
        _ => (
            "node",
            format!(
                "{snippet}\nconst e = process.env;\nprocess.stdout.write(verify(e.SECRET, e.SIGNATURE, Buffer.from(e.BODY)) ? 'yes' : 'no');\n"
            ),
        ),
    };
    let flag = if program == "python3" { "-c" } else { "-e" };
    let out = std::process::Command::new(program)
        .args([flag, &script])
        .env("SECRET", secret)
        .env("SIGNATURE", &got.signature)
        .env("BODY", &got.body)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed to check the README: {e}"));
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match String::from_utf8_lossy(&out.stdout).as_ref() {
        "yes" => true,
        "no" => false,
        other => panic!("{program} printed {other:?}"),
    }
}

async fn a_receiver_that_fails_three_times_gets_everything_signed_and_in_order(app: TestApp) {
    let (r, base) = receiver().await;
    r.fail_first.store(3, Ordering::SeqCst);
    let hook = subscribe(
        &app,
        &format!("{base}/hook"),
        json!(["lead.handed_off", "handoff.claimed"]),
    )
    .await;
    assert_eq!(
        hook["secret"], "whsec_test_0123456789abcdef",
        "the secret is shown on creation"
    );
    let handoff = one_lead_handed_off(&app, "li.wei@acme.example").await;
    let sdr = app.key_named(Role::Sdr, "carol").await;
    assert_eq!(
        app.call_as("POST", "/v1/queues/sales/claim", &sdr, None).await.status,
        200
    );

    let client = WebhookClient::new(std::time::Duration::from_secs(5), loopback()).unwrap();
    for _ in 0..12 {
        app.engine.deliver_webhooks(&client, 100).await.unwrap();
        app.clock.advance(Duration::minutes(3));
    }
    let got = r.got("/hook");
    let delivered: Vec<&Got> = got.iter().filter(|g| g.answered == 200).collect();
    let events: Vec<&str> = delivered.iter().map(|g| g.event.as_str()).collect();
    assert_eq!(
        events,
        ["lead.handed_off", "handoff.claimed"],
        "everything, in order per lead: {got:?}"
    );
    let first: Vec<&Got> = got.iter().filter(|g| g.event == "lead.handed_off").collect();
    assert_eq!(first.len(), 4, "three failures, then 200");
    assert!(
        first.iter().all(|g| g.delivery == first[0].delivery),
        "one delivery id across retries"
    );
    assert!(first[0].delivery.starts_with("dlv_"));
    assert_eq!(
        got[..3].iter().filter(|g| g.event == "handoff.claimed").count(),
        0,
        "the claim waits for the handoff before it"
    );

    let body: Value = serde_json::from_str(&delivered[0].body).unwrap();
    as_documented(&app, &delivered).await;
    assert_eq!(body["type"], "lead.handed_off");
    assert_eq!(body["lead"]["email"], "li.wei@acme.example");
    assert_eq!(body["data"]["handoff"]["id"], handoff["id"]);
    for language in ["python", "js"] {
        assert!(
            verified_by_readme(language, delivered[0], "whsec_test_0123456789abcdef"),
            "{language} verifies it"
        );
        let mut forged = delivered[0].clone();
        forged.body = forged.body.replace("li.wei", "someone.else");
        assert!(
            !verified_by_readme(language, &forged, "whsec_test_0123456789abcdef"),
            "{language} refuses an altered body"
        );
        assert!(
            !verified_by_readme(language, delivered[0], "another-secret-0123456789"),
            "{language} refuses another secret"
        );
    }

    let id = hook["id"].as_str().unwrap();
    let log = app
        .call("GET", &format!("/v1/webhooks/{id}/deliveries"), Role::Crm, None)
        .await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let items = log.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let handed = &items[1];
    assert_eq!(
        (handed["event"].as_str(), handed["status"].as_str()),
        (Some("lead.handed_off"), Some("delivered"))
    );
    assert_eq!(handed["id"].as_str(), Some(first[0].delivery.as_str()));
    let codes: Vec<i64> = handed["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    assert_eq!(
        app.call("GET", &format!("/v1/webhooks/{id}/deliveries"), Role::Sdr, None)
            .await
            .status,
        403
    );
}

async fn bad_receivers_are_bounded_and_block_nobody(app: TestApp) {
    let (r, base) = receiver().await;
    for (url, field) in [
        ("ftp://crm.example/hook".to_owned(), "url"),
        (format!("{}/v1/events", app.base), "url"),
        (
            format!("{}/v1/events", app.base.replace("127.0.0.1", "localhost")),
            "url",
        ),
    ] {
        let answer = app
            .call(
                "POST",
                "/v1/webhooks",
                Role::Crm,
                Some(json!({"url": url, "events": ["lead.handed_off"]})),
            )
            .await;
        assert_eq!(answer.status, 422, "{url}: {:?}", answer.body);
        assert_eq!(answer.body["error"]["details"][0]["field"], field);
    }
    let unknown = app
        .call(
            "POST",
            "/v1/webhooks",
            Role::Crm,
            Some(json!({"url": format!("{base}/hook"), "events": ["lead.teleported"]})),
        )
        .await;
    assert_eq!(unknown.status, 422);
    assert!(unknown.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("lead.teleported"));
    assert_eq!(
        app.call(
            "POST",
            "/v1/webhooks",
            Role::Sdr,
            Some(json!({"url": format!("{base}/hook"), "events": ["*"]}))
        )
        .await
        .status,
        403
    );

    let events = json!(["lead.handed_off"]);
    let redirect = subscribe(&app, &format!("{base}/redirect"), events.clone()).await;
    let slow = subscribe(&app, &format!("{base}/slow"), events.clone()).await;
    subscribe(&app, &format!("{base}/hook"), events).await;
    one_lead_handed_off(&app, "wang.fang@acme.example").await;

    let client = WebhookClient::new(std::time::Duration::from_millis(500), loopback()).unwrap();
    // The pass returns at all only because the stalled receiver is cut off.
    assert_eq!(app.engine.deliver_webhooks(&client, 100).await.unwrap(), 3);
    assert_eq!(r.got("/hook").len(), 1, "the good receiver got it in the same pass");
    assert_eq!(r.got("/redirect").len(), 1, "a redirect is not followed");

    let last_error = |hook: &Value| {
        let app = &app;
        let path = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
        async move {
            let answer = app.call("GET", &path, Role::Crm, None).await.body;
            let delivery = answer["items"][0].clone();
            assert_eq!(delivery["status"], "pending", "retried later: {delivery}");
            delivery["last_error"].as_str().unwrap().to_owned()
        }
    };
    assert!(last_error(&redirect).await.contains("redirects are not followed"));
    assert!(last_error(&slow).await.contains("no answer within 500 ms"));

    let gone = app
        .call(
            "DELETE",
            &format!("/v1/webhooks/{}", slow["id"].as_str().unwrap()),
            Role::Crm,
            None,
        )
        .await;
    assert_eq!(gone.status, 204);
    // After 24 hours of failures a delivery is given up, never retried for ever.
    for _ in 0..160 {
        app.clock.advance(Duration::minutes(10));
        app.engine.deliver_webhooks(&client, 100).await.unwrap();
    }
    let answer = app
        .call(
            "GET",
            &format!("/v1/webhooks/{}/deliveries", redirect["id"].as_str().unwrap()),
            Role::Crm,
            None,
        )
        .await
        .body;
    assert_eq!(answer["items"][0]["status"], "failed", "{}", answer["items"][0]);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("\nnurture_webhook_deliveries_failed_total 1\n"),
        "the one given up is counted: {metrics}"
    );
    let tries = r.got("/redirect").len();
    assert!(
        (60..=161).contains(&tries),
        "retried every 10 minutes or so for a day: {tries}"
    );
}

/// A `crm` key may not aim webhooks at the server's own network: loopback, private, link-local
/// (cloud metadata), CGNAT. Refused when subscribed, and again at every delivery, on the
/// address a name resolves to then, so a subscription made while allowed (or a name that
/// resolves inside later) reaches nothing once it is not.
async fn webhooks_do_not_reach_into_the_network_unless_allowed(app: TestApp) {
    // The same engine behind a server with the default reach: public addresses only.
    let strict = nurture_api::Application::bind("127.0.0.1:0", app.engine.clone())
        .await
        .unwrap();
    let strict_base = format!("http://127.0.0.1:{}", strict.port());
    tokio::spawn(strict.run_until(std::future::pending()));
    let crm = &app.keys[&Role::Crm];
    for (url, what) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a link-local address",
        ),
        ("http://10.0.0.5/hooks", "10.0.0.5 is a private address (10.0.0.0/8)"),
        (
            "http://192.168.1.10:8080/",
            "192.168.1.10 is a private address (192.168.0.0/16)",
        ),
        ("http://172.20.0.1/", "172.20.0.1 is a private address (172.16.0.0/12)"),
        (
            "http://100.100.100.200/",
            "100.100.100.200 is a carrier-grade NAT address",
        ),
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("http://[::1]:5432/", "::1 is a loopback address"),
        (
            "http://[::ffff:a9fe:a9fe]/",
            "::ffff:169.254.169.254 is a link-local address",
        ),
        ("http://localhost:9200/", "127.0.0.1 is a loopback address"),
        ("http://0.0.0.0:8080/", "0.0.0.0 is a \"this network\" address"),
    ] {
        let answer = app
            .client
            .post(format!("{strict_base}/v1/webhooks"))
            .bearer_auth(crm)
            .json(&json!({"url": url, "events": ["*"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 422, "{url}");
        let body: Value = answer.json().await.unwrap();
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["field"], "url", "{url}: {body}");
        let message = detail["message"].as_str().unwrap();
        assert!(message.starts_with(what), "{url}: {message}");
        assert!(
            message.contains("--webhook-allow-network"),
            "{url}: says how to allow it: {message}"
        );
    }
    let stored = app.call("GET", "/v1/webhooks", Role::Crm, None).await.body;
    assert_eq!(stored["items"], json!([]), "nothing refused was stored");

    // Subscribed while the operator allowed loopback (by address and by name) ...
    let (r, base) = receiver().await;
    let port = base.rsplit(':').next().unwrap();
    let by_address = subscribe(&app, &format!("{base}/hook"), json!(["*"])).await;
    let by_name = subscribe(&app, &format!("http://localhost:{port}/hook"), json!(["*"])).await;
    one_lead_handed_off(&app, "zhao.lei@acme.example").await;
    // ... then delivered by a deliverer that allows public addresses only: nothing arrives,
    // and the log says why without a connection having been made.
    let strict_client = WebhookClient::new(
        std::time::Duration::from_secs(5),
        nurture_engine::webhook::Reach::public(),
    )
    .unwrap();
    assert!(app.engine.deliver_webhooks(&strict_client, 100).await.unwrap() >= 2);
    assert!(r.got("/hook").is_empty(), "nothing reached the loopback receiver");
    let log = |hook: &Value| {
        let path = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
        let app = &app;
        async move {
            app.call("GET", &path, Role::Crm, None).await.body["items"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    for (hook, said) in [
        (&by_address, "not sent: 127.0.0.1 is a loopback address"),
        (&by_name, ", a loopback address (127.0.0.0/8)"),
    ] {
        let items = log(hook).await;
        assert!(items.iter().all(|d| d["status"] == "pending"), "{items:?}");
        let tried: Vec<&str> = items.iter().filter_map(|d| d["last_error"].as_str()).collect();
        assert!(
            !tried.is_empty() && tried.iter().all(|e| e.contains(said)),
            "{said:?} in {tried:?}"
        );
    }
    // Allowed again, the pending deliveries go on their next attempts.
    let allowed = WebhookClient::new(std::time::Duration::from_secs(5), loopback()).unwrap();
    for _ in 0..6 {
        app.clock.advance(Duration::minutes(3));
        app.engine.deliver_webhooks(&allowed, 100).await.unwrap();
    }
    let mut total = 0;
    for hook in [&by_address, &by_name] {
        let items = log(hook).await;
        assert!(items.iter().all(|d| d["status"] == "delivered"), "{items:?}");
        total += items.len();
    }
    assert_eq!(r.got("/hook").len(), total);
}

async fn notes_calls_and_decisions_reach_the_crm(app: TestApp) {
    let (r, base) = receiver().await;
    subscribe(
        &app,
        &format!("{base}/hook"),
        json!(["lead.note_added", "handoff.converted", "handoff.decided"]),
    )
    .await;
    let handoff = one_lead_handed_off(&app, "li.wei@acme.example").await;
    let lead = handoff["lead_id"].as_str().unwrap().to_owned();
    let sdr = app.key_named(Role::Sdr, "carol").await;
    assert_eq!(
        app.call_as("POST", "/v1/queues/sales/claim", &sdr, None).await.status,
        200
    );
    let notes = format!("/v1/leads/{lead}/notes");

    // What a note must be: something said, an outcome known, a day that exists, not too long.
    for (body, field) in [
        (json!({}), "text"),
        (json!({"text": "   "}), "text"),
        (json!({"call": {"outcome": "busy"}}), "call.outcome"),
        (
            json!({"call": {"outcome": "reached", "follow_up_on": "2026-02-30"}}),
            "call.follow_up_on",
        ),
        (json!({"text": "x".repeat(10_001)}), "text"),
        (json!({"text": "hi", "mood": "good"}), "mood"),
    ] {
        let answer = app.call_as("POST", &notes, &sdr, Some(body.clone())).await;
        assert_eq!(answer.status, 422, "{body}: {:?}", answer.body);
        let said = answer.body.to_string();
        assert!(said.contains(field), "{body} names {field}: {said}");
    }
    assert_eq!(
        app.call_as("POST", "/v1/leads/999999/notes", &sdr, Some(json!({"text": "hi"})))
            .await
            .status,
        404
    );

    let call = app
        .call_as(
            "POST",
            &notes,
            &sdr,
            Some(json!({"text": "  Wants a demo for the plant managers  ",
                        "call": {"outcome": "meeting_booked", "follow_up_on": "2026-03-10"}})),
        )
        .await;
    assert_eq!(call.status, 201, "{:?}", call.body);
    assert_eq!(call.body["text"], "Wants a demo for the plant managers");
    assert_eq!(
        call.body["call"],
        json!({"outcome": "meeting_booked", "follow_up_on": "2026-03-10"})
    );
    assert_eq!(call.body["by"], "carol");
    assert_eq!(call.body["lead_id"], lead.as_str());

    let id = handoff["id"].as_str().unwrap();
    let convert = format!("/v1/handoffs/{id}/convert");
    for amount in [json!(-5), json!(1.005), json!("a lot")] {
        let answer = app
            .call_as("POST", &convert, &sdr, Some(json!({"amount": amount})))
            .await;
        assert_eq!(answer.status, 422, "{amount}: {:?}", answer.body);
        assert!(answer.body.to_string().contains("amount"), "{:?}", answer.body);
    }
    let converted = app
        .call_as(
            "POST",
            &convert,
            &sdr,
            Some(json!({"amount": 12000.5, "note": "Signed the annual plan"})),
        )
        .await;
    assert_eq!(converted.status, 200, "{:?}", converted.body);
    assert_eq!(converted.body["status"], "converted");
    assert_eq!(converted.body["amount"], json!(12000.5));

    // Both notes are kept, newest first, and stand in the timeline.
    let listed = app.call_as("GET", &notes, &sdr, None).await;
    assert_eq!(listed.status, 200);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0]["text"], "Signed the annual plan");
    assert_eq!(items[0]["decision"], "converted");
    assert_eq!(items[0]["handoff_id"], id);
    let page = app.call_as("GET", &format!("{notes}?limit=1"), &sdr, None).await;
    let next = page.body["next_cursor"].as_str().unwrap();
    let rest = app
        .call_as("GET", &format!("{notes}?limit=1&cursor={next}"), &sdr, None)
        .await;
    assert_eq!(rest.body["items"][0]["id"], call.body["id"]);
    let timeline = app.timeline(&lead, "note").await;
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    assert!(timeline
        .iter()
        .any(|e| e["call"]["outcome"] == "meeting_booked" && e["by"] == "carol"));

    let client = WebhookClient::new(std::time::Duration::from_secs(5), loopback()).unwrap();
    // One of a lead's deliveries at a time per subscription, in order: a pass each.
    for _ in 0..4 {
        app.engine.deliver_webhooks(&client, 100).await.unwrap();
    }
    let got = r.got("/hook");
    let delivered: Vec<&Got> = got.iter().filter(|g| g.answered == 200).collect();
    let events: Vec<&str> = delivered.iter().map(|g| g.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "lead.note_added",
            "handoff.converted",
            "handoff.decided",
            "lead.note_added"
        ],
        "{got:?}"
    );
    as_documented(&app, &delivered).await;
    let body = |i: usize| serde_json::from_str::<Value>(&delivered[i].body).unwrap();
    assert_eq!(body(0)["data"]["note"]["call"]["outcome"], "meeting_booked");
    for i in [1, 2] {
        assert_eq!(body(i)["data"]["note"], "Signed the annual plan");
        assert_eq!(body(i)["data"]["decision"], "converted");
        assert_eq!(body(i)["data"]["handoff"]["amount"], json!(12000.5));
        assert_eq!(body(i)["lead"]["stage"], "customer");
    }
    assert_eq!(body(3)["data"]["note"]["decision"], "converted");

    // Who wrote what is in the audit trail, without the words.
    let audit = app.call("GET", "/v1/audit?kind=note", Role::Admin, None).await;
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["actor"], "carol");
    assert_eq!(entries[0]["detail"]["call"], "meeting_booked");
    assert!(!entries[0].to_string().contains("plant managers"));
}
