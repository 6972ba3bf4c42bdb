//! The `nurture` binary as a user runs it: serve with no flags, API keys, the CSV import, and
//! a malformed playbook refused with every error's position.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn nurture(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nurture"));
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("NURTURE_PLAYBOOK")
        .env("RUST_LOG", "info");
    command
}

/// Creates an API key with `nurture apikey create` on this database; returns the key.
pub(crate) fn api_key(dir: &Path, role: &str, database_url: &str) -> String {
    let created = nurture(dir)
        .args([
            "apikey",
            "create",
            "--role",
            role,
            "--name",
            "test",
            "--database-url",
            database_url,
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    String::from_utf8(created.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

/// A running `nurture serve`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nurture serve` with no flags (the port comes from NURTURE_LISTEN so that tests can
/// run side by side) and waits until it logs the port it listens on.
fn serve(dir: &Path) -> Server {
    serve_with(dir, &[])
}

pub(crate) fn serve_with(dir: &Path, args: &[&str]) -> Server {
    let mut child = nurture(dir)
        .arg("serve")
        .args(args)
        .env("NURTURE_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines.next().expect("the server exited before listening").unwrap();
        if let Some(rest) = line.split("port=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub(crate) async fn ready(base: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match crate::support::http()
            .build()
            .unwrap()
            .get(format!("{base}/readyz"))
            .send()
            .await
        {
            Ok(r) => return r,
            Err(e) if Instant::now() > deadline => panic!("the server never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn serve_with_no_flags_creates_the_database_and_answers_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let answer = ready(&server.base).await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["backend"], "sqlite");
    assert!(
        dir.path().join("nurture.db").exists(),
        "./nurture.db is the embedded default"
    );
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("nurture.db").display());
    let busy = api_key(dir.path(), "sdr", &db);
    let calm = api_key(dir.path(), "sdr", &db);
    let server = serve_with(dir.path(), &["--rate-limit", "2", "--database-url", &db]);
    ready(&server.base).await;
    let client = crate::support::http().build().unwrap();
    let get = |key: &str| client.get(format!("{}/v1/leads", server.base)).bearer_auth(key).send();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let answer = get(&busy).await.unwrap();
        statuses.push(answer.status().as_u16());
        if answer.status() == 429 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 4,
        "a burst of 4 passes: {statuses:?}"
    );
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(get(&calm).await.unwrap().status(), 200, "the limit is per key");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        get(&busy).await.unwrap().status(),
        200,
        "after Retry-After it passes again"
    );
}

/// `nurture user create` prints a one-time link that a real server takes; the CRM is refused
/// as a person; `user list` shows who has set a password.
#[tokio::test]
async fn a_user_is_invited_at_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let user = |args: &[&str]| nurture(dir.path()).arg("user").args(args).output().unwrap();
    let created = user(&[
        "create",
        "--email",
        "Li.Wei@corp.example",
        "--role",
        "sdr",
        "--public-url",
        "https://nurture.corp.example/",
    ]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8(created.stdout).unwrap();
    assert!(
        stdout.contains("li.wei@corp.example (sdr) sets their password"),
        "{stdout}"
    );
    let link = stdout.lines().last().unwrap().trim().to_owned();
    let token = link
        .strip_prefix("https://nurture.corp.example/set-password/")
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert_eq!(token.len(), 64, "{link}");
    let crm = user(&["create", "--email", "crm@corp.example", "--role", "crm"]);
    assert!(!crm.status.success());
    assert!(
        String::from_utf8_lossy(&crm.stderr).contains("the CRM is a machine"),
        "{crm:?}"
    );
    let again = user(&["create", "--email", "li.wei@corp.example", "--role", "marketer"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is a user already"),
        "{again:?}"
    );

    // The link works on the server of the same database.
    let server = serve(dir.path());
    ready(&server.base).await;
    let client = crate::support::http().build().unwrap();
    let page = client
        .get(format!("{}/set-password/{token}", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("设置密码"), "{page}");
    let listed = String::from_utf8(user(&["list"]).stdout).unwrap();
    assert!(
        listed.contains("li.wei@corp.example") && listed.contains("not yet"),
        "{listed}"
    );
    let gone = user(&["deactivate", "--email", "li.wei@corp.example"]);
    assert!(
        String::from_utf8_lossy(&gone.stdout).contains("Deactivated li.wei@corp.example"),
        "{gone:?}"
    );
}

#[tokio::test]
async fn an_api_key_is_printed_once_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let created = nurture(dir.path())
        .args(["apikey", "create", "--role", "crm", "--name", "hubspot"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8(created.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("nurt_") && key.len() > 40, "{stdout}");
    let bad_role = nurture(dir.path())
        .args(["apikey", "create", "--role", "boss", "--name", "x"])
        .output()
        .unwrap();
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("roles are admin, marketer, sdr and crm"));

    let server = serve(dir.path());
    ready(&server.base).await;
    let client = crate::support::http().build().unwrap();
    let put = client
        .put(format!("{}/v1/leads", server.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"email": "a@x.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let as_sdr_route = client
        .delete(format!("{}/v1/leads/1", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(as_sdr_route.status(), 403);
}

#[test]
fn a_malformed_rules_file_stops_serve_with_every_error_positioned() {
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("campaigns");
    std::fs::create_dir_all(&playbook).unwrap();
    std::fs::write(
        playbook.join("rules.yaml"),
        "kind: Rules\ntagging:\n  - on: { event: Page View }\n    score: 5\ndecay: { every: 3 days, percent: 10 }\n",
    )
    .unwrap();
    std::fs::write(
        playbook.join("icp.yaml"),
        "kind: Segment\nid: icp\nwhen: { segment: missing }\n",
    )
    .unwrap();
    let output = nurture(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("the playbook has 2 errors"), "{stderr}");
    assert!(
        stderr.contains("campaigns/icp.yaml:3:18: segment \"missing\" does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("campaigns/rules.yaml:5:17: invalid duration \"3 days\""),
        "{stderr}"
    );
    assert!(
        !dir.path().join("nurture.db").exists(),
        "refused before touching the database"
    );

    let validate = nurture(dir.path())
        .args(["playbook", "validate", "campaigns"])
        .output()
        .unwrap();
    assert!(!validate.status.success());
    let diagnostics = String::from_utf8_lossy(&validate.stderr);
    assert!(
        diagnostics.contains(
            "campaigns/icp.yaml:3:18: segment \"missing\" does not exist; define it in a `kind: Segment` file\n   |\n 3 | when: { segment: missing }\n   |                  ^\n"
        ),
        "the offending line is shown with a caret under the column: {diagnostics}"
    );
    assert!(
        diagnostics.contains("error: the playbook in campaigns is refused: 2 errors"),
        "{diagnostics}"
    );
    let shipped = nurture(&crate::support::repo())
        .args(["playbook", "validate"])
        .output()
        .unwrap();
    assert!(shipped.status.success(), "{}", String::from_utf8_lossy(&shipped.stderr));
    let summary = String::from_utf8_lossy(&shipped.stdout);
    assert!(
        summary.starts_with(
            "The playbook in campaigns/ is valid: 4 campaigns, 4 segments, 2 queues, 12 tagging rules, 0 warnings"
        ),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 1, "one line: {summary}");
    assert!(
        shipped.stderr.is_empty(),
        "no warnings: {}",
        String::from_utf8_lossy(&shipped.stderr)
    );
}

/// `nurture leads import FILE` with the shipped playbook, in `dir`.
fn import(dir: &Path, file: &str, extra: &[&str]) -> std::process::Output {
    nurture(dir)
        .args([
            "leads",
            "import",
            file,
            "--playbook",
            &crate::support::repo().join("campaigns").display().to_string(),
            "--templates",
            &crate::support::repo().join("templates").display().to_string(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn csv_import_says_what_it_lost_and_fails_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let unterminated = "email,first_name,company\n\
                        a@acme.example,Ann,Acme\n\
                        b@acme.example,\"Bob,Acme\n\
                        c@acme.example,Cy,Acme\n\
                        d@acme.example,Di,Acme\n";
    std::fs::write(dir.path().join("quote.csv"), unterminated).unwrap();
    let output = import(dir.path(), "quote.csv", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a rejected row fails the command: {stdout}");
    assert!(stdout.contains("1 created, 0 updated, 1 rejected"), "{stdout}");
    assert!(
        stdout.contains("line 3: first_name runs from line 3 to line 5: a quote opened there is probably not closed"),
        "{stdout}"
    );
    assert!(stderr.contains("1 rows of quote.csv were rejected"), "{stderr}");
    assert!(stderr.contains("--allow-rejects"), "{stderr}");

    for (header, message) in [
        (
            "email,first_name,Email\n",
            "the header row names \"Email\" twice (columns 1 and 3)",
        ),
        ("email,,company\n", "column 2 of the header row has no name"),
    ] {
        std::fs::write(
            dir.path().join("header.csv"),
            format!("{header}e@acme.example,Eve,Acme\n"),
        )
        .unwrap();
        let output = import(dir.path(), "header.csv", &["--allow-rejects"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{header}");
        assert!(stderr.contains(message), "{header}: {stderr}");
        assert!(stderr.contains("Nothing was imported"), "{stderr}");
    }
    let url = format!("sqlite://{}", dir.path().join("nurture.db").display());
    let emails = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = crate::support::Db::connect(&url).await;
        db.strings("SELECT email FROM leads ORDER BY email").await
    });
    assert_eq!(emails, ["a@acme.example"], "only the whole rows before the bad quote");
}

#[test]
fn csv_import_reports_created_updated_and_rejected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "email,first_name,company,industry,crm_owner\n\
               li.wei@acme.example,Wei,Acme,Manufacturing,alice\n\
               not-an-email,Bad,Co,,\n\
               LI.WEI@acme.example,Wei,Acme Group,Manufacturing,bob\n\
               zhang@beta.example,\"Zhang, San\",Beta 公司,Energy,\n\
               short,row\n";
    std::fs::write(dir.path().join("leads.csv"), csv).unwrap();
    let output = import(dir.path(), "leads.csv", &["--allow-rejects"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "--allow-rejects accepts a partial import: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2 created, 1 updated, 2 rejected"), "{stdout}");
    assert!(
        stdout.contains("line 3: email: \"not-an-email\" is not a valid e-mail address"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 6: the row has 2 fields; the header has 5"),
        "{stdout}"
    );
}

#[test]
fn migrate_creates_and_upgrades_the_database_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = nurture(dir.path())
            .args(["migrate", "--database-url", "sqlite://store.db"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("Migrations applied to sqlite://store.db"));
    }
    assert!(dir.path().join("store.db").exists());
    let unreachable = nurture(dir.path())
        .args(["migrate", "--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("opening the database postgres://nobody@127.0.0.1:1/none"),
        "{stderr}"
    );
}

#[test]
fn playbook_graph_draws_every_step_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("drip.svg");
    let output = nurture(&crate::support::repo())
        .args(["playbook", "graph", "industry-drip", "--format", "svg", "-o"])
        .arg(&svg_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("</svg>"));
    let yaml = std::fs::read_to_string(crate::support::repo().join("campaigns/industry-drip.yaml")).unwrap();
    let spec: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let steps: Vec<&String> = spec["steps"].as_object().unwrap().keys().collect();
    assert!(steps.len() >= 40, "the whole method: {} steps", steps.len());
    for step in &steps {
        assert!(svg.contains(&format!(">{step}<")), "step {step} is drawn");
    }

    for (format, expect) in [
        ("dot", "\"opened_insight\" -> \"tag_deep\" [label=\"yes\"];"),
        ("mermaid", "flowchart TD"),
    ] {
        let output = nurture(&crate::support::repo())
            .args(["playbook", "graph", "industry-drip", "--format", format])
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains(expect), "{format}: {text}");
    }
    let missing = nurture(&crate::support::repo())
        .args(["playbook", "graph", "industry-dirp"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(
            "campaign \"industry-dirp\" is not in the playbook; its campaigns are: activation, industry-drip, webinar-follow-up, welcome"
        ),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn playbook_schema_validates_the_shipped_files() {
    let output = nurture(&crate::support::repo())
        .args(["playbook", "schema"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("not a valid JSON Schema: {e}"));
    let mut checked = 0;
    let mut pending = vec![crate::support::repo().join("campaigns")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let value: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 9, "{checked} files");
    let typo: serde_json::Value =
        serde_saphyr::from_str("kind: Queues\nqueues:\n  sdr: { sla: 4h, routng: claim }\n").unwrap();
    assert!(
        !validator.is_valid(&typo),
        "a misspelt key is caught as the marketer types"
    );
}

#[test]
fn validate_finds_the_templates_beside_the_playbook_from_anywhere() {
    let elsewhere = tempfile::tempdir().unwrap();
    let output = nurture(elsewhere.path())
        .args(["playbook", "validate"])
        .arg(crate::support::repo().join("campaigns"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let bench = nurture(elsewhere.path())
        .args(["bench", "playbook", "--steps", "50", "--runs", "1"])
        .output()
        .unwrap();
    assert!(bench.status.success(), "{}", String::from_utf8_lossy(&bench.stderr));
    assert!(
        String::from_utf8_lossy(&bench.stdout).starts_with("Validated a 51-step campaign"),
        "{}",
        String::from_utf8_lossy(&bench.stdout)
    );
}

#[test]
fn bench_engine_moves_every_lead_and_reports_the_ratio_to_the_median_floor() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for `floor.sh` with the same output (one JSON line per backend), whose SQLite
    // figure differs on each run, so that the median is the one in the middle.
    let floor = dir.path().join("floor.sh");
    std::fs::write(
        &floor,
        r#"n=$(cat runs 2>/dev/null || echo 0); echo $((n + 1)) > runs
figure=$(echo "400000 200000 300000" | cut -d' ' -f$((n + 1)))
echo "{\"backend\":\"postgres\",\"n\":$1,\"seconds\":1.0,\"steps_per_s\":90000}"
echo "{\"backend\":\"sqlite\",\"n\":$1,\"seconds\":1.0,\"steps_per_s\":$figure}"
"#,
    )
    .unwrap();
    let output = nurture(dir.path())
        .args([
            "bench",
            "engine",
            "--leads",
            "200",
            "--batch",
            "50",
            "--floor-runs",
            "3",
            "--templates",
        ])
        .arg(crate::support::repo().join("templates"))
        .arg("--floor")
        .arg(&floor)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["w1"]["enrollments"], 200, "{report}");
    assert_eq!(report["w2"]["enrollments"], 200, "{report}");
    // Three leads in ten open their e-mail; the openers take the yes arm.
    assert_eq!(report["w2"]["yes"], 60, "{report}");
    assert_eq!(report["w2"]["no"], 140, "{report}");
    assert_eq!(report["dispatch"]["rendered"], 400, "{report}");
    assert_eq!(report["floor_runs"], serde_json::json!([400000.0, 200000.0, 300000.0]));
    assert_eq!(report["floor_steps_per_s"], 300000.0);
    for workload in ["w1", "w2"] {
        let rate = report[workload]["steps_per_s"].as_f64().unwrap();
        let ratio = report[workload]["floor_ratio"].as_f64().unwrap();
        assert!(
            (ratio - (rate / 300000.0 * 1000.0).round() / 1000.0).abs() < 1e-9,
            "{workload}: {ratio} is not {rate} / 300,000"
        );
    }
}

#[tokio::test]
async fn serve_sends_the_welcome_over_smtp_when_a_lead_registers() {
    let sink = crate::smtp::SmtpSink::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let key = api_key(dir.path(), "crm", "sqlite://nurture.db");
    let admin = api_key(dir.path(), "admin", "sqlite://nurture.db");
    let repo = crate::support::repo();
    let campaigns = repo.join("campaigns").display().to_string();
    let templates = repo.join("templates").display().to_string();
    let smtp = sink.url();
    let server = serve_with(
        dir.path(),
        &[
            "--playbook",
            &campaigns,
            "--templates",
            &templates,
            "--smtp-url",
            &smtp,
            "--from",
            "Lumen <news@lumen-cloud.example>",
            // The welcome has a send window (weekdays 09:00-18:00 in Shanghai): the test moves
            // the clock past the next opening, whatever the hour it runs at.
            "--clock",
            "manual",
        ],
    );
    ready(&server.base).await;
    let posted = crate::support::http()
        .build()
        .unwrap()
        .post(format!("{}/v1/events", server.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"lead": {"email": "li.wei@acme.example"}, "type": "registered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let advanced = crate::support::http()
        .build()
        .unwrap()
        .post(format!("{}/v1/admin/clock/advance", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"by": "3d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(advanced.status(), 200);
    // The dispatcher runs in the server process: wait for its delivery.
    sink.wait_for(1, Duration::from_secs(20))
        .await
        .expect("an e-mail arrives");
    let raw = &sink.messages()[0];
    assert!(raw.contains("From: Lumen <news@lumen-cloud.example>"), "{raw}");
    assert!(
        raw.contains(&format!("List-Unsubscribe: <{}/u/", "http://127.0.0.1:8080")),
        "links use --public-url: {raw}"
    );
}

/// `nurture demo ARGS` run in `dir`, which must succeed; its standard output.
fn demo(dir: &std::path::Path, args: &[&str]) -> String {
    let output = nurture(dir).arg("demo").args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Outside the repository (no `campaigns/` here) the demo runs the playbook and templates
/// built into the binary.
#[test]
fn demo_runs_anywhere_on_the_built_in_playbook() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = demo(dir.path(), &["--leads", "40", "--days", "4"]);
    assert!(
        stdout.contains("No campaigns/ here: running the playbook built into nurture."),
        "{stdout}"
    );
    assert!(stdout.contains("欢迎系列 · Welcome series (welcome)"), "{stdout}");
    let samples = std::fs::read_dir(dir.path().join("outbox")).unwrap().count();
    assert!(samples > 0, "sample e-mails rendered from the built-in templates");
}

#[test]
fn demo_runs_the_playbook_over_virtual_days_and_prints_the_funnel() {
    let dir = tempfile::tempdir().unwrap();
    let campaigns = crate::support::repo().join("campaigns");
    let stdout = demo(
        dir.path(),
        &[
            "--leads",
            "80",
            "--days",
            "8",
            "--playbook",
            campaigns.to_str().unwrap(),
        ],
    );
    assert!(
        stdout.contains("Created 80 leads; replaying 8 days of behaviour."),
        "{stdout}"
    );
    assert!(stdout.contains("欢迎系列 · Welcome series (welcome)"), "{stdout}");
    assert!(
        stdout.contains("  opened_insight "),
        "the drip's branch on opens has run: {stdout}"
    );
    let samples: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        !samples.is_empty() && samples.len() <= 12,
        "{} sample e-mails",
        samples.len()
    );

    // The same seed gives the same run.
    let again_dir = tempfile::tempdir().unwrap();
    let again = nurture(again_dir.path())
        .args(["demo", "--leads", "80", "--days", "8", "--playbook"])
        .arg(crate::support::repo().join("campaigns"))
        .output()
        .unwrap();
    let without_time = |text: &str| {
        text.lines()
            .filter(|l| !l.contains(" Took "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_time(&String::from_utf8(again.stdout).unwrap()),
        without_time(&stdout)
    );
}

/// Leads for `simulate`: `n` good rows and one with a broken e-mail address (line n + 2).
fn simulation_leads(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut csv = String::from("email,first_name,title,persona,industry,language\n");
    for i in 0..n {
        let industry = ["Manufacturing", "Energy", ""][i % 3];
        csv.push_str(&format!("buyer{i}@plant.example,伟,CEO,cxo,{industry},zh-CN\n"));
    }
    csv.push_str("not-an-email,Bad,,,,\n");
    let path = dir.join("leads.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn simulate(dir: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let leads = simulation_leads(dir, 60);
    let output = nurture(dir)
        .args(["simulate", "--days", "12", "--event", "registered", "--json", "--leads"])
        .arg(&leads)
        .arg("--playbook")
        .arg(crate::support::repo().join("campaigns"))
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

fn step<'a>(report: &'a serde_json::Value, campaign: &str, step: &str) -> &'a serde_json::Value {
    report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == campaign)
        .and_then(|c| c["steps"].as_array().unwrap().iter().find(|s| s["step"] == step))
        .unwrap_or_else(|| panic!("no step {campaign}/{step}"))
}

#[test]
fn simulate_runs_a_playbook_over_a_csv_deterministically_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (report, stderr) = simulate(dir.path(), &[]);
    assert!(
        stderr.contains("leads.csv:62: skipped: email:"),
        "the broken row is named by its line: {stderr}"
    );
    assert_eq!(report["leads"], 60);
    assert_eq!(report["rejected_rows"], 1);
    // Every lead registered, got the CXO welcome, and reached the branch on opens at day 5.
    assert_eq!(step(&report, "welcome", "welcome")["outcomes"]["sent"], 60);
    let branch = step(&report, "welcome", "opened_any");
    let (yes, no) = (
        branch["outcomes"]["yes"].as_i64().unwrap_or(0),
        branch["outcomes"]["no"].as_i64().unwrap_or(0),
    );
    assert_eq!(yes + no, 60, "{branch}");
    assert!(
        yes > 0 && no > 0,
        "a 25% open rate over two e-mails splits the leads: {branch}"
    );
    assert_eq!(report["messages"]["failed"], 0, "every template rendered");
    assert!(!dir.path().join("outbox").exists(), "no e-mail is written anywhere");

    let (again, _) = simulate(dir.path(), &[]);
    assert_eq!(again, report, "the same seed gives the same report");
    let (other, _) = simulate(dir.path(), &["--seed", "8"]);
    assert_ne!(
        other["messages"], report["messages"],
        "another seed draws other responses"
    );

    // Nobody opens: every lead takes the no arm.
    let (closed, _) = simulate(dir.path(), &["--open-rate", "0"]);
    let branch = step(&closed, "welcome", "opened_any");
    assert_eq!(
        (branch["outcomes"]["yes"].as_i64(), branch["outcomes"]["no"].as_i64()),
        (None, Some(60))
    );
    assert_eq!(closed["messages"]["opened"], 0);
}

#[test]
fn simulate_refuses_a_rate_that_is_not_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let leads = simulation_leads(dir.path(), 3);
    let output = nurture(dir.path())
        .args(["simulate", "--open-rate", "25", "--leads"])
        .arg(&leads)
        .arg("--playbook")
        .arg(crate::support::repo().join("campaigns"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--open-rate must be a share between 0 and 1 (0.25 is a quarter), not 25"),
        "{stderr}"
    );
}

/// `nurture bench e2e` at a few hundred leads on each backend: the real server, HTTP in, SMTP
/// out, every e-mail of both waves received, so that the command keeps working.
fn bench_e2e_delivers_both_waves(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = nurture(dir.path());
    // More leads than a runner pass takes (1,000): W2's advance moves them in several batches
    // while the mail of each batch is sent, and every e-mail must still arrive.
    command.args(["bench", "e2e", "--leads", "1200", "--batch", "200", "--clients", "3"]);
    if let Some(url) = &database_url {
        command.args(["--database-url", url]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["received"], 2400, "{report}");
    assert_eq!(report["leads"], 1200, "{report}");
    for wave in ["w1_emails_per_s", "w2_emails_per_s"] {
        assert!(report[wave].as_f64().is_some_and(|r| r > 0.0), "{report}");
    }
    // Where the time went: W1 ingests the events that send the first e-mails, W2's advance
    // runs the waits that send the second; both waves dispatch. One dispatch pass runs at a
    // time in the server, so its phases fit inside the dispatch time.
    for (wave, working) in [("w1_phases_seconds", "ingest"), ("w2_phases_seconds", "runner")] {
        let phases = &report[wave];
        let seconds = |phase: &str| {
            phases[phase]
                .as_f64()
                .unwrap_or_else(|| panic!("{wave}.{phase}: {report}"))
        };
        for phase in [working, "dispatch", "claim", "render", "send", "record"] {
            assert!(seconds(phase) > 0.0, "{wave}.{phase}: {report}");
        }
        assert!(seconds("dispatcher_idle") >= 0.0, "{report}");
        let inside = seconds("claim") + seconds("render") + seconds("send");
        assert!(inside <= seconds("dispatch") + 0.002, "{wave}: {report}");
    }
}

#[test]
fn bench_e2e_runs_on_sqlite() {
    bench_e2e_delivers_both_waves(None);
}

#[tokio::test]
async fn bench_e2e_runs_on_postgres() {
    // The bench makes (and drops) a database of its own on the test server.
    if crate::support::postgres_store(None).await.is_none() {
        return;
    }
    let url = crate::support::pg_url();
    tokio::task::spawn_blocking(move || bench_e2e_delivers_both_waves(Some(url)))
        .await
        .unwrap();
}

#[test]
fn serve_names_the_clocks_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let output = nurture(dir.path())
        .args(["serve", "--clock", "sometimes"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value 'sometimes' for '--clock <CLOCK>'")
            && stderr.contains("[possible values: system, manual]"),
        "{stderr}"
    );
}
