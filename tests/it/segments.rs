//! A segment seen before it is used: how many leads it holds now and why each matches. On
//! SQLite and on PostgreSQL.

use nurture_engine::access::Role::{Marketer, Sdr};
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

both_backends!(crate::support::spawn_app_on; a_segment_preview_counts_and_says_why);
