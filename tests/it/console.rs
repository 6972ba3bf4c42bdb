//! The console's sign-in through a real server, as a browser does it (cookies, forms, redirects):
//! a person invited with a one-time link sets a password, signs in, sees their queues, signs
//! out here or everywhere; forms without their CSRF token are refused; attempts are limited.
//! On SQLite and on PostgreSQL.

use nurture_engine::access::Role;
use nurture_engine::audit::By;
use serde_json::json;

use crate::support::TestApp;

/// A browser: keeps cookies, does not follow redirects (the tests read them).
fn browser() -> reqwest::Client {
    crate::support::http()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden `csrf` input of a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let input = scraper::Selector::parse("input[name=csrf]").unwrap();
    doc.select(&input)
        .next()
        .and_then(|i| i.value().attr("value"))
        .unwrap_or_else(|| panic!("no csrf input in {html}"))
        .to_owned()
}

pub(crate) async fn get(client: &reqwest::Client, url: &str) -> (u16, String, Option<String>) {
    let answer = client
        .get(url)
        .header("accept-language", "en-US,en;q=0.8")
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let location = answer.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    (status, answer.text().await.unwrap(), location)
}

pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> (u16, String, Option<String>, Vec<String>) {
    let answer = client
        .post(url)
        .header("accept-language", "en-US,en;q=0.8")
        .form(form)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let location = answer.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    let cookies = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect();
    (status, answer.text().await.unwrap(), location, cookies)
}

/// A user who has set their password.
pub(crate) async fn person(app: &TestApp, email: &str, role: Role, password: &str) {
    let invited = app.engine.create_user(email, role, &By::cli()).await.unwrap();
    app.engine.set_password(&invited.token, password).await.unwrap();
}

/// Signs `email` in on a new browser; the browser and the home page's CSRF token.
pub(crate) async fn signed_in(app: &TestApp, email: &str, password: &str) -> (reqwest::Client, String) {
    let client = browser();
    let (_, login, _) = get(&client, &format!("{}/login", app.base)).await;
    let form = [
        ("email", email),
        ("password", password),
        ("csrf", &csrf_of(&login)),
        ("lang", "en"),
    ];
    let (status, body, location, _) = post(&client, &format!("{}/login", app.base), &form).await;
    assert_eq!((status, location.as_deref()), (303, Some("/")), "{body}");
    let (status, home, _) = get(&client, &format!("{}/", app.base)).await;
    assert_eq!(status, 200, "{home}");
    (client, csrf_of(&home))
}

async fn a_person_is_invited_sets_a_password_and_signs_in_and_out(app: TestApp) {
    let base = app.base.clone();
    let invited = app
        .engine
        .create_user("alice@corp.example", Role::Sdr, &By::cli())
        .await
        .unwrap();
    let client = browser();
    let (status, _, location) = get(&client, &format!("{base}/")).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login")));

    // The link's page, in the browser's language; the password is set once.
    let link = format!("{base}/set-password/{}", invited.token);
    let (status, page, _) = get(&client, &link).await;
    assert_eq!(status, 200);
    assert!(page.contains("Set your password"), "{page}");
    let csrf = csrf_of(&page);
    let set = |password: &'static str, confirm: &'static str, csrf: String| {
        let (client, link) = (&client, &link);
        async move {
            post(
                client,
                link,
                &[
                    ("password", password),
                    ("confirm", confirm),
                    ("csrf", &csrf),
                    ("lang", "en"),
                ],
            )
            .await
        }
    };
    let (status, body, _, _) = set("correct horse battery", "correct horse batter", csrf.clone()).await;
    assert_eq!(status, 422);
    assert!(body.contains("The two passwords differ."), "{body}");
    let (status, body, _, _) = set("short", "short", csrf.clone()).await;
    assert_eq!(status, 422);
    assert!(body.contains("At least 10 characters"), "{body}");
    let (status, body, _, _) = set("correct horse battery", "correct horse battery", "forged".into()).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, location, _) = set("correct horse battery", "correct horse battery", csrf.clone()).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login?set=1&lang=en")));
    let (status, body, _, _) = set("another good one", "another good one", csrf.clone()).await;
    assert_eq!(status, 404);
    assert!(body.contains("used already or has expired"), "{body}");
    // And in Chinese for a Chinese page.
    let used = [
        ("password", "another good one"),
        ("confirm", "another good one"),
        ("csrf", csrf.as_str()),
        ("lang", "zh"),
    ];
    let (status, body, _, _) = post(&client, &link, &used).await;
    assert_eq!(status, 404);
    assert!(body.contains("这个链接已用过或已过期"), "{body}");

    // The sign-in page speaks Chinese unless the browser prefers English.
    let plain = browser();
    let zh = plain
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(zh.contains("<html lang=\"zh\">") && zh.contains("登录"), "{zh}");

    // A wrong password, a form without its token, then the right password.
    let (_, login, _) = get(&client, &format!("{base}/login")).await;
    let token = csrf_of(&login);
    let attempt = |password: &'static str, csrf: String| {
        let (client, base) = (&client, &base);
        async move {
            post(
                client,
                &format!("{base}/login"),
                &[
                    ("email", "Alice@corp.example"),
                    ("password", password),
                    ("csrf", &csrf),
                    ("lang", "en"),
                ],
            )
            .await
        }
    };
    let (status, body, _, _) = attempt("wrong password!", token.clone()).await;
    assert_eq!(status, 401);
    assert!(body.contains("The e-mail or the password is wrong."), "{body}");
    assert!(
        body.contains("value=\"Alice@corp.example\""),
        "the e-mail stays in the form"
    );
    let (status, _, _, _) = attempt("correct horse battery", String::new()).await;
    assert_eq!(status, 403);
    let (status, _, location, cookies) = attempt("correct horse battery", token).await;
    assert_eq!((status, location.as_deref()), (303, Some("/")));
    let session = cookies
        .iter()
        .find(|c| c.starts_with("nurture_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "no Secure flag behind plain http: {session}"
    );

    // The start page: who is signed in, and the queues alice works.
    let (status, home, _) = get(&client, &format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(home.contains("alice@corp.example · SDR"), "{home}");
    assert!(home.contains("My queues") && home.contains("<h2>sdr</h2>"), "{home}");
    assert!(!home.contains("<h2>sales</h2>"), "alice is no member of sales: {home}");
    let csrf = csrf_of(&home);

    // Signing out needs the session's token; then the session is gone.
    let (status, body, _, _) = post(&client, &format!("{base}/logout"), &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    assert!(body.contains("This page had expired; please send it again."), "{body}");
    let (status, _, location, _) = post(&client, &format!("{base}/logout"), &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login?out=1")));
    let (status, _, location) = get(&client, &format!("{base}/")).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login")));

    // Signed in on two browsers, out everywhere from one: the other is out too.
    let (laptop, csrf) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    let (phone, _) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    let (status, _, _, _) = post(&laptop, &format!("{base}/logout-everywhere"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let (status, _, _) = get(&phone, &format!("{base}/")).await;
    assert_eq!(status, 303, "the phone's session ended");

    // A deactivated user's session ends at once, and they cannot sign in again.
    let (phone, _) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    app.engine
        .deactivate_user("alice@corp.example", &By::api("admin-bot"))
        .await
        .unwrap();
    let (status, _, _) = get(&phone, &format!("{base}/")).await;
    assert_eq!(status, 303);
    assert!(app
        .engine
        .sign_in("alice@corp.example", "correct horse battery")
        .await
        .unwrap()
        .is_none());

    // Invitations and deactivations are in the audit trail.
    let audit = app.call("GET", "/v1/audit?kind=user", Role::Admin, None).await.body;
    let kinds: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["user.deactivated", "user.created"]);
    assert_eq!(
        audit["items"][1]["detail"],
        json!({"email": "alice@corp.example", "role": "sdr"})
    );
}

/// A marketer's start page lists the campaigns, in the language they asked for.
async fn a_marketer_sees_the_campaigns(app: TestApp) {
    person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    let (client, _) = signed_in(&app, "mia@corp.example", "a long enough password").await;
    let home = client
        .get(format!("{}/?lang=zh", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("营销活动"), "{home}");
    assert!(
        home.contains("(industry-drip)") && home.contains("(webinar-follow-up)"),
        "{home}"
    );
    assert!(home.contains("mia@corp.example · 市场"), "{home}");
}

/// After ten attempts in a minute from one address (or at one account) the next is refused,
/// even with the right password; an unknown account is answered as a wrong password.
async fn sign_in_attempts_are_limited_per_account(app: TestApp) {
    person(&app, "bob@corp.example", Role::Sdr, "bob's good password").await;
    let client = browser();
    let (_, login, _) = get(&client, &format!("{}/login", app.base)).await;
    let csrf = csrf_of(&login);
    let attempt = |email: &'static str, password: &'static str| {
        let (client, base, csrf) = (&client, &app.base, &csrf);
        async move {
            post(
                client,
                &format!("{base}/login"),
                &[
                    ("email", email),
                    ("password", password),
                    ("csrf", csrf.as_str()),
                    ("lang", "en"),
                ],
            )
            .await
            .0
        }
    };
    assert_eq!(attempt("nobody@corp.example", "whatever it is").await, 401);
    for _ in 0..9 {
        assert_eq!(attempt("bob@corp.example", "not his password").await, 401);
    }
    // Ten attempts from this address this minute: the eleventh is refused, right or wrong.
    assert_eq!(attempt("bob@corp.example", "bob's good password").await, 429);
}

/// A set-password link works for 72 hours, a session for 14 days (on the server's clock).
async fn links_and_sessions_expire(app: TestApp) {
    let late = app
        .engine
        .create_user("late@corp.example", Role::Sdr, &By::cli())
        .await
        .unwrap();
    let on_time = app
        .engine
        .create_user("soon@corp.example", Role::Sdr, &By::cli())
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::hours(71));
    app.engine
        .set_password(&on_time.token, "set in good time")
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::hours(2));
    let expired = app.engine.set_password(&late.token, "set too late now").await;
    assert!(
        matches!(expired, Err(nurture_engine::engine::EngineError::Missing(_))),
        "{expired:?}"
    );
    let (client, _) = signed_in(&app, "soon@corp.example", "set in good time").await;
    app.clock.advance(chrono::Duration::days(13));
    let (status, _, _) = get(&client, &format!("{}/", app.base)).await;
    assert_eq!(status, 200, "13 days on, still signed in");
    app.clock
        .advance(chrono::Duration::days(1) + chrono::Duration::minutes(1));
    let (status, _, location) = get(&client, &format!("{}/", app.base)).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login")));
    // A new link for the late one works, and their new password signs them in.
    let again = app.engine.reset_user("late@corp.example", &By::cli()).await.unwrap();
    app.engine
        .set_password(&again.token, "set in good time too")
        .await
        .unwrap();
    signed_in(&app, "late@corp.example", "set in good time too").await;
}

/// An SDR works their queue in the console: claims the next handoff, rejects without a reason
/// (refused, said so), then accepts; the decision is theirs in the handoff and in the audit.
async fn an_sdr_claims_and_decides_in_the_console(app: TestApp) {
    person(&app, "alice@corp.example", Role::Sdr, "correct horse battery").await;
    let lead = app.lead(json!({"email": "li.wei@acme.example"})).await;
    let handoff = app.hand_off(&lead, "sales", "Asked for a demo").await;
    let id = handoff["id"].as_str().unwrap().to_owned();
    let (client, csrf) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    let base = &app.base;
    // Alice works the sdr queue only: she cannot take from sales.
    let (status, _, location, _) = post(&client, &format!("{base}/queues/sdr/claim"), &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/?empty=sdr")));
    let (_, home, _) = get(&client, &format!("{base}/?empty=sdr")).await;
    assert!(home.contains("Nothing is open in sdr."), "{home}");
    // Handed to the sdr queue instead, it is hers to claim.
    let moved = app
        .call("POST", &format!("/v1/handoffs/{id}/release"), Role::Admin, None)
        .await;
    assert_eq!(moved.status, 409, "an open handoff is not released: {:?}", moved.body);
    // With alice away, round robin gives bob the next lead: alice's claim says it is his.
    let away = |member: &'static str, available: bool| {
        let app = &app;
        async move {
            let answer = app
                .call(
                    "PUT",
                    &format!("/v1/queues/sdr/members/{member}"),
                    Role::Marketer,
                    Some(json!({"available": available})),
                )
                .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
        }
    };
    away("alice@corp.example", false).await;
    let lead3 = app.lead(json!({"email": "tom@acme.example"})).await;
    let to_bob = app.hand_off(&lead3, "sdr", "Webinar").await;
    assert_eq!(to_bob["assigned_to"], "bob@corp.example", "{to_bob}");
    let (_, _, location, _) = post(&client, &format!("{base}/queues/sdr/claim"), &[("csrf", &csrf)]).await;
    let (_, home, _) = get(&client, &format!("{base}{}", location.unwrap())).await;
    assert!(
        home.contains("1 open in sdr, all assigned to bob@corp.example (1)."),
        "{home}"
    );
    // Back, with bob away: the next lead is alice's.
    away("alice@corp.example", true).await;
    away("bob@corp.example", false).await;
    let lead2 = app.lead(json!({"email": "mei@acme.example"})).await;
    let to_sdr = app.hand_off(&lead2, "sdr", "Pricing page twice").await;
    let sdr_id = to_sdr["id"].as_str().unwrap().to_owned();
    let (status, _, location, _) = post(&client, &format!("{base}/queues/sdr/claim"), &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/?notice=claimed")));
    let (status, _, _, _) = post(&client, &format!("{base}/queues/sdr/claim"), &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    let (_, home, _) = get(&client, &format!("{base}/?notice=claimed")).await;
    assert!(
        home.contains("You claimed a lead.") && home.contains(&format!("/handoffs/{sdr_id}/accept")),
        "{home}"
    );
    let reject = format!("{base}/handoffs/{sdr_id}/reject");
    let (status, _, location, _) = post(&client, &reject, &[("csrf", &csrf), ("reason", " ")]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/?error=say_why")));
    let (status, _, location, _) = post(&client, &format!("{base}/handoffs/{sdr_id}/accept"), &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/?notice=decided")));
    let decided = app
        .call("GET", &format!("/v1/handoffs/{sdr_id}"), Role::Admin, None)
        .await
        .body;
    assert_eq!(
        (&decided["status"], &decided["decided_by"]),
        (&json!("accepted"), &json!("alice@corp.example")),
        "{decided}"
    );
    let audit = app.call("GET", "/v1/audit?kind=handoff", Role::Admin, None).await.body;
    assert_eq!(
        (
            &audit["items"][0]["actor"],
            &audit["items"][0]["via"],
            &audit["items"][0]["subject"]
        ),
        (&json!("alice@corp.example"), &json!("console"), &json!(sdr_id))
    );
    // Deciding again: the handoff changed meanwhile.
    let (_, _, location, _) = post(
        &client,
        &format!("{base}/handoffs/{sdr_id}/convert"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(
        location.as_deref(),
        Some("/?notice=decided"),
        "an accepted lead converts"
    );
    let (_, _, location, _) = post(&client, &format!("{base}/handoffs/{sdr_id}/accept"), &[("csrf", &csrf)]).await;
    assert_eq!(location.as_deref(), Some("/?error=changed"));
    // A handoff or a decision that does not exist is a page that says so.
    for path in ["handoffs/not-a-number/accept", &format!("handoffs/{sdr_id}/approve")] {
        let (status, body, _, _) = post(&client, &format!("{base}/{path}"), &[("csrf", &csrf)]).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("There is no such handoff."), "{path}: {body}");
    }
}

/// An admin manages users in the browser: invites one (the link is shown once and works),
/// makes a new link, deactivates; other roles are refused the page.
async fn an_admin_manages_users_in_the_console(app: TestApp) {
    for (email, role) in [("root@corp.example", Role::Admin), ("sam@corp.example", Role::Sdr)] {
        person(&app, email, role, "a long enough password").await;
    }
    let (sdr, _) = signed_in(&app, "sam@corp.example", "a long enough password").await;
    let (status, body, _) = get(&sdr, &format!("{}/users", app.base)).await;
    assert_eq!(status, 403);
    assert!(body.contains("Only admins manage users."), "{body}");

    let (admin, csrf) = signed_in(&app, "root@corp.example", "a long enough password").await;
    let (status, page, _) = get(&admin, &format!("{}/users", app.base)).await;
    assert_eq!(status, 200);
    assert!(page.contains("sam@corp.example") && page.contains("Invite"), "{page}");
    let users = format!("{}/users", app.base);
    let (status, page, _, _) = post(
        &admin,
        &users,
        &[("csrf", &csrf), ("email", "new@corp.example"), ("role", "marketer")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let doc = scraper::Html::parse_document(&page);
    let link = doc
        .select(&scraper::Selector::parse("#link").unwrap())
        .next()
        .map(|e| e.text().collect::<String>())
        .unwrap_or_else(|| panic!("{page}"));
    let token = link
        .strip_prefix(&format!("{}/set-password/", app.base))
        .unwrap_or_else(|| panic!("{link}"));
    app.engine.set_password(token, "the newcomer's password").await.unwrap();
    signed_in(&app, "new@corp.example", "the newcomer's password").await;
    let (status, page, _, _) = post(
        &admin,
        &users,
        &[("csrf", &csrf), ("email", "new@corp.example"), ("role", "marketer")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("That e-mail is a user already"), "{page}");
    let (status, page, _, _) = post(
        &admin,
        &users,
        &[("csrf", &csrf), ("email", "not an e-mail"), ("role", "sdr")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("Give a valid e-mail address."), "{page}");
    let (status, page, _, _) = post(
        &admin,
        &format!("{users}/deactivate"),
        &[("csrf", &csrf), ("email", "sam@corp.example")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("deactivated"), "{page}");
    let (status, _, _) = get(&sdr, &format!("{}/", app.base)).await;
    assert_eq!(status, 303, "sam's session ended");
    let (status, _, _, _) = post(
        &admin,
        &users,
        &[("csrf", "forged"), ("email", "x@corp.example"), ("role", "sdr")],
    )
    .await;
    assert_eq!(status, 403);
    let audit = app
        .call("GET", "/v1/audit?kind=user&actor=root@corp.example", Role::Admin, None)
        .await
        .body;
    let kinds: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["user.deactivated", "user.created"]);
    assert_eq!(audit["items"][0]["via"], "console");
}

/// The lead card says who the lead is, where each point of their score came from (per rule,
/// per person), their tags and what happened to them, newest first.
async fn the_lead_card_says_why(app: TestApp) {
    person(&app, "sam@corp.example", Role::Sdr, "a long enough password").await;
    let id = app
        .lead(json!({"email": "li.wei@acme.example", "first_name": "伟", "last_name": "李", "company": "Acme"}))
        .await;
    app.send_events(
        &id,
        &[
            ("whitepaper_downloaded", json!({"title": "IoT"})),
            ("page_view", json!({"path": "/pricing"})),
            ("page_view", json!({"path": "/pricing/plans"})),
        ],
    )
    .await;
    let scored = app
        .call(
            "POST",
            &format!("/v1/leads/{id}/score"),
            Role::Sdr,
            Some(json!({"delta": 7, "reason": "good call"})),
        )
        .await;
    assert_eq!(scored.status, 200, "{:?}", scored.body);
    let (client, _) = signed_in(&app, "sam@corp.example", "a long enough password").await;
    let (status, card, _) = get(&client, &format!("{}/leads/{id}", app.base)).await;
    assert_eq!(status, 200, "{card}");
    let doc = scraper::Html::parse_document(&card);
    let rows = |css: &str| -> Vec<String> {
        doc.select(&scraper::Selector::parse(css).unwrap())
            .map(|row| row.text().collect::<Vec<_>>().join("|"))
            .collect()
    };
    assert!(card.contains("<h1 id=\"lead\">李 伟</h1>"), "{card}");
    assert!(card.contains("Score: <strong>27</strong>"), "{card}");
    assert_eq!(
        rows("section[aria-labelledby=why] table:first-of-type tbody tr"),
        [
            "rule pricing_page|10|2",
            "rule whitepaper_downloaded|10|1",
            "by hand: sdr-bot|7|1"
        ]
    );
    assert!(
        card.contains("interest:pricing") && card.contains("behaviour:downloaded_whitepaper"),
        "{card}"
    );
    let timeline = rows("section[aria-labelledby=timeline] tbody tr");
    assert!(
        timeline.iter().any(|r| r.contains("score|+7 good call · sdr-bot")),
        "{timeline:?}"
    );
    assert!(
        timeline
            .iter()
            .any(|r| r.contains("behaviour|whitepaper_downloaded {\"title\":\"IoT\"}")),
        "{timeline:?}"
    );
    assert!(
        timeline.iter().any(|r| r.contains("tag|interest:pricing added")),
        "{timeline:?}"
    );

    let (status, body, _) = get(&client, &format!("{}/leads/424242", app.base)).await;
    assert_eq!(status, 404);
    assert!(body.contains("There is no such lead."), "{body}");
    let (status, _, location) = get(&browser(), &format!("{}/leads/{id}", app.base)).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login")));
}

/// An SDR works a lead from its card: the survey's answers, contact details kept up to date,
/// a call logged with its follow-up day, the deal converted with its value and a note; a
/// marketer reads the same card without the forms.
async fn an_sdr_works_a_lead_from_its_card(app: TestApp) {
    person(&app, "alice@corp.example", Role::Sdr, "correct horse battery").await;
    person(&app, "mark@corp.example", Role::Marketer, "correct horse battery").await;
    let id = app
        .lead(json!({"email": "li.wei@acme.example", "company": "Acme", "phone": "010 1234"}))
        .await;
    let survey = json!({"budget": "50-100万", "needs": ["MES", "IoT"], "timeline": "this quarter"});
    app.send_events(&id, &[("survey_submitted", survey)]).await;
    let handoff = app.hand_off(&id, "sdr", "Asked for a demo").await;
    let handoff_id = handoff["id"].as_str().unwrap().to_owned();
    let (client, csrf) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    let base = &app.base;
    let (_, _, location, _) = post(&client, &format!("{base}/queues/sdr/claim"), &[("csrf", &csrf)]).await;
    assert_eq!(location.as_deref(), Some("/?notice=claimed"));
    let card_url = format!("{base}/leads/{id}");
    let back = format!("/leads/{id}");
    let (_, card, _) = get(&client, &card_url).await;
    let texts = |html: &str, css: &str| -> Vec<String> {
        let doc = scraper::Html::parse_document(html);
        doc.select(&scraper::Selector::parse(css).unwrap())
            .map(|row| row.text().collect::<Vec<_>>().join("|"))
            .collect()
    };
    assert_eq!(
        texts(&card, "section[aria-labelledby=survey] dd"),
        ["50-100万", "MES, IoT", "this quarter"]
    );
    assert!(card.contains(&format!("/handoffs/{handoff_id}/convert")), "{card}");
    assert!(
        card.contains(&format!("/handoffs/{handoff_id}/release")),
        "claimed: {card}"
    );

    // Contact details as the SDR learned them; an emptied field is cleared.
    let contact = format!("{base}/leads/{id}/contact");
    let form = [
        ("csrf", csrf.as_str()),
        ("phone", "+86 138 0000 0000"),
        ("title", "Plant manager"),
        ("company", ""),
    ];
    let (_, _, location, _) = post(&client, &contact, &form).await;
    assert_eq!(location.as_deref(), Some(format!("{back}?notice=contact").as_str()));
    let read = app
        .call("GET", &format!("/v1/leads/{id}"), Role::Admin, None)
        .await
        .body;
    assert_eq!(
        (&read["phone"], &read["title"], &read["company"]),
        (&json!("+86 138 0000 0000"), &json!("Plant manager"), &json!(null)),
        "{read}"
    );

    // A note says something; then a call with its follow-up day.
    let notes = format!("{base}/leads/{id}/notes");
    let (_, _, location, _) = post(&client, &notes, &[("csrf", &csrf), ("text", " "), ("outcome", "")]).await;
    assert_eq!(location.as_deref(), Some(format!("{back}?error=empty_note").as_str()));
    let call = [
        ("csrf", csrf.as_str()),
        ("outcome", "voicemail"),
        ("follow_up_on", "2026-03-10"),
        ("text", "Left a message"),
    ];
    let (_, _, location, _) = post(&client, &notes, &call).await;
    assert_eq!(location.as_deref(), Some(format!("{back}?notice=noted").as_str()));

    // The deal: a typo in the amount loses nothing, then it converts with its value and note.
    let convert = format!("{base}/handoffs/{handoff_id}/convert");
    let typo = [("csrf", csrf.as_str()), ("amount", "12k"), ("back", back.as_str())];
    let (_, _, location, _) = post(&client, &convert, &typo).await;
    assert_eq!(location.as_deref(), Some(format!("{back}?error=amount").as_str()));
    let deal = [
        ("csrf", csrf.as_str()),
        ("amount", "12,000.50"),
        ("note", "Signed the annual plan"),
        ("back", back.as_str()),
    ];
    let (_, _, location, _) = post(&client, &convert, &deal).await;
    assert_eq!(location.as_deref(), Some(format!("{back}?notice=decided").as_str()));
    let decided = app
        .call("GET", &format!("/v1/handoffs/{handoff_id}"), Role::Admin, None)
        .await
        .body;
    assert_eq!(
        (&decided["status"], &decided["amount"]),
        (&json!("converted"), &json!(12000.5))
    );

    let (_, card, _) = get(&client, &format!("{card_url}?notice=decided")).await;
    assert!(card.contains("Done."), "{card}");
    assert_eq!(texts(&card, "section[aria-labelledby=handoffs] tbody tr").len(), 1);
    let handoffs = texts(&card, "section[aria-labelledby=handoffs] tbody tr td");
    assert_eq!(
        handoffs[1..],
        [
            "sdr",
            "Asked for a demo",
            "converted",
            "alice@corp.example",
            "Deal amount 12,000.50"
        ]
    );
    let timeline = texts(&card, "section[aria-labelledby=timeline] tbody tr");
    assert!(
        timeline
            .iter()
            .any(|r| r.contains("call|voicemail · follow up 2026-03-10 · Left a message · alice@corp.example")),
        "{timeline:?}"
    );
    assert!(
        timeline
            .iter()
            .any(|r| r.contains("note|converted · Signed the annual plan · alice@corp.example")),
        "{timeline:?}"
    );
    assert!(
        card.lines().all(|l| !l.contains("/handoffs/")),
        "nothing left to decide: {card}"
    );

    // A form that says where to go back to goes back only to a lead card.
    let (_, _, location, _) = post(&client, &convert, &[("csrf", &csrf), ("back", "https://evil.example/")]).await;
    assert_eq!(location.as_deref(), Some("/?error=changed"));

    // The marketer reads the same card, without the SDR's forms.
    let (marketer, marketer_csrf) = signed_in(&app, "mark@corp.example", "correct horse battery").await;
    let (_, card, _) = get(&marketer, &card_url).await;
    assert!(card.contains("Left a message") && card.contains("50-100万"), "{card}");
    assert!(!card.contains("/notes\"") && !card.contains("/contact\""), "{card}");
    let (_, _, location, _) = post(&marketer, &notes, &[("csrf", &marketer_csrf), ("text", "hi")]).await;
    assert_eq!(location.as_deref(), Some(format!("{back}?error=not_yours").as_str()));
}

/// A queue's figures on the board: open, claimed, past SLA, breaches in 7 days, and the
/// chart's count for each of the seven days (from its description).
fn board_figures(html: &str, queue: &str) -> (Vec<i64>, Vec<i64>) {
    let doc = scraper::Html::parse_document(html);
    let section = scraper::Selector::parse(&format!("section[aria-labelledby=queue-{queue}]")).unwrap();
    let section = doc
        .select(&section)
        .next()
        .unwrap_or_else(|| panic!("no board for {queue}: {html}"));
    let numbers = scraper::Selector::parse(".stats span.n").unwrap();
    let figures = section
        .select(&numbers)
        .map(|n| n.text().collect::<String>().parse().unwrap())
        .collect();
    let chart = scraper::Selector::parse("svg.bars").unwrap();
    let said = section
        .select(&chart)
        .next()
        .unwrap()
        .value()
        .attr("aria-label")
        .unwrap();
    let days = said
        .split_once(": ")
        .unwrap()
        .1
        .split(", ")
        .map(|day| day.rsplit(": ").next().unwrap().parse().unwrap())
        .collect();
    (figures, days)
}

/// A marketer reads the queue board (what waits, is worked, is past its SLA; the breaches of
/// the last seven days by day in the playbook's time zone) and changes a member there, as
/// the API would; an SDR may not open it.
async fn a_marketer_runs_the_queue_board(app: TestApp) {
    person(&app, "alice@corp.example", Role::Sdr, "correct horse battery").await;
    person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    let mut handoffs = Vec::new();
    for email in ["a@acme.example", "b@acme.example", "c@acme.example"] {
        let lead = app.lead(json!({"email": email})).await;
        handoffs.push(app.hand_off(&lead, "sdr", "Asked for a demo").await);
    }
    let (sdr, sdr_csrf) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    let base = &app.base;
    let (_, _, location, _) = post(&sdr, &format!("{base}/queues/sdr/claim"), &[("csrf", &sdr_csrf)]).await;
    assert_eq!(location.as_deref(), Some("/?notice=claimed"));
    let (status, page, _) = get(&sdr, &format!("{base}/queues")).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Only marketers and admins"), "{page}");

    let advance = |by: &'static str| {
        let app = &app;
        async move {
            let answer = app
                .call("POST", "/v1/admin/clock/advance", Role::Admin, Some(json!({"by": by})))
                .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
        }
    };
    // 2026-11-02 17:00 in Shanghai: the two unclaimed breach the 4 h SLA at 21:00 and move to
    // sales, whose 24 h SLA they breach on 11-03. A lead handed off on 11-04 at 21:00 breaches
    // sdr's at 01:00 on 11-05 (still 11-04 in UTC).
    advance("5h").await;
    advance("2d").await;
    let lead = app.lead(json!({"email": "d@acme.example"})).await;
    app.hand_off(&lead, "sdr", "Pricing page twice").await;
    advance("4h1m").await;

    let (marketer, csrf) = signed_in(&app, "mia@corp.example", "a long enough password").await;
    let (status, board, _) = get(&marketer, &format!("{base}/queues")).await;
    assert_eq!(status, 200, "{board}");
    // Open, claimed, past SLA, breaches in 7 days; breaches by day, 10-30 to 11-05.
    assert_eq!(
        board_figures(&board, "sdr"),
        (vec![0, 1, 0, 3], vec![0, 0, 0, 2, 0, 0, 1])
    );
    assert_eq!(
        board_figures(&board, "sales"),
        (vec![3, 0, 2, 2], vec![0, 0, 0, 0, 2, 0, 0])
    );
    assert!(board.contains("11-05: 1</title>"), "{board}");
    assert!(board.contains("on breach moves to sales"), "{board}");
    // Alice holds the lead she claimed; bob nothing.
    let doc = scraper::Html::parse_document(&board);
    let rows = scraper::Selector::parse("section[aria-labelledby=queue-sdr] table.members tbody tr").unwrap();
    let cell = scraper::Selector::parse("th, td").unwrap();
    let rows: Vec<Vec<String>> = doc
        .select(&rows)
        .map(|r| {
            r.select(&cell)
                .map(|c| c.text().collect::<String>().trim().to_owned())
                .collect()
        })
        .collect();
    // Member, available, capacity, weight, in hand, save.
    let held: Vec<(&str, &str)> = rows.iter().map(|r| (r[0].as_str(), r[4].as_str())).collect();
    assert_eq!(
        held,
        [("alice@corp.example", "1"), ("bob@corp.example", "0")],
        "{rows:?}"
    );

    // Bob away, at most 5 at once, twice alice's share: saved and recorded as mia's.
    let bob = format!("{base}/queues/sdr/members/bob@corp.example");
    let (status, _, location, _) = post(&marketer, &bob, &[("csrf", &csrf), ("capacity", "5"), ("weight", "2")]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/queues?notice=saved")));
    let members = app.engine.members("sdr").await.unwrap();
    let bob_now = members.iter().find(|m| m.member == "bob@corp.example").unwrap();
    assert_eq!(
        (bob_now.available, bob_now.capacity, bob_now.weight),
        (false, Some(5), 2)
    );
    let (_, board, _) = get(&marketer, &format!("{base}/queues?notice=saved")).await;
    assert!(board.contains("settings are saved."), "{board}");
    assert!(board.contains("value=\"5\"") && board.contains("0 / 5"), "{board}");
    let audit = app
        .call("GET", "/v1/audit?kind=queue.member_changed", Role::Admin, None)
        .await;
    let entry = &audit.body["items"][0];
    assert_eq!(
        (&entry["actor"], &entry["via"]),
        (&json!("mia@corp.example"), &json!("console"))
    );
    // A weight of 0 or a capacity that is not a number changes nothing.
    for form in [
        [("weight", "0"), ("capacity", "")],
        [("weight", "1"), ("capacity", "many")],
    ] {
        let mut form = form.to_vec();
        form.push(("csrf", &csrf));
        form.push(("available", "1"));
        let (_, _, location, _) = post(&marketer, &bob, &form).await;
        assert_eq!(location.as_deref(), Some("/queues?error=member"));
    }
    assert_eq!(app.engine.members("sdr").await.unwrap(), members);
    let (_, board, _) = get(&marketer, &format!("{base}/queues?error=member")).await;
    assert!(board.contains("Not saved: capacity is a whole number"), "{board}");
    // Someone not in the queue, or a form without its token, is refused.
    let (status, _, _, _) = post(
        &marketer,
        &format!("{base}/queues/sdr/members/eve@corp.example"),
        &[("csrf", &csrf), ("weight", "1")],
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _, _) = post(&marketer, &bob, &[("csrf", "forged"), ("weight", "1")]).await;
    assert_eq!(status, 403);
    // With bob away, the next lead goes to alice.
    let lead = app.lead(json!({"email": "e@acme.example"})).await;
    let next = app.hand_off(&lead, "sdr", "Webinar").await;
    assert_eq!(next["assigned_to"], "alice@corp.example", "{next}");
}

both_backends!(crate::support::spawn_app_on;
    a_marketer_runs_the_queue_board,
    an_sdr_works_a_lead_from_its_card,
    the_lead_card_says_why,
    an_admin_manages_users_in_the_console,
    an_sdr_claims_and_decides_in_the_console,
    links_and_sessions_expire,
    a_person_is_invited_sets_a_password_and_signs_in_and_out,
    a_marketer_sees_the_campaigns,
    sign_in_attempts_are_limited_per_account
);
