//! Queue reports (`/v1/reports/queues/{q}`, `nurture report queue`): six handoffs through the
//! shipped `sdr` queue on the manual clock, with claims at known times, accepts, rejections,
//! a conversion and SLA breaches that move handoffs to `sales`; every figure checked exactly,
//! on both backends. And the counters' backfill from the handoff log.

use nurture_engine::access::Role;
use nurture_engine::report::queue::{bucket_ceiling, wait_bucket};
use serde_json::{json, Value};

use crate::support::TestApp;

both_backends!(crate::support::spawn_app_on;
    every_figure_of_a_queue_report_adds_up,
);

async fn advance(app: &TestApp, by: &str) {
    let answer = app
        .call("POST", "/v1/admin/clock/advance", Role::Admin, Some(json!({"by": by})))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

/// The open handoffs of `sdr` assigned to `member`, oldest first.
async fn assigned_to(app: &TestApp, member: &str) -> Vec<String> {
    app.call("GET", "/v1/queues/sdr", Role::Sdr, None).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["assigned_to"] == member)
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn decide(app: &TestApp, key: &str, id: &str, verb: &str, body: Option<Value>) {
    let answer = app
        .call_as("POST", &format!("/v1/handoffs/{id}/{verb}"), key, body)
        .await;
    assert_eq!(answer.status, 200, "{verb} {id}: {:?}", answer.body);
}

/// Long on purpose: one story (six handoffs, two SDRs, a breach) and every figure it makes.
async fn every_figure_of_a_queue_report_adds_up(app: TestApp) {
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"email": format!("q-{i}@acme.example"), "company": "Acme"}))
        .collect();
    let created = app.call("POST", "/v1/leads/bulk", Role::Crm, Some(json!(items))).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    for item in created.body["items"].as_array().unwrap() {
        let answer = app
            .call(
                "POST",
                "/v1/handoffs",
                Role::Marketer,
                Some(json!({"lead": {"id": item["id"]}, "queue": "sdr", "reason": "Asked for a demo"})),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }
    let alice = app.key_named(Role::Sdr, "alice@corp.example").await;
    let bob = app.key_named(Role::Sdr, "bob@corp.example").await;
    assert_eq!(assigned_to(&app, "alice@corp.example").await.len(), 3, "round robin");

    // Ten minutes in, each claims one; at two hours alice claims another and bob accepts one
    // of his unclaimed (claiming it as he accepts).
    advance(&app, "10m").await;
    let claim = |key: &str| {
        let app = &app;
        let key = key.to_owned();
        async move {
            let got = app.call_as("POST", "/v1/queues/sdr/claim", &key, None).await;
            assert_eq!(got.status, 200, "{:?}", got.body);
            got.body["id"].as_str().unwrap().to_owned()
        }
    };
    let a1 = claim(&alice).await;
    let b1 = claim(&bob).await;
    advance(&app, "1h50m").await;
    let a2 = claim(&alice).await;
    let b2 = assigned_to(&app, "bob@corp.example").await[0].clone();
    decide(&app, &bob, &b2, "accept", None).await;
    decide(&app, &alice, &a1, "accept", None).await;
    let no_budget = json!({"reason": "  No budget this year ", "recycle": true});
    decide(&app, &alice, &a2, "reject", Some(no_budget.clone())).await;
    decide(&app, &bob, &b1, "reject", Some(no_budget)).await;
    // The CRM closes alice's deal: hers, though the CRM recorded it.
    let crm = app.key_named(Role::Crm, "crm").await;
    decide(&app, &crm, &a1, "convert", Some(json!({"amount": 12000}))).await;
    // The two still unclaimed (one each) breach the 4h SLA and move to sales.
    advance(&app, "2h1m").await;

    let sdr = app
        .call("GET", "/v1/reports/queues/sdr?since=7d", Role::Marketer, None)
        .await;
    assert_eq!(sdr.status, 200, "{:?}", sdr.body);
    let r = &sdr.body;
    assert_eq!((r["queue"].as_str(), r["sla"].as_str()), (Some("sdr"), Some("4h")));
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("2026-10-27"), Some("2026-11-02"))
    );
    assert_eq!(r["tz"], "Asia/Shanghai");
    assert_eq!(r["now"], json!({"open": 0, "assigned": 0, "claimed": 0, "overdue": 0}));
    let p50 = bucket_ceiling(wait_bucket(600));
    let p90 = bucket_ceiling(wait_bucket(7_200));
    assert_eq!(
        (p50, p90),
        (639, 7_679),
        "ten minutes and two hours, within 12.5% above"
    );
    assert_eq!(
        r["totals"],
        json!({
            "opened": 6, "moved_in": 0, "moved_out": 2, "breached": 2, "claimed": 4, "released": 0,
            "accepted": 2, "rejected": 2, "converted": 1, "arrived": 6,
            "accept_rate": 0.5, "reject_rate": 0.5, "convert_rate": 0.5,
            "claim_p50_seconds": p50, "claim_p90_seconds": p90,
        })
    );
    let periods = r["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 7);
    assert_eq!(periods[6]["period"], "2026-11-02");
    assert_eq!(periods[6]["claimed"], 4);
    assert!(periods[..6].iter().all(|p| p["arrived"] == 0 && p["claimed"] == 0));
    let member = |name: &str| {
        r["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {r}"))
    };
    let alice_part = member("alice@corp.example");
    assert_eq!(
        [
            "claimed",
            "accepted",
            "rejected",
            "converted",
            "breached",
            "claim_p50_seconds",
            "claim_p90_seconds"
        ]
        .map(|k| alice_part[k].clone()),
        [json!(2), json!(1), json!(1), json!(1), json!(1), json!(p50), json!(p90)],
        "{alice_part}"
    );
    let bob_part = member("bob@corp.example");
    assert_eq!(
        [
            "claimed",
            "accepted",
            "rejected",
            "converted",
            "breached",
            "convert_rate"
        ]
        .map(|k| bob_part[k].clone()),
        [json!(2), json!(1), json!(1), json!(0), json!(1), json!(0.0)],
        "{bob_part}"
    );
    assert_eq!(r["members"].as_array().unwrap().len(), 2, "the CRM is no member: {r}");
    assert_eq!(r["reasons"], json!([{"reason": "No budget this year", "rejected": 2}]));

    let sales = app
        .call("GET", "/v1/reports/queues/sales?since=7d", Role::Crm, None)
        .await;
    assert_eq!(sales.status, 200, "{:?}", sales.body);
    assert_eq!(sales.body["totals"]["moved_in"], 2);
    assert_eq!(sales.body["totals"]["arrived"], 2);
    assert_eq!(sales.body["totals"]["opened"], 0);
    assert_eq!(sales.body["totals"]["claim_p50_seconds"], Value::Null);
    assert_eq!(sales.body["now"]["open"], 2);

    // CSV: the queue's line and each member's, for the one day anything happened.
    let csv = app
        .client
        .get(format!(
            "{}/v1/reports/queues/sdr?from=2026-11-02&to=2026-11-02",
            app.base
        ))
        .bearer_auth(&app.keys[&Role::Marketer])
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(
        csv.headers()["content-disposition"],
        "attachment; filename=\"queue-sdr-2026-11-02-2026-11-02.csv\""
    );
    let csv = csv.text().await.unwrap();
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "period,member,arrived,opened,moved_in,moved_out,breached,claimed,released,accepted,rejected,converted,claim_p50_seconds,claim_p90_seconds",
            "2026-11-02,,6,6,0,2,2,4,0,2,2,1,639,7679",
            "2026-11-02,alice@corp.example,0,0,0,0,1,2,0,1,1,1,639,7679",
            "2026-11-02,bob@corp.example,0,0,0,0,1,2,0,1,1,0,639,7679",
        ]
    );

    // In UTC the same day; a day before anything happened holds nothing.
    let utc = app
        .call(
            "GET",
            "/v1/reports/queues/sdr?from=2026-11-01&to=2026-11-01&tz=UTC",
            Role::Marketer,
            None,
        )
        .await;
    assert_eq!(utc.body["totals"]["arrived"], 0, "{:?}", utc.body);

    // The command line reads the same counters.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nurture"))
        .args([
            "report",
            "queue",
            "sdr",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-02",
            "--csv",
        ])
        .args(["--database-url", &app.database_url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), csv);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nurture"))
        .args(["report", "queue", "sdr", "--from", "2026-11-02", "--to", "2026-11-02"])
        .args(["--database-url", &app.database_url()])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.starts_with("Queue sdr · 2026-11-02 to 2026-11-02 (Asia/Shanghai), by day, SLA 4h"),
        "{table}"
    );
    let total: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("total"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        total[1..],
        ["6", "4", "10m", "39s", "2h", "8m", "0", "2", "2", "1", "50.0%", "2"],
        "{table}"
    );
    assert!(table.contains("       2  No budget this year"), "{table}");

    // Errors name what is wrong.
    let unknown = app
        .call("GET", "/v1/reports/queues/nowhere", Role::Marketer, None)
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    let bad = app
        .call("GET", "/v1/reports/queues/sdr?by=month", Role::Marketer, None)
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    let sdr_role = app.call("GET", "/v1/reports/queues/sdr", Role::Sdr, None).await;
    assert_eq!(sdr_role.status, 403);
}

/// The migration fills the queue counters from the handoff log as the engine would have.
async fn the_queue_counters_are_backfilled_from_the_handoff_log(backend: crate::support::Backend) {
    use nurture_engine::report::queue::{HandoffDayRow, HandoffFact};
    use nurture_engine::report::{Span, HOUR_MICROS};
    let Some((t, db)) = crate::support::store_migrated_to(backend, 23, 22).await else {
        return;
    };
    // Hour 490000 since the epoch: 16:00 UTC on day 20416, which ends at hour 490008.
    let h0: i64 = 490_000 * HOUR_MICROS;
    db.execute(&format!(
        "INSERT INTO handoffs (id, lead_id, queue, reason, origin, status, created_at, claimed_by, reject_reason) VALUES \
         (1, 1, 'sdr', 'r', 'mql', 'converted', {h0}, 'ann', NULL), \
         (2, 2, 'sdr', 'r', 'mql', 'rejected', {h0}, 'bo', ' Student '), \
         (3, 3, 'sales', 'r', 'mql', 'open', {h0}, NULL, NULL)"
    ))
    .await;
    let at = |seconds: i64| h0 + seconds * 1_000_000;
    let lines = [
        (1, "opened", "mql", "", at(0), "sdr"),
        (1, "claimed", "ann", "", at(600), "sdr"),
        (1, "accepted", "ann", "", at(700), "sdr"),
        (1, "converted", "crm", "", at(800), "sdr"),
        (2, "opened", "mql", "", at(0), "sdr"),
        // Rejected while open: claimed as it was decided, after two hours.
        (2, "rejected", "bo", "Student (recycle: true)", at(7_200), "sdr"),
        (3, "opened", "mql", "", at(0), "sdr"),
        (3, "sla_breached", "", "unclaimed past the 4h SLA of sdr", at(60), "sdr"),
        (3, "moved", "", "sdr → sales", at(60), "sdr"),
        (3, "claimed", "cy", "", at(120), "sales"),
        (3, "released", "cy", "", at(180), "sales"),
    ];
    for (handoff, action, actor, detail, at, queue) in lines {
        db.execute(&format!(
            "INSERT INTO handoff_log (handoff_id, action, actor, detail, at, queue) \
             VALUES ({handoff}, '{action}', '{actor}', '{detail}', {at}, '{queue}')"
        ))
        .await;
    }
    t.store.migrate().await.unwrap();

    let day = nurture_engine::report::day_number(490_000 / 24);
    let piece = Span {
        from: day,
        to: day,
        tz: chrono_tz::Tz::UTC,
    };
    let row = |member: &str, fact, detail: &str, n| HandoffDayRow {
        day,
        member: member.into(),
        fact,
        detail: detail.into(),
        n,
    };
    let mut sdr = t.store.handoff_counts_by_day("sdr", &piece, piece.tz).await.unwrap();
    sdr.sort_by(|a, b| (a.fact, &a.member, &a.detail).cmp(&(b.fact, &b.member, &b.detail)));
    assert_eq!(
        sdr,
        vec![
            row("", HandoffFact::Opened, "", 3),
            row("", HandoffFact::MovedOut, "", 1),
            row("", HandoffFact::Breached, "", 1),
            row("ann", HandoffFact::Claimed, "", 1),
            row("bo", HandoffFact::Claimed, "", 1),
            row("ann", HandoffFact::ClaimWait, &wait_bucket(600).to_string(), 1),
            row("bo", HandoffFact::ClaimWait, &wait_bucket(7_200).to_string(), 1),
            row("ann", HandoffFact::Accepted, "", 1),
            row("bo", HandoffFact::Rejected, "Student", 1),
            row("ann", HandoffFact::Converted, "", 1),
        ]
    );
    let mut sales = t.store.handoff_counts_by_day("sales", &piece, piece.tz).await.unwrap();
    sales.sort_by(|a, b| (a.fact, &a.member, &a.detail).cmp(&(b.fact, &b.member, &b.detail)));
    assert_eq!(
        sales,
        vec![
            row("", HandoffFact::MovedIn, "", 1),
            row("cy", HandoffFact::Claimed, "", 1),
            row("cy", HandoffFact::ClaimWait, &wait_bucket(120).to_string(), 1),
            row("cy", HandoffFact::Released, "", 1),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_queue_counters_are_backfilled_from_the_handoff_log() {
    the_queue_counters_are_backfilled_from_the_handoff_log(crate::support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_queue_counters_are_backfilled_from_the_handoff_log() {
    the_queue_counters_are_backfilled_from_the_handoff_log(crate::support::Backend::Postgres).await;
}
