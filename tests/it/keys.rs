//! API keys kept by an admin: created, listed, rotated and revoked over the API and the command
//! line; a key revoked by another process stops working on a running server within its
//! one-second cache. Through the real binary, on SQLite and on PostgreSQL.

use serde_json::json;
use std::time::{Duration, Instant};

use crate::cli::{nurture, ready};
use crate::support::{request as status, Backend};

async fn keys_are_revoked_and_rotated_everywhere(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((_store, url)) = crate::support::binary_database(backend, dir.path(), "keys.db").await else {
        return;
    };
    let admin = crate::cli::api_key(dir.path(), "admin", &url);
    let server = crate::cli::serve_with(dir.path(), &["--database-url", &url, "--outbox", "outbox"]);
    ready(&server.base).await;

    // Over the API: a key for the CRM, shown once, listed without itself.
    let (code, made) = status(
        &server.base,
        &admin,
        "POST",
        "/v1/admin/keys",
        Some(json!({"name": "crm-sync", "role": "crm"})),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let crm = made["key"].as_str().unwrap().to_owned();
    assert!(crm.starts_with("nurt_") && crm.len() > 60, "{crm}");
    assert_eq!(status(&server.base, &crm, "GET", "/v1/leads", None).await.0, 200);
    let (_, list) = status(&server.base, &admin, "GET", "/v1/admin/keys", None).await;
    assert!(
        !list.to_string().contains(&crm),
        "a listed key never shows the key: {list}"
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test", "crm-sync"]);
    assert_eq!(status(&server.base, &crm, "GET", "/v1/admin/keys", None).await.0, 403);
    let (code, refused) = status(
        &server.base,
        &admin,
        "POST",
        "/v1/admin/keys",
        Some(json!({"name": "x", "role": "superuser"})),
    )
    .await;
    assert_eq!(code, 422, "{refused}");
    let (code, own) = status(&server.base, &admin, "POST", "/v1/admin/keys/1/revoke", None).await;
    assert_eq!((code, &own["error"]["code"]), (409, &json!("own_key")), "{own}");

    // Rotated over the API: the old key stops at once on this server, the new one works.
    let (code, rotated) = status(
        &server.base,
        &admin,
        "POST",
        &format!("/v1/admin/keys/{}/rotate", made["id"]),
        None,
    )
    .await;
    assert_eq!(code, 200, "{rotated}");
    assert_eq!(
        (&rotated["name"], &rotated["role"]),
        (&json!("crm-sync"), &json!("crm"))
    );
    let successor = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(status(&server.base, &crm, "GET", "/v1/leads", None).await.0, 401);
    assert_eq!(status(&server.base, &successor, "GET", "/v1/leads", None).await.0, 200);
    // The old key stays listed, revoked: revoking it again changes nothing, rotating it is refused.
    let old = format!("/v1/admin/keys/{}", made["id"]);
    let (code, again) = status(&server.base, &admin, "POST", &format!("{old}/revoke"), None).await;
    assert_eq!((code, again["revoked_at"].is_string()), (200, true), "{again}");
    assert_eq!(
        status(&server.base, &admin, "POST", &format!("{old}/rotate"), None)
            .await
            .0,
        409
    );
    assert_eq!(
        status(&server.base, &admin, "POST", "/v1/admin/keys/999/revoke", None)
            .await
            .0,
        404
    );

    // Revoked by another process, the command line: the running server refuses it within
    // its key cache's second (the deadline is generous; the bound is the cache's lifetime).
    let revoked = nurture(dir.path())
        .args(["apikey", "revoke", "--name", "crm-sync", "--database-url", &url])
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = status(&server.base, &successor, "GET", "/v1/leads", None).await;
        if code == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "a revoked key still works: {code}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = nurture(dir.path())
        .args(["apikey", "list", "--database-url", &url])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let crm_rows: Vec<&str> = listed.lines().filter(|l| l.contains("crm-sync")).collect();
    assert_eq!(crm_rows.len(), 2, "{listed}");
    assert!(
        crm_rows.iter().all(|l| !l.trim_end().ends_with('-')),
        "both revoked: {listed}"
    );

    // Rotated on the command line: the new key is alone on the last line.
    let rotated = nurture(dir.path())
        .args(["apikey", "rotate", "--name", "test", "--database-url", &url])
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let fresh = String::from_utf8(rotated.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(status(&server.base, &fresh, "GET", "/v1/admin/keys", None).await.0, 200);
    let again = nurture(dir.path())
        .args(["apikey", "revoke", "--name", "nobody", "--database-url", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no unrevoked API key named \"nobody\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keys_are_revoked_and_rotated_everywhere() {
    keys_are_revoked_and_rotated_everywhere(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keys_are_revoked_and_rotated_everywhere() {
    keys_are_revoked_and_rotated_everywhere(Backend::Postgres).await;
}
