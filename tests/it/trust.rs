//! Defects found by probing the API as an attacker, an integrator and a careless user would
//! (issue 29), each held on both backends: what is accepted reads back as given, what cannot
//! be stored is refused with 422 naming the field, and an SDR acts only on their own work.

use nurture_engine::access::Role::{self, Admin, Crm, Marketer, Sdr};
use serde_json::{json, Value};

use crate::support::TestApp;

both_backends!(crate::support::spawn_app_on;
    extreme_values_read_back_as_given_everywhere,
    values_that_would_change_in_storage_are_refused_by_name,
    nul_characters_get_the_same_422_on_both_backends,
    manual_score_changes_stay_within_their_bounds,
    only_the_holder_or_an_overseer_decides_a_handoff,
    an_sdr_sets_only_their_own_availability,
    every_tracked_link_redirects_to_the_link_the_template_means,
    a_machines_click_scores_nothing,
    event_times_are_checked_and_explained,
    enroll_and_member_changes_honour_idempotency_keys,
    bulk_answers_reject_items_in_one_shape,
    links_in_a_playbook_archive_are_refused_by_name,
    an_event_key_reused_for_another_event_is_a_conflict,
    inputs_are_judged_as_the_document_states,
    every_route_admits_the_roles_it_names_and_only_those,
);

/// Sends a raw JSON text (numbers exactly as written) as `role`.
async fn send_text(app: &TestApp, method: &str, path: &str, role: Role, body: &str) -> crate::support::Answer {
    app.send(method, path, Some(role), Some(body.as_bytes().to_vec()), &[])
        .await
}

/// Extreme numbers, a long string and a deep object: JSON that both backends must give back
/// exactly as the API first answered it.
const EXTREMES: &[&str] = &[
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "1e-320",
    "5e-324",
    "0",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "0.1",
    "123456789.123456789",
];

fn deep(levels: usize) -> Value {
    (0..levels).fold(json!("bottom"), |inner, i| json!({ format!("l{i}"): inner }))
}

async fn extreme_values_read_back_as_given_everywhere(app: TestApp) {
    let long = "长".repeat(10_000);
    // The attributes object is one level: 31 more make the deepest value accepted.
    let nested = deep(nurture_engine::lead::MAX_JSON_DEPTH - 1);
    for (i, number) in EXTREMES.iter().enumerate() {
        let email = format!("x{i}@t.example");
        let text =
            format!(r#"{{"email": "{email}", "attributes": {{"x": {number}, "long": "{long}", "deep": {nested}}}}}"#);
        let created = send_text(&app, "PUT", "/v1/leads", Crm, &text).await;
        assert_eq!(created.status, 201, "{number}: {:?}", created.body);
        let sent: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(created.body["attributes"], sent["attributes"], "{number}: as answered");
        let id = created.body["id"].as_str().unwrap().to_owned();

        let events = format!(
            r#"[{{"lead": {{"id": "{id}"}}, "type": "page_view", "properties": {{"x": {number}, "deep": {nested}}}}}]"#
        );
        let posted = send_text(&app, "POST", "/v1/events", Crm, &events).await;
        assert_eq!(
            (posted.status, &posted.body["accepted"]),
            (200, &json!(1)),
            "{number}: {:?}",
            posted.body
        );

        let read = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await;
        assert_eq!(read.status, 200, "{number}: {:?}", read.body);
        assert_eq!(read.body["attributes"], sent["attributes"], "{number}: read back");
        let found = app.call("GET", &format!("/v1/leads?email={email}"), Sdr, None).await;
        assert_eq!(found.body["items"][0]["attributes"], sent["attributes"], "{number}");
        let timeline = app.call("GET", &format!("/v1/leads/{id}/timeline"), Sdr, None).await;
        assert_eq!(timeline.status, 200, "{number}: {:?}", timeline.body);
        let event = timeline.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "page_view")
            .unwrap_or_else(|| panic!("{number}: no page view in {}", timeline.body));
        let properties: Value = serde_json::from_str(&format!(r#"{{"x": {number}, "deep": {nested}}}"#)).unwrap();
        assert_eq!(event["properties"], properties, "{number}: the event's properties");
    }
    let page = app.call("GET", "/v1/leads?limit=100", Sdr, None).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["items"].as_array().unwrap().len(), EXTREMES.len());
}

async fn values_that_would_change_in_storage_are_refused_by_name(app: TestApp) {
    let refused = |body: &str| {
        let body = body.to_owned();
        let app = &app;
        async move {
            let answer = send_text(app, "PUT", "/v1/leads", Crm, &body).await;
            assert_eq!(answer.status, 422, "{body}: {:?}", answer.body);
            let detail = &answer.body["error"]["details"][0];
            (
                detail["field"].as_str().unwrap().to_owned(),
                detail["message"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (field, message) = refused(r#"{"email": "a@t.example", "attributes": {"x": -0.0}}"#).await;
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("attributes.x", "is -0, which PostgreSQL would keep as 0; send 0")
    );
    let (field, message) =
        refused(r#"{"email": "a@t.example", "attributes": {"ids": [1, 123456789012345678901234567890]}}"#).await;
    assert_eq!(field, "attributes.ids[1]");
    assert!(
        message.starts_with("is the integer 123456789012345678901234567890, which has more digits"),
        "{message}"
    );
    let too_deep = format!(
        r#"{{"email": "a@t.example", "attributes": {{"deep": {}}}}}"#,
        deep(nurture_engine::lead::MAX_JSON_DEPTH)
    );
    let (field, message) = refused(&too_deep).await;
    assert!(field.starts_with("attributes.deep.l"), "{field}");
    assert_eq!(message, "nests deeper than 32 levels; flatten it");

    let event = send_text(
        &app,
        "POST",
        "/v1/events",
        Crm,
        r#"{"lead": {"email": "a@t.example"}, "type": "page_view", "properties": {"n": -0.0}}"#,
    )
    .await;
    assert_eq!(
        (event.status, event.body["error"]["details"][0]["field"].as_str()),
        (422, Some("properties.n")),
        "{:?}",
        event.body
    );
    let none = app.call("GET", "/v1/leads?email=a@t.example", Sdr, None).await;
    assert_eq!(none.body["items"], json!([]), "nothing refused was stored");
}

async fn nul_characters_get_the_same_422_on_both_backends(app: TestApp) {
    let lead = app
        .call("PUT", "/v1/leads", Crm, Some(json!({"email": "n@t.example"})))
        .await;
    let id = lead.body["id"].as_str().unwrap().to_owned();
    let cases: Vec<(&str, String, Role, Option<Value>, &str)> = vec![
        (
            "PUT",
            "/v1/leads".into(),
            Crm,
            Some(json!({"email": "n@t.example", "external_id": "a\u{0}b"})),
            "external_id",
        ),
        ("GET", "/v1/leads?q=a%00b".into(), Sdr, None, "q"),
        ("GET", "/v1/leads?external_id=a%00b".into(), Sdr, None, "external_id"),
        (
            "POST",
            "/v1/handoffs".into(),
            Marketer,
            Some(json!({"lead": {"id": id}, "queue": "sales", "reason": "a\u{0}b"})),
            "reason",
        ),
        (
            "POST",
            "/v1/webhooks".into(),
            Admin,
            Some(
                json!({"url": "https://crm.example/hook", "events": ["lead.created"], "secret": "0123456789abcdef\u{0}"}),
            ),
            "secret",
        ),
        (
            "POST",
            format!("/v1/leads/{id}/score"),
            Sdr,
            Some(json!({"delta": 5, "reason": "a\u{0}"})),
            "reason",
        ),
    ];
    for (method, path, role, body, field) in cases {
        let answer = app.call(method, &path, role, body).await;
        assert_eq!(
            (answer.status, answer.body["error"]["details"][0]["field"].as_str()),
            (422, Some(field)),
            "{method} {path}: {:?}",
            answer.body
        );
        assert_eq!(
            answer.body["error"]["details"][0]["message"], "contains a NUL character",
            "{method} {path}"
        );
    }
    let opened = app
        .call(
            "POST",
            "/v1/handoffs",
            Marketer,
            Some(json!({"lead": {"id": id}, "queue": "sales", "reason": "Asked for a demo"})),
        )
        .await;
    assert_eq!(opened.status, 201, "{:?}", opened.body);
    let handoff = opened.body["id"].as_str().unwrap();
    let reject = app
        .call(
            "POST",
            &format!("/v1/handoffs/{handoff}/reject"),
            Marketer,
            Some(json!({"reason": "no\u{0}budget"})),
        )
        .await;
    assert_eq!(
        (reject.status, reject.body["error"]["details"][0]["field"].as_str()),
        (422, Some("reason")),
        "{:?}",
        reject.body
    );
}

async fn manual_score_changes_stay_within_their_bounds(app: TestApp) {
    let lead = app
        .call("PUT", "/v1/leads", Crm, Some(json!({"email": "s@t.example"})))
        .await;
    let path = format!("/v1/leads/{}/score", lead.body["id"].as_str().unwrap());
    for delta in [
        "-9223372036854775808",
        "9223372036854775807",
        "1000001",
        "-1000001",
        "0",
    ] {
        let answer = send_text(
            &app,
            "POST",
            &path,
            Sdr,
            &format!(r#"{{"delta": {delta}, "reason": "x"}}"#),
        )
        .await;
        assert_eq!(
            (answer.status, answer.body["error"]["details"][0]["field"].as_str()),
            (422, Some("delta")),
            "{delta}: {:?}",
            answer.body
        );
    }
    let down = app
        .call("POST", &path, Sdr, Some(json!({"delta": -1_000_000, "reason": "x"})))
        .await;
    assert_eq!((down.status, &down.body["score"]), (200, &json!(-1_000_000)));
}

/// A handoff of a new lead in the `sales` queue (claim routing), claimed by `holder`.
async fn claimed_by(app: &TestApp, holder: &str, n: usize) -> String {
    let lead = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": format!("h{n}@t.example")})),
        )
        .await;
    let opened = app
        .call(
            "POST",
            "/v1/handoffs",
            Marketer,
            Some(json!({"lead": {"id": lead.body["id"]}, "queue": "sales", "reason": "Asked for a demo"})),
        )
        .await;
    assert_eq!(opened.status, 201, "{:?}", opened.body);
    let claim = app.call_as("POST", "/v1/queues/sales/claim", holder, None).await;
    assert_eq!(claim.status, 200, "{:?}", claim.body);
    assert_eq!(claim.body["id"], opened.body["id"]);
    claim.body["id"].as_str().unwrap().to_owned()
}

async fn only_the_holder_or_an_overseer_decides_a_handoff(app: TestApp) {
    let alice = app.key_named(Sdr, "alice@corp.example").await;
    let bob = app.key_named(Sdr, "bob@corp.example").await;
    let callers = [
        ("alice (holder)", alice.clone()),
        ("bob (another SDR)", bob),
        ("marketer", app.keys[&Marketer].clone()),
        ("admin", app.keys[&Admin].clone()),
        ("crm", app.keys[&Crm].clone()),
    ];
    // Expected status per verb, callers in the order above.
    let table: [(&str, Option<Value>, [u16; 5]); 4] = [
        ("accept", None, [200, 409, 200, 200, 403]),
        (
            "reject",
            Some(json!({"reason": "no budget"})),
            [200, 409, 200, 200, 403],
        ),
        ("release", None, [200, 409, 200, 200, 403]),
        ("convert", Some(json!({})), [200, 409, 200, 200, 200]),
    ];
    let mut n = 0;
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (verb, body, expected) in &table {
        for ((who, key), status) in callers.iter().zip(expected) {
            n += 1;
            let id = claimed_by(&app, &alice, n).await;
            let answer = app
                .call_as("POST", &format!("/v1/handoffs/{id}/{verb}"), key, body.clone())
                .await;
            got.push(format!("{verb} by {who}: {}", answer.status));
            want.push(format!("{verb} by {who}: {status}"));
            let after = app.call("GET", &format!("/v1/handoffs/{id}"), Admin, None).await;
            if after.body["status"] == "open" {
                // Released: out of the way of the next case's claim.
                let cleared = app
                    .call(
                        "POST",
                        &format!("/v1/handoffs/{id}/reject"),
                        Admin,
                        Some(json!({"reason": "test"})),
                    )
                    .await;
                assert_eq!(cleared.status, 200, "{:?}", cleared.body);
            }
            if answer.status == 409 {
                let handoff = app.call("GET", &format!("/v1/handoffs/{id}"), Admin, None).await;
                assert_eq!(handoff.body["status"], "claimed", "a refused decision changes nothing");
                assert_eq!(
                    answer.body["error"]["message"],
                    format!("handoff {id} is claimed by alice@corp.example")
                );
            }
        }
    }
    assert_eq!(got, want);
}

async fn an_sdr_sets_only_their_own_availability(app: TestApp) {
    let alice = app.key_named(Sdr, "alice@corp.example").await;
    let bob = app.key_named(Sdr, "bob@corp.example").await;
    let callers = [
        ("alice (herself)", alice),
        ("bob (another SDR)", bob),
        ("marketer", app.keys[&Marketer].clone()),
        ("admin", app.keys[&Admin].clone()),
        ("crm", app.keys[&Crm].clone()),
    ];
    let table: [(Value, [u16; 5]); 3] = [
        (json!({"available": false}), [200, 403, 200, 200, 403]),
        (json!({"available": false, "capacity": 0}), [403, 403, 200, 200, 403]),
        (json!({"weight": 2}), [403, 403, 200, 200, 403]),
    ];
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (body, expected) in &table {
        for ((who, key), status) in callers.iter().zip(expected) {
            let answer = app
                .call_as(
                    "PUT",
                    "/v1/queues/sdr/members/alice@corp.example",
                    key,
                    Some(body.clone()),
                )
                .await;
            got.push(format!("{body} by {who}: {}", answer.status));
            want.push(format!("{body} by {who}: {status}"));
        }
    }
    assert_eq!(got, want);
    let members = app.call("GET", "/v1/queues/sdr/members", Admin, None).await;
    let alice = &members.body["items"][0];
    assert_eq!(
        (&alice["member"], &alice["capacity"], &alice["weight"]),
        (&json!("alice@corp.example"), &json!(0), &json!(2)),
        "{:?}",
        members.body
    );
}

/// The web links of an HTML document as a browser reads them (html5ever decodes character
/// references), in document order, leaving out the server's own (unsubscribe, pixel).
fn links_as_a_browser_reads_them(html: &str, own: &str) -> Vec<String> {
    hrefs(html)
        .into_iter()
        .filter(|href| (href.starts_with("http://") || href.starts_with("https://")) && !href.starts_with(own))
        .collect()
}

fn hrefs(html: &str) -> Vec<String> {
    let document = scraper::Html::parse_document(html);
    let anchors = scraper::Selector::parse("a[href]").unwrap();
    document
        .select(&anchors)
        .filter_map(|a| a.value().attr("href"))
        .map(|href| href.trim().to_owned())
        .collect()
}

async fn every_tracked_link_redirects_to_the_link_the_template_means(app: TestApp) {
    use nurture_engine::lead::{Lead, LeadId};
    use nurture_engine::playbook::Channel;
    use nurture_engine::template::{Links, RenderInput};

    let playbook = crate::support::playbook().playbook;
    let templates = &playbook.templates;
    let outbox = tempfile::tempdir().unwrap();
    let sender = nurture_engine::engine::Sender {
        mailer: std::sync::Arc::new(nurture_engine::mail::FileMailer::new(outbox.path()).unwrap()),
        from: "nurture <n@t.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        concurrency: 1,
        wechat: None,
        limits: Default::default(),
    };
    let client = crate::support::http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let links = Links {
        open_pixel: format!("{}/t/o/pixel", app.base),
        unsubscribe: format!("{}/u/token", app.base),
    };
    let mut names: Vec<&str> = templates
        .names()
        .filter(|n| !n.starts_with("en/") && templates.check(Channel::Email, n).is_ok())
        .collect();
    names.sort();
    let mut followed = 0;
    for language in ["zh", "en"] {
        let mut lead = Lead::new(LeadId(1), crate::support::start());
        lead.email = Some("li.wei@acme.example".into());
        lead.fields.insert("first_name", "Wei".into());
        lead.attributes.insert("language".into(), json!(language));
        for name in &names {
            let input = RenderInput {
                lead: &lead,
                tags: &[],
                campaign: "welcome",
                step: "first",
                timezone: playbook.rules.default_timezone,
                default_language: playbook.rules.default_language,
                event: None,
            };
            let rendered = templates.render_email(name, &input, &links).unwrap();
            assert_eq!(
                rendered.template.starts_with("en/"),
                language == "en",
                "{name}: an English copy"
            );
            let meant = links_as_a_browser_reads_them(&rendered.html, &app.base);
            let tracked_html = sender.track_clicks(&rendered.html, 42).unwrap();
            let redirect = format!("{}/t/c/", app.base);
            let tracked: Vec<String> = hrefs(&tracked_html)
                .into_iter()
                .filter(|href| href.starts_with(&redirect))
                .collect();
            assert_eq!(
                tracked.len(),
                meant.len(),
                "{}: every web link is tracked",
                rendered.template
            );
            let mut arrived = Vec::new();
            for link in &tracked {
                assert!(link.starts_with(&format!("{}/t/c/", app.base)), "{link}");
                let answer = client.get(link).send().await.unwrap();
                assert_eq!(answer.status().as_u16(), 302, "{}: {link}", rendered.template);
                arrived.push(answer.headers()["location"].to_str().unwrap().to_owned());
                followed += 1;
            }
            assert_eq!(arrived, meant, "{}", rendered.template);
        }
    }
    assert!(
        followed >= 2 * names.len(),
        "every shipped e-mail has a link: {followed} followed"
    );
}

async fn a_machines_click_scores_nothing(app: TestApp) {
    let lead = app
        .call("PUT", "/v1/leads", Crm, Some(json!({"email": "m@t.example"})))
        .await;
    let id = lead.body["id"].as_str().unwrap().to_owned();
    let click = |automated: bool, key: &str| {
        json!({"lead": {"id": id}, "type": "email_clicked", "idempotency_key": key,
               "properties": {"message_id": 1, "url": "https://x.example/", "automated": automated}})
    };
    let scanned = app.call("POST", "/v1/events", Crm, Some(click(true, "scan"))).await;
    assert_eq!(scanned.body["accepted"], 1, "{:?}", scanned.body);
    let after_scan = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.body;
    assert_eq!(
        (&after_scan["score"], &after_scan["tags"]),
        (&json!(0), &json!([])),
        "a link scanner's click fires no rule"
    );
    app.call("POST", "/v1/events", Crm, Some(click(false, "person"))).await;
    let after_person = app.call("GET", &format!("/v1/leads/{id}"), Sdr, None).await.body;
    assert_eq!(
        (&after_person["score"], &after_person["tags"]),
        (&json!(3), &json!(["behaviour:clicked_email"])),
        "a person's click does"
    );
}

async fn event_times_are_checked_and_explained(app: TestApp) {
    let event = |at: &str| json!({"lead": {"email": "f@t.example"}, "type": "page_view", "occurred_at": at});
    let future = app
        .call("POST", "/v1/events", Crm, Some(event("9999-12-31T00:00:00Z")))
        .await;
    let detail = &future.body["error"]["details"][0];
    assert_eq!(
        (future.status, &detail["field"]),
        (422, &json!("occurred_at")),
        "{:?}",
        future.body
    );
    assert!(
        detail["message"]
            .as_str()
            .unwrap()
            .starts_with("is 9999-12-31T00:00:00Z, more than a day after now"),
        "{detail}"
    );
    let garbled = app.call("POST", "/v1/events", Crm, Some(event("20/11/2026"))).await;
    let detail = &garbled.body["error"]["details"][0];
    assert_eq!(
        (garbled.status, &detail["field"]),
        (422, &json!("occurred_at")),
        "{:?}",
        garbled.body
    );
    assert!(
        detail["message"].as_str().unwrap().contains("is not an RFC 3339 time"),
        "{detail}"
    );
    let lead = app.call("GET", "/v1/leads?email=f@t.example", Sdr, None).await;
    assert_eq!(lead.body["items"], json!([]), "nothing refused was stored");
    let batch = app
        .call("POST", "/v1/events", Crm, Some(json!([event("9999-12-31T00:00:00Z")])))
        .await;
    assert_eq!(
        (batch.status, &batch.body["accepted"]),
        (200, &json!(0)),
        "{:?}",
        batch.body
    );
    assert_eq!(batch.body["rejected"][0]["index"], 0);
}

async fn enroll_and_member_changes_honour_idempotency_keys(app: TestApp) {
    let with_key = |key: &'static str, body: Value| -> (Vec<u8>, [(&'static str, &'static str); 1]) {
        (serde_json::to_vec(&body).unwrap(), [("idempotency-key", key)])
    };
    let lead = app
        .call("PUT", "/v1/leads", Crm, Some(json!({"email": "i@t.example"})))
        .await;
    let id = lead.body["id"].as_str().unwrap().to_owned();
    let (body, headers) = with_key("enroll-1", json!({"leads": [id]}));
    let first = app
        .send(
            "POST",
            "/v1/campaigns/welcome/enroll",
            Some(Crm),
            Some(body.clone()),
            &headers,
        )
        .await;
    assert_eq!(
        (first.status, &first.body),
        (200, &json!({"enrolled": 1, "skipped": 0, "not_found": []}))
    );
    let retry = app
        .send("POST", "/v1/campaigns/welcome/enroll", Some(Crm), Some(body), &headers)
        .await;
    assert_eq!(
        (retry.status, &retry.body),
        (200, &first.body),
        "a retry has the effect of once and gets the first answer"
    );
    let (other, headers) = with_key("enroll-1", json!({"leads": [id, id]}));
    let reused = app
        .send("POST", "/v1/campaigns/welcome/enroll", Some(Crm), Some(other), &headers)
        .await;
    assert_eq!(
        (reused.status, &reused.body["error"]["code"]),
        (409, &json!("idempotency_key_reused"))
    );

    let path = "/v1/queues/sdr/members/alice@corp.example";
    let (away, headers) = with_key("member-1", json!({"available": false}));
    let first = app
        .send("PUT", path, Some(Marketer), Some(away.clone()), &headers)
        .await;
    assert_eq!((first.status, &first.body["available"]), (200, &json!(false)));
    let (back, _) = with_key("member-1", json!({"available": true}));
    let reused = app.send("PUT", path, Some(Marketer), Some(back), &headers).await;
    assert_eq!(
        (reused.status, &reused.body["error"]["code"]),
        (409, &json!("idempotency_key_reused"))
    );
    let retry = app.send("PUT", path, Some(Marketer), Some(away), &headers).await;
    assert_eq!((retry.status, &retry.body), (200, &first.body));
}

/// `POST /v1/events` and `POST /v1/leads/bulk` name a refused item the same way:
/// `{"index", "error": {"code", "message", "details"}}`, the shape of every error answer.
async fn bulk_answers_reject_items_in_one_shape(app: TestApp) {
    let events = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(json!([
                {"lead": {"email": "ok@shape.example"}, "type": "page_viewed"},
                {"lead": {"email": "ok@shape.example"}, "type": ""},
                {"lead": {"id": "999999"}, "type": "page_viewed"},
                {"lead": {"email": "ok@shape.example"}, "type": "page_viewed", "occurred_at": "yesterday"},
            ])),
        )
        .await;
    assert_eq!(events.status, 200, "{:?}", events.body);
    let leads = app
        .call(
            "POST",
            "/v1/leads/bulk",
            Crm,
            Some(json!([{"email": "fine@shape.example"}, {"email": "not an address"}])),
        )
        .await;
    assert_eq!(leads.status, 200, "{:?}", leads.body);
    let mut rejected: Vec<Value> = events.body["rejected"].as_array().unwrap().clone();
    rejected.extend(
        leads.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] == "rejected")
            .cloned(),
    );
    let shapes: Vec<(i64, &str, Option<&str>)> = rejected
        .iter()
        .map(|r| {
            let error = &r["error"];
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
            assert!(error["details"].is_array(), "{r}");
            (
                r["index"].as_i64().unwrap(),
                error["code"].as_str().unwrap(),
                error["details"][0]["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (1, "validation_failed", Some("type")),
            (2, "not_found", None),
            (3, "validation_failed", Some("occurred_at")),
            (1, "validation_failed", Some("email")),
        ]
    );
}

/// A symbolic or hard link in an uploaded playbook archive is refused with its name and how
/// to send the file instead, never skipped: the campaign it stood for would silently be gone.
async fn links_in_a_playbook_archive_are_refused_by_name(app: TestApp) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, text) in crate::playbook::shipped_files() {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, text.as_bytes()).unwrap();
    }
    for (kind, name, target) in [
        (
            tar::EntryType::Symlink,
            "campaigns/webinar.yaml",
            "/home/mei/webinar.yaml",
        ),
        (
            tar::EntryType::Link,
            "campaigns/welcome-copy.yaml",
            "campaigns/welcome.yaml",
        ),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, name, target).unwrap();
    }
    let archive = builder.into_inner().unwrap();
    for path in ["/v1/playbook/validate", "/v1/playbook"] {
        let method = if path.ends_with("validate") { "POST" } else { "PUT" };
        let answer = app
            .send(
                method,
                path,
                Some(Marketer),
                Some(archive.clone()),
                &[("content-type", "application/x-tar")],
            )
            .await;
        assert_eq!(answer.status, 422, "{path}: {:?}", answer.body);
        assert_eq!(
            answer.body["error"]["details"],
            json!([
                {"field": "campaigns/webinar.yaml", "message": "is a symbolic link to \"/home/mei/webinar.yaml\"; put the file itself in the archive (tar --dereference, or tar -h)"},
                {"field": "campaigns/welcome-copy.yaml", "message": "is a hard link to \"campaigns/welcome.yaml\"; put the file itself in the archive (tar --dereference, or tar -h)"},
            ]),
            "{path}"
        );
    }
}

/// An event's `idempotency_key` names one event: sent again as it was, it is a duplicate;
/// sent with another payload, it is refused (409 alone, `idempotency_key_reused` in a batch)
/// instead of being silently dropped as a duplicate.
async fn an_event_key_reused_for_another_event_is_a_conflict(app: TestApp) {
    let event = |key: &str, pages: i64| {
        json!({"lead": {"email": "key@reuse.example"}, "type": "page_viewed",
               "occurred_at": "2026-11-01T08:00:00Z", "properties": {"pages": pages}, "idempotency_key": key})
    };
    let first = app.call("POST", "/v1/events", Crm, Some(event("crm-1", 1))).await;
    assert_eq!(
        (first.status, &first.body["accepted"]),
        (200, &json!(1)),
        "{:?}",
        first.body
    );
    let again = app.call("POST", "/v1/events", Crm, Some(event("crm-1", 1))).await;
    assert_eq!(
        (again.status, &again.body["duplicates"]),
        (200, &json!(1)),
        "{:?}",
        again.body
    );
    let other = app.call("POST", "/v1/events", Crm, Some(event("crm-1", 2))).await;
    assert_eq!(other.status, 409, "{:?}", other.body);
    assert_eq!(other.body["error"]["code"], "idempotency_key_reused");
    assert!(other.body["error"]["message"].as_str().unwrap().contains("\"crm-1\""));

    let batch = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(json!([
                event("crm-1", 1),
                event("crm-1", 3),
                event("crm-2", 1),
                event("crm-2", 5)
            ])),
        )
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    assert_eq!(
        (&batch.body["accepted"], &batch.body["duplicates"]),
        (&json!(1), &json!(1)),
        "{:?}",
        batch.body
    );
    let rejected: Vec<(i64, &str)> = batch.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_i64().unwrap(), r["error"]["code"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, [(1, "idempotency_key_reused"), (3, "idempotency_key_reused")]);
    let lead = app.call("GET", "/v1/leads?email=key@reuse.example", Crm, None).await;
    let id = lead.body["id"]
        .as_str()
        .or(lead.body["items"][0]["id"].as_str())
        .unwrap()
        .to_owned();
    let views = app.events(&id, "page_viewed").await;
    assert_eq!(views.len(), 2, "one event per key: {views:?}");
}

/// Limits the API document states hold as it states them (the API fuzzing in `.ci/fuzz`
/// found each of these apart): lengths count characters as JSON Schema does, a whole number
/// may be written `20.0`, an unreadable Idempotency-Key is refused rather than ignored, and
/// no answer carries a NUL character back.
async fn inputs_are_judged_as_the_document_states(app: TestApp) {
    let lead = app
        .call("PUT", "/v1/leads", Crm, Some(json!({"email": "limits@doc.example"})))
        .await;
    let id = lead.body["id"].as_str().unwrap().to_owned();
    let tags = format!("/v1/leads/{id}/tags");
    let long = "标".repeat(128);
    let answer = app.call("POST", &tags, Sdr, Some(json!({"add": [long]}))).await;
    assert_eq!(
        answer.status, 200,
        "128 characters (384 bytes) is a tag: {:?}",
        answer.body
    );
    let answer = app
        .call("POST", &tags, Sdr, Some(json!({"add": ["标".repeat(129)]})))
        .await;
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    assert!(answer.body["error"]["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("128 characters"));
    let reason = "因".repeat(1_000);
    let answer = app
        .call(
            "POST",
            &format!("/v1/leads/{id}/score"),
            Sdr,
            Some(json!({"delta": 5.0, "reason": reason})),
        )
        .await;
    assert_eq!(
        (answer.status, &answer.body["score"]),
        (200, &json!(5)),
        "{:?}",
        answer.body
    );
    let answer = app
        .call(
            "POST",
            &format!("/v1/leads/{id}/score"),
            Sdr,
            Some(json!({"delta": 5.5, "reason": "half"})),
        )
        .await;
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    let member = app
        .call(
            "PUT",
            "/v1/queues/sdr/members/alice@corp.example",
            Marketer,
            Some(json!({"capacity": 20.0})),
        )
        .await;
    assert_eq!(
        (member.status, &member.body["capacity"]),
        (200, &json!(20)),
        "{:?}",
        member.body
    );
    for key in ["two words", "tab\tkey"] {
        let answer = app
            .send(
                "POST",
                &tags,
                Some(Sdr),
                Some(br#"{"add": ["vip"]}"#.to_vec()),
                &[("idempotency-key", key)],
            )
            .await;
        assert_eq!(answer.status, 400, "{key:?}: {:?}", answer.body);
    }
    let answer = app
        .send(
            "POST",
            "/v1/leads/bulk",
            Some(Crm),
            Some(br#"[{"email": "n@doc.example", "consent": {"email": {"k\u0000": 1}}}]"#.to_vec()),
            &[],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let text = answer.body.to_string();
    assert!(
        !text.contains("\\u0000") && text.contains("k\\\\0"),
        "NUL written \\0: {text}"
    );
    // Found by the fuzzer: `[]` in place of a lead named nothing and was taken for a lead not found.
    for item in [json!([]), json!({})] {
        let answer = app
            .call(
                "POST",
                "/v1/campaigns/welcome/enroll",
                Marketer,
                Some(json!({"leads": [item]})),
            )
            .await;
        assert_eq!(answer.status, 422, "{:?}", answer.body);
        assert_eq!(answer.body["error"]["details"][0]["field"], "leads[0]");
    }
}

/// The route × role table, read from `/openapi.json`'s `x-roles` (admin always): every role
/// outside an operation's list is refused with 403 before anything is read, and every role in
/// it gets past authorisation (whatever the request then finds). Own versus other's resources
/// are the tables of `only_the_holder_or_an_overseer_decides_a_handoff` and
/// `an_sdr_sets_only_their_own_availability`.
async fn every_route_admits_the_roles_it_names_and_only_those(app: TestApp) {
    let document = app.send("GET", "/openapi.json", None, None, &[]).await.body;
    let (mut refused, mut admitted) = (0, 0);
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            let Some(allowed) = op["x-roles"].as_array() else {
                continue;
            };
            let concrete = path
                .replace("{id}", "999999")
                .replace("{queue}", "sdr")
                .replace("{member}", "sdr-bot");
            for role in [Admin, Marketer, Sdr, Crm] {
                let answer = app
                    .send(&method.to_uppercase(), &concrete, Some(role), Some(b"{}".to_vec()), &[])
                    .await;
                let may = role == Admin || allowed.iter().any(|r| r == role.as_str());
                if may {
                    assert!(
                        ![401, 403].contains(&answer.status),
                        "{} may {method} {path} but got {}: {:?}",
                        role.as_str(),
                        answer.status,
                        answer.body
                    );
                    admitted += 1;
                } else {
                    assert_eq!(
                        (answer.status, answer.body["error"]["code"].as_str()),
                        (403, Some("forbidden")),
                        "{} may not {method} {path}",
                        role.as_str()
                    );
                    refused += 1;
                }
            }
        }
    }
    assert!(
        refused >= 37 && admitted >= 80,
        "{refused} refusals, {admitted} admissions checked"
    );
}
