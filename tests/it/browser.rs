//! The console in a real browser: headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`). Where they are not installed the tests say so and pass, except in
//! CI (`CI=true`), where `.ci/run` installs them and a missing browser fails. Every page a test
//! visits is saved as a screenshot under `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use nurture_engine::access::Role;
use nurture_engine::audit::By;
use serde_json::json;

use crate::support::{Backend, TestApp};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a page may take to show what a test waits for. Generous: CI runs every test at
/// once on two cores, each browser test with its own Chromium, and a sign-in hashes a password
/// with argon2; a page that shows it sooner ends the wait at once.
const PATIENCE: Duration = Duration::from_secs(30);

/// A headless Chromium and the chromedriver that drives it (killed when dropped).
struct Browser {
    client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A browser whose language is `lang` (`en`, `zh-CN`); `None` when Chromium is not
    /// installed outside CI.
    async fn start(lang: &str) -> Option<Browser> {
        Browser::start_in(lang, None).await
    }

    /// A browser whose language is `lang`, in the time zone `zone` (the machine's if `None`).
    async fn start_in(lang: &str, zone: Option<&str>) -> Option<Browser> {
        let installed = std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists();
        if !installed {
            assert!(
                std::env::var("CI").is_err(),
                "CI runs the browser tests: install Debian's chromium and chromium-driver"
            );
            eprintln!("skipped: no {CHROMIUM} and {CHROMEDRIVER} here (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(CHROMEDRIVER);
        if let Some(zone) = zone {
            driver.env("TZ", zone);
        }
        let driver = driver
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,860", format!("--lang={lang}")],
                "prefs": {"intl.accept_languages": lang},
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("chromedriver did not answer: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Some(Browser { client, driver })
    }

    /// Opens `url`, saves what it shows as `name.png` and checks it with axe-core.
    async fn visit(&self, url: &str, name: &str) {
        self.client.goto(url).await.unwrap();
        self.shot(name).await;
    }

    /// Runs axe-core on the page: no serious or critical accessibility violation.
    async fn accessible(&self, name: &str) {
        static AXE: &str = include_str!("../vendor/axe-core/axe.min.js");
        self.client.execute(AXE, Vec::new()).await.unwrap();
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => ({id: v.id, impact: v.impact, help: v.help,
                                 nodes: v.nodes.map(n => n.target.join(' '))}))))
                   .catch(e => done([{id: 'axe failed', help: String(e)}]));",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(found, json!([]), "{name}: accessibility violations");
    }

    /// Saves the page as it is now, and checks it with axe-core.
    async fn shot(&self, name: &str) {
        self.accessible(name).await;
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn submit(&self, css: &str) {
        self.click(css).await;
    }

    /// Waits (up to `PATIENCE`) until the page shows `wanted` at `path`: a click returns
    /// before the page it leads to has loaded.
    async fn until(&self, path: &str, wanted: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // The page may be replaced between finding its body and reading it: read again.
            let text = match self.client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let at = self
                .client
                .current_url()
                .await
                .map(|u| u.path().to_owned())
                .unwrap_or_default();
            if at == path && text.contains(wanted) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited for {wanted:?} at {path}; the page at {} shows: {text}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fills the sign-in form and sends it.
    async fn sign_in(&self, email: &str, password: &str) {
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.submit("button[type=submit]").await;
    }

    /// Signs out from the page's header, and waits for the sign-in page that says so.
    async fn sign_out(&self, said: &str) {
        self.submit("header form[action='/logout'] button").await;
        self.until("/login", said).await;
    }

    /// Follows the first link `css` finds; where it leads.
    async fn follow(&self, css: &str) -> String {
        self.click(css).await.expect("a link has an href")
    }

    /// Clicks the first element `css` finds; its `href`, if it has one. The live inbox may
    /// swap the element for a fresh one between finding and clicking it: then it is found
    /// again (for up to `PATIENCE`).
    async fn click(&self, css: &str) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let element = self.client.find(Locator::Css(css)).await.unwrap();
            let clicked = match element.attr("href").await {
                Ok(href) => element.click().await.map(|_| href),
                Err(e) => Err(e),
            };
            match clicked {
                Ok(href) => return href,
                Err(e) if Instant::now() > deadline => panic!("could not click {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Presses `keys` on the page, as a person does with nothing focused but the page.
    async fn press(&self, keys: &str) {
        let focused = self.client.active_element().await.unwrap();
        focused.send_keys(keys).await.unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }
}

/// `target/console-screenshots/`.
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::support::repo().join("target"));
    target.join("console-screenshots")
}

/// An SDR invited by link sets a password, signs in, sees the handoff waiting for them with
/// its SLA, and signs out: in English, then the same pages in Chinese.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdr_signs_in_and_sees_their_queue_in_a_real_browser() {
    let Some(app) = crate::support::spawn_app_on(Backend::Sqlite).await else {
        return;
    };
    let Some(en) = Browser::start("en").await else {
        return;
    };
    let invited = app
        .engine
        .create_user("alice@corp.example", Role::Sdr, &By::cli())
        .await
        .unwrap();
    handed_off(&app, "li.wei@acme.example").await;

    let link = format!("/set-password/{}", invited.token);
    en.visit(&format!("{}{link}", app.base), "set-password-en").await;
    en.until(&link, "Set your password").await;
    en.fill("#password", "correct horse battery").await;
    en.fill("#confirm", "correct horse battery").await;
    en.submit("button[type=submit]").await;
    en.until("/login", "Your password is set; sign in.").await;
    en.shot("login-after-set-password-en").await;

    en.sign_in("alice@corp.example", "not the password").await;
    en.until("/login", "The e-mail or the password is wrong.").await;
    en.shot("login-wrong-password-en").await;
    en.fill("#password", "correct horse battery").await;
    en.submit("button[type=submit]").await;
    let home = en.until("/", "My queues").await;
    en.shot("home-sdr-en").await;
    assert!(home.contains("alice@corp.example · SDR"), "{home}");
    assert!(home.contains("li.wei@acme.example"), "{home}");
    assert!(
        home.contains("due in 3 h 59 min") || home.contains("due in 4 h 0 min"),
        "{home}"
    );

    // Claim the next lead of the queue, then accept it.
    en.submit("form[action='/queues/sdr/claim'] button").await;
    let home = en.until("/", "You claimed a lead.").await;
    en.shot("home-sdr-claimed-en").await;
    assert!(home.contains("My claimed leads"), "{home}");
    // The lead's card, from the claimed lead's link.
    let link = en.follow("section[aria-labelledby=mine] a").await;
    let card = en.until(&link, "Why this lead").await;
    en.shot("lead-card-en").await;
    assert!(card.contains("handoff") && card.contains("Asked for a demo"), "{card}");
    en.visit(&format!("{}/", app.base), "home-sdr-back-en").await;
    en.until("/", "My claimed leads").await;
    en.submit("form[action$='/accept'] button").await;
    en.until("/", "Done.").await;
    en.shot("home-sdr-decided-en").await;

    en.sign_out("You are signed out.").await;
    en.visit(&format!("{}/", app.base), "home-signed-out-en").await;
    en.until("/login", "Sign in").await;

    // A Chinese browser gets the same pages in Chinese; a new lead waits in the queue.
    handed_off(&app, "mei@acme.example").await;
    let Some(zh) = Browser::start("zh-CN").await else {
        return;
    };
    zh.visit(&format!("{}/login", app.base), "login-zh").await;
    zh.until("/login", "登录").await;
    zh.sign_in("alice@corp.example", "correct horse battery").await;
    let home = zh.until("/", "我的队列").await;
    zh.shot("home-sdr-zh").await;
    assert!(home.contains("剩余 4 小时 0 分钟") && home.contains("待领取"), "{home}");
    let link = zh.follow("section[aria-labelledby=queues] a").await;
    let card = zh.until(&link, "为什么是这条线索").await;
    zh.shot("lead-card-zh").await;
    assert!(card.contains("公司") && card.contains("已转交"), "{card}");

    // A marketer's start page lists the campaigns with their status.
    crate::console::person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    zh.sign_out("您已退出登录。").await;
    zh.sign_in("mia@corp.example", "a long enough password").await;
    let home = zh.until("/", "营销活动").await;
    zh.shot("home-marketer-zh").await;
    assert!(
        home.contains("运行中") && home.contains("(webinar-follow-up)"),
        "{home}"
    );
    // An admin invites a person from the users page; the link is shown once.
    crate::console::person(&app, "root@corp.example", Role::Admin, "the admin's password").await;
    zh.sign_out("您已退出登录。").await;
    zh.sign_in("root@corp.example", "the admin's password").await;
    zh.until("/", "营销活动").await;
    zh.visit(&format!("{}/users", app.base), "users-zh").await;
    zh.until("/users", "邀请").await;
    zh.fill("#email", "newcomer@corp.example").await;
    zh.submit("form[action='/users'] button").await;
    let page = zh.until("/users", "它只显示这一次").await;
    zh.shot("users-invited-zh").await;
    assert!(
        page.contains("/set-password/") && page.contains("newcomer@corp.example"),
        "{page}"
    );
}

/// A lead handed to the SDR queue, where round robin gives it to alice or bob.
async fn handed_off(app: &TestApp, email: &str) {
    let lead = app.lead(json!({"email": email, "company": "Acme"})).await;
    app.hand_off(&lead, "sdr", "Asked for a demo").await;
}

/// An SDR's day in the browser: a lead assigned to her appears in her open inbox without a
/// reload; she claims with a key, opens the card with the keyboard, reads why the lead is
/// here, logs a call, converts the deal with its value and a note, and the CRM gets the
/// webhooks. Times are in her browser's zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdrs_day_in_a_real_browser() {
    let Some(app) = crate::support::spawn_app_on(Backend::Sqlite).await else {
        return;
    };
    let Some(en) = Browser::start_in("en", Some("Asia/Shanghai")).await else {
        return;
    };
    let (crm, base) = crate::webhooks::receiver().await;
    crate::webhooks::subscribe(
        &app,
        &format!("{base}/hook"),
        json!(["lead.note_added", "handoff.converted"]),
    )
    .await;
    crate::console::person(&app, "alice@corp.example", Role::Sdr, "correct horse battery").await;
    let bob_away = app
        .call(
            "PUT",
            "/v1/queues/sdr/members/bob@corp.example",
            Role::Marketer,
            Some(json!({"available": false})),
        )
        .await;
    assert_eq!(bob_away.status, 200, "{:?}", bob_away.body);
    en.visit(&format!("{}/login", app.base), "day-login-en").await;
    en.sign_in("alice@corp.example", "correct horse battery").await;
    en.until("/", "My queues").await;
    en.until("/", "Nothing waits in this queue.").await;

    // A lead qualifies while her inbox is open: it appears there, no reload.
    let id = app
        .lead(json!({"email": "li.wei@acme.example", "first_name": "Wei", "last_name": "Li", "company": "Acme"}))
        .await;
    let survey = json!({"budget": "500k-1M", "timeline": "this quarter"});
    app.send_events(
        &id,
        &[
            ("whitepaper_downloaded", json!({"title": "IoT"})),
            ("survey_submitted", survey),
        ],
    )
    .await;
    let handoff = app.hand_off(&id, "sdr", "Asked for a demo").await;
    assert_eq!(handoff["assigned_to"], "alice@corp.example", "{handoff}");
    en.until("/", "li.wei@acme.example").await;
    en.until("/", "The queues have changed.").await;
    en.shot("day-inbox-live-en").await;

    // ? shows the shortcuts; c claims the next lead; j and Enter open it.
    en.press("?").await;
    let help = en.client.find(Locator::Css("dialog#keys")).await.unwrap();
    assert_eq!(help.attr("open").await.unwrap().as_deref(), Some("true"));
    en.shot("day-shortcuts-en").await;
    en.press(&fantoccini::key::Key::Escape.to_string()).await;
    assert_eq!(help.attr("open").await.unwrap(), None);
    en.press("c").await;
    en.until("/", "You claimed a lead.").await;
    en.press("j").await;
    en.press(&fantoccini::key::Key::Enter.to_string()).await;
    let card = en.until(&format!("/leads/{id}"), "Why this lead").await;
    en.shot("day-lead-card-en").await;
    assert!(card.contains("rule whitepaper_downloaded"), "the why: {card}");
    assert!(
        card.contains("500k-1M") && card.contains("this quarter"),
        "the survey: {card}"
    );
    assert!(card.contains(" CST"), "times in her zone (Asia/Shanghai): {card}");

    // A call, with the day to follow up.
    let select = en.client.find(Locator::Css("#note-outcome")).await.unwrap();
    select.select_by_value("meeting_booked").await.unwrap();
    en.fill("#note-text", "Demo with the plant managers").await;
    en.submit("form[action$='/notes'] button").await;
    let card = en.until(&format!("/leads/{id}"), "Saved.").await;
    assert!(
        card.contains("meeting booked · Demo with the plant managers · alice@corp.example"),
        "{card}"
    );
    // The deal, with its value and a note.
    en.fill("#convert-amount", "120,000").await;
    en.fill("#convert-note", "Signed the annual plan").await;
    en.submit("form[action$='/convert'] button").await;
    let card = en.until(&format!("/leads/{id}"), "Done.").await;
    en.shot("day-converted-en").await;
    assert!(card.contains("Deal amount 120,000"), "{card}");

    // The CRM hears of both.
    let client =
        nurture_engine::webhook::WebhookClient::new(Duration::from_secs(5), crate::support::loopback()).unwrap();
    for _ in 0..4 {
        app.engine.deliver_webhooks(&client, 100).await.unwrap();
    }
    let got = crm.got("/hook");
    let events: Vec<&str> = got.iter().map(|g| g.event.as_str()).collect();
    assert_eq!(
        events,
        ["lead.note_added", "handoff.converted", "lead.note_added"],
        "{got:?}"
    );
    let converted: serde_json::Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(converted["data"]["handoff"]["amount"], json!(120000));
    assert_eq!(converted["data"]["note"], "Signed the annual plan");
    assert_eq!(converted["lead"]["stage"], "customer");
}

/// A marketer opens the queue board from the navigation, reads a queue past its SLA, marks a
/// member away with a capacity there, and reads the same board in Chinese.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketer_runs_the_queue_board_in_a_real_browser() {
    let Some(app) = crate::support::spawn_app_on(Backend::Sqlite).await else {
        return;
    };
    let Some(en) = Browser::start("en").await else {
        return;
    };
    crate::console::person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    for email in ["li.wei@acme.example", "mei@acme.example", "tom@acme.example"] {
        handed_off(&app, email).await;
    }
    // Past the SDR queue's 4-hour SLA, then one more lead.
    let late = app
        .call(
            "POST",
            "/v1/admin/clock/advance",
            Role::Admin,
            Some(json!({"by": "5h"})),
        )
        .await;
    assert_eq!(late.status, 200, "{:?}", late.body);
    handed_off(&app, "ann@acme.example").await;

    en.visit(&format!("{}/login", app.base), "board-login-en").await;
    en.sign_in("mia@corp.example", "a long enough password").await;
    en.until("/", "Campaigns").await;
    let link = en.follow("nav a[href='/queues']").await;
    let board = en.until(&link, "Queue board").await;
    en.shot("board-en").await;
    assert!(board.contains("Past SLA"), "{board}");
    let chart = en
        .client
        .find(Locator::Css("section[aria-labelledby=queue-sdr] svg.bars"))
        .await
        .unwrap();
    let said = chart.attr("aria-label").await.unwrap().unwrap();
    assert!(said.starts_with("SLA breaches on each of the last 7 days: "), "{said}");
    assert!(said.ends_with(": 3"), "the three leads breached today: {said}");

    let bob = "form[action='/queues/sdr/members/bob@corp.example']";
    let away = en
        .client
        .find(Locator::Css("input[aria-label='Available: bob@corp.example']"))
        .await
        .unwrap();
    away.click().await.unwrap();
    en.fill("input[aria-label='Capacity: bob@corp.example']", "5").await;
    en.submit(&format!("{bob} button")).await;
    en.until("/queues", "settings are saved.").await;
    let row = en
        .client
        .find(Locator::XPath("//tr[th='bob@corp.example']"))
        .await
        .unwrap();
    row.click().await.unwrap();
    en.shot("board-saved-en").await;
    let members = app.engine.members("sdr").await.unwrap();
    let bob_now = members.iter().find(|m| m.member == "bob@corp.example").unwrap();
    assert_eq!((bob_now.available, bob_now.capacity), (false, Some(5)));
    let said = row.text().await.unwrap();
    let load = format!("{} / 5", bob_now.load);
    assert!(said.contains(&load), "bob's load out of his capacity, {load}: {said}");

    // The queue's report, from its card: four arrived today, three breached.
    let link = en.follow("a[href='/queues/sdr/report']").await;
    let report = en.until(&link, "Arrived, claimed and breached per period").await;
    en.shot("queue-report-en").await;
    assert!(report.contains("Half claimed"), "{report}");
    let chart = en.client.find(Locator::Css("svg.report-chart")).await.unwrap();
    let said = chart.attr("aria-label").await.unwrap().unwrap();
    assert!(
        said.ends_with(": Arrived 4, Claimed 0, SLA breaches 3"),
        "one day with everything: {said}"
    );

    let Some(zh) = Browser::start("zh-CN").await else {
        return;
    };
    zh.visit(&format!("{}/login", app.base), "board-login-zh").await;
    zh.sign_in("mia@corp.example", "a long enough password").await;
    zh.until("/", "营销活动").await;
    zh.visit(&format!("{}/queues", app.base), "board-zh").await;
    let board = zh.until("/queues", "队列看板").await;
    zh.shot("board-zh").await;
    assert!(board.contains("成员"), "{board}");
    zh.visit(&format!("{}/queues/sdr/report?days=7", app.base), "queue-report-zh")
        .await;
    let report = zh.until("/queues/sdr/report", "每期进入、认领与超时").await;
    zh.shot("queue-report-zh").await;
    assert!(report.contains("最近 7 天"), "{report}");
}

/// A marketer opens the campaigns from the navigation, reads a campaign's figures and graph,
/// follows a step of the graph to the leads waiting there, and reads the same pages in Chinese.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketer_reads_a_campaign_in_a_real_browser() {
    let Some(app) = crate::support::spawn_app_on(Backend::Sqlite).await else {
        return;
    };
    let Some(en) = Browser::start("en").await else {
        return;
    };
    crate::console::person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    for email in ["li.wei@acme.example", "mei@acme.example"] {
        app.register(email).await;
    }
    let moved = app
        .call(
            "POST",
            "/v1/admin/clock/advance",
            Role::Admin,
            Some(json!({"by": "1m"})),
        )
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);

    en.visit(&format!("{}/login", app.base), "campaigns-login-en").await;
    en.sign_in("mia@corp.example", "a long enough password").await;
    en.until("/", "Campaigns").await;
    let link = en.follow("nav a[href='/campaigns']").await;
    let list = en.until(&link, "Welcome series").await;
    en.shot("campaigns-en").await;
    assert!(list.contains("Left early"), "{list}");
    let link = en.follow("a[href='/campaigns/welcome']").await;
    let page = en.until(&link, "Graph").await;
    en.shot("campaign-en").await;
    assert!(page.contains("Enroll a segment"), "{page}");
    en.client
        .execute("document.getElementById('graph').scrollIntoView()", Vec::new())
        .await
        .unwrap();
    en.shot("campaign-graph-en").await;
    // The graph's wait_2d step is a link to the two leads waiting there.
    let link = en.follow("svg a.step[href='/campaigns/welcome/steps/wait_2d']").await;
    let at = en.until(&link, "li.wei@acme.example").await;
    en.shot("campaign-step-en").await;
    assert!(at.contains("mei@acme.example"), "{at}");
    en.visit(
        &format!("{}/campaigns/activation?segment=in-nurture#enroll", app.base),
        "campaign-dry-run-en",
    )
    .await;
    let page = en
        .until("/campaigns/activation", "Dry run: nothing has changed yet")
        .await;
    en.shot("campaign-dry-run-en").await;
    assert!(page.contains("Enroll them (2)"), "{page}");
    // The welcome e-mails go out; the campaign's report counts them.
    crate::reports::advance(&app, chrono::Duration::minutes(1)).await;
    en.visit(&format!("{}/campaigns/welcome", app.base), "campaign-en-again")
        .await;
    let link = en.follow("a[href='/campaigns/welcome/report']").await;
    let report = en.until(&link, "Sent, opened and clicked per period").await;
    en.shot("campaign-report-en").await;
    assert!(report.contains("welcome · email"), "{report}");
    assert!(report.contains("Last 30 days"), "{report}");
    let sent = en
        .client
        .execute(
            "return document.querySelector('table.figures tbody tr td').textContent.trim();",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(sent, json!("2"), "both welcome e-mails: {report}");
    assert!(
        report.contains("Went on to, within 30 days of being reached"),
        "{report}"
    );
    en.client
        .execute("document.getElementById('conversions').scrollIntoView()", Vec::new())
        .await
        .unwrap();
    en.shot("campaign-report-conversions-en").await;
    // The flow in the window: the welcome e-mails sent, in words.
    let flow = section_text(&en, "flow").await;
    assert!(flow.contains("Flow in this window, per version"), "{flow}");
    assert!(flow.contains("sent 2"), "{flow}");
    en.shot("campaign-report-flow-en").await;

    let Some(zh) = Browser::start("zh-CN").await else {
        return;
    };
    zh.visit(&format!("{}/login", app.base), "campaigns-login-zh").await;
    zh.sign_in("mia@corp.example", "a long enough password").await;
    zh.until("/", "营销活动").await;
    zh.visit(&format!("{}/campaigns", app.base), "campaigns-zh").await;
    zh.until("/campaigns", "提前退出").await;
    zh.shot("campaigns-zh").await;
    zh.visit(&format!("{}/campaigns/welcome", app.base), "campaign-zh")
        .await;
    let page = zh.until("/campaigns/welcome", "流程图").await;
    zh.shot("campaign-zh").await;
    assert!(page.contains("将一个分群加入本活动"), "{page}");
    zh.visit(
        &format!("{}/campaigns/welcome/report?days=7&by=week", app.base),
        "campaign-report-zh",
    )
    .await;
    let report = zh.until("/campaigns/welcome/report", "每期的发送、打开与点击").await;
    zh.shot("campaign-report-zh").await;
    assert!(report.contains("最近 7 天"), "{report}");
    zh.client
        .execute("document.getElementById('conversions').scrollIntoView()", Vec::new())
        .await
        .unwrap();
    zh.shot("campaign-report-conversions-zh").await;
    let flow = section_text(&zh, "flow").await;
    assert!(flow.contains("本时段的流转（按版本）"), "{flow}");
    assert!(flow.contains("已发送 2"), "{flow}");
    zh.shot("campaign-report-flow-zh").await;
}

/// The text of the page section headed by the element with id `heading`, scrolled into view.
async fn section_text(browser: &Browser, heading: &str) -> String {
    let text = browser
        .client
        .execute(
            "const s = document.getElementById(arguments[0]).closest('section'); s.scrollIntoView(); return s.textContent;",
            vec![json!(heading)],
        )
        .await
        .unwrap();
    text.as_str().unwrap_or_default().to_owned()
}

/// An admin searches the leads by the start of a company's name, opens one, and erases it after
/// typing its e-mail; the search page in Chinese.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_finds_and_erases_a_lead_in_a_real_browser() {
    let Some(app) = crate::support::spawn_app_on(Backend::Sqlite).await else {
        return;
    };
    let Some(en) = Browser::start("en").await else {
        return;
    };
    crate::console::person(&app, "root@corp.example", Role::Admin, "the admin's password").await;
    let lead = app
        .lead(
            json!({"email": "li.wei@acme.example", "first_name": "Wei", "last_name": "Li", "company": "Acme Robotics"}),
        )
        .await;
    app.lead(json!({"email": "fang@delta.example", "first_name": "芳", "last_name": "王", "company": "德尔塔能源"}))
        .await;

    en.visit(&format!("{}/login", app.base), "leads-login-en").await;
    en.sign_in("root@corp.example", "the admin's password").await;
    en.until("/", "Campaigns").await;
    let link = en.follow("nav a[href='/leads']").await;
    en.until(&link, "E-mail, name or company starts with").await;
    en.fill("#q", "acme").await;
    en.submit("form.search button").await;
    let page = en.until("/leads", "li.wei@acme.example").await;
    en.shot("leads-search-en").await;
    assert!(!page.contains("fang@delta.example"), "{page}");
    let link = en.follow(&format!("a[href='/leads/{lead}']")).await;
    en.until(&link, "Erase this person").await;
    let link = en.follow(&format!("a[href='/leads/{lead}/erase']")).await;
    en.until(&link, "only a hash of the e-mail is kept").await;
    en.shot("lead-erase-en").await;
    en.fill("#confirm", "li.wei@acme.example").await;
    en.submit("form[action$='/erase'] button").await;
    en.until("/leads", "Erased.").await;
    let gone = app
        .call("GET", &format!("/v1/leads/{lead}"), Role::Marketer, None)
        .await;
    assert_eq!(gone.status, 404);

    let Some(zh) = Browser::start("zh-CN").await else {
        return;
    };
    zh.visit(&format!("{}/login", app.base), "leads-login-zh").await;
    zh.sign_in("root@corp.example", "the admin's password").await;
    zh.until("/", "营销活动").await;
    zh.visit(&format!("{}/leads?q=%E7%8E%8B", app.base), "leads-search-zh")
        .await;
    let page = zh.until("/leads", "fang@delta.example").await;
    zh.shot("leads-search-zh").await;
    assert!(page.contains("邮箱、姓名或公司开头是"), "{page}");
}

/// The entered count of step `step` on the campaign page the browser shows.
async fn entered_on_page(browser: &Browser, step: &str) -> String {
    let cell = browser
        .client
        .execute(
            "const row = Array.from(document.querySelectorAll('table.figures tbody tr'))
               .find(r => r.querySelector('th').textContent.trim().startsWith(arguments[0]));
             return row ? row.querySelectorAll('td')[1].textContent.trim() : null;",
            vec![json!(step)],
        )
        .await
        .unwrap();
    cell.as_str().unwrap_or_else(|| panic!("no step {step}")).to_owned()
}

/// Selects `from` in the editor's text (its first occurrence) and types `to` over it, as a
/// person does.
async fn type_over(browser: &Browser, from: &str, to: &str) {
    let found = browser
        .client
        .execute(
            "const t = document.getElementById('text'); const i = t.value.indexOf(arguments[0]);
             if (i < 0) return false; t.focus(); t.setSelectionRange(i, i + arguments[0].length); return true;",
            vec![json!(from)],
        )
        .await
        .unwrap();
    assert_eq!(found, json!(true), "{from:?} is in the editor");
    let text = browser.client.find(Locator::Id("text")).await.unwrap();
    text.send_keys(to).await.unwrap();
}

/// A marketer edits the welcome series in the browser with an error, sees it at its line as
/// they type, goes to it, fixes it, reviews and deploys the change, and sees the campaign's
/// counts move on the manual clock; the editor and a template's preview in Chinese.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketer_edits_and_deploys_a_campaign_in_a_real_browser() {
    let Some(app) = crate::support::spawn_app_on(Backend::Sqlite).await else {
        return;
    };
    let Some(en) = Browser::start("en").await else {
        return;
    };
    crate::console::person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    en.visit(&format!("{}/login", app.base), "playbook-login-en").await;
    en.sign_in("mia@corp.example", "a long enough password").await;
    en.until("/", "Playbook").await;
    let link = en.follow("nav a[href='/playbook']").await;
    en.until(&link, "Deployments").await;
    en.shot("playbook-en").await;
    en.follow("ul.files a[href$='welcome.yaml']").await;
    en.until("/playbook/edit", "Valid: ready to deploy").await;
    en.shot("editor-en").await;

    // As typed: the error appears at its line, marked in the gutter; "go to line" goes there.
    type_over(&en, "{ for: 2d }", "{ for: 2x }").await;
    let shown = en.until("/playbook/edit", "campaigns/welcome.yaml:30:").await;
    assert!(shown.contains("Errors: this cannot deploy"), "{shown}");
    en.shot("editor-error-en").await;
    let marked = en
        .client
        .execute(
            "return document.querySelector('#gutter span.bad').textContent",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(marked, json!("30"));
    en.click("#check button.goto").await;
    let caret = en
        .client
        .execute(
            "const t = document.getElementById('text');
             return [document.activeElement === t, t.value.slice(0, t.selectionStart).split('\\n').length];",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(caret, json!([true, 30]), "the caret is on line 30");

    // Fixed: valid again; the deploy is reviewed, then deployed.
    type_over(&en, "{ for: 2x }", "{ for: 1d }").await;
    en.until("/playbook/edit", "Valid: ready to deploy").await;
    en.click("#review-deploy").await;
    let review = en.until("/playbook/deploy", "Review before deploying").await;
    assert!(review.contains("wait: { for: 1d }"), "{review}");
    let changed = en
        .client
        .execute(
            "return document.querySelectorAll('table.diff tr.del, table.diff tr.ins').length",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(changed, json!(2), "one line out, one in: {review}");
    en.shot("editor-review-en").await;
    en.click("#deploy-now").await;
    en.until("/playbook/deploy", "Deployed as deployment #").await;
    en.shot("editor-deployed-en").await;

    // The new version runs: the lead registered now moves on after one day, not two.
    app.register("li.wei@acme.example").await;
    let advance = |by: &'static str| {
        let app = &app;
        async move {
            let moved = app
                .call("POST", "/v1/admin/clock/advance", Role::Admin, Some(json!({"by": by})))
                .await;
            assert_eq!(moved.status, 200, "{:?}", moved.body);
        }
    };
    advance("1h").await;
    en.follow("a[href='/campaigns/welcome']").await;
    en.until("/campaigns/welcome", "Graph").await;
    assert_eq!(entered_on_page(&en, "wait_2d").await, "1");
    assert_eq!(entered_on_page(&en, "getting_started").await, "0");
    advance("1d").await;
    en.client.refresh().await.unwrap();
    en.until("/campaigns/welcome", "Graph").await;
    assert_eq!(entered_on_page(&en, "getting_started").await, "1");
    en.shot("editor-counts-moved-en").await;

    let Some(zh) = Browser::start("zh-CN").await else {
        return;
    };
    zh.visit(&format!("{}/login", app.base), "playbook-login-zh").await;
    zh.sign_in("mia@corp.example", "a long enough password").await;
    zh.until("/", "剧本").await;
    zh.visit(&format!("{}/playbook", app.base), "playbook-zh").await;
    zh.until("/playbook", "部署记录").await;
    zh.shot("playbook-zh").await;
    zh.visit(
        &format!("{}/playbook/edit?file=templates/welcome.hbs", app.base),
        "editor-template-zh",
    )
    .await;
    let page = zh.until("/playbook/edit", "English").await;
    assert!(page.contains("中文"), "{page}");
    zh.shot("editor-template-zh").await;
}
