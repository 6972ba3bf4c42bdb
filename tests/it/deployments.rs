//! Deployments that last: the playbook and its templates travel and are kept together, every
//! deployment is recorded and can be read back and restored, and `serve` runs what was
//! deployed, across restarts, through the real binary. On SQLite and on PostgreSQL.

use nurture_engine::access::Role::{Marketer, Sdr};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{nurture, ready};
use crate::playbook::{shipped_files, tar_of};
use crate::smtp::SmtpSink;
use crate::support::{call_ok as call, repo, Backend, TestApp};

/// A webinar follow-up: a reminder now, the recording three days later.
const WEBINAR: &str = r#"
kind: Campaign
id: webinar-replay
name: Webinar replay
type: custom
entry: { trigger: manual }
start: reminder
steps:
  reminder:
    send: { channel: email, template: replay-reminder }
    next: three_days
  three_days:
    wait: { for: 3d }
    next: recording
  recording:
    send: { channel: email, template: replay-recording }
    next: done
  done:
    exit: completed
"#;

/// The webinar's templates, under `templates/`.
fn webinar_templates() -> Vec<(String, String)> {
    [
        ("replay-reminder.hbs", "<p>{{first_name}}, the webinar is tomorrow.</p>"),
        ("replay-reminder.subject.hbs", "Webinar reminder"),
        ("replay-recording.hbs", "<p>{{first_name}}, here is the recording.</p>"),
        ("replay-recording.subject.hbs", "Webinar recording"),
    ]
    .into_iter()
    .map(|(name, text)| (format!("templates/{name}"), text.to_owned()))
    .collect()
}

/// Every file under `dir`, by its path relative to `root`.
fn files_under(root: &Path, dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

/// The shipped playbook and templates as a tar of `campaigns/` and `templates/`, with `more`.
fn shipped_bundle_with(more: &[(String, String)]) -> Vec<u8> {
    let mut files: Vec<(String, String)> = shipped_files()
        .into_iter()
        .map(|(name, text)| (format!("campaigns/{name}"), text))
        .collect();
    files.extend(files_under(&repo(), "templates"));
    files.extend(more.iter().cloned());
    tar_of(&files)
}

async fn send(app: &TestApp, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
    let (status, _, text) = app.raw(method, path, Marketer, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Validation and deploy read the templates of the bundle sent, not the server's disk; every
/// deployment is kept with its files, and a restore brings an earlier one back.
async fn templates_travel_with_the_bundle_and_deployments_are_kept(app: TestApp) {
    let tar = "application/x-tar";
    // Without its templates the campaign is refused; with them in the tar, it is valid.
    let without = shipped_bundle_with(&[("campaigns/webinar-replay.yaml".into(), WEBINAR.into())]);
    let (status, answer) = send(&app, "POST", "/v1/playbook/validate", Some((tar, without))).await;
    assert_eq!((status, &answer["valid"]), (200, &json!(false)), "{answer}");
    let errors = answer["errors"].to_string();
    assert!(errors.contains("replay-reminder"), "{answer}");
    let mut files = vec![("campaigns/webinar-replay.yaml".to_owned(), WEBINAR.to_owned())];
    files.extend(webinar_templates());
    let bundle = shipped_bundle_with(&files);
    let (status, answer) = send(&app, "POST", "/v1/playbook/validate", Some((tar, bundle.clone()))).await;
    assert_eq!((status, &answer["valid"]), (200, &json!(true)), "{answer}");

    let (status, first) = send(&app, "GET", "/v1/deployments", None).await;
    assert_eq!(status, 200, "{first}");
    let shipped = first["items"][0].clone();
    assert_eq!(first["items"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(shipped["origin"], "cli");

    let (status, deployed) = send(&app, "PUT", "/v1/playbook", Some((tar, bundle.clone()))).await;
    assert_eq!(status, 200, "{deployed}");
    assert_eq!(deployed["created"], json!(["webinar-replay"]), "{deployed}");
    let second = deployed["deployment"]["id"].as_i64().unwrap();
    assert!(second > shipped["id"].as_i64().unwrap());
    assert_eq!(deployed["deployment"]["unchanged"], false);
    // The same bundle again records nothing new.
    let (_, again) = send(&app, "PUT", "/v1/playbook", Some((tar, bundle))).await;
    assert_eq!(again["deployment"]["id"].as_i64(), Some(second), "{again}");
    assert_eq!(again["deployment"]["unchanged"], true);

    let (status, read) = send(&app, "GET", &format!("/v1/deployments/{second}"), None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        (&read["origin"], &read["actor"], &read["in_force"]),
        (&json!("api"), &json!("marketer-bot"), &json!(true))
    );
    let file = |view: &Value, path: &str| {
        view["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .map(|f| f["text"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        file(&read, "templates/replay-reminder.hbs").as_deref(),
        Some("<p>{{first_name}}, the webinar is tomorrow.</p>")
    );
    assert_eq!(file(&read, "campaigns/webinar-replay.yaml").as_deref(), Some(WEBINAR));
    assert!(
        file(&read, "templates/deep-content.hbs").is_some(),
        "the shipped templates are kept with it"
    );

    // One template alone is laid over the deployed bundle; an English copy must be whole.
    let english = b"<p>{{first_name}}, the webinar is tomorrow.</p>".to_vec();
    let (status, refused) = send(
        &app,
        "PUT",
        "/v1/playbook?file=templates/en/replay-reminder.hbs",
        Some(("text/plain", english)),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused.to_string().contains("add en/replay-reminder.subject.hbs"),
        "{refused}"
    );
    let sooner = b"<p>{{first_name}}, the webinar starts in an hour.</p>".to_vec();
    let (status, laid) = send(
        &app,
        "PUT",
        "/v1/playbook?file=templates/replay-reminder.hbs",
        Some(("text/plain", sooner)),
    )
    .await;
    assert_eq!(status, 200, "{laid}");
    let third = laid["deployment"]["id"].as_i64().unwrap();
    let (_, read) = send(&app, "GET", &format!("/v1/deployments/{third}"), None).await;
    assert_eq!(
        file(&read, "templates/replay-reminder.hbs").as_deref(),
        Some("<p>{{first_name}}, the webinar starts in an hour.</p>")
    );
    assert_eq!(file(&read, "campaigns/webinar-replay.yaml").as_deref(), Some(WEBINAR));

    // Back to the shipped deployment: the webinar is retired, the content is the first's.
    let (status, restored) = send(
        &app,
        "POST",
        &format!("/v1/deployments/{}/restore", shipped["id"]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["retired"], json!(["webinar-replay"]), "{restored}");
    let fourth = restored["deployment"]["id"].as_i64().unwrap();
    let (_, read) = send(&app, "GET", &format!("/v1/deployments/{fourth}"), None).await;
    assert_eq!(
        (&read["origin"], &read["restored_from"]),
        (&json!("restore"), &shipped["id"])
    );
    assert_eq!(read["content_hash"], shipped["content_hash"]);
    assert_eq!(file(&read, "campaigns/webinar-replay.yaml"), None);
    let (_, list) = send(&app, "GET", "/v1/deployments?limit=2", None).await;
    let ids: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [fourth, third]);
    let (_, rest) = send(
        &app,
        "GET",
        &format!(
            "/v1/deployments?limit=2&cursor={}",
            list["next_cursor"].as_str().unwrap()
        ),
        None,
    )
    .await;
    let ids: Vec<i64> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second, shipped["id"].as_i64().unwrap()]);
    assert_eq!(rest["next_cursor"], Value::Null);

    for (path, status) in [("/v1/deployments/999999", 404), ("/v1/deployments/abc", 404)] {
        assert_eq!(send(&app, "GET", path, None).await.0, status, "{path}");
    }
    assert_eq!(send(&app, "POST", "/v1/deployments/999999/restore", None).await.0, 404);
    assert_eq!(app.raw("GET", "/v1/deployments", Sdr, None).await.0, 403);
    // A path that would leave the templates folder is refused, and nothing is deployed.
    let (status, refused) = send(
        &app,
        "PUT",
        "/v1/playbook?file=templates/../../etc/x.hbs",
        Some(("text/plain", b"x".to_vec())),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let (_, list) = send(&app, "GET", "/v1/deployments?limit=1", None).await;
    assert_eq!(list["items"][0]["id"].as_i64(), Some(fourth));
}

/// The binary on a manual clock over `url`, with `dir`'s `campaigns/` and `templates/`, mail
/// to `smtp`; `more` flags after.
fn serve(dir: &Path, smtp: &str, url: &str, more: &[&str]) -> crate::cli::Server {
    let mut args = vec!["--clock", "manual", "--smtp-url", smtp, "--database-url", url];
    args.extend_from_slice(more);
    crate::cli::serve_with(dir, &args)
}

/// How many e-mails with this subject reached the sink.
fn subjects(sink: &SmtpSink, subject: &str) -> usize {
    sink.messages()
        .iter()
        .filter(|m| m.contains(&format!("Subject: {subject}")))
        .count()
}

/// Runs `serve --playbook campaigns` in `dir`, which must refuse to start (within a minute);
/// what it printed.
async fn refused_to_start(dir: &std::path::Path, smtp: &str, url: &str) -> String {
    let mut refused = nurture(dir)
        .args(["serve", "--clock", "manual", "--smtp-url", smtp, "--database-url", url])
        .args(["--playbook", "campaigns", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            refused.kill().unwrap();
            panic!("serve --playbook started although it should have refused");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

/// A campaign deployed over REST outlives restarts: its waiting enrollment goes on; `serve
/// --playbook` that would retire it refuses to start; `playbook pull` writes it back.
async fn a_rest_deploy_outlives_a_restart(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((_store, url)) = crate::support::binary_database(backend, dir.path(), "deploy.db").await else {
        return;
    };
    crate::crash::playbook_with(dir.path(), crate::clock::CAMPAIGN);
    let key = crate::cli::api_key(dir.path(), "admin", &url);
    let sink = SmtpSink::start(0).await;
    let server = serve(dir.path(), &sink.url(), &url, &[]);
    ready(&server.base).await;

    // Deploy the webinar with its templates over REST, beside what is on disk.
    let mut files = files_under(dir.path(), "campaigns");
    files.extend(files_under(dir.path(), "templates"));
    files.push(("campaigns/webinar-replay.yaml".into(), WEBINAR.into()));
    files.extend(webinar_templates());
    let deployed = crate::support::http()
        .build()
        .unwrap()
        .put(format!("{}/v1/playbook", server.base))
        .bearer_auth(&key)
        .header("content-type", "application/x-tar")
        .body(tar_of(&files))
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 200, "{}", deployed.text().await.unwrap());
    let lead = call(
        &server.base,
        &key,
        "PUT",
        "/v1/leads",
        Some(json!({"email": "mei@webinar.example", "first_name": "Mei"})),
    )
    .await;
    let enrolled = call(
        &server.base,
        &key,
        "POST",
        "/v1/campaigns/webinar-replay/enroll",
        Some(json!({"leads": [lead["id"]]})),
    )
    .await;
    assert_eq!(enrolled["enrolled"], 1, "{enrolled}");
    call(
        &server.base,
        &key,
        "POST",
        "/v1/admin/clock/advance",
        Some(json!({"by": "1h"})),
    )
    .await;
    assert_eq!(subjects(&sink, "Webinar reminder"), 1);

    // Restarted with the directory that lacks the webinar: refused, with what it would do.
    drop(server);
    let stderr = refused_to_start(dir.path(), &sink.url(), &url).await;
    assert!(stderr.contains("would retire 1 campaign"), "{stderr}");
    assert!(
        stderr.contains("webinar-replay") && stderr.contains("1 running enrollment"),
        "{stderr}"
    );
    assert!(stderr.contains("--accept-warnings"), "{stderr}");

    // Restarted as it was: the deployment runs on, and the waiting lead gets the recording.
    let server = serve(dir.path(), &sink.url(), &url, &[]);
    ready(&server.base).await;
    let campaign = call(&server.base, &key, "GET", "/v1/campaigns/webinar-replay", None).await;
    assert_eq!(campaign["status"], "active", "{campaign}");
    call(
        &server.base,
        &key,
        "POST",
        "/v1/admin/clock/advance",
        Some(json!({"by": "3d"})),
    )
    .await;
    assert_eq!(
        subjects(&sink, "Webinar recording"),
        1,
        "the waiting enrollment went on after the restart"
    );
    let list = call(&server.base, &key, "GET", "/v1/deployments", None).await;
    let origins: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins, ["api", "cli"], "restarts record nothing: {list}");
    drop(server);

    // What runs, written back to files.
    let out = dir.path().join("pulled");
    let pulled = nurture(dir.path())
        .args(["playbook", "pull", out.to_str().unwrap(), "--database-url", &url])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
    assert_eq!(
        std::fs::read_to_string(out.join("campaigns/webinar-replay.yaml")).unwrap(),
        WEBINAR
    );
    assert_eq!(
        std::fs::read_to_string(out.join("templates/replay-recording.subject.hbs")).unwrap(),
        "Webinar recording"
    );
    let validated = nurture(&out)
        .args(["playbook", "validate", "campaigns"])
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );

    // A campaign that would enroll more leads at once than the rules allow (none, here) keeps
    // the server from starting until accepted.
    std::fs::write(
        out.join("campaigns/rules.yaml"),
        "kind: Rules\ndeploy_confirm_over: 0\n",
    )
    .unwrap();
    std::fs::write(
        out.join("campaigns/everyone.yaml"),
        "kind: Campaign\nid: everyone\nname: Everyone\ntype: custom\n\
         entry: { trigger: segment, when: { score: { gte: 0 } } }\nstart: done\nsteps:\n  done: { exit: seen }\n",
    )
    .unwrap();
    let stderr = refused_to_start(&out, &sink.url(), &url).await;
    assert!(
        stderr.contains("campaign everyone: 1 lead matches its segment now and would enter it at once"),
        "{stderr}"
    );
    assert!(stderr.contains("would enroll 1 lead at once"), "{stderr}");

    // Accepted explicitly, the directory deploys and the webinar is retired.
    let server = serve(
        dir.path(),
        &sink.url(),
        &url,
        &["--playbook", "campaigns", "--accept-warnings"],
    );
    ready(&server.base).await;
    let campaign = call(&server.base, &key, "GET", "/v1/campaigns/webinar-replay", None).await;
    assert_eq!(campaign["status"], "retired", "{campaign}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_rest_deploy_outlives_a_restart() {
    a_rest_deploy_outlives_a_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_rest_deploy_outlives_a_restart() {
    a_rest_deploy_outlives_a_restart(Backend::Postgres).await;
}

/// A reminder the day before the date a lead registered for, deployed over REST: it waits
/// until that moment in the lead's time zone, and a lead whose day before has passed is
/// reminded at once, the journey saying so.
async fn a_wait_until_a_date_of_the_lead(app: TestApp) {
    let campaign = "kind: Campaign\nid: replay-reminder\nname: Webinar reminder\ntype: custom\n\
                    entry: { trigger: manual }\nstart: reminder\nsteps:\n  \
                    reminder: { wait: { until: { attribute: webinar_at, offset: -1d } }, next: mail }\n  \
                    mail: { send: { channel: email, template: welcome-cxo }, next: done }\n  \
                    done: { exit: reminded }\n";
    let (status, deployed) = send(
        &app,
        "PUT",
        "/v1/playbook?file=replay-reminder.yaml",
        Some(("application/yaml", campaign.as_bytes().to_vec())),
    )
    .await;
    assert_eq!(status, 200, "{deployed}");
    let mut ids = Vec::new();
    // The shipped rules put leads in Asia/Shanghai; the test clock starts 2026-11-02 09:00 UTC.
    for (email, date) in [("soon@x.example", "2026-11-05 09:00"), ("late@x.example", "2026-11-02")] {
        let lead = app
            .call(
                "PUT",
                "/v1/leads",
                Marketer,
                Some(json!({"email": email, "attributes": {"webinar_at": date}})),
            )
            .await;
        ids.push(lead.body["id"].as_str().unwrap().to_owned());
    }
    let enrolled = app
        .call(
            "POST",
            "/v1/campaigns/replay-reminder/enroll",
            Marketer,
            Some(json!({"leads": ids})),
        )
        .await;
    assert_eq!(enrolled.body["enrolled"], 2, "{:?}", enrolled.body);
    assert_eq!(app.journey(&ids[0]).await, ["reminder:waiting"]);
    let late = app.timeline(&ids[1], "campaign_step").await;
    assert!(
        late.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("had passed; going on at once")),
        "{late:?}"
    );
    // 09:00 in Shanghai on the 4th is 01:00 UTC: 40 hours after the start.
    let advance = |by: &'static str| {
        app.call(
            "POST",
            "/v1/admin/clock/advance",
            nurture_engine::access::Role::Admin,
            Some(json!({"by": by})),
        )
    };
    advance("39h").await;
    assert_eq!(app.journey(&ids[0]).await, ["reminder:waiting"]);
    advance("1h").await;
    let journey = app.journey(&ids[0]).await;
    assert!(journey.contains(&"mail:sent".to_owned()), "{journey:?}");
}

/// An event-triggered campaign reads the event that enrolled the lead: its templates show the
/// webinar's title and join link, and it waits until the day before the webinar's start, a
/// property of that event, also when it reaches the wait in a later pass.
async fn templates_and_waits_read_the_event_that_enrolled_the_lead(app: TestApp) {
    let campaign = "kind: Campaign\nid: live\nname: Live webinar\ntype: custom\n\
                    entry: { trigger: event, event: live_registered }\nstart: join\nsteps:\n  \
                    join: { send: { channel: email, template: live-join }, next: pause }\n  \
                    pause: { wait: { for: 1h }, next: eve }\n  \
                    eve: { wait: { until: { event_property: starts_at, offset: -1d } }, next: soon }\n  \
                    soon: { send: { channel: email, template: live-soon }, next: done }\n  \
                    done: { exit: reminded }\n";
    let files: Vec<(String, String)> = [
        ("campaigns/live.yaml", campaign),
        ("templates/live-join.hbs", "<p>See you at {{event.title}}.</p>"),
        ("templates/live-join.subject.hbs", "Joining {{event.title}}"),
        (
            "templates/live-soon.hbs",
            "<p><a href=\"{{event.join_url}}\">Join</a></p>",
        ),
        ("templates/live-soon.subject.hbs", "Tomorrow: {{event.title}}"),
    ]
    .into_iter()
    .map(|(path, text)| (path.to_owned(), text.to_owned()))
    .collect();
    let tar = shipped_bundle_with(&files);
    let (status, deployed) = send(&app, "PUT", "/v1/playbook", Some(("application/x-tar", tar))).await;
    assert_eq!(status, 200, "{deployed}");
    let register = |email: &'static str, properties: serde_json::Value| {
        let app = &app;
        async move {
            let answer = app
                .call(
                    "POST",
                    "/v1/events",
                    Marketer,
                    Some(json!({"lead": {"email": email}, "type": "live_registered", "properties": properties})),
                )
                .await;
            assert_eq!(answer.body["accepted"], 1, "{:?}", answer.body);
            app.call("GET", &format!("/v1/leads?email={email}"), Marketer, None)
                .await
                .body["items"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // The test clock starts 2026-11-02 09:00 UTC; the webinar is on the 5th at 09:00 UTC.
    let mei = register(
        "mei@x.example",
        json!({"title": "IoT Live", "join_url": "https://live.example/j/42", "starts_at": "2026-11-05T09:00:00Z"}),
    )
    .await;
    let tom = register("tom@x.example", json!({"title": "IoT Live"})).await;
    let mailer = nurture_engine::mail::mailer(Some(&app.mail.url()), std::path::Path::new("unused"), 2, None).unwrap();
    let sender = nurture_engine::engine::Sender {
        mailer,
        from: "Lumen <news@lumen-cloud.example>".into(),
        public_url: app.base.clone(),
        key: app.key.clone(),
        concurrency: 2,
        wechat: None,
        limits: Default::default(),
    };
    app.engine.dispatch(&sender, 100).await.unwrap();
    assert_eq!(subjects(&app.mail, "Joining IoT Live"), 2);
    let advance = |by: &'static str| {
        app.call(
            "POST",
            "/v1/admin/clock/advance",
            nurture_engine::access::Role::Admin,
            Some(json!({"by": by})),
        )
    };
    // After the pause, in a later pass: the wait reads the stored event.
    advance("1h").await;
    assert_eq!(
        app.journey(&mei).await,
        ["join:sent", "pause:waiting", "pause:waited", "eve:waiting"]
    );
    let waiting = app.timeline(&mei, "campaign_step").await;
    assert!(
        waiting.iter().any(|e| e["detail"] == "until 2026-11-04T09:00:00+00:00"),
        "{waiting:?}"
    );
    // Tom's registration has no start time: he goes on at once, and the journey says why.
    let tom_steps = app.timeline(&tom, "campaign_step").await;
    assert!(
        tom_steps.iter().any(|e| e["detail"]
            == "until event.starts_at - 1d: the live_registered event has no starts_at; going on at once"),
        "{tom_steps:?}"
    );
    advance("46h").await;
    assert_eq!(app.journey(&mei).await.last().unwrap(), "eve:waiting");
    advance("1h").await;
    assert!(app.journey(&mei).await.contains(&"soon:sent".to_owned()));
    app.engine.dispatch(&sender, 100).await.unwrap();
    let soon: Vec<String> = app
        .mail
        .messages()
        .into_iter()
        .filter(|m| m.contains("Subject: Tomorrow: IoT Live"))
        .collect();
    assert_eq!(soon.len(), 2, "Mei's, and Tom's at once");
    assert!(soon.iter().any(|m| m.contains("https://live.example/j/42")), "{soon:?}");
}

both_backends!(crate::support::spawn_app_on;
    templates_travel_with_the_bundle_and_deployments_are_kept,
    a_wait_until_a_date_of_the_lead,
    templates_and_waits_read_the_event_that_enrolled_the_lead,
);
