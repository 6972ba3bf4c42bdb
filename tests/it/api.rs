//! The REST API against a real server on port 0: every endpoint of the Leads and Events
//! sections, roles, idempotency, and the bad inputs of the contract.

use nurture_engine::access::Role::{Admin, Crm, Marketer, Sdr};
use serde_json::{json, Value};

use crate::support::{spawn_app, TestApp};

async fn create(app: &TestApp, body: Value) -> String {
    let answer = app.call("PUT", "/v1/leads", Crm, Some(body)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body["id"].as_str().expect("ids are strings").to_owned()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.send("GET", "/healthz", None, None, &[]).await;
    assert_eq!((health.status, health.body["status"].as_str()), (200, Some("up")));
    let ready = app.send("GET", "/readyz", None, None, &[]).await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (200, Some("ready")));
    let missing = app.call("GET", "/v1/nothing", Admin, None).await;
    assert_eq!((missing.status, error_code(&missing.body)), (404, "not_found"));
    let wrong_method = app
        .call("POST", "/v1/leads", Crm, Some(json!({"email": "a@b.example"})))
        .await;
    assert_eq!(
        (wrong_method.status, error_code(&wrong_method.body)),
        (405, "method_not_allowed"),
        "a wrong method gets the error body too"
    );
    let text = app.metrics().await;
    assert!(
        text.contains(r#"nurture_http_requests_total{method="GET",route="/readyz",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
}

#[tokio::test]
async fn metrics_count_ingestion_and_upserts() {
    let app = spawn_app().await;
    create(&app, json!({"email": "a@x.example"})).await;
    let events = json!([
        {"lead": {"email": "a@x.example"}, "type": "page_view", "idempotency_key": "k"},
        {"lead": {"email": "a@x.example"}, "type": "page_view", "idempotency_key": "k"},
        {"lead": {"email": "a@x.example"}, "type": "Bad"}
    ]);
    app.call("POST", "/v1/events", Crm, Some(events)).await;
    app.call("GET", "/v1/leads/1", Sdr, None).await;
    let text = app.metrics().await;
    for line in [
        r#"nurture_events_total{outcome="accepted"} 1"#,
        r#"nurture_events_total{outcome="duplicate"} 1"#,
        r#"nurture_events_total{outcome="rejected"} 1"#,
        r#"nurture_lead_upserts_total{outcome="created"} 1"#,
        r#"nurture_http_requests_total{method="GET",route="/v1/leads/{id}",status="200"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let app = spawn_app().await;
    let missing = app.call("GET", "/v1/nothing", Admin, None).await;
    assert_eq!((missing.status, error_code(&missing.body)), (404, "not_found"));
}

#[tokio::test]
async fn keys_and_roles() {
    let app = spawn_app().await;
    let none = app.send("GET", "/v1/leads", None, None, &[]).await;
    assert_eq!((none.status, error_code(&none.body)), (401, "unauthorized"));
    let wrong = app
        .send("GET", "/v1/leads", None, None, &[("authorization", "Bearer nope")])
        .await;
    assert_eq!(wrong.status, 401);
    let basic = app
        .send("GET", "/v1/leads", None, None, &[("authorization", "Basic abc")])
        .await;
    assert_eq!(basic.status, 401);
    let lead = json!({"email": "a@x.example"});
    let sdr_write = app.call("PUT", "/v1/leads", Sdr, Some(lead.clone())).await;
    assert_eq!((sdr_write.status, error_code(&sdr_write.body)), (403, "forbidden"));
    assert!(sdr_write.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sdr role"));
    let id = create(&app, lead).await;
    for (role, method, path, body, expect) in [
        (Sdr, "GET", format!("/v1/leads/{id}"), None, 200),
        (
            Sdr,
            "POST",
            format!("/v1/leads/{id}/score"),
            Some(json!({"delta": 5, "reason": "call"})),
            200,
        ),
        (
            Crm,
            "POST",
            format!("/v1/leads/{id}/score"),
            Some(json!({"delta": 5, "reason": "call"})),
            403,
        ),
        (
            Sdr,
            "POST",
            "/v1/events".to_string(),
            Some(json!({"lead": {"email": "a@x.example"}, "type": "page_view"})),
            403,
        ),
        (Marketer, "DELETE", format!("/v1/leads/{id}"), None, 403),
        (
            Crm,
            "PATCH",
            format!("/v1/leads/{id}"),
            Some(json!({"title": "CTO"})),
            200,
        ),
        (
            Sdr,
            "PATCH",
            format!("/v1/leads/{id}"),
            Some(json!({"title": "CTO"})),
            403,
        ),
        (
            Admin,
            "POST",
            format!("/v1/leads/{id}/tags"),
            Some(json!({"add": ["vip"]})),
            200,
        ),
    ] {
        let answer = app.call(method, &path, role, body).await;
        assert_eq!(answer.status, expect, "{role:?} {method} {path}: {:?}", answer.body);
    }
}

#[tokio::test]
async fn upsert_read_patch_and_erase() {
    let app = spawn_app().await;
    let id = create(&app, json!({"email": "Li.Wei@Acme.example", "first_name": "Wei", "industry": "Energy", "attributes": {"crm_stage": "MQL?"}})).await;
    let updated = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": "li.wei@acme.example", "company": "Acme"})),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["id"], json!(id));
    let lead = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.body;
    assert_eq!(lead["email"], "li.wei@acme.example");
    assert_eq!(lead["company"], "Acme");
    assert_eq!(lead["tags"], json!(["industry:energy"]));
    assert_eq!(
        lead["stage"], "nurturing",
        "a lead with an industry enters the industry drip"
    );
    assert_eq!(lead["score"], 0);
    assert_eq!(lead["consent"]["email"]["status"], "opted_in");
    assert_eq!(lead["attributes"], json!({"crm_stage": "MQL?"}));
    assert_eq!(
        lead["title"],
        Value::Null,
        "every named field is there, null when unknown"
    );
    assert_eq!(
        lead["updated_at"], updated.body["updated_at"],
        "an answer and a later read agree"
    );
    let by_email = app
        .call("GET", "/v1/leads?email=LI.WEI%40acme.example", Sdr, None)
        .await
        .body;
    assert_eq!(by_email["items"][0]["id"], json!(id));
    let patched = app
        .call("PATCH", &format!("/v1/leads/{id}"), Marketer, Some(json!({"industry": "Finance", "owner": "alice@corp.example", "consent": {"email": {"status": "opted_out", "source": "crm"}}})))
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["tags"], json!(["industry:finance"]));
    assert_eq!(patched.body["owner"], "alice@corp.example");
    assert_eq!(patched.body["consent"]["email"]["status"], "opted_out");
    assert_eq!(patched.body["consent"]["email"]["source"], "crm");
    assert_eq!(
        app.call("PATCH", "/v1/leads/987654", Marketer, Some(json!({"title": "x"})))
            .await
            .status,
        404
    );
    assert_eq!(app.call("GET", "/v1/leads/not-an-id", Sdr, None).await.status, 404);
    assert_eq!(
        app.call("DELETE", &format!("/v1/leads/{id}"), Admin, None).await.status,
        204
    );
    assert_eq!(app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.status, 404);
    assert_eq!(
        app.call("DELETE", &format!("/v1/leads/{id}"), Admin, None).await.status,
        404
    );
}

#[tokio::test]
async fn conflicting_upsert_is_409() {
    let app = spawn_app().await;
    create(&app, json!({"email": "a@x.example", "external_id": "crm-1"})).await;
    let clash = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": "a@x.example", "external_id": "crm-2"})),
        )
        .await;
    assert_eq!((clash.status, error_code(&clash.body)), (409, "conflict"));
}

#[tokio::test]
async fn bulk_upsert_answers_per_item() {
    let app = spawn_app().await;
    let answer = app
        .call("POST", "/v1/leads/bulk", Crm, Some(json!([{"email": "a@x.example"}, {"email": "not-an-email"}, {"email": 5}, {"email": "A@x.example", "title": "CEO"}, {"first_name": "nobody"}])))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        (
            answer.body["created"].as_i64(),
            answer.body["updated"].as_i64(),
            answer.body["rejected"].as_i64()
        ),
        (Some(1), Some(1), Some(3))
    );
    let statuses: Vec<&str> = answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["created", "rejected", "rejected", "updated", "rejected"]);
    assert_eq!(answer.body["items"][1]["error"]["details"][0]["field"], "email");
    assert_eq!(answer.body["items"][2]["error"]["details"][0]["field"], "email");
    assert_eq!(answer.body["items"][0]["id"], answer.body["items"][3]["id"]);
    let not_array = app
        .call("POST", "/v1/leads/bulk", Crm, Some(json!({"email": "a@x.example"})))
        .await;
    assert_eq!(not_array.status, 422);
}

#[tokio::test]
async fn tags_score_timeline_and_search() {
    let app = spawn_app().await;
    let id = create(
        &app,
        json!({"email": "a@x.example", "company": "Acme Energy", "industry": "Energy"}),
    )
    .await;
    create(&app, json!({"email": "b@x.example", "company": "Beta"})).await;
    app.clock.advance(chrono::Duration::minutes(1));
    let tagged = app
        .call(
            "POST",
            &format!("/v1/leads/{id}/tags"),
            Sdr,
            Some(json!({"add": ["persona:cxo", "VIP"], "remove": ["nothing"]})),
        )
        .await;
    assert_eq!(tagged.body["tags"], json!(["industry:energy", "persona:cxo", "vip"]));
    let scored = app
        .call(
            "POST",
            &format!("/v1/leads/{id}/score"),
            Sdr,
            Some(json!({"delta": 12, "reason": "Asked for a demo"})),
        )
        .await;
    assert_eq!(scored.body["score"], 12);
    assert_eq!(
        app.call(
            "POST",
            &format!("/v1/leads/{id}/score"),
            Sdr,
            Some(json!({"delta": "ten", "reason": "x"}))
        )
        .await
        .status,
        422
    );
    assert_eq!(
        app.call(
            "POST",
            &format!("/v1/leads/{id}/tags"),
            Sdr,
            Some(json!({"add": ["two words"]}))
        )
        .await
        .status,
        422
    );
    // An array is not the object the route takes (serde would read `[]` as a struct of defaults).
    let answer = app
        .call("POST", &format!("/v1/leads/{id}/tags"), Sdr, Some(json!([])))
        .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.body["error"]["details"][0]["field"], "body", "{}", answer.body);
    let timeline = app
        .call("GET", &format!("/v1/leads/{id}/timeline?limit=2"), Sdr, None)
        .await
        .body;
    assert_eq!(timeline["items"].as_array().unwrap().len(), 2);
    assert_eq!(timeline["items"][0]["kind"], "score_change");
    assert_eq!(timeline["items"][0]["by"]["name"], "sdr-bot");
    let cursor = timeline["next_cursor"].as_str().unwrap();
    let rest = app
        .call(
            "GET",
            &format!("/v1/leads/{id}/timeline?limit=100&cursor={cursor}"),
            Sdr,
            None,
        )
        .await
        .body;
    let kinds: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["tag_change", "message", "campaign_step", "campaign_step", "tag_change"],
        "the other manual tag, then from creation: the drip's first message and steps, and the industry tag"
    );
    assert_eq!(rest["next_cursor"], Value::Null);
    let found = app.call("GET", "/v1/leads?tag=persona:cxo", Sdr, None).await.body;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let searched = app.call("GET", "/v1/leads?q=beta", Sdr, None).await.body;
    assert_eq!(searched["items"][0]["email"], "b@x.example");
    let paged = app.call("GET", "/v1/leads?limit=1", Sdr, None).await.body;
    let next = paged["next_cursor"].as_str().unwrap();
    let second = app
        .call("GET", &format!("/v1/leads?limit=1&cursor={next}"), Sdr, None)
        .await
        .body;
    assert_eq!(second["items"][0]["email"], "b@x.example");
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(app.call("GET", "/v1/leads?stage=sleeping", Sdr, None).await.status, 422);
    assert_eq!(app.call("GET", "/v1/leads?segment=nope", Sdr, None).await.status, 422);
    assert_eq!(app.call("GET", "/v1/leads?limit=0", Sdr, None).await.status, 400);
    assert_eq!(app.call("GET", "/v1/leads?cursor=%%%", Sdr, None).await.status, 400);
    assert_eq!(app.call("GET", "/v1/leads?colour=red", Sdr, None).await.status, 400);
}

#[tokio::test]
async fn events_one_or_many_with_rules_applied() {
    let app = spawn_app().await;
    let one = app
        .call("POST", "/v1/events", Crm, Some(json!({"lead": {"email": "li.wei@acme.example"}, "type": "whitepaper_downloaded", "occurred_at": "2026-11-01T08:00:00Z", "properties": {"topic": "iot"}, "idempotency_key": "crm-7781"})))
        .await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert_eq!(one.body, json!({"accepted": 1, "duplicates": 0, "rejected": []}));
    // A retry repeats the event (a time left out is not compared: the first may have had none).
    let again = app.call("POST", "/v1/events", Crm, Some(json!({"lead": {"email": "li.wei@acme.example"}, "type": "whitepaper_downloaded", "properties": {"topic": "iot"}, "idempotency_key": "crm-7781"}))).await;
    assert_eq!(
        again.body,
        json!({"accepted": 0, "duplicates": 1, "rejected": []}),
        "the same event twice is stored once"
    );
    let many = app
        .call(
            "POST",
            "/v1/events",
            Marketer,
            Some(json!([
                {"lead": {"email": "li.wei@acme.example"}, "type": "webinar_attended", "properties": {"topic": "Edge AI"}},
                {"lead": {"email": "li.wei@acme.example"}, "type": "Bad Type"},
                {"lead": {"email": "li.wei@acme.example"}, "type": "page_view", "properties": "not an object"},
                {"lead": {"email": "bad"}, "type": "page_view"},
                {"lead": {"external_id": "crm-42"}, "type": "page_view", "properties": {"path": "/pricing"}, "source": "ads"}
            ])),
        )
        .await;
    assert_eq!(many.status, 200);
    assert_eq!(
        (many.body["accepted"].as_i64(), many.body["duplicates"].as_i64()),
        (Some(2), Some(0))
    );
    let rejected: Vec<i64> = many.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 2, 3]);
    for (i, field) in [(0, "type"), (1, "properties")] {
        let error = &many.body["rejected"][i]["error"];
        assert_eq!(error["code"], "validation_failed", "{error}");
        assert_eq!(error["details"][0]["field"], field, "{error}");
        assert!(error["message"].as_str().unwrap().starts_with(field), "{error}");
    }
    let lead = app
        .call("GET", "/v1/leads?email=li.wei@acme.example", Sdr, None)
        .await
        .body["items"][0]
        .clone();
    assert_eq!(lead["score"], 30);
    assert_eq!(
        lead["tags"],
        json!(["behaviour:downloaded_whitepaper", "interest:topic/edge-ai"])
    );
    let created = app.call("GET", "/v1/leads?external_id=crm-42", Sdr, None).await.body["items"][0].clone();
    assert_eq!(
        (created["source"].as_str(), created["score"].as_i64()),
        (Some("ads"), Some(5))
    );
    let unknown_id = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(json!({"lead": {"id": "424242"}, "type": "page_view"})),
        )
        .await;
    assert_eq!(unknown_id.status, 404);
}

#[tokio::test]
async fn idempotency_key_header_replays_the_first_answer() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!({"email": "a@x.example"})).unwrap();
    let first = app
        .send(
            "PUT",
            "/v1/leads",
            Some(Crm),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    let second = app
        .send("PUT", "/v1/leads", Some(Crm), Some(body), &[("idempotency-key", "k-1")])
        .await;
    assert_eq!(
        (first.status, second.status),
        (201, 201),
        "the replay is the first answer, not an update"
    );
    assert_eq!(first.body, second.body);
    let other = serde_json::to_vec(&json!({"email": "b@x.example"})).unwrap();
    let reused = app
        .send(
            "PUT",
            "/v1/leads",
            Some(Crm),
            Some(other),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(
        (reused.status, error_code(&reused.body)),
        (409, "idempotency_key_reused")
    );
    let event = serde_json::to_vec(&json!({"lead": {"email": "a@x.example"}, "type": "webinar_attended"})).unwrap();
    for _ in 0..2 {
        let answer = app
            .send(
                "POST",
                "/v1/events",
                Some(Crm),
                Some(event.clone()),
                &[("idempotency-key", "ev-1")],
            )
            .await;
        assert_eq!(answer.body["accepted"], 1);
    }
    let lead = app.call("GET", "/v1/leads?email=a@x.example", Sdr, None).await.body;
    assert_eq!(lead["items"][0]["score"], 20, "the retried POST had the effect of once");
}

#[tokio::test]
async fn malformed_json_is_400_with_the_position() {
    let app = spawn_app().await;
    for path in ["/v1/leads", "/v1/events"] {
        let method = if path == "/v1/leads" { "PUT" } else { "POST" };
        let answer = app
            .send(
                method,
                path,
                Some(Crm),
                Some(b"{\"email\": \"a@x.example\",\n \"title\": }".to_vec()),
                &[],
            )
            .await;
        assert_eq!((answer.status, error_code(&answer.body)), (400, "malformed"), "{path}");
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("line 2 column"),
            "{:?}",
            answer.body
        );
    }
}

#[tokio::test]
async fn wrong_types_and_invalid_values_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "PUT",
            "/v1/leads",
            json!({"email": "a@x.example", "company": 42}),
            "company",
        ),
        ("PUT", "/v1/leads", json!({"email": "not an email"}), "email"),
        (
            "PUT",
            "/v1/leads",
            json!({"email": format!("{}@x.example", "a".repeat(330))}),
            "email",
        ),
        (
            "PUT",
            "/v1/leads",
            json!({"email": "a@x.example", "title": "t".repeat(2000)}),
            "title",
        ),
        (
            "PUT",
            "/v1/leads",
            json!({"email": "a@x.example", "attributes": {"blob": "x".repeat(70_000)}}),
            "attributes",
        ),
        (
            "PUT",
            "/v1/leads",
            json!({"email": "a@x.example", "colour": "red"}),
            "colour",
        ),
        ("PUT", "/v1/leads", json!({"title": "no key"}), "email"),
        (
            "PUT",
            "/v1/leads",
            json!({"email": "a@x.example", "stage": "sleeping"}),
            "stage",
        ),
        (
            "POST",
            "/v1/events",
            json!({"lead": {"email": "a@x.example"}, "type": "Whitepaper Downloaded"}),
            "type",
        ),
        (
            "POST",
            "/v1/events",
            json!({"lead": {"email": "a@x.example"}, "type": 7}),
            "type",
        ),
        (
            "POST",
            "/v1/events",
            json!({"lead": {"email": "a@x.example"}, "type": "x", "occurred_at": "yesterday"}),
            "occurred_at",
        ),
        ("POST", "/v1/events", json!({"lead": {}, "type": "page_view"}), "lead"),
    ];
    for (method, path, body, field) in cases {
        let answer = app.call(method, path, Crm, Some(body.clone())).await;
        assert_eq!(
            (answer.status, error_code(&answer.body)),
            (422, "validation_failed"),
            "{body}: {:?}",
            answer.body
        );
        let fields: Vec<&str> = answer.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body}: expected {field} in {fields:?}");
    }
    let leads = app.call("GET", "/v1/leads", Admin, None).await.body;
    assert_eq!(leads["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn nul_bytes_are_refused_and_unicode_is_kept() {
    let app = spawn_app().await;
    let nul = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": "a@x.example", "company": "A\u{0}B"})),
        )
        .await;
    assert_eq!(nul.status, 422);
    assert_eq!(nul.body["error"]["details"][0]["field"], "company");
    let nul_event = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(json!({"lead": {"email": "a@x.example"}, "type": "page_view", "properties": {"p": "x\u{0}"}})),
        )
        .await;
    assert_eq!(
        (
            nul_event.status,
            nul_event.body["error"]["details"][0]["field"].as_str()
        ),
        (422, Some("properties.p"))
    );
    let tricky = "李伟 🚀 O'Brien \"; DROP TABLE leads; --";
    let id = create(
        &app,
        json!({"email": "li@x.example", "last_name": tricky, "attributes": {"备注": tricky}}),
    )
    .await;
    let lead = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.body;
    assert_eq!(lead["last_name"], tricky);
    assert_eq!(lead["attributes"]["备注"], tricky);
    let search = app.call("GET", "/v1/leads?q=%E6%9D%8E%E4%BC%9F", Sdr, None).await.body;
    assert_eq!(search["items"][0]["id"], json!(id));
}

#[tokio::test]
async fn too_many_items_or_too_large_a_body_is_413_and_stores_nothing() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..10_001)
        .map(|i| json!({"lead": {"email": format!("l{i}@x.example")}, "type": "page_view"}))
        .collect();
    let answer = app.call("POST", "/v1/events", Crm, Some(Value::Array(events))).await;
    assert_eq!((answer.status, error_code(&answer.body)), (413, "too_large"));
    let leads: Vec<Value> = (0..10_001)
        .map(|i| json!({"email": format!("l{i}@x.example")}))
        .collect();
    assert_eq!(
        app.call("POST", "/v1/leads/bulk", Crm, Some(Value::Array(leads)))
            .await
            .status,
        413
    );
    let huge = format!(
        "{{\"email\": \"a@x.example\", \"title\": \"{}\"}}",
        "x".repeat(nurture_api::body::MAX_BODY_BYTES)
    );
    let answer = app
        .send("PUT", "/v1/leads", Some(Crm), Some(huge.into_bytes()), &[])
        .await;
    assert_eq!((answer.status, error_code(&answer.body)), (413, "too_large"));
    assert_eq!(app.call("GET", "/v1/leads", Admin, None).await.body["items"], json!([]));
}

#[tokio::test]
async fn a_full_bulk_of_ten_thousand_events_is_accepted() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..10_000).map(|i| json!({"lead": {"email": format!("l{}@x.example", i % 500)}, "type": "page_view", "properties": {"path": "/pricing"}, "idempotency_key": format!("k{i}")})).collect();
    let answer = app.call("POST", "/v1/events", Crm, Some(Value::Array(events))).await;
    assert_eq!(
        answer.body,
        json!({"accepted": 10_000, "duplicates": 0, "rejected": []})
    );
    let lead = app.call("GET", "/v1/leads?email=l7@x.example", Sdr, None).await.body;
    assert_eq!(lead["items"][0]["score"], 15, "20 pricing views, capped at 15 points");
}

#[tokio::test]
async fn the_openapi_document_lists_only_operations_that_exist() {
    let app = spawn_app().await;
    let document = app.send("GET", "/openapi.json", None, None, &[]).await;
    assert_eq!(document.status, 200);
    assert_eq!(document.body["openapi"], "3.1.0");
    let paths = document.body["paths"].as_object().unwrap();
    let mut seen = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            seen += 1;
            let concrete = path
                .replace("{id}", "1")
                .replace("{token}", "forged.token")
                .replace("{queue}", "sdr")
                .replace("{member}", "alice@corp.example");
            let url = format!("{}{concrete}", app.base);
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = app
                .client
                .request(method.clone(), url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let expect = if operation.get("security").is_some() {
                401
            } else if path.contains("{token}") {
                404
            } else if operation["requestBody"]["required"] == true {
                // A public write sent no body: malformed, so there.
                400
            } else {
                200
            };
            assert_eq!(
                answer, expect,
                "{method} {path}: documented, so it must exist (and ask for a key when it says so)"
            );
        }
    }
    assert!(
        seen >= 14,
        "every operation of the Leads and Events sections is documented ({seen})"
    );
    let lead = &document.body["components"]["schemas"]["LeadView"]["properties"];
    for field in [
        "id",
        "email",
        "external_id",
        "company",
        "attributes",
        "tags",
        "score",
        "stage",
        "owner",
        "consent",
    ] {
        assert!(lead.get(field).is_some(), "LeadView documents {field}");
    }
}

/// `(method, path)` of every `.api_route("PATH", get_with(..).post_with(..))` and every
/// undocumented `.route("PATH", get(..))` in the API's sources. The console's HTML pages
/// (`console/`) are for people in a browser, not API clients: they are left out.
fn routed_operations() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(crate::support::repo().join("api/src")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|name| name == "console") {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        let mut rest = source.as_str();
        while let Some(at) = rest.find("route(") {
            rest = &rest[at + 6..];
            // The path may stand on the next line.
            let Some(quoted) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            rest = quoted;
            let path = &rest[..rest.find('"').unwrap()];
            // The method router runs to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let methods = &rest[path.len() + 1..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = [format!("{method}("), format!("{method}_with(")].iter().any(|call| {
                    methods
                        .match_indices(call.as_str())
                        .any(|(i, _)| i == 0 || !methods.as_bytes()[i - 1].is_ascii_alphanumeric())
                });
                if called {
                    found.push((method.to_owned(), path.to_owned()));
                }
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn every_routed_operation_is_documented_and_the_document_is_valid_openapi() {
    let app = spawn_app().await;
    let document = app.send("GET", "/openapi.json", None, None, &[]).await.body;
    let routed = routed_operations();
    assert!(routed.len() >= 40, "the route scan found the routes: {routed:?}");
    for (method, path) in &routed {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is routed but not in /openapi.json (register it with `api_route`)"
        );
    }
    // OpenAPI 3.1: the version, info, and per operation responses and declared path parameters;
    // every schema a valid JSON Schema 2020-12, and every $ref resolves.
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(document["info"]["title"].is_string() && document["info"]["version"].is_string());
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for (name, schema) in schemas {
        if let Err(e) = jsonschema::meta::validate(schema) {
            panic!("schema {name} is not valid JSON Schema: {e} at {}", e.instance_path());
        }
    }
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = &reference[..reference.find('"').unwrap()];
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target}"));
        assert!(schemas.contains_key(name), "{target} does not resolve");
    }
    let mut ids = std::collections::HashSet::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'));
        let params: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in operations.as_object().unwrap() {
            assert!(["get", "post", "put", "patch", "delete"].contains(&method.as_str()));
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{method} {path} has responses"
            );
            for p in &params {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|x| x["name"] == *p && x["in"] == "path" && x["required"] == true)
                });
                assert!(declared, "{method} {path} declares its path parameter {p}");
            }
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has an operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is unique");
            assert!(op["tags"][0].is_string(), "{method} {path} has a tag");
        }
    }
    // The query parameters the handlers read are documented, and the claim's empty answer.
    let listed: Vec<&str> = document["paths"]["/v1/leads"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "tag",
            "stage",
            "segment",
            "q",
            "email",
            "external_id",
            "limit",
            "cursor"
        ]
    );
    assert!(document["paths"]["/v1/queues/{queue}/claim"]["post"]["responses"]["204"].is_object());
    assert!(document["paths"]["/v1/leads"]["put"]["responses"]["503"].is_object());
}

#[tokio::test]
async fn every_role_outside_an_operations_roles_is_refused() {
    let app = spawn_app().await;
    let document = app.send("GET", "/openapi.json", None, None, &[]).await.body;
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            let Some(allowed) = op["x-roles"].as_array() else {
                continue;
            };
            let concrete = path
                .replace("{id}", "1")
                .replace("{queue}", "sdr")
                .replace("{member}", "alice@corp.example");
            for role in [Marketer, Sdr, Crm] {
                if allowed.iter().any(|r| r == role.as_str()) {
                    continue;
                }
                let answer = app
                    .send(&method.to_uppercase(), &concrete, Some(role), Some(b"{}".to_vec()), &[])
                    .await;
                assert_eq!(
                    answer.status,
                    403,
                    "{} may not {method} {path}: {:?}",
                    role.as_str(),
                    answer.body
                );
                assert_eq!(answer.body["error"]["code"], "forbidden");
                checked += 1;
            }
        }
    }
    // 37 since marketers decide handoffs too (accept, reject, convert, release).
    assert!(checked >= 37, "{checked} refusals checked");
}
