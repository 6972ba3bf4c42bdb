//! Handoff queues over HTTP, on both backends: concurrent claims, round robin, the SLA, reject
//! and recycle, and the errors of the Handoff queues section of `shared/spec/api.md`.

use nurture_engine::access::Role;
use serde_json::{json, Value};
use std::collections::HashSet;

use crate::support::TestApp;

both_backends!(crate::support::spawn_app_on;
    fifty_sdrs_claim_thirty_handoffs_each_exactly_once,
    round_robin_skips_the_unavailable_and_the_full,
    an_unclaimed_handoff_breaches_its_sla_once_and_moves,
    reject_and_recycle_brings_the_lead_back_after_the_cooldown,
    bad_requests_get_clear_errors,
);

/// Creates leads `prefix-0..n` and returns their ids.
async fn leads(app: &TestApp, prefix: &str, n: usize, extra: Value) -> Vec<String> {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let mut lead = json!({"email": format!("{prefix}-{i}@acme.example"), "company": "Acme"});
            if let (Some(lead), Some(extra)) = (lead.as_object_mut(), extra.as_object()) {
                lead.extend(extra.clone());
            }
            lead
        })
        .collect();
    let answer = app.call("POST", "/v1/leads/bulk", Role::Crm, Some(json!(items))).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_else(|| panic!("{i}")).to_owned())
        .collect()
}

async fn hand_off(app: &TestApp, lead: &str, queue: &str, priority: u8) -> Value {
    let answer = app
        .call(
            "POST",
            "/v1/handoffs",
            Role::Marketer,
            Some(json!({"lead": {"id": lead}, "queue": queue, "reason": "Asked for a demo", "priority": priority})),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body
}

async fn fifty_sdrs_claim_thirty_handoffs_each_exactly_once(app: TestApp) {
    let ids = leads(&app, "claim", 30, json!({})).await;
    for (i, id) in ids.iter().enumerate() {
        hand_off(&app, id, "sales", (i % 3) as u8 * 10).await;
    }
    let mut keys = Vec::new();
    for i in 0..50 {
        keys.push(app.key_named(Role::Sdr, &format!("sdr-{i}")).await);
    }
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = keys
        .into_iter()
        .map(|key| {
            let app = app.clone();
            tokio::spawn(async move { app.call_as("POST", "/v1/queues/sales/claim", &key, None).await })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut empty = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            200 => claimed.push(answer.body),
            204 => empty += 1,
            other => panic!("claim answered {other}: {:?}", answer.body),
        }
    }
    assert_eq!((claimed.len(), empty), (30, 20));
    let distinct: HashSet<&str> = claimed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 30, "no handoff went to two SDRs");
    let claimers: HashSet<&str> = claimed.iter().map(|c| c["claimed_by"].as_str().unwrap()).collect();
    assert_eq!(claimers.len(), 30, "each SDR got at most one");
    for c in &claimed {
        assert_eq!(c["status"], "claimed");
        assert_eq!(c["lead"]["company"], "Acme", "the claim carries the lead: {c}");
    }
    let queue = app.call("GET", "/v1/queues/sales", Role::Sdr, None).await;
    assert_eq!(queue.body["items"], json!([]), "nothing is left open");
}

async fn round_robin_skips_the_unavailable_and_the_full(app: TestApp) {
    let bob = app.key_named(Role::Sdr, "bob@corp.example").await;
    let away = app
        .call_as(
            "PUT",
            "/v1/queues/sdr/members/bob@corp.example",
            &bob,
            Some(json!({"available": false})),
        )
        .await;
    assert_eq!(
        (away.status, &away.body["available"]),
        (200, &json!(false)),
        "{:?}",
        away.body
    );
    let ids = leads(&app, "rr", 7, json!({})).await;
    let mut assigned = Vec::new();
    for id in &ids[..3] {
        assigned.push(hand_off(&app, id, "sdr", 50).await["assigned_to"].clone());
    }
    assert_eq!(assigned, vec![json!("alice@corp.example"); 3], "bob is away");

    // Bob is back and alice may hold 3 at most: bob takes the next ones, without a burst to
    // make up for the time he was away (he starts level with alice).
    app.call_as(
        "PUT",
        "/v1/queues/sdr/members/bob@corp.example",
        &bob,
        Some(json!({"available": true})),
    )
    .await;
    let cap = app
        .call(
            "PUT",
            "/v1/queues/sdr/members/alice@corp.example",
            Role::Marketer,
            Some(json!({"capacity": 4})),
        )
        .await;
    assert_eq!(cap.status, 200, "{:?}", cap.body);
    let mut next = Vec::new();
    for id in &ids[3..7] {
        let h = hand_off(&app, id, "sdr", 50).await;
        next.push(h["assigned_to"].as_str().unwrap_or_else(|| panic!("{h}")).to_owned());
    }
    assert_eq!(
        next,
        [
            "alice@corp.example",
            "bob@corp.example",
            "bob@corp.example",
            "bob@corp.example"
        ],
        "alice and bob alternate until alice holds her capacity of 4"
    );
    let members = app.call("GET", "/v1/queues/sdr/members", Role::Sdr, None).await;
    let loads: Vec<(String, i64)> = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["member"].as_str().unwrap().to_owned(), m["load"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        loads,
        [("alice@corp.example".into(), 4), ("bob@corp.example".into(), 3)]
    );

    // Each claims what is theirs; someone else cannot take an assignment.
    let claim = app.call_as("POST", "/v1/queues/sdr/claim", &bob, None).await;
    assert_eq!(claim.body["assigned_to"], "bob@corp.example");
    let alices: Vec<String> = app.call("GET", "/v1/queues/sdr", Role::Sdr, None).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["assigned_to"] == "alice@corp.example")
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    let taken = app
        .call_as("POST", &format!("/v1/handoffs/{}/accept", alices[0]), &bob, None)
        .await;
    assert_eq!(taken.status, 409, "{:?}", taken.body);
    assert!(taken.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("assigned to alice"));
}

async fn an_unclaimed_handoff_breaches_its_sla_once_and_moves(app: TestApp) {
    let ids = leads(&app, "sla", 2, json!({})).await;
    let late = hand_off(&app, &ids[0], "sdr", 50).await;
    let claimed = hand_off(&app, &ids[1], "sdr", 50).await;
    let owner = app.key_named(Role::Sdr, claimed["assigned_to"].as_str().unwrap()).await;
    // The other lead's assignee claims it in time.
    let mut got = app.call_as("POST", "/v1/queues/sdr/claim", &owner, None).await;
    if got.body["id"] != claimed["id"] {
        got = app.call_as("POST", "/v1/queues/sdr/claim", &owner, None).await;
    }
    assert_eq!(got.body["id"], claimed["id"], "{:?}", got.body);

    let advance = |by: &'static str| {
        let app = &app;
        async move {
            let answer = app
                .call("POST", "/v1/admin/clock/advance", Role::Admin, Some(json!({"by": by})))
                .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
        }
    };
    advance("3h59m").await;
    let path = format!("/v1/handoffs/{}", late["id"].as_str().unwrap());
    let before = app.call("GET", &path, Role::Sdr, None).await.body;
    assert_eq!(
        (before["queue"].as_str(), &before["sla_breached_at"]),
        (Some("sdr"), &Value::Null)
    );
    advance("2m").await;
    // The SDR lead is told (on_breach.notify), over SMTP; the relay refuses the first try.
    let sink = crate::smtp::SmtpSink::start(1).await;
    let sender = sender(&app, &sink);
    assert_eq!(
        app.engine.send_notifications(&sender, 10).await.unwrap(),
        0,
        "refused once"
    );
    assert!(sink.messages().is_empty());
    advance("3m").await;
    assert_eq!(app.engine.send_notifications(&sender, 10).await.unwrap(), 1, "retried");
    let notices = sink.messages();
    assert_eq!(notices.len(), 1);
    let notice = &notices[0];
    for expected in [
        "To: sdr-lead@corp.example",
        "Subject: SLA breached: sla-0@acme.example (Acme) waited 4h unclaimed in sdr",
        "Lead:     sla-0@acme.example",
        "Reason:   Asked for a demo",
        "Now:      moved to queue sales",
    ] {
        assert!(notice.contains(expected), "{expected:?} in {notice}");
    }
    let assigned = format!("Assigned: {} (in sdr)", late["assigned_to"].as_str().unwrap());
    assert!(notice.contains(&assigned), "{assigned:?} in {notice}");
    assert!(!notice.contains("List-Unsubscribe"), "internal mail: {notice}");
    assert_eq!(
        app.engine.send_notifications(&sender, 10).await.unwrap(),
        0,
        "sent once"
    );
    let after = app.call("GET", &path, Role::Sdr, None).await.body;
    assert_eq!(after["queue"], "sales", "on_breach moved it: {after}");
    assert_eq!(after["moved_from"], "sdr");
    assert_eq!(after["assigned_to"], Value::Null, "sales is pulled, not assigned");
    let actions: Vec<&str> = after["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["opened", "assigned", "sla_breached", "notified", "moved"]);
    // Sales' own SLA (24h) runs from the move; the claimed one never breaches.
    advance("23h").await;
    let still = app.call("GET", &path, Role::Sdr, None).await.body;
    assert_eq!(still["log"].as_array().unwrap().len(), 5, "reported once: {still}");
    let other = app
        .call(
            "GET",
            &format!("/v1/handoffs/{}", claimed["id"].as_str().unwrap()),
            Role::Sdr,
            None,
        )
        .await
        .body;
    assert_eq!(
        (other["status"].as_str(), &other["sla_breached_at"]),
        (Some("claimed"), &Value::Null)
    );
    advance("2h").await;
    let twice = app.call("GET", &path, Role::Sdr, None).await.body;
    let breaches = twice["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "sla_breached")
        .count();
    assert_eq!(breaches, 2, "sales' own SLA breached once in its turn: {twice}");
    assert_eq!(twice["queue"], "sales", "sales has no on_breach: it stays");
    app.engine.send_notifications(&sender, 10).await.unwrap();
    assert_eq!(sink.messages().len(), 1, "sales notifies nobody");
}

/// Sends as `serve --smtp-url` would, to the test's SMTP server.
fn sender(app: &TestApp, sink: &crate::smtp::SmtpSink) -> nurture_engine::engine::Sender {
    nurture_engine::engine::Sender {
        mailer: std::sync::Arc::new(nurture_engine::mail::SmtpMailer::from_url(&sink.url(), 2).unwrap()),
        from: "Lumen <nurture@lumen-cloud.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        concurrency: 2,
        wechat: None,
        limits: Default::default(),
    }
}

async fn reject_and_recycle_brings_the_lead_back_after_the_cooldown(app: TestApp) {
    // No industry yet: the drip (for leads with an industry) does not take it.
    let ids = leads(&app, "recycle", 1, json!({})).await;
    let lead = &ids[0];
    let handoff = hand_off(&app, lead, "sdr", 50).await;
    let who = handoff["assigned_to"].as_str().unwrap().to_owned();
    let key = app.key_named(Role::Sdr, &who).await;
    let id = handoff["id"].as_str().unwrap();
    let path = format!("/v1/leads/{lead}");
    assert_eq!(
        app.call("GET", &path, Role::Sdr, None).await.body["stage"],
        "handed_off"
    );

    let rejected = app
        .call_as(
            "POST",
            &format!("/v1/handoffs/{id}/reject"),
            &key,
            Some(json!({"reason": "No budget this year", "recycle": true})),
        )
        .await;
    assert_eq!(rejected.status, 200, "{:?}", rejected.body);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["reject_reason"], "No budget this year");
    let resting = app.call("GET", &path, Role::Sdr, None).await.body;
    assert_eq!(resting["stage"], "recycled");
    assert!(resting["cooldown_until"].is_string(), "{resting}");

    // It now matches the drip's segment, but rests through sdr's 30-day cool-down.
    let patched = app
        .call(
            "PATCH",
            &format!("/v1/leads/{lead}"),
            Role::Marketer,
            Some(json!({"industry": "manufacturing"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    app.call(
        "POST",
        "/v1/admin/clock/advance",
        Role::Admin,
        Some(json!({"by": "29d"})),
    )
    .await;
    assert!(app.journey(lead).await.is_empty(), "no campaign during the cool-down");
    app.call(
        "POST",
        "/v1/admin/clock/advance",
        Role::Admin,
        Some(json!({"by": "1d"})),
    )
    .await;
    let back = app.call("GET", &path, Role::Sdr, None).await.body;
    assert_eq!(back["stage"], "nurturing", "back in the nurture pool: {back}");
    assert_eq!(back["cooldown_until"], Value::Null);
    let journey = app.journey(lead).await;
    assert!(
        journey.iter().any(|line| line.starts_with("insight:")),
        "the drip took it after the cool-down: {journey:?}"
    );
    let handoffs = app.timeline(lead, "handoff").await;
    assert_eq!(handoffs.len(), 1, "{handoffs:?}");
    assert_eq!(
        (
            handoffs[0]["handoff_id"].as_str(),
            handoffs[0]["status"].as_str(),
            handoffs[0]["reject_reason"].as_str()
        ),
        (Some(id), Some("rejected"), Some("No budget this year")),
        "the lead's timeline shows the handoff and what became of it"
    );
    // The decision is final.
    let again = app
        .call_as("POST", &format!("/v1/handoffs/{id}/accept"), &key, None)
        .await;
    assert_eq!(again.status, 409);
}

async fn bad_requests_get_clear_errors(app: TestApp) {
    let unknown = app.call("POST", "/v1/queues/nope/claim", Role::Sdr, None).await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the queues are sales, sdr"),
        "{:?}",
        unknown.body
    );
    let ids = leads(&app, "bad", 1, json!({})).await;
    let handoff = hand_off(&app, &ids[0], "sales", 50).await;
    let id = handoff["id"].as_str().unwrap();
    let twice = app
        .call(
            "POST",
            "/v1/handoffs",
            Role::Marketer,
            Some(json!({"lead": {"id": ids[0]}, "queue": "sales", "reason": "again"})),
        )
        .await;
    assert_eq!(twice.status, 409, "one open handoff per lead: {:?}", twice.body);

    let carol = app.key_named(Role::Sdr, "carol").await;
    let dave = app.key_named(Role::Sdr, "dave").await;
    assert_eq!(
        app.call_as("POST", "/v1/queues/sales/claim", &carol, None).await.status,
        200
    );
    let stolen = app
        .call_as("POST", &format!("/v1/handoffs/{id}/accept"), &dave, None)
        .await;
    assert_eq!(stolen.status, 409);
    assert!(stolen.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("claimed by carol"));
    let no_reason = app
        .call_as(
            "POST",
            &format!("/v1/handoffs/{id}/reject"),
            &carol,
            Some(json!({"recycle": true})),
        )
        .await;
    assert_eq!(no_reason.status, 422, "{:?}", no_reason.body);
    assert_eq!(no_reason.body["error"]["details"][0]["field"], "reason");
    // Roles: a CRM key cannot claim; an SDR key cannot deploy.
    assert_eq!(
        app.call("POST", "/v1/queues/sales/claim", Role::Crm, None).await.status,
        403
    );
    assert_eq!(
        app.send(
            "PUT",
            "/v1/playbook",
            Some(Role::Sdr),
            Some(b"kind: Rules".to_vec()),
            &[]
        )
        .await
        .status,
        403
    );
    assert_eq!(
        app.call("POST", "/v1/handoffs/999999/accept", Role::Sdr, None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.call("POST", "/v1/handoffs/not-an-id/accept", Role::Sdr, None)
            .await
            .status,
        404
    );
    let released = app
        .call_as("POST", &format!("/v1/handoffs/{id}/release"), &carol, None)
        .await;
    assert_eq!(released.body["status"], "open");
    let accepted = app
        .call_as("POST", &format!("/v1/handoffs/{id}/accept"), &dave, None)
        .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
    let lead = app
        .call("GET", &format!("/v1/leads/{}", ids[0]), Role::Sdr, None)
        .await
        .body;
    assert_eq!(
        (lead["stage"].as_str(), lead["owner"].as_str()),
        (Some("accepted"), Some("dave"))
    );
    let converted = app
        .call("POST", &format!("/v1/handoffs/{id}/convert"), Role::Crm, None)
        .await;
    assert_eq!(converted.body["status"], "converted");
    let lead = app
        .call("GET", &format!("/v1/leads/{}", ids[0]), Role::Sdr, None)
        .await
        .body;
    assert_eq!(lead["stage"], "customer");
}
