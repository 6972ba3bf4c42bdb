//! The console's leads: search by the start of an e-mail, a name or a company (any case, any
//! script), by tag, stage and score range, page by page; erasing a person, admins only, after
//! typing its e-mail.

use nurture_engine::access::Role;
use serde_json::json;

use crate::console::{csrf_of, get, person, post, signed_in};
use crate::support::TestApp;

/// The e-mails a search page lists, in order.
fn found(html: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let cells = scraper::Selector::parse("table.figures tbody th a").unwrap();
    doc.select(&cells).map(|a| a.text().collect()).collect()
}

async fn a_marketer_searches_leads_and_an_admin_erases_one(app: TestApp) {
    person(&app, "mia@corp.example", Role::Marketer, "a long enough password").await;
    person(&app, "root@corp.example", Role::Admin, "the admin's password").await;
    person(&app, "alice@corp.example", Role::Sdr, "correct horse battery").await;
    let li = app
        .lead(json!({"email": "li.wei@acme.example", "first_name": "Wei", "last_name": "Li", "company": "Lumen"}))
        .await;
    let mei = app
        .lead(json!({"email": "mei@beta.example", "first_name": "Mei", "last_name": "Zhang", "company": "ACME Energy"}))
        .await;
    app.lead(json!({"email": "tom@gamma.example", "first_name": "Tom", "last_name": "Acker", "company": "Gamma"}))
        .await;
    app.lead(json!({"email": "fang@delta.example", "first_name": "芳", "last_name": "王", "company": "德尔塔能源"}))
        .await;
    let tagged = app
        .call(
            "POST",
            &format!("/v1/leads/{li}/tags"),
            Role::Marketer,
            Some(json!({"add": ["vip"]})),
        )
        .await;
    assert_eq!(tagged.status, 200, "{:?}", tagged.body);
    let scored = app
        .call(
            "POST",
            &format!("/v1/leads/{mei}/score"),
            Role::Marketer,
            Some(json!({"delta": 40, "reason": "met at the fair"})),
        )
        .await;
    assert_eq!(scored.status, 200, "{:?}", scored.body);

    let base = &app.base;
    let (sdr, _) = signed_in(&app, "alice@corp.example", "correct horse battery").await;
    let (status, _, _) = get(&sdr, &format!("{base}/leads")).await;
    assert_eq!(status, 403);

    let (marketer, _) = signed_in(&app, "mia@corp.example", "a long enough password").await;
    let search = |query: &'static str| {
        let (marketer, base) = (&marketer, base);
        async move {
            let (status, page, _) = get(marketer, &format!("{base}/leads?{query}")).await;
            assert_eq!(status, 200, "{query}: {page}");
            page
        }
    };
    // The start of an e-mail, a first or last name, or a company, in any case.
    assert_eq!(found(&search("q=acme").await), ["mei@beta.example"]);
    assert_eq!(found(&search("q=Li").await), ["li.wei@acme.example"]);
    assert_eq!(found(&search("q=lumen").await), ["li.wei@acme.example"]);
    assert_eq!(found(&search("q=ACK").await), ["tom@gamma.example"]);
    assert_eq!(found(&search("q=zha").await), ["mei@beta.example"]);
    assert_eq!(found(&search("q=%E7%8E%8B").await), ["fang@delta.example"], "王");
    assert_eq!(
        found(&search("q=%E5%BE%B7%E5%B0%94").await),
        ["fang@delta.example"],
        "德尔"
    );
    // Not the middle of a word; LIKE's wildcards are only characters.
    assert!(found(&search("q=cme").await).is_empty());
    let page = search("q=%25").await;
    assert!(found(&page).is_empty() && page.contains("No lead matches."), "{page}");
    // Tag, stage, score range, and all together.
    assert_eq!(found(&search("tag=vip").await), ["li.wei@acme.example"]);
    assert_eq!(found(&search("score_min=30&score_max=50").await), ["mei@beta.example"]);
    assert_eq!(found(&search("q=acme&score_min=10").await), ["mei@beta.example"]);
    assert_eq!(found(&search("q=acme&score_max=10").await), Vec::<String>::new());
    assert_eq!(found(&search("stage=customer").await), Vec::<String>::new());
    assert_eq!(found(&search("stage=new&q=t").await), ["tom@gamma.example"]);
    let page = search("score_min=lots").await;
    assert!(
        page.contains("The search is not valid: a score is a whole number."),
        "{page}"
    );

    // Fifty a page, the next page after the last.
    for n in 0..52 {
        app.lead(json!({"email": format!("bulk{n:02}@many.example")})).await;
    }
    let first = search("q=").await;
    assert_eq!(found(&first).len(), 50);
    let doc = scraper::Html::parse_document(&first);
    let next = scraper::Selector::parse("a[href^='/leads?']").unwrap();
    let next = doc
        .select(&next)
        .next()
        .expect("a next page")
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    let (_, rest, _) = get(&marketer, &format!("{base}{next}")).await;
    assert_eq!(found(&rest).len(), 6, "56 leads in all: {rest}");
    // A prefix search answers its first matches, and says so.
    let bulk = search("q=bulk").await;
    assert_eq!(found(&bulk).len(), 50);
    assert!(bulk.contains("Only the first 50 matches are shown"), "{bulk}");

    // Erasing: admins only, the e-mail typed to confirm.
    let erase = format!("{base}/leads/{mei}/erase");
    let (status, _, _) = get(&marketer, &erase).await;
    assert_eq!(status, 403);
    let (admin, _) = signed_in(&app, "root@corp.example", "the admin's password").await;
    let (_, card, _) = get(&admin, &format!("{base}/leads/{mei}")).await;
    assert!(card.contains(&format!("href=\"/leads/{mei}/erase\"")), "{card}");
    let (status, page, _) = get(&admin, &erase).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("only a hash of the e-mail is kept"), "{page}");
    let csrf = csrf_of(&page);
    let (_, _, location, _) = post(&admin, &erase, &[("csrf", &csrf), ("confirm", "li.wei@acme.example")]).await;
    assert_eq!(
        location.as_deref(),
        Some(format!("/leads/{mei}/erase?error=mismatch").as_str())
    );
    let still = app.call("GET", &format!("/v1/leads/{mei}"), Role::Marketer, None).await;
    assert_eq!(still.status, 200);
    let (status, _, _, _) = post(&admin, &erase, &[("confirm", "mei@beta.example")]).await;
    assert_eq!(status, 403, "no form token, nothing erased");
    let (_, _, location, _) = post(&admin, &erase, &[("csrf", &csrf), ("confirm", " MEI@beta.example ")]).await;
    assert_eq!(location.as_deref(), Some("/leads?notice=erased"));
    let gone = app.call("GET", &format!("/v1/leads/{mei}"), Role::Marketer, None).await;
    assert_eq!(gone.status, 404);
    let audit = app.call("GET", "/v1/audit?kind=lead.erased", Role::Admin, None).await;
    let entry = &audit.body["items"][0];
    assert_eq!(
        (&entry["actor"], &entry["via"]),
        (&json!("root@corp.example"), &json!("console"))
    );
    assert_eq!(found(&search("q=mei").await), Vec::<String>::new());
}

both_backends!(crate::support::spawn_app_on;
    a_marketer_searches_leads_and_an_admin_erases_one,
);
