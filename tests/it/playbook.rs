//! The Campaigns and playbook section of the API against a real server: validate (one file or
//! a tar), deploy with versions, the campaign as a graph in JSON, SVG and DOT, pause and resume.

use nurture_engine::access::Role::{Admin, Crm, Marketer, Sdr};
use serde_json::{json, Value};

use crate::support::{repo, spawn_app, TestApp};

const YAML: &str = "application/yaml";

fn shipped(name: &str) -> String {
    std::fs::read_to_string(repo().join("campaigns").join(name)).unwrap()
}

/// A tar archive of these (path, text) files.
pub(crate) fn tar_of(files: &[(String, String)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, text.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The shipped playbook's files, by path inside the playbook directory.
pub(crate) fn shipped_files() -> Vec<(String, String)> {
    let root = repo().join("campaigns");
    walk(&root)
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// The shipped playbook directory as a tar archive, with `replace` laid over its files.
fn playbook_tar(replace: &[(&str, &str)]) -> Vec<u8> {
    let mut files = shipped_files();
    for (name, text) in replace {
        files.retain(|(n, _)| n != name);
        files.push((name.to_string(), text.to_string()));
    }
    tar_of(&files)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn json_of(
    app: &TestApp,
    method: &str,
    path: &str,
    role: nurture_engine::access::Role,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, Value) {
    let (status, _, text) = app.raw(method, path, role, body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// A marketer sends these files as a tar to `path` (validate or deploy).
async fn send_playbook(app: &TestApp, method: &str, path: &str, files: &[(String, String)]) -> (u16, Value) {
    json_of(app, method, path, Marketer, Some(("application/x-tar", tar_of(files)))).await
}

/// The answer's warnings whose message says `needle`.
fn warnings_saying(answer: &Value, needle: &str) -> Vec<Value> {
    answer["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["message"].as_str().unwrap().contains(needle))
        .cloned()
        .collect()
}

#[tokio::test]
async fn validating_one_file_reports_every_error_against_the_playbook_in_force() {
    let app = spawn_app().await;
    let broken = shipped("welcome.yaml")
        .replace("next: wait_2d", "next: wait_2days")
        .replace("{ segment: persona-marketer }", "{ segment: persona-marketeer }");
    let (status, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate?file=campaigns/welcome.yaml",
        Marketer,
        Some((YAML, broken.into_bytes())),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({
            "valid": false,
            "errors": [
                {"file": "campaigns/welcome.yaml", "line": 26, "column": 28, "severity": "error",
                 "message": "segment \"persona-marketeer\" does not exist; did you mean \"persona-marketer\"?"},
                {"file": "campaigns/welcome.yaml", "line": 28, "column": 11, "severity": "error",
                 "message": "`next` names step \"wait_2days\", which does not exist; did you mean \"wait_2d\"?"}
            ],
            "warnings": [],
            "campaigns": []
        })
    );

    // The same file as shipped is valid, and checked against the rest of the playbook.
    let (status, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate",
        Marketer,
        Some((YAML, shipped("welcome.yaml").into_bytes())),
    )
    .await;
    assert_eq!((status, &answer["valid"]), (200, &json!(true)), "{answer}");
    assert_eq!(answer["campaigns"].as_array().unwrap().len(), 4, "{answer}");
}

#[tokio::test]
async fn validating_a_tar_of_the_directory_and_bad_uploads() {
    let app = spawn_app().await;
    let (status, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate",
        Marketer,
        Some(("application/x-tar", playbook_tar(&[]))),
    )
    .await;
    assert_eq!((status, &answer["valid"]), (200, &json!(true)), "{answer}");

    // A whole directory without its queues file: every handoff names a missing queue.
    let without_queues = tar_of(&[
        ("rules.yaml".to_owned(), shipped("rules.yaml")),
        ("segments/icp.yaml".to_owned(), shipped("segments/icp.yaml")),
    ]);
    let (_, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate",
        Marketer,
        Some(("application/x-tar", without_queues)),
    )
    .await;
    // The MQL's handoff names the queue, on its line of the shipped rules.
    let line = shipped("rules.yaml")
        .lines()
        .position(|l| l.contains("handoff: { queue: sdr"))
        .unwrap()
        + 1;
    assert_eq!(
        answer["errors"],
        json!([{"file": "rules.yaml", "line": line, "column": 21, "severity": "error",
                "message": "queue \"sdr\" does not exist; define it in a `kind: Queues` file"}])
    );

    let (status, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate",
        Marketer,
        Some((YAML, Vec::new())),
    )
    .await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("malformed")));
    let (status, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate",
        Marketer,
        Some((YAML, vec![0xff, 0xfe, 0x00])),
    )
    .await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("malformed")));
    let (status, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate",
        Marketer,
        Some(("application/x-tar", b"not a tar at all".to_vec())),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("malformed")),
        "{answer}"
    );
    let (status, answer) = json_of(
        &app,
        "POST",
        "/v1/playbook/validate",
        Sdr,
        Some((YAML, shipped("welcome.yaml").into_bytes())),
    )
    .await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("forbidden")));
}

#[tokio::test]
async fn deploying_keeps_every_version_and_an_unchanged_playbook_is_a_no_op() {
    let app = spawn_app().await;
    let (status, answer) = json_of(
        &app,
        "PUT",
        "/v1/playbook",
        Marketer,
        Some(("application/x-tar", playbook_tar(&[]))),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["unchanged"],
        json!(["activation", "industry-drip", "webinar-follow-up", "welcome"])
    );
    assert_eq!(
        (answer["created"].clone(), answer["changed"].clone()),
        (json!([]), json!([]))
    );

    let first = app.call("GET", "/v1/campaigns/welcome", Sdr, None).await.body;
    let edited = shipped("welcome.yaml").replace("wait: { for: 4d }", "wait: { for: 5d }");
    let (status, answer) = json_of(
        &app,
        "PUT",
        "/v1/playbook?file=campaigns/welcome.yaml",
        Marketer,
        Some((YAML, edited.into_bytes())),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["changed"].clone(), answer["unchanged"].clone()),
        (
            json!(["welcome"]),
            json!(["activation", "industry-drip", "webinar-follow-up"])
        )
    );
    let second = app.call("GET", "/v1/campaigns/welcome", Sdr, None).await.body;
    assert_ne!(first["version"], second["version"]);
    assert_eq!(second["version_number"], 2);
    let versions: Vec<_> = second["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].clone(), v["number"].clone()))
        .collect();
    assert_eq!(
        versions,
        [
            (first["version"].clone(), json!(1)),
            (second["version"].clone(), json!(2))
        ]
    );
    let wait = second["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == "wait_before_drip")
        .unwrap();
    assert_eq!(wait["label"], "after 5d");

    // Going back to the first content is the first version again, not a third.
    let (_, answer) = json_of(
        &app,
        "PUT",
        "/v1/playbook",
        Marketer,
        Some(("application/x-tar", playbook_tar(&[]))),
    )
    .await;
    assert_eq!(answer["changed"], json!(["welcome"]));
    let back = app.call("GET", "/v1/campaigns/welcome", Sdr, None).await.body;
    assert_eq!(
        (back["version"].clone(), back["version_number"].clone()),
        (first["version"].clone(), json!(1))
    );
    assert_eq!(back["versions"].as_array().unwrap().len(), 2);

    // An invalid playbook deploys nothing and says why.
    let broken = shipped("welcome.yaml").replace("next: getting_started", "next: getting_startd");
    let (status, answer) = json_of(
        &app,
        "PUT",
        "/v1/playbook?file=campaigns/welcome.yaml",
        Marketer,
        Some((YAML, broken.into_bytes())),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "validation_failed");
    assert_eq!(
        answer["error"]["details"],
        json!([{"field": "campaigns/welcome.yaml:31:11", "message": "`next` names step \"getting_startd\", which does not exist; did you mean \"getting_started\"?"}])
    );
    let after = app.call("GET", "/v1/campaigns/welcome", Sdr, None).await.body;
    assert_eq!(after["version"], first["version"]);

    // Dropping a campaign from the playbook retires it; its versions stay. (The webinar
    // follow-up enrolls into activation, so it goes too.)
    let mut files = shipped_files();
    files.retain(|(name, _)| name != "activation.yaml" && name != "webinar-follow-up.yaml");
    let without = tar_of(&files);
    let (_, answer) = json_of(&app, "PUT", "/v1/playbook", Admin, Some(("application/x-tar", without))).await;
    assert_eq!(
        answer["retired"],
        json!(["activation", "webinar-follow-up"]),
        "{answer}"
    );
    let list = app.call("GET", "/v1/campaigns", Crm, None).await.body;
    let statuses: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].clone(), c["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (json!("activation"), json!("retired")),
            (json!("industry-drip"), json!("active")),
            (json!("webinar-follow-up"), json!("retired")),
            (json!("welcome"), json!("active"))
        ]
    );
    assert_eq!(
        app.call("GET", "/v1/campaigns/activation/graph.svg", Sdr, None)
            .await
            .status,
        404
    );
    let retired = app.call("GET", "/v1/campaigns/activation", Sdr, None).await.body;
    assert_eq!(
        (retired["status"].clone(), retired["entry"].clone()),
        (json!("retired"), Value::Null)
    );
    assert_eq!(retired["versions"].as_array().unwrap().len(), 1, "its versions stay");
}

#[tokio::test]
async fn a_campaign_as_json_svg_and_dot() {
    let app = spawn_app().await;
    let list = app.call("GET", "/v1/campaigns", Sdr, None).await.body;
    let drip = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "industry-drip")
        .unwrap()
        .clone();
    assert_eq!(
        (
            drip["type"].clone(),
            drip["status"].clone(),
            drip["version_number"].clone()
        ),
        (json!("drip"), json!("active"), json!(1))
    );

    let detail = app.call("GET", "/v1/campaigns/industry-drip", Sdr, None).await.body;
    assert_eq!(detail["start"], "insight");
    assert_eq!(detail["entry"]["trigger"], "segment");
    let steps: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), detail["steps"].as_array().unwrap().len());
    assert!(detail["edges"]
        .as_array()
        .unwrap()
        .contains(&json!({"from": "opened_insight", "to": "tag_deep", "label": "yes"})));
    assert!(detail["edges"]
        .as_array()
        .unwrap()
        .contains(&json!({"from": "opened_insight", "to": "new_angle", "label": "no"})));
    assert!(detail["edges"]
        .as_array()
        .unwrap()
        .contains(&json!({"from": "wait_insight", "to": "opened_insight", "label": "after 3d"})));

    let (status, content_type, svg) = app.raw("GET", "/v1/campaigns/industry-drip/graph.svg", Sdr, None).await;
    assert_eq!((status, content_type.as_str()), (200, "image/svg+xml"));
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    for step in &steps {
        assert!(svg.contains(&format!(">{step}<")), "step {step} is drawn");
    }
    let (status, _, dot) = app.raw("GET", "/v1/campaigns/industry-drip/graph.dot", Crm, None).await;
    assert_eq!(status, 200);
    assert!(
        dot.contains("\"opened_insight\" -> \"tag_deep\" [label=\"yes (0)\"];"),
        "{dot}"
    );
    assert!(dot.contains("\"opened_insight\" [shape=diamond"), "{dot}");
    assert_eq!(app.call("GET", "/v1/campaigns/nope", Sdr, None).await.status, 404);
    assert_eq!(
        app.call("GET", "/v1/campaigns/nope/graph.dot", Sdr, None).await.status,
        404
    );
}

#[tokio::test]
async fn pause_and_resume() {
    let app = spawn_app().await;
    assert_eq!(
        app.call("POST", "/v1/campaigns/welcome/pause", Crm, None).await.status,
        403
    );
    let paused = app.call("POST", "/v1/campaigns/welcome/pause", Marketer, None).await;
    assert_eq!(
        (paused.status, paused.body.clone()),
        (200, json!({"id": "welcome", "status": "paused"}))
    );
    let detail = app.call("GET", "/v1/campaigns/welcome", Sdr, None).await.body;
    assert_eq!(detail["status"], "paused");
    // A deploy does not resume a paused campaign.
    let (_, answer) = json_of(
        &app,
        "PUT",
        "/v1/playbook",
        Marketer,
        Some(("application/x-tar", playbook_tar(&[]))),
    )
    .await;
    assert_eq!(
        answer["unchanged"],
        json!(["activation", "industry-drip", "webinar-follow-up", "welcome"])
    );
    assert_eq!(
        app.call("GET", "/v1/campaigns/welcome", Sdr, None).await.body["status"],
        "paused"
    );
    let resumed = app.call("POST", "/v1/campaigns/welcome/resume", Marketer, None).await;
    assert_eq!(resumed.body["status"], "active");
    assert_eq!(
        app.call("POST", "/v1/campaigns/nope/pause", Marketer, None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_manual_clock_runs_what_falls_due_in_order() {
    let app = spawn_app().await;
    let posted = app
        .call(
            "POST",
            "/v1/events",
            Crm,
            Some(json!({"lead": {"email": "clock@x.example"}, "type": "registered"})),
        )
        .await;
    assert_eq!(posted.body["accepted"], 1);
    let lead = app.call("GET", "/v1/leads?email=clock@x.example", Sdr, None).await.body["items"][0].clone();
    let id = lead["id"].as_str().unwrap().to_owned();
    assert_eq!(lead["stage"], "nurturing");

    let before = app.call("GET", "/v1/admin/clock", Sdr, None).await.body;
    assert_eq!(before["mode"], "manual");
    assert_eq!(
        app.call("POST", "/v1/admin/clock/advance", Marketer, Some(json!({"by": "2d"})))
            .await
            .status,
        403
    );
    let bad = app
        .call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "2 days"})))
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["details"][0]["field"].as_str()),
        (422, Some("by"))
    );

    // Twelve days: the 2-day wait, then the 3-day wait, each at its own time, then the case
    // study waits out the weekend for its send window, then the 4-day wait.
    let advanced = app
        .call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "12d"})))
        .await;
    assert_eq!(advanced.status, 200, "{}", advanced.body);
    let now: chrono::DateTime<chrono::Utc> = advanced.body["now"].as_str().unwrap().parse().unwrap();
    let was: chrono::DateTime<chrono::Utc> = before["now"].as_str().unwrap().parse().unwrap();
    assert_eq!(now - was, chrono::Duration::days(12));
    let steps: Vec<(String, String)> = app
        .timeline(&id, "campaign_step")
        .await
        .iter()
        .map(|e| {
            (
                format!("{}:{}", e["step"].as_str().unwrap(), e["outcome"].as_str().unwrap()),
                e["at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let at = |step: &str| -> chrono::Duration {
        let t: chrono::DateTime<chrono::Utc> = steps
            .iter()
            .find(|(s, _)| s == step)
            .unwrap_or_else(|| panic!("{step} in {steps:?}"))
            .1
            .parse()
            .unwrap();
        t - was
    };
    assert_eq!(at("getting_started:sent"), chrono::Duration::days(2));
    assert_eq!(at("opened_any:no"), chrono::Duration::days(5));
    // Day 5 is Saturday 2026-11-07; the window opens Monday 09:00 in Shanghai (01:00 UTC),
    // and the send goes within its first 15 minutes.
    assert_eq!(at("case_study:deferred"), chrono::Duration::days(5));
    let monday = chrono::Duration::days(6) + chrono::Duration::hours(16);
    let sent = at("case_study:sent");
    assert!(
        sent >= monday && sent < monday + chrono::Duration::minutes(15),
        "{sent}"
    );
    assert_eq!(at("to_industry_drip:enrolled"), sent + chrono::Duration::days(4));

    // The campaign counts what went through each step, and draws the counts on its edges.
    let welcome = app.call("GET", "/v1/campaigns/welcome", Sdr, None).await.body;
    let step = |id: &str| {
        welcome["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(step("welcome")["entered"], 1);
    assert_eq!(step("opened_any")["outcomes"], json!({"no": 1}));
    assert_eq!(step("case_study")["entered"], 1, "a deferred send arrives once");
    assert_eq!(step("case_study")["outcomes"], json!({"deferred": 1, "sent": 1}));
    assert_eq!(step("wait_2d")["outcomes"], json!({"waiting": 1, "waited": 1}));
    let drip = app.call("GET", "/v1/campaigns/industry-drip", Sdr, None).await.body;
    let waiting: i64 = drip["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["waiting"].as_i64().unwrap())
        .sum();
    assert_eq!(waiting, 1, "handed on to the drip, where it waits");
    let (_, _, dot) = app.raw("GET", "/v1/campaigns/welcome/graph.dot", Sdr, None).await;
    assert!(
        dot.contains(r#""opened_any" -> "wechat_hello" [label="no (1)"];"#),
        "{dot}"
    );
    assert!(
        dot.contains(r#""opened_any" -> "tag_welcomed" [label="yes (0)"];"#),
        "{dot}"
    );
    // Under each step, how many wait there now; under a send, what it sent and the share of it
    // people opened and clicked.
    let steps = welcome["steps"].as_array().unwrap().len();
    assert_eq!(dot.matches("0 waiting").count(), steps, "{dot}");
    assert!(dot.contains("0 waiting · sent 1 · opened 0.0% · clicked 0.0%"), "{dot}");
    let (_, _, svg) = app.raw("GET", "/v1/campaigns/industry-drip/graph.svg", Sdr, None).await;
    assert_eq!(svg.matches("1 waiting").count(), 1, "the lead waits at one step: {svg}");
}

#[tokio::test]
async fn enrolling_by_hand_respects_re_entry() {
    let app = spawn_app().await;
    let a = app
        .call("PUT", "/v1/leads", Crm, Some(json!({"email": "a@x.example"})))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(
        "PUT",
        "/v1/leads",
        Crm,
        Some(json!({"email": "b@x.example", "company_size": "1000+"})),
    )
    .await;
    let answer = app
        .call(
            "POST",
            "/v1/campaigns/welcome/enroll",
            Crm,
            Some(json!({"leads": [a, {"email": "b@x.example"}, {"email": "nobody@x.example"}, "999999", "x1"]})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"enrolled": 2, "skipped": 0, "not_found": [2, 3, 4]}),
        "an unknown e-mail, an id that is no lead and one that is no id"
    );
    let again = app
        .call(
            "POST",
            "/v1/campaigns/welcome/enroll",
            Marketer,
            Some(json!({"leads": [a]})),
        )
        .await;
    assert_eq!(
        again.body,
        json!({"enrolled": 0, "skipped": 1, "not_found": []}),
        "already running"
    );
    let by_segment = app
        .call(
            "POST",
            "/v1/campaigns/activation/enroll",
            Marketer,
            Some(json!({"segment": "in-nurture"})),
        )
        .await;
    assert_eq!(by_segment.body["enrolled"], 2, "{}", by_segment.body);

    assert_eq!(
        app.call("POST", "/v1/campaigns/welcome/enroll", Sdr, Some(json!({"leads": [a]})))
            .await
            .status,
        403
    );
    assert_eq!(
        app.call("POST", "/v1/campaigns/nope/enroll", Crm, Some(json!({"leads": [a]})))
            .await
            .status,
        404
    );
    let both = app
        .call(
            "POST",
            "/v1/campaigns/welcome/enroll",
            Crm,
            Some(json!({"leads": [a], "segment": "icp"})),
        )
        .await;
    assert_eq!(both.status, 422);
    let unknown = app
        .call(
            "POST",
            "/v1/campaigns/welcome/enroll",
            Crm,
            Some(json!({"segment": "vip"})),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["error"]["details"][0]["field"].as_str()),
        (422, Some("segment"))
    );
    app.call("POST", "/v1/campaigns/welcome/pause", Marketer, None).await;
    assert_eq!(
        app.call("POST", "/v1/campaigns/welcome/enroll", Crm, Some(json!({"leads": [a]})))
            .await
            .status,
        409
    );
}

#[tokio::test]
async fn an_edited_campaign_keeps_enrollments_on_the_version_they_entered() {
    let app = spawn_app().await;
    let templates = |id: String| {
        let app = &app;
        async move {
            app.timeline(&id, "message")
                .await
                .iter()
                .map(|e| format!("{}:{}", e["step"].as_str().unwrap(), e["template"].as_str().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let before = app.register("old@x.example").await;
    // The second e-mail changes; the lead already on its way keeps the version it entered.
    let edited = shipped("welcome.yaml").replace(
        "send: { channel: email, template: welcome-getting-started }",
        "send: { channel: email, template: welcome-case-study }",
    );
    let (status, answer) = json_of(&app, "PUT", "/v1/playbook", Marketer, Some((YAML, edited.into_bytes()))).await;
    assert_eq!(
        (status, answer["changed"].clone()),
        (200, json!(["welcome"])),
        "{answer}"
    );
    let after = app.register("new@x.example").await;
    app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "2d"})))
        .await;
    assert_eq!(
        templates(before).await,
        ["welcome:welcome", "getting_started:welcome-getting-started"],
        "the version it entered"
    );
    assert_eq!(
        templates(after).await,
        ["welcome:welcome", "getting_started:welcome-case-study"],
        "the new version"
    );
}

#[tokio::test]
async fn an_enrollment_whose_version_no_longer_builds_exits_with_the_reason() {
    let app = spawn_app().await;
    let before = app.register("early@x.example").await;
    let entered = app.call("GET", "/v1/campaigns/welcome", Marketer, None).await.body["version"]
        .as_str()
        .unwrap()
        .to_owned();

    // A playbook without the CXO segment: the welcome version the lead entered chose its first
    // e-mail by that segment, so it can no longer be built against the playbook in force.
    let cxo_welcome = "        - when: { segment: persona-cxo }\n          template: welcome-cxo\n";
    let cxo_insight =
        "      variants:\n        - when: { segment: persona-cxo }\n          template: industry-insight-cxo\n";
    assert!(shipped("welcome.yaml").contains(cxo_welcome) && shipped("industry-drip.yaml").contains(cxo_insight));
    let files: Vec<(String, String)> = shipped_files()
        .into_iter()
        .filter(|(name, _)| name != "segments/persona-cxo.yaml")
        .map(|(name, text)| {
            let text = text.replace(cxo_welcome, "").replace(cxo_insight, "");
            (name, text)
        })
        .collect();
    // The marketer is told before deploying, and again in the deploy's answer.
    let stranded = |answer: &Value| warnings_saying(answer, &entered);
    let (status, checked) = send_playbook(&app, "POST", "/v1/playbook/validate", &files).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["valid"], true, "{checked}");
    let warned = stranded(&checked);
    assert_eq!(warned.len(), 1, "{checked}");
    // The file that version came from, as it was deployed.
    assert!(
        warned[0]["file"].as_str().unwrap().ends_with("welcome.yaml"),
        "{checked}"
    );
    assert_eq!(warned[0]["severity"], "warning");
    let message = warned[0]["message"].as_str().unwrap();
    for part in [
        "campaign \"welcome\" version",
        ": 1 running enrollment entered it, and it ends at its next step, since that version no longer builds \
         with this playbook (segment \"persona-cxo\" does not exist",
        "To let it finish, keep what that version uses",
    ] {
        assert!(message.contains(part), "{part:?} is not in {message:?}");
    }
    let (status, answer) = send_playbook(&app, "PUT", "/v1/playbook", &files).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["changed"].as_array().unwrap().contains(&json!("welcome")),
        "{answer}"
    );
    assert_eq!(stranded(&answer), warned, "{answer}");
    let after = app.register("late@x.example").await;

    app.call("POST", "/v1/admin/clock/advance", Admin, Some(json!({"by": "2d"})))
        .await;
    let lines = app.timeline(&before, "campaign_step").await;
    assert!(lines.iter().all(|e| e["campaign"] == "welcome"), "{lines:?}");
    assert_eq!(
        app.journey(&before).await,
        ["welcome:sent", "wait_2d:waiting", "wait_2d:exited"],
        "the old version ends where it waited"
    );
    let ended = lines.last().unwrap();
    assert_eq!(
        ended["detail"],
        json!(format!("campaign version {entered} can no longer be built")),
        "{ended}"
    );
    // `getting_started` is a step of the welcome series alone.
    let late = app.journey(&after).await;
    assert!(
        late.contains(&"getting_started:sent".to_string()),
        "the new version runs on: {late:?}"
    );
}

#[tokio::test]
async fn a_playbook_that_leaves_out_a_running_campaign_warns_that_its_enrollments_stop() {
    let app = spawn_app().await;
    app.register("one@x.example").await;
    app.register("two@x.example").await;
    let without: Vec<(String, String)> = shipped_files()
        .into_iter()
        .filter(|(name, _)| name != "welcome.yaml")
        .collect();
    let retiring = |answer: &Value| -> Vec<String> {
        let warned = warnings_saying(answer, "retires");
        warned
            .iter()
            .map(|w| w["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, checked) = send_playbook(&app, "POST", "/v1/playbook/validate", &without).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(
        retiring(&checked),
        [
            "campaign \"welcome\" is not in this playbook: deploying it retires the campaign, and its 2 running \
          enrollments stop where they are (deploying the campaign again lets them go on)"
        ],
        "{checked}"
    );
    // The CLI says the same when given the server's database, which it only reads.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &without {
        let path = dir.path().join("campaigns").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let validate = |database: &str| {
        crate::cli::nurture(dir.path())
            .args(["playbook", "validate", "campaigns", "--templates"])
            .arg(repo().join("templates"))
            .args(["--database-url", database])
            .output()
            .unwrap()
    };
    let cli = validate(&app.database_url());
    let (out, err) = (
        String::from_utf8_lossy(&cli.stdout),
        String::from_utf8_lossy(&cli.stderr),
    );
    assert!(cli.status.success(), "{err}");
    let message = &retiring(&checked)[0];
    assert_eq!(err.matches(message.as_str()).count(), 1, "{err}");
    assert!(out.contains(", 1 warning ("), "{out}");
    let missing = dir.path().join("nowhere.db");
    let cli = validate(&format!("sqlite://{}", missing.display()));
    assert!(!cli.status.success());
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains(&format!(
            "there is no database at {}; give --database-url the database `nurture serve` uses",
            missing.display()
        )),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(!missing.exists(), "validation creates no database");
    // The shipped playbook as it stands warns of nothing of the kind.
    let (_, unchanged) = send_playbook(&app, "POST", "/v1/playbook/validate", &shipped_files()).await;
    assert_eq!(unchanged["valid"], true, "{unchanged}");
    assert!(retiring(&unchanged).is_empty(), "{unchanged}");

    let (status, deployed) = send_playbook(&app, "PUT", "/v1/playbook", &without).await;
    assert_eq!(status, 200, "{deployed}");
    assert_eq!(deployed["retired"], json!(["welcome"]), "{deployed}");
    assert_eq!(retiring(&deployed), retiring(&checked));
    // Retired: asked again, there is nothing more to warn of.
    let (_, again) = send_playbook(&app, "POST", "/v1/playbook/validate", &without).await;
    assert!(retiring(&again).is_empty(), "{again}");
}

#[tokio::test]
async fn a_deployed_campaign_takes_in_the_leads_that_already_match() {
    let app = spawn_app().await;
    let created = app
        .call(
            "PUT",
            "/v1/leads",
            Crm,
            Some(json!({"email": "energy@x.example", "industry": "Energy"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let lead = created.body["id"].as_str().unwrap().to_owned();
    let campaign = "kind: Campaign\nid: energy-hold\nname: energy-hold\ntype: custom\n\
        entry: { trigger: segment, when: { field: { name: industry, exists: true } }, reentry: { after: 90d } }\n\
        start: hold\nsteps:\n  hold: { wait: { for: 1d }, next: done }\n  done: { exit: done }\n";
    let (status, answer) = json_of(
        &app,
        "PUT",
        "/v1/playbook?file=campaigns/energy-hold.yaml",
        Marketer,
        Some((YAML, campaign.as_bytes().to_vec())),
    )
    .await;
    assert_eq!(
        (status, answer["created"].clone()),
        (200, json!(["energy-hold"])),
        "{answer}"
    );
    // The lead changed before the campaign existed: it enters after the deploy's answer, in
    // the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let entered = loop {
        let steps: Vec<Value> = app
            .timeline(&lead, "campaign_step")
            .await
            .into_iter()
            .filter(|e| e["campaign"] == "energy-hold")
            .collect();
        if !steps.is_empty() || std::time::Instant::now() > deadline {
            break steps;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        entered.iter().map(|e| e["step"].clone()).collect::<Vec<_>>(),
        [json!("hold")],
        "{entered:?}"
    );
}
