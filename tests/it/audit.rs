//! The audit trail: every change made by hand, through the API as a user makes it, is listed by
//! `GET /v1/audit` with who, from where, when and what changed; a change refused records
//! nothing. On SQLite and on PostgreSQL.

use nurture_engine::access::Role::{Admin, Crm, Marketer, Sdr};
use serde_json::{json, Value};

use crate::support::TestApp;

/// The entries `GET /v1/audit` lists for `query`, oldest first.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let answer = app.call("GET", &format!("/v1/audit{query}"), Marketer, None).await;
    assert_eq!(answer.status, 200, "{query}: {:?}", answer.body);
    let mut items = answer.body["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

async fn ok(app: &TestApp, role: nurture_engine::access::Role, method: &str, path: &str, body: Value) -> Value {
    let answer = app.call(method, path, role, Some(body)).await;
    assert!(
        (200..300).contains(&answer.status),
        "{method} {path}: {} {:?}",
        answer.status,
        answer.body
    );
    answer.body
}

async fn every_change_by_hand_is_recorded_with_who_and_what(app: TestApp) {
    // The shipped playbook, deployed when the server started, from the command line.
    let start = audit(&app, "?kind=playbook").await;
    assert_eq!(kinds(&start), ["playbook.deployed"], "{start:?}");
    assert_eq!(start[0]["via"], "cli");
    assert!(
        start[0]["detail"]["created"]
            .as_array()
            .unwrap()
            .contains(&json!("industry-drip")),
        "{start:?}"
    );

    let mut ids = Vec::new();
    for email in ["a@x.example", "b@x.example"] {
        let lead = ok(&app, Marketer, "PUT", "/v1/leads", json!({"email": email})).await;
        ids.push(lead["id"].as_str().unwrap().to_owned());
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    ok(
        &app,
        Marketer,
        "POST",
        "/v1/campaigns/industry-drip/enroll",
        json!({"leads": ids}),
    )
    .await;
    // Nobody new enters the second time: nothing changed, nothing is recorded.
    ok(
        &app,
        Marketer,
        "POST",
        "/v1/campaigns/industry-drip/enroll",
        json!({"leads": [a]}),
    )
    .await;
    ok(
        &app,
        Marketer,
        "POST",
        "/v1/campaigns/industry-drip/exit",
        json!({"leads": [b], "reason": "asked us to stop"}),
    )
    .await;
    ok(&app, Marketer, "POST", "/v1/campaigns/welcome/pause", json!({})).await;
    ok(&app, Marketer, "POST", "/v1/campaigns/welcome/resume", json!({})).await;
    ok(&app, Marketer, "POST", "/v1/campaigns/welcome/resume", json!({})).await;
    ok(
        &app,
        Admin,
        "POST",
        &format!("/v1/leads/{a}/tags"),
        json!({"add": ["VIP"]}),
    )
    .await;
    ok(
        &app,
        Sdr,
        "POST",
        &format!("/v1/leads/{a}/score"),
        json!({"delta": 5, "reason": "good call"}),
    )
    .await;
    // Refused changes record nothing.
    assert_eq!(
        app.call("POST", "/v1/leads/999999/tags", Admin, Some(json!({"add": ["vip"]})))
            .await
            .status,
        404
    );
    assert_eq!(
        app.call(
            "POST",
            &format!("/v1/leads/{a}/score"),
            Sdr,
            Some(json!({"delta": 0, "reason": "x"}))
        )
        .await
        .status,
        422
    );

    let handoff = ok(
        &app,
        Marketer,
        "POST",
        "/v1/handoffs",
        json!({"lead": {"id": a}, "queue": "sales", "reason": "Asked for a demo"}),
    )
    .await;
    let carol = app.key_named(Sdr, "carol@corp.example").await;
    let claimed = app.call_as("POST", "/v1/queues/sales/claim", &carol, None).await;
    assert_eq!(claimed.status, 200, "{:?}", claimed.body);
    let handoff_id = handoff["id"].as_str().unwrap();
    let accepted = app
        .call_as("POST", &format!("/v1/handoffs/{handoff_id}/accept"), &carol, None)
        .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
    ok(
        &app,
        Marketer,
        "PUT",
        "/v1/queues/sdr/members/bob@corp.example",
        json!({"capacity": 5}),
    )
    .await;

    let hook = ok(
        &app,
        Crm,
        "POST",
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.mql"]}),
    )
    .await;
    let hook_id = hook["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| hook["id"].to_string());
    let gone = app.call("DELETE", &format!("/v1/webhooks/{hook_id}"), Crm, None).await;
    assert_eq!(gone.status, 204, "{:?}", gone.body);

    let key = ok(
        &app,
        Admin,
        "POST",
        "/v1/admin/keys",
        json!({"name": "crm-2", "role": "crm"}),
    )
    .await;
    let key_id = key["id"].to_string();
    let rotated = ok(
        &app,
        Admin,
        "POST",
        &format!("/v1/admin/keys/{key_id}/rotate"),
        json!({}),
    )
    .await;
    let successor = rotated["id"].to_string();
    ok(
        &app,
        Admin,
        "POST",
        &format!("/v1/admin/keys/{successor}/revoke"),
        json!({}),
    )
    .await;
    ok(
        &app,
        Admin,
        "POST",
        &format!("/v1/admin/keys/{successor}/revoke"),
        json!({}),
    )
    .await;
    let erased = app.call("DELETE", &format!("/v1/leads/{b}"), Admin, None).await;
    assert_eq!(erased.status, 204, "{:?}", erased.body);

    // Beside the keys the test's set-up stored from the command line: what was done over the API.
    let all: Vec<Value> = audit(&app, "?limit=1000")
        .await
        .into_iter()
        .filter(|e| e["via"] == "api")
        .collect();
    assert_eq!(
        kinds(&all),
        [
            "campaign.enrolled",
            "campaign.exited",
            "campaign.paused",
            "campaign.resumed",
            "lead.tagged",
            "lead.scored",
            "handoff.accepted",
            "queue.member_changed",
            "webhook.created",
            "webhook.deleted",
            "key.created",
            "key.rotated",
            "key.revoked",
            "lead.erased",
        ],
        "{all:#?}"
    );
    let entry = |kind: &str| all.iter().find(|e| e["kind"] == kind).unwrap().clone();
    let expect = |kind: &str, actor: &str, subject: &str, detail: Value| {
        let e = entry(kind);
        assert_eq!(
            (&e["actor"], &e["via"], &e["subject"], &e["detail"]),
            (&json!(actor), &json!("api"), &json!(subject), &detail),
            "{kind}: {e}"
        );
    };
    expect(
        "campaign.enrolled",
        "marketer-bot",
        "industry-drip",
        json!({"count": 2, "leads": [a, b]}),
    );
    expect(
        "campaign.exited",
        "marketer-bot",
        "industry-drip",
        json!({"count": 1, "leads": [b], "reason": "asked us to stop"}),
    );
    expect("campaign.paused", "marketer-bot", "welcome", json!({"was": "active"}));
    expect("campaign.resumed", "marketer-bot", "welcome", json!({"was": "paused"}));
    expect("lead.tagged", "admin-bot", &a, json!({"added": ["vip"], "removed": []}));
    expect("lead.scored", "sdr-bot", &a, json!({"delta": 5, "reason": "good call"}));
    expect(
        "handoff.accepted",
        "carol@corp.example",
        handoff_id,
        json!({"lead": a, "queue": "sales", "noted": false}),
    );
    expect(
        "queue.member_changed",
        "marketer-bot",
        "sdr",
        json!({"member": "bob@corp.example", "available": null, "capacity": 5, "weight": null}),
    );
    expect(
        "webhook.created",
        "crm-bot",
        &hook_id,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.mql"]}),
    );
    expect(
        "webhook.deleted",
        "crm-bot",
        &hook_id,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.mql"]}),
    );
    expect(
        "key.created",
        "admin-bot",
        &key_id,
        json!({"name": "crm-2", "role": "crm"}),
    );
    expect(
        "key.rotated",
        "admin-bot",
        &key_id,
        json!({"name": "crm-2", "role": "crm", "successor": successor}),
    );
    expect(
        "key.revoked",
        "admin-bot",
        &successor,
        json!({"name": "crm-2", "role": "crm"}),
    );
    // The erasure names the lead by id only: the person is gone from the trail as from the rest.
    expect("lead.erased", "admin-bot", &b, json!({}));
    // What was written about an erased person goes; who changed them, and when, stays.
    let scored = ok(
        &app,
        Sdr,
        "POST",
        &format!("/v1/leads/{a}/score"),
        json!({"delta": 1, "reason": "Li Wei said call back"}),
    )
    .await;
    assert_eq!(scored["id"], json!(a));
    let erased = app.call("DELETE", &format!("/v1/leads/{a}"), Admin, None).await;
    assert_eq!(erased.status, 204, "{:?}", erased.body);
    let about_a: Vec<Value> = audit(&app, "?kind=lead&limit=1000")
        .await
        .into_iter()
        .filter(|e| e["subject"] == json!(a))
        .collect();
    let details: Vec<(&str, &Value)> = about_a
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), &e["detail"]))
        .collect();
    let erased = json!({"erased": true});
    assert_eq!(
        details,
        [
            ("lead.tagged", &erased),
            ("lead.scored", &erased),
            ("lead.scored", &erased),
            ("lead.erased", &json!({}))
        ]
    );
    let times: Vec<&str> = all.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Filters: by actor, by family, by one kind or its verb, and by time.
    assert_eq!(
        kinds(&audit(&app, "?actor=sdr-bot").await),
        ["lead.scored", "lead.scored"]
    );
    assert_eq!(
        kinds(&audit(&app, "?kind=campaign").await),
        [
            "campaign.enrolled",
            "campaign.exited",
            "campaign.paused",
            "campaign.resumed"
        ]
    );
    assert_eq!(kinds(&audit(&app, "?kind=pause").await), ["campaign.paused"]);
    assert_eq!(
        kinds(&audit(&app, "?kind=key&actor=admin-bot").await),
        ["key.created", "key.rotated", "key.revoked"]
    );
    let before = all.last().unwrap()["at"].as_str().unwrap().to_owned();
    app.clock.advance(chrono::Duration::hours(2));
    ok(&app, Marketer, "POST", "/v1/campaigns/welcome/pause", json!({})).await;
    let recent = audit(&app, "?since=1h").await;
    assert_eq!(kinds(&recent), ["campaign.paused"]);
    let since = |at: &str| format!("?limit=1000&since={}", at.replace('+', "%2B"));
    let after = recent[0]["at"].as_str().unwrap();
    assert_ne!(after, before);
    assert_eq!(audit(&app, &since(after)).await.len(), 1);
    let everything = audit(&app, "?limit=1000").await;
    assert_eq!(audit(&app, &since(&before)).await.len(), everything.len());

    // Pages: newest first, each page's cursor leading to the next, every entry once.
    let mut paged = Vec::new();
    let mut path = "/v1/audit?limit=7".to_owned();
    loop {
        let page = app.call("GET", &path, Marketer, None).await.body;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7, "{page}");
        paged.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/audit?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    paged.reverse();
    assert_eq!(paged, everything);
    assert_eq!(everything.last().unwrap()["kind"], "campaign.paused");

    // Bad filters are refused with what to write; SDRs and CRMs do not read the trail.
    let bad = app.call("GET", "/v1/audit?kind=campain", Marketer, None).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(
        bad.body["error"]["message"].as_str().unwrap().contains("name a family"),
        "{:?}",
        bad.body
    );
    let bad = app.call("GET", "/v1/audit?since=yesterday", Marketer, None).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    let bad = app.call("GET", "/v1/audit?actor=a%00b", Marketer, None).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(app.call("GET", "/v1/audit", Sdr, None).await.status, 403);
    assert_eq!(app.call("GET", "/v1/audit", Crm, None).await.status, 403);
    assert_eq!(app.call("GET", "/v1/audit", Admin, None).await.status, 200);
}

/// A deploy over the API is recorded with the key that made it and what it changed; a
/// restore is a deployment of its own, naming the one it brought back.
async fn deploys_and_restores_are_recorded(app: TestApp) {
    let campaign = "kind: Campaign\nid: hello-again\nname: Hello again\ntype: custom\n\
                    entry: { trigger: manual }\nstart: mail\nsteps:\n  \
                    mail: { send: { channel: email, template: welcome-cxo }, next: done }\n  \
                    done: { exit: greeted }\n";
    let (status, _, text) = app
        .raw(
            "PUT",
            "/v1/playbook?file=hello-again.yaml",
            Marketer,
            Some(("application/yaml", campaign.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let restored = app.call("POST", "/v1/deployments/1/restore", Admin, None).await;
    assert_eq!(restored.status, 200, "{:?}", restored.body);
    let entries = audit(&app, "?kind=deploy").await;
    assert_eq!(
        (&entries[0]["subject"], &entries[0]["via"]),
        (&json!("1"), &json!("cli"))
    );
    let seen: Vec<(&Value, &Value, &Value, &Value, &Value)> = entries[1..]
        .iter()
        .map(|e| {
            (
                &e["subject"],
                &e["actor"],
                &e["detail"]["origin"],
                &e["detail"]["created"],
                &e["detail"]["retired"],
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                &json!("2"),
                &json!("marketer-bot"),
                &json!("api"),
                &json!(["hello-again"]),
                &json!([])
            ),
            (
                &json!("3"),
                &json!("admin-bot"),
                &json!("restore"),
                &json!([]),
                &json!(["hello-again"])
            ),
        ],
        "{entries:#?}"
    );
    assert_eq!(entries[2]["detail"]["restored_from"], 1);
}

both_backends!(crate::support::spawn_app_on;
    every_change_by_hand_is_recorded_with_who_and_what,
    deploys_and_restores_are_recorded
);
