//! Control before and after enrolling: a segment seen before it is used (how many leads it
//! holds now and why each matches), and leads taken out of a campaign by hand. On SQLite and
//! on PostgreSQL.

use nurture_engine::access::Role::{Crm, Marketer, Sdr};
use serde_json::json;

use crate::support::TestApp;

async fn a_segment_preview_counts_and_says_why(app: TestApp) {
    for (email, size, industry) in [
        ("a@x.example", Some("1000+"), Some("Manufacturing")),
        ("b@x.example", Some("1-50"), Some("Energy")),
        ("c@x.example", Some("200-1000"), Some("Energy")),
        ("d@x.example", None, None),
    ] {
        let lead = app
            .call(
                "PUT",
                "/v1/leads",
                Marketer,
                Some(json!({"email": email, "company_size": size, "industry": industry})),
            )
            .await;
        assert_eq!(lead.status, 201, "{:?}", lead.body);
    }
    let answer = app
        .call("GET", "/v1/segments/icp/preview?sample=1", Marketer, None)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let preview = answer.body;
    assert_eq!(
        (&preview["count"], &preview["scanned"]),
        (&json!(2), &json!(4)),
        "{preview}"
    );
    let sample = preview["sample"].as_array().unwrap();
    assert_eq!(sample.len(), 1);
    assert_eq!(sample[0]["lead"]["email"], "a@x.example");
    assert_eq!(
        sample[0]["why"],
        json!(["company_size is \"1000+\"", "tagged industry:manufacturing"]),
        "{preview}"
    );
    let all = app.call("GET", "/v1/segments/icp/preview", Marketer, None).await.body;
    let emails: Vec<&str> = all["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["lead"]["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["a@x.example", "c@x.example"]);

    assert_eq!(
        app.call("GET", "/v1/segments/nope/preview", Marketer, None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.call("GET", "/v1/segments/icp/preview?sample=101", Marketer, None)
            .await
            .status,
        400
    );
    assert_eq!(app.call("GET", "/v1/segments/icp/preview", Sdr, None).await.status, 403);
}

/// Leads taken out of a campaign by hand: their running enrollments end at once, their
/// journeys say who and why, and asking again changes nothing.
async fn leads_are_taken_out_of_a_campaign_by_hand(app: TestApp) {
    let mut ids = Vec::new();
    for email in ["out1@x.example", "out2@x.example"] {
        let lead = app
            .call("PUT", "/v1/leads", Marketer, Some(json!({"email": email})))
            .await;
        ids.push(lead.body["id"].as_str().unwrap().to_owned());
    }
    let enrolled = app
        .call(
            "POST",
            "/v1/campaigns/industry-drip/enroll",
            Marketer,
            Some(json!({"leads": ids})),
        )
        .await;
    assert_eq!(enrolled.body["enrolled"], 2, "{:?}", enrolled.body);
    let exit = json!({"leads": [ids[0], {"email": "out2@x.example"}, "999999"], "reason": "asked us to stop"});
    let answer = app
        .call("POST", "/v1/campaigns/industry-drip/exit", Marketer, Some(exit.clone()))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body, json!({"exited": 2, "not_in": 0, "not_found": [2]}));
    for id in &ids {
        let steps = app.timeline(id, "campaign_step").await;
        let exits: Vec<&serde_json::Value> = steps.iter().filter(|s| s["outcome"] == "exited").collect();
        assert_eq!(exits.len(), 1, "{steps:?}");
        assert_eq!(
            exits[0]["detail"],
            "taken out by hand by marketer-bot: asked us to stop"
        );
    }
    let again = app
        .call("POST", "/v1/campaigns/industry-drip/exit", Marketer, Some(exit))
        .await;
    assert_eq!(again.body, json!({"exited": 0, "not_in": 2, "not_found": [2]}));
    let blank = json!({"leads": [ids[0]], "reason": " "});
    assert_eq!(
        app.call("POST", "/v1/campaigns/industry-drip/exit", Marketer, Some(blank))
            .await
            .status,
        422
    );
    let nowhere = json!({"leads": [ids[0]], "reason": "x"});
    assert_eq!(
        app.call("POST", "/v1/campaigns/nowhere/exit", Marketer, Some(nowhere.clone()))
            .await
            .status,
        404
    );
    assert_eq!(
        app.call("POST", "/v1/campaigns/industry-drip/exit", Sdr, Some(nowhere))
            .await
            .status,
        403
    );
}

/// A deploy whose new segment-triggered campaign would enroll more leads at once than the
/// Rules allow (100 unless set) deploys nothing and says how many, per campaign, until the
/// marketer confirms; a small one deploys at once, its answer saying how many enter.
async fn a_deploy_that_enrolls_many_at_once_waits_for_confirmation(app: TestApp) {
    let mut leads: Vec<serde_json::Value> = (0..101)
        .map(|i| json!({"email": format!("f{i}@x.example"), "industry": "finance"}))
        .collect();
    leads.push(json!({"email": "e@x.example", "industry": "energy"}));
    let bulk = app.call("POST", "/v1/leads/bulk", Marketer, Some(json!(leads))).await;
    assert_eq!(bulk.status, 200, "{:?}", bulk.body);
    let campaign = |industry: &str| {
        format!(
            "kind: Campaign\nid: industry-push\nname: Industry push\ntype: custom\n\
             entry: {{ trigger: segment, when: {{ field: {{ name: industry, in: [{industry}] }} }} }}\n\
             start: mail\nsteps:\n  mail: {{ send: {{ channel: email, template: welcome-cxo }}, next: done }}\n  \
             done: {{ exit: pushed }}\n"
        )
    };
    let put = |query: &'static str, yaml: String| {
        let app = &app;
        async move {
            let (status, _, text) = app
                .raw(
                    "PUT",
                    &format!("/v1/playbook?file=industry-push.yaml{query}"),
                    Marketer,
                    Some(("application/yaml", yaml.into_bytes())),
                )
                .await;
            (status, serde_json::from_str::<serde_json::Value>(&text).unwrap())
        }
    };
    let (status, refused) = put("", campaign("finance")).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "confirmation_required");
    assert_eq!(
        refused["error"]["details"],
        json!([{"field": "enrolling.industry-push", "message": "101 leads match its segment now and would enter it at once"}])
    );
    assert!(
        refused["error"]["message"].as_str().unwrap().contains("?confirm=true"),
        "{refused}"
    );
    let listed = app.call("GET", "/v1/campaigns", Marketer, None).await.body.to_string();
    assert!(!listed.contains("industry-push"), "nothing was deployed: {listed}");
    let (status, _) = put("&confirm=maybe", campaign("finance")).await;
    assert_eq!(status, 400);

    let (status, deployed) = put("&confirm=true", campaign("finance")).await;
    assert_eq!(status, 200, "{deployed}");
    assert_eq!(deployed["enrolling"], json!({"industry-push": 101}));
    assert_eq!(deployed["created"], json!(["industry-push"]));
    // The leads enter in the background, right after the deploy: as many as it said.
    let mut waiting = 0;
    for _ in 0..200 {
        let campaign = app
            .call("GET", "/v1/campaigns/industry-push", Marketer, None)
            .await
            .body;
        waiting = campaign["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["entered"].as_i64().unwrap_or(0))
            .max()
            .unwrap_or(0);
        if waiting == 101 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, 101);

    // A new version for the energy lead: one enters, below the bar, so no confirmation.
    let (status, small) = put("", campaign("energy")).await;
    assert_eq!(status, 200, "{small}");
    assert_eq!(small["enrolling"], json!({"industry-push": 1}));
    assert_eq!(small["changed"], json!(["industry-push"]));
}

/// Page views count through the playbook's page rules (tags and score, never a bot's) and
/// `visited` conditions: a segment of those who saw pricing pages twice in a week holds the
/// one lead who did, and says so.
async fn page_views_tag_score_and_make_a_segment(app: TestApp) {
    let view = |email: &str, properties: serde_json::Value| json!({"lead": {"email": email}, "type": "page_view", "properties": properties});
    let events = json!([
        view(
            "once@x.example",
            json!({"url": "https://www.lumen-cloud.example/pricing?utm_source=ads"})
        ),
        view("twice@x.example", json!({"path": "/pricing"})),
        view("twice@x.example", json!({"path": "/Pricing/enterprise"})),
        view("blog@x.example", json!({"path": "/blog/pricing"})),
        view("blog@x.example", json!({"path": "/blog/pricing"})),
        view("bot@x.example", json!({"path": "/pricing", "automated": true})),
        view("bot@x.example", json!({"path": "/pricing", "automated": true})),
    ]);
    let posted = app.call("POST", "/v1/events", Crm, Some(events)).await;
    assert_eq!(posted.body["accepted"], 7, "{:?}", posted.body);
    let lead = |email: &'static str| {
        let app = &app;
        async move {
            let found = app
                .call("GET", &format!("/v1/leads?email={email}"), Marketer, None)
                .await
                .body;
            let lead = found["items"][0].clone();
            let tagged = lead["tags"].to_string().contains("interest:pricing");
            (lead["score"].as_i64().unwrap(), tagged)
        }
    };
    assert_eq!(lead("once@x.example").await, (5, true), "the page rule's tag and score");
    assert_eq!(lead("twice@x.example").await, (10, true));
    assert_eq!(lead("blog@x.example").await, (0, false), "another page");
    assert_eq!(
        lead("bot@x.example").await,
        (0, false),
        "a bot's views count for nothing"
    );

    let segment = "kind: Segment\nid: pricing-fans\nwhen: { visited: { url: /pricing*, within: 7d, times: 2 } }\n";
    let (status, _, text) = app
        .raw(
            "PUT",
            "/v1/playbook?file=pricing-fans.yaml",
            Marketer,
            Some(("application/yaml", segment.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let preview = app
        .call("GET", "/v1/segments/pricing-fans/preview?sample=10", Marketer, None)
        .await
        .body;
    assert_eq!(preview["count"], 1, "{preview}");
    assert_eq!(preview["sample"][0]["lead"]["email"], "twice@x.example", "{preview}");
    assert_eq!(
        preview["sample"][0]["why"],
        json!(["visited /pricing* 2 times within 1w"]),
        "{preview}"
    );
}

both_backends!(crate::support::spawn_app_on;
    page_views_tag_score_and_make_a_segment,
    a_deploy_that_enrolls_many_at_once_waits_for_confirmation,
    a_segment_preview_counts_and_says_why,
    leads_are_taken_out_of_a_campaign_by_hand,
    an_enroll_dry_run_says_what_would_happen_and_changes_nothing,
);

/// An enroll's dry run says who would enter and who would not, and why, and changes nothing:
/// the real enroll that follows does exactly what it said.
async fn an_enroll_dry_run_says_what_would_happen_and_changes_nothing(app: TestApp) {
    let mut ids = Vec::new();
    for (email, opted_out) in [
        ("dry-a@x.example", false),
        ("dry-b@x.example", false),
        ("dry-c@x.example", false),
        ("dry-d@x.example", true),
    ] {
        let mut lead = json!({"email": email});
        if opted_out {
            lead["consent"] = json!({"email": {"status": "opted_out", "source": "crm"}});
        }
        let made = app.call("PUT", "/v1/leads", Marketer, Some(lead)).await;
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    // b is running in the drip; c ran in it and was taken out (its re-entry rule: 90 days).
    let enroll = |leads: Vec<&String>| json!({"leads": leads});
    app.call(
        "POST",
        "/v1/campaigns/industry-drip/enroll",
        Marketer,
        Some(enroll(vec![&ids[1], &ids[2]])),
    )
    .await;
    let out = json!({"leads": [ids[2]], "reason": "test"});
    app.call("POST", "/v1/campaigns/industry-drip/exit", Marketer, Some(out))
        .await;

    let mut asked: Vec<serde_json::Value> = ids.iter().map(|id| json!(id)).collect();
    asked.push(json!("999999"));
    let dry = app
        .call(
            "POST",
            "/v1/campaigns/industry-drip/enroll",
            Marketer,
            Some(json!({"leads": asked, "dry_run": true})),
        )
        .await;
    assert_eq!(dry.status, 200, "{:?}", dry.body);
    assert_eq!(dry.body["dry_run"], true);
    assert_eq!(dry.body["would_enter"], 2, "{}", dry.body);
    assert_eq!(dry.body["skipped"], json!({"already_in": 1, "reentry": 1}));
    assert_eq!(dry.body["unreachable"], json!({"unsubscribed": 1}));
    assert_eq!(dry.body["not_found"], json!([4]));
    assert_eq!(dry.body["examples"]["already_in"], json!([ids[1]]));
    assert_eq!(dry.body["examples"]["unsubscribed"], json!([ids[3]]));
    assert!(app.journey(&ids[0]).await.is_empty(), "a dry run enrolls nobody");

    // The real enroll does what the dry run said.
    let done = app
        .call(
            "POST",
            "/v1/campaigns/industry-drip/enroll",
            Marketer,
            Some(json!({"leads": asked})),
        )
        .await;
    assert_eq!(done.body, json!({"enrolled": 2, "skipped": 2, "not_found": [4]}));

    // A segment's dry run covers every lead the segment holds.
    let preview = app
        .call("GET", "/v1/segments/in-nurture/preview", Marketer, None)
        .await
        .body;
    let dry = app
        .call(
            "POST",
            "/v1/campaigns/industry-drip/enroll",
            Marketer,
            Some(json!({"segment": "in-nurture", "dry_run": true})),
        )
        .await
        .body;
    let skipped: i64 = dry["skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(
        dry["would_enter"].as_i64().unwrap() + skipped,
        preview["count"].as_i64().unwrap(),
        "{dry}"
    );
    let nope = json!({"segment": "nope", "dry_run": true});
    assert_eq!(
        app.call("POST", "/v1/campaigns/industry-drip/enroll", Marketer, Some(nope))
            .await
            .status,
        422
    );
}
