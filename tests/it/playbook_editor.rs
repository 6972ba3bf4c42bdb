//! The console's playbook editor over HTTP: a campaign edited with an error is refused with the
//! error where `nurture playbook validate` puts it, in its words; fixed, it is reviewed (the
//! lines changed, the leads it enrolls at once), then deployed as the marketer and runs; a
//! template is previewed, as edited, for a stored lead in both languages.

use std::path::Path;

use nurture_engine::access::Role;
use serde_json::json;

use crate::console::{get, person, post, signed_in};
use crate::support::TestApp;

const BROKEN: &str = "    wait: { for: 2x }";
const SHIPPED: &str = "    wait: { for: 2d }";
const SHORTER: &str = "    wait: { for: 1d }";

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What `nurture playbook validate` says of the shipped playbook with `welcome.yaml` as given:
/// its lines naming `campaigns/welcome.yaml`.
fn cli_says(welcome: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::support::repo();
    copy_tree(&repo.join("campaigns"), &dir.path().join("campaigns"));
    copy_tree(&repo.join("templates"), &dir.path().join("templates"));
    std::fs::write(dir.path().join("campaigns/welcome.yaml"), welcome).unwrap();
    let output = crate::cli::nurture(dir.path())
        .args(["playbook", "validate", "campaigns"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("campaigns/welcome.yaml:"))
        .map(str::to_owned)
        .collect()
}

/// The text of every element `css` selects in `html`, whitespace collapsed.
fn texts(html: &str, css: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(css).unwrap();
    doc.select(&selector)
        .map(|e| {
            e.text()
                .collect::<Vec<_>>()
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The value of attribute `attr` of the first element `css` selects.
fn attr(html: &str, css: &str, attr: &str) -> Option<String> {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(css).unwrap();
    doc.select(&selector).next()?.value().attr(attr).map(str::to_owned)
}

/// What the editor's script gets back as the person types `text` into `file` (in English).
async fn as_typed(client: &reqwest::Client, base: &str, csrf: &str, file: &str, text: &str, lead: &str) -> String {
    let answer = client
        .post(format!("{base}/playbook/check"))
        .header("x-nurture-fragment", "1")
        .header("accept-language", "en")
        .form(&[("csrf", csrf), ("file", file), ("text", text), ("lead", lead)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.text().await.unwrap()
}

async fn deployments(app: &TestApp) -> Vec<serde_json::Value> {
    let listed = app.call("GET", "/v1/deployments", Role::Marketer, None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    listed.body["items"].as_array().unwrap().clone()
}

/// How many leads entered step `step` of the welcome series, as the API counts them.
async fn entered(app: &TestApp, step: &str) -> i64 {
    let campaign = app
        .call("GET", "/v1/campaigns/welcome", Role::Marketer, None)
        .await
        .body;
    campaign["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == step)
        .unwrap_or_else(|| panic!("no step {step}: {campaign}"))["entered"]
        .as_i64()
        .unwrap()
}

/// A marketer breaks the welcome series, sees the error at its line as the CLI words it, fixes
/// it, reviews the deploy and deploys it; the campaign's next version runs on the manual clock.
async fn a_marketer_edits_reviews_and_deploys_a_campaign(app: TestApp) {
    person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    person(&app, "alice@corp.example", Role::Sdr, "correct horse battery").await;
    let base = &app.base;
    let (sdr, _) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    for page in ["/playbook", "/playbook/edit?file=campaigns/welcome.yaml"] {
        let (status, body, _) = get(&sdr, &format!("{base}{page}")).await;
        assert_eq!(status, 403, "{page}: {body}");
    }
    let (client, csrf) = signed_in(&app, "mia@corp.example", "a long enough password").await;

    let (status, files, _) = get(&client, &format!("{base}/playbook")).await;
    assert_eq!(status, 200, "{files}");
    let listed = texts(&files, "ul.files li a");
    for file in [
        "campaigns/welcome.yaml",
        "campaigns/rules.yaml",
        "campaigns/queues.yaml",
        "templates/welcome.hbs",
    ] {
        assert!(listed.iter().any(|f| f == file), "{file} in {listed:?}");
    }
    let before = deployments(&app).await;
    assert_eq!(
        texts(&files, "#deployments ~ table tbody tr").len(),
        before.len(),
        "{files}"
    );

    let (status, page, _) = get(&client, &format!("{base}/playbook/edit?file=campaigns/welcome.yaml")).await;
    assert_eq!(status, 200, "{page}");
    let shipped = std::fs::read_to_string(crate::support::repo().join("campaigns/welcome.yaml")).unwrap();
    assert_eq!(
        texts(&page, "textarea#text"),
        texts(&format!("<textarea>{shipped}</textarea>"), "textarea")
    );
    assert!(
        texts(&page, "#check").join(" ").contains("Valid: ready to deploy"),
        "{page}"
    );
    for outside in [
        "../../etc/passwd",
        "campaigns/../../x.yaml",
        "campaigns/notes.txt",
        "src/main.rs",
    ] {
        let (status, _, location) = get(&client, &format!("{base}/playbook/edit?file={outside}")).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/playbook?error=file")),
            "{outside}"
        );
    }

    // As typed: the error at line 30, in the words of `nurture playbook validate`.
    assert!(shipped.contains(SHIPPED));
    let broken = shipped.replace(SHIPPED, BROKEN);
    let cli = cli_says(&broken);
    assert_eq!(cli.len(), 1, "{cli:?}");
    assert!(cli[0].starts_with("campaigns/welcome.yaml:30:"), "{cli:?}");
    let fragment = as_typed(&client, base, &csrf, "campaigns/welcome.yaml", &broken, "").await;
    assert!(!fragment.contains("<html"), "only the check's part: {fragment}");
    assert_eq!(texts(&fragment, "ol.errors li code"), cli, "{fragment}");
    assert_eq!(attr(&fragment, "ol.errors li", "data-line").as_deref(), Some("30"));
    let column = cli[0].split(':').nth(2).unwrap().to_owned();
    assert_eq!(attr(&fragment, "button.goto", "data-column"), Some(column));
    let (status, _, _, _) = post(
        &client,
        &format!("{base}/playbook/check"),
        &[
            ("csrf", "not the token"),
            ("file", "campaigns/welcome.yaml"),
            ("text", &broken),
        ],
    )
    .await;
    assert_eq!(status, 403, "a check needs the session's token");

    // Deploying it is refused with the same error, and nothing is deployed.
    let deploy = format!("{base}/playbook/deploy");
    let (status, refused, _, _) = post(
        &client,
        &deploy,
        &[("csrf", &csrf), ("file", "campaigns/welcome.yaml"), ("text", &broken)],
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(texts(&refused, "ol.errors li code"), cli);
    assert_eq!(deployments(&app).await.len(), before.len());

    // Fixed with a shorter wait: a review first (the changed line, no one enrolled at once).
    // (A browser sends a textarea's lines ended by CR LF: the file keeps its own.)
    let fixed = shipped.replace(SHIPPED, SHORTER);
    let as_sent = fixed.replace('\n', "\r\n");
    let form = [
        ("csrf", csrf.as_str()),
        ("file", "campaigns/welcome.yaml"),
        ("text", as_sent.as_str()),
    ];
    let (status, review, _, _) = post(&client, &deploy, &form).await;
    assert_eq!(status, 200, "{review}");
    assert_eq!(
        texts(&review, "table.diff tr.del, table.diff tr.ins"),
        vec![format!("30 − {}", SHIPPED.trim()), format!("30 + {}", SHORTER.trim()),],
        "{review}"
    );
    assert_eq!(texts(&review, "#enrolling-total"), vec!["0"]);
    assert_eq!(deployments(&app).await.len(), before.len(), "a review deploys nothing");
    let digest = attr(&review, "button#deploy-now", "value").unwrap();

    // A text changed after its review is reviewed again, not deployed.
    let other = fixed.replace("priority: 80", "priority: 81");
    let (status, again, _, _) = post(
        &client,
        &deploy,
        &[
            ("csrf", &csrf),
            ("file", "campaigns/welcome.yaml"),
            ("text", &other),
            ("reviewed", &digest),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(again.contains("id=\"deploy-now\""), "{again}");
    assert_eq!(deployments(&app).await.len(), before.len());

    let (status, deployed, _, _) = post(
        &client,
        &deploy,
        &[
            ("csrf", &csrf),
            ("file", "campaigns/welcome.yaml"),
            ("text", &fixed),
            ("reviewed", &digest),
        ],
    )
    .await;
    assert_eq!(status, 200, "{deployed}");
    let after = deployments(&app).await;
    assert_eq!(after.len(), before.len() + 1);
    let newest = &after[0];
    assert_eq!(newest["actor"], "mia@corp.example");
    assert_eq!(newest["origin"], "console");
    assert_eq!(newest["report"]["changed"], json!(["welcome"]));
    assert_eq!(
        texts(&deployed, "#deployed"),
        vec![format!("Deployed as deployment #{}", newest["id"])]
    );
    assert!(deployed.contains("href=\"/campaigns/welcome\""), "{deployed}");
    let audit = app
        .call("GET", "/v1/audit?kind=playbook.deployed", Role::Admin, None)
        .await;
    let entry = &audit.body["items"][0];
    assert_eq!(
        (&entry["actor"], &entry["via"]),
        (&json!("mia@corp.example"), &json!("console")),
        "{audit:?}"
    );
    let (_, files, _) = get(&client, &format!("{base}/playbook")).await;
    let rows = texts(&files, "#deployments ~ table tbody tr");
    assert!(
        rows[0].contains("mia@corp.example console changed: welcome"),
        "{rows:?}"
    );
    assert!(rows[0].contains("in force"), "{rows:?}");

    // The new version runs: a lead registered now waits one day, not two, on the manual clock.
    let lead = app.register("li.wei@acme.example").await;
    app.call(
        "POST",
        "/v1/admin/clock/advance",
        Role::Admin,
        Some(json!({"by": "1h"})),
    )
    .await;
    assert_eq!(entered(&app, "wait_2d").await, 1);
    assert_eq!(entered(&app, "getting_started").await, 0);
    app.call(
        "POST",
        "/v1/admin/clock/advance",
        Role::Admin,
        Some(json!({"by": "1d"})),
    )
    .await;
    assert_eq!(
        entered(&app, "getting_started").await,
        1,
        "after one day the lead {lead} moved on"
    );
}

/// A template edited in the browser is previewed, as edited, for a stored lead in Chinese and
/// in English, before anything is deployed.
async fn a_marketer_previews_an_edited_template_in_both_languages(app: TestApp) {
    person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    let lead = app.register("li.wei@acme.example").await;
    let named = app
        .call(
            "PATCH",
            &format!("/v1/leads/{lead}"),
            Role::Crm,
            Some(json!({"first_name": "Wei"})),
        )
        .await;
    assert_eq!(named.status, 200, "{:?}", named.body);
    let base = &app.base;
    let (client, csrf) = signed_in(&app, "mia@corp.example", "a long enough password").await;
    let (status, page, _) = get(&client, &format!("{base}/playbook/edit?file=templates/welcome.hbs")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        texts(&page, "figure.preview figcaption strong"),
        vec!["中文", "English"]
    );
    let edited = "<p>改过的欢迎 {{first_name}}</p>";
    let fragment = as_typed(
        &client,
        base,
        &csrf,
        "templates/welcome.hbs",
        edited,
        "li.wei@acme.example",
    )
    .await;
    let doc = scraper::Html::parse_fragment(&fragment);
    let frames: Vec<String> = doc
        .select(&scraper::Selector::parse("iframe").unwrap())
        .map(|f| f.value().attr("srcdoc").unwrap().to_owned())
        .collect();
    assert_eq!(frames.len(), 2, "{fragment}");
    assert!(
        frames[0].contains("改过的欢迎 Wei"),
        "the Chinese copy as edited: {}",
        frames[0]
    );
    assert!(
        !frames[1].contains("改过的欢迎"),
        "the English copy is its own: {}",
        frames[1]
    );
    assert!(frames[1].contains("Wei"), "{}", frames[1]);
    assert_eq!(
        attr(&fragment, "iframe", "sandbox").as_deref(),
        Some(""),
        "no script runs"
    );
    // A template that breaks off: the error at its line, named as the editor names the file.
    let broken = as_typed(
        &client,
        base,
        &csrf,
        "templates/welcome.hbs",
        "<p>Hi</p>\n<p>{{#if first_name}}{{first_name}}</p>\n",
        "",
    )
    .await;
    let errors = texts(&broken, "ol.errors li code");
    assert_eq!(errors.len(), 1, "{broken}");
    assert!(
        errors[0].starts_with("templates/welcome.hbs:") && errors[0].contains("the template does not compile"),
        "{errors:?}"
    );
    assert!(attr(&broken, "ol.errors li", "data-line").is_some(), "{broken}");
    let deployed = app.engine.bundle();
    assert!(
        !deployed.files().iter().any(|f| f.text == edited),
        "a preview deploys nothing"
    );
    let unknown = as_typed(
        &client,
        base,
        &csrf,
        "templates/welcome.hbs",
        edited,
        "nobody@acme.example",
    )
    .await;
    assert_eq!(
        texts(&unknown, "p.error"),
        vec!["No preview: no lead \"nobody@acme.example\""],
        "{unknown}"
    );
}

both_backends!(crate::support::spawn_app_on;
    a_marketer_edits_reviews_and_deploys_a_campaign,
    a_marketer_previews_an_edited_template_in_both_languages,
);
