//! Lead capture over HTTP as a site's visitors' browsers use it (`GET /t/nurture.js`,
//! `POST /t/events` with the browser's `Origin`): an anonymous visitor's page views kept,
//! then merged into the lead it becomes, scored by the shipped page rule; bots marked and not
//! scored; known leads' fields untouched; CORS for the playbook's sites alone; consent and Do
//! Not Track honoured; bad posts refused with the reason. On SQLite and on PostgreSQL.

use nurture_engine::access::Role::{Crm, Marketer};
use serde_json::{json, Value};

use crate::support::TestApp;

const SITE: &str = "https://www.lumen-cloud.example";
const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A post as a browser on `origin` makes it: status, `Access-Control-Allow-Origin`, body.
async fn post(
    app: &TestApp,
    origin: &str,
    agent: &str,
    body: Value,
    extra: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut request = app
        .client
        .post(format!("{}/t/events", app.base))
        .header("origin", origin)
        .header("user-agent", agent)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body.to_string());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let allowed = response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (status, allowed, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn view(path: &str) -> Value {
    json!({"type": "page_view", "url": format!("{SITE}{path}?utm_source=ads"), "title": "Lumen", "referrer": "https://www.baidu.com/"})
}

async fn lead(app: &TestApp, email: &str) -> Value {
    let found = app
        .call("GET", &format!("/v1/leads?email={email}"), Marketer, None)
        .await
        .body;
    found["items"][0].clone()
}

async fn a_visitor_is_kept_then_merged_into_the_lead_it_becomes(app: TestApp) {
    let script = app
        .client
        .get(format!("{}/t/nurture.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    let text = script.text().await.unwrap();
    assert!(
        text.contains(r#"var S = {"consent":"implied","respectDnt":false};"#),
        "the settings written in"
    );
    assert!(
        text.len() < 5 * 1024,
        "under 5 KB even before gzip: {} bytes",
        text.len()
    );

    let visitor = "v_4f1c2a9b7d3e5f60";
    let (status, allowed, body) = post(
        &app,
        SITE,
        BROWSER,
        json!({"visitor": visitor, "events": [view("/pricing"), view("/blog/iot")]}),
        &[],
    )
    .await;
    assert_eq!((status, body), (200, json!({"recorded": 0, "kept": 2})));
    assert_eq!(allowed.as_deref(), Some(SITE), "CORS for the playbook's site");
    assert!(
        lead(&app, "new@x.example").await.is_null(),
        "no lead before the site says who"
    );

    // The site says who the visitor is: the kept views become the lead's, scored by the page
    // rule (5 a pricing view), with the view sent along.
    let (status, _, body) = post(
        &app,
        SITE,
        BROWSER,
        json!({"visitor": visitor, "identify": {"email": "New@X.example"}, "events": [view("/pricing/enterprise")]}),
        &[],
    )
    .await;
    assert_eq!((status, body), (200, json!({"recorded": 3, "kept": 0})));
    let found = lead(&app, "new@x.example").await;
    assert_eq!(found["score"], 10, "{found}");
    assert_eq!(found["source"], "website", "{found}");
    assert!(found["tags"].to_string().contains("interest:pricing"), "{found}");
    let id = found["id"].as_str().unwrap().to_owned();
    let timeline = app
        .call("GET", &format!("/v1/leads/{id}/timeline"), Marketer, None)
        .await
        .body
        .to_string();
    for seen in [
        "/blog/iot",
        "/pricing/enterprise",
        "utm_source",
        "visitor_identified",
        "https://www.baidu.com/",
    ] {
        assert!(timeline.contains(seen), "{seen} in {timeline}");
    }
    assert_eq!(
        app.store.count("SELECT COUNT(*) FROM visitor_events").await,
        0,
        "nothing left anonymous"
    );

    // Known now: the next view goes to the lead at once (the page rule's cap is 15 a month).
    for expected in [15, 15] {
        let (_, _, body) = post(
            &app,
            SITE,
            BROWSER,
            json!({"visitor": visitor, "events": [view("/pricing")]}),
            &[],
        )
        .await;
        assert_eq!(body, json!({"recorded": 1, "kept": 0}));
        assert_eq!(lead(&app, "new@x.example").await["score"], expected);
    }

    // A bot's views are recorded, marked, and score nothing.
    let (_, _, body) = post(
        &app,
        SITE,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        json!({"visitor": "v_botbotbotbotbot01", "identify": {"email": "crawled@x.example"}, "events": [view("/pricing")]}),
        &[],
    )
    .await;
    assert_eq!(body, json!({"recorded": 1, "kept": 0}));
    let bot = lead(&app, "crawled@x.example").await;
    assert_eq!(bot["score"], 0, "{bot}");

    // Identifying as a known lead changes none of its fields.
    let known = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": "known@x.example", "first_name": "Wei", "source": "crm"})),
        )
        .await;
    assert_eq!(known.status, 201, "{:?}", known.body);
    let (_, _, body) = post(
        &app,
        SITE,
        BROWSER,
        json!({"visitor": "v_knownknownknown01", "identify": {"email": "known@x.example"}}),
        &[],
    )
    .await;
    assert_eq!(body, json!({"recorded": 0, "kept": 0}));
    let known = lead(&app, "known@x.example").await;
    assert_eq!((&known["first_name"], &known["source"]), (&json!("Wei"), &json!("crm")));

    // Nobody's page views are kept 90 days (the Rules' `keep_anonymous` when they say nothing).
    let anonymous = |visitor: &'static str| json!({"visitor": visitor, "events": [view("/pricing"), view("/docs")]});
    let (_, _, body) = post(&app, SITE, BROWSER, anonymous("v_oldoldoldoldold01"), &[]).await;
    assert_eq!(body["kept"], 2);
    app.clock.advance(chrono::Duration::days(89));
    let (_, _, body) = post(&app, SITE, BROWSER, anonymous("v_newnewnewnewnew01"), &[]).await;
    assert_eq!(body["kept"], 2);
    assert_eq!(
        app.engine.forget_anonymous_visits().await.unwrap(),
        0,
        "89 days: all kept"
    );
    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(
        app.engine.forget_anonymous_visits().await.unwrap(),
        2,
        "91 days: the old visitor's"
    );
    assert_eq!(app.store.count("SELECT COUNT(*) FROM visitor_events").await, 2);
    let visitors = |id: &'static str| {
        let app = &app;
        async move {
            app.store
                .count(&format!("SELECT COUNT(*) FROM visitors WHERE id = '{id}'"))
                .await
        }
    };
    assert_eq!(
        visitors("v_oldoldoldoldold01").await,
        0,
        "not seen for 91 days: forgotten"
    );
    assert_eq!(visitors("v_newnewnewnewnew01").await, 1);
    assert_eq!(visitors("v_4f1c2a9b7d3e5f60").await, 1, "a known visitor stays");
}

async fn other_sites_bad_posts_and_refusals_store_nothing(app: TestApp) {
    let visitor = "v_0123456789abcdef";
    let (status, allowed, body) = post(
        &app,
        "https://evil.example",
        BROWSER,
        json!({"visitor": visitor, "events": [view("/pricing")]}),
        &[],
    )
    .await;
    assert_eq!(
        (status, allowed, body["error"]["code"].clone()),
        (403, None, json!("forbidden"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("tracking sites"),
        "{body}"
    );
    let preflight = |origin: &'static str| {
        let app = &app;
        async move {
            let answer = app
                .client
                .request(reqwest::Method::OPTIONS, format!("{}/t/events", app.base))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap();
            let allowed = answer
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned());
            (answer.status().as_u16(), allowed)
        }
    };
    assert_eq!(preflight(SITE).await, (204, Some(SITE.to_owned())));
    assert_eq!(preflight("https://evil.example").await.0, 403);

    // Well-formed JSON of the wrong shape is 422, ill-formed JSON 400, as everywhere.
    let (status, _, body) = post(&app, SITE, BROWSER, json!("not an object"), &[]).await;
    assert_eq!(status, 422, "{body}");
    let raw = app
        .client
        .post(format!("{}/t/events", app.base))
        .header("origin", SITE)
        .body("{\"visitor\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let (status, _, body) = post(
        &app,
        SITE,
        BROWSER,
        json!({"visitor": "short", "events": [{"type": "page_view", "url": "javascript:alert(1)"}]}),
        &[],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["visitor", "events[0].url"]);
    let many: Vec<Value> = (0..51).map(|_| view("/pricing")).collect();
    let (status, _, _) = post(&app, SITE, BROWSER, json!({"visitor": visitor, "events": many}), &[]).await;
    assert_eq!(status, 422);
    let huge = json!({"visitor": visitor, "events": [{"type": "page_view", "url": format!("{SITE}/{}", "a".repeat(300_000))}]});
    let (status, _, _) = post(&app, SITE, BROWSER, huge, &[]).await;
    assert_eq!(status, 413);
    assert_eq!(
        app.store.count("SELECT COUNT(*) FROM visitors").await,
        0,
        "nothing kept"
    );

    // The playbook asks for consent and honours Do Not Track.
    let rules = include_str!("../../campaigns/rules.yaml")
        .replace("consent: implied ", "consent: required\n  respect_dnt: true\n ");
    let (status, _, text) = app
        .raw(
            "PUT",
            "/v1/playbook?file=rules.yaml",
            Marketer,
            Some(("application/yaml", rules.into_bytes())),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let script = app
        .client
        .get(format!("{}/t/nurture.js", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.contains(r#"{"consent":"required","respectDnt":true}"#));
    let events = json!([view("/pricing")]);
    let (_, _, body) = post(&app, SITE, BROWSER, json!({"visitor": visitor, "events": events}), &[]).await;
    assert_eq!(body, json!({"recorded": 0, "kept": 0}), "no consent, nothing kept");
    let (_, _, body) = post(
        &app,
        SITE,
        BROWSER,
        json!({"visitor": visitor, "events": events, "consent": true}),
        &[("dnt", "1")],
    )
    .await;
    assert_eq!(body, json!({"recorded": 0, "kept": 0}), "Do Not Track");
    let (_, _, body) = post(
        &app,
        SITE,
        BROWSER,
        json!({"visitor": visitor, "events": events, "consent": true}),
        &[("sec-gpc", "1")],
    )
    .await;
    assert_eq!(body, json!({"recorded": 0, "kept": 0}), "Global Privacy Control");
    assert_eq!(
        app.store.count("SELECT COUNT(*) FROM visitors").await,
        0,
        "nothing kept"
    );
    let (_, _, body) = post(
        &app,
        SITE,
        BROWSER,
        json!({"visitor": visitor, "events": events, "consent": true}),
        &[],
    )
    .await;
    assert_eq!(body, json!({"recorded": 0, "kept": 1}), "consent given");
}

both_backends!(crate::support::spawn_app_on;
    a_visitor_is_kept_then_merged_into_the_lead_it_becomes,
    other_sites_bad_posts_and_refusals_store_nothing,
);
