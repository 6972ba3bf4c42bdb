//! Test fixtures: a fresh store per test (a SQLite file in a temporary directory, or a
//! PostgreSQL schema of its own), a manual clock, and a real server on port 0.

use chrono::{DateTime, Utc};
use nurture_engine::access::{key_hash, Role};
use nurture_engine::clock::ManualClock;
use nurture_engine::engine::Engine;
use nurture_engine::playbook::bundle::Deployable;
use nurture_engine::store::{postgres::PgStore, sqlite::SqliteStore, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL the suite uses: `NURTURE_TEST_DATABASE_URL`, else the local test database.
pub fn pg_url() -> String {
    std::env::var("NURTURE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".into())
}

/// The audit entry of a key the tests' set-up stores, as `nurture apikey create` would.
pub fn key_audit(name: &str) -> nurture_engine::audit::Change {
    nurture_engine::audit::By::cli().did(
        nurture_engine::audit::AuditKind::KeyCreated,
        "",
        serde_json::json!({ "name": name }),
    )
}

pub fn start() -> DateTime<Utc> {
    "2026-11-02T09:00:00Z".parse().unwrap()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped example playbook.
pub fn playbook() -> Deployable {
    Deployable::load(&repo().join("campaigns"), &repo().join("templates")).unwrap_or_else(|e| panic!("{e}"))
}

/// An HTTP client builder for tests, with the process's TLS provider installed (reqwest is
/// built without one of its own; the engine installs `ring`).
pub fn http() -> reqwest::ClientBuilder {
    nurture_engine::tls::install_provider();
    reqwest::Client::builder()
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter("info,sqlx=warn")
                .with_test_writer()
                .init();
        }
    });
}

/// A fresh, migrated store; dropped with its file or schema.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    /// Where the store is, for reading it behind the engine's back.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestStore {
    /// The one number a query gives, read through a connection of the test's own.
    pub async fn count(&self, sql: &str) -> i64 {
        let url = self.postgres_url().unwrap_or_else(|| self.url.clone());
        Db::connect(&url).await.count(sql).await
    }

    /// A URL that reaches this store's PostgreSQL schema, for processes started by a test.
    pub fn postgres_url(&self) -> Option<String> {
        let schema = self.schema.as_ref()?;
        let base = pg_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(format!("{base}{separator}options=-c%20search_path%3D{schema}"))
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Dropping a schema needs a connection; do it on a thread of its own so that Drop
            // does not block the test's runtime.
            let url = pg_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A database a test reads behind the engine's (or the server's) back.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    pub async fn connect(url: &str) -> Db {
        if url.starts_with("postgres") {
            Db::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        } else {
            Db::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// The one text column a query gives, row by row.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
        }
    }

    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
            Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
        }
    }

    /// Applies the migrations in `dir` up to and including `last`.
    pub async fn migrate_to(&self, dir: &std::path::Path, last: i64) {
        let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
        let kept: Vec<_> = migrator
            .migrations
            .iter()
            .filter(|m| m.version <= last)
            .cloned()
            .collect();
        migrator.migrations = std::borrow::Cow::Owned(kept);
        match self {
            Db::Sqlite(pool) => migrator.run(pool).await.unwrap(),
            Db::Postgres(pool) => migrator.run(pool).await.unwrap(),
        }
    }
}

static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

/// A fresh store on `backend`. PostgreSQL unreachable: in CI (`CI` set) the test fails; on a
/// developer machine without PostgreSQL it says so and the test returns `None`.
pub async fn store(backend: Backend) -> Option<TestStore> {
    let t = unmigrated_store(backend).await?;
    t.store.migrate().await.unwrap();
    Some(t)
}

/// A fresh store on `backend` before any migration, for tests of the migrations themselves.
pub async fn unmigrated_store(backend: Backend) -> Option<TestStore> {
    init_logs();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("nurture.db");
            let url = format!("sqlite://{}", path.display());
            let store = SqliteStore::connect(&url).await.unwrap();
            Some(TestStore {
                store: Arc::new(store),
                url,
                _dir: Some(dir),
                schema: None,
            })
        }
        Backend::Postgres => postgres_store(None).await,
    }
}

/// A fresh store on `backend` with its migrations applied up to `sqlite` or `postgres` (the
/// numbering differs), and a connection of the test's own to fill it before the rest run.
pub async fn store_migrated_to(backend: Backend, sqlite: i64, postgres: i64) -> Option<(TestStore, Db)> {
    let t = unmigrated_store(backend).await?;
    let db = Db::connect(&t.postgres_url().unwrap_or_else(|| t.url.clone())).await;
    let (dir, last) = match backend {
        Backend::Sqlite => ("migrations/sqlite", sqlite),
        Backend::Postgres => ("migrations/postgres", postgres),
    };
    db.migrate_to(&repo().join(dir), last).await;
    Some((t, db))
}

/// An engine over a fresh SQLite store, and the store as its own type for what only SQLite
/// has (journey passes decided in snapshots).
pub async fn sqlite_engine() -> (TestEngine, Arc<SqliteStore>) {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nurture.db").display());
    let sqlite = Arc::new(SqliteStore::connect(&url).await.unwrap());
    nurture_engine::store::AdminStore::migrate(&*sqlite).await.unwrap();
    let store = TestStore {
        store: sqlite.clone(),
        url,
        _dir: Some(dir),
        schema: None,
    };
    (engine_over(store), sqlite)
}

/// A fresh PostgreSQL schema of the test database, unmigrated, that the store reaches through
/// `through` (a proxy's URL) or directly.
pub async fn postgres_store(through: Option<&str>) -> Option<TestStore> {
    init_logs();
    use sqlx::Connection;
    let url = pg_url();
    let mut conn = match sqlx::PgConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(e) if std::env::var_os("CI").is_none() => {
            // Written to the terminal past the harness's output capture, so that a skipped
            // PostgreSQL case is seen, never mistaken for a pass.
            use std::io::Write;
            let line = format!("SKIPPED: PostgreSQL at {url} is unreachable ({e}); this case did not run. CI runs it.");
            match std::fs::OpenOptions::new().append(true).open("/dev/stderr") {
                Ok(mut terminal) => {
                    let _ = writeln!(terminal, "{line}");
                }
                Err(_) => eprintln!("{line}"),
            }
            return None;
        }
        Err(e) => panic!("PostgreSQL at {url} is unreachable in CI: {e}"),
    };
    let schema = format!("t{}_{}", std::process::id(), SCHEMAS.fetch_add(1, Ordering::SeqCst));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let store = PgStore::connect_in_schema(through.unwrap_or(&url), &schema)
        .await
        .unwrap();
    Some(TestStore {
        store: Arc::new(store),
        url: url.clone(),
        _dir: None,
        schema: Some(schema),
    })
}

/// An engine over a fresh store with the shipped playbook and a manual clock.
pub struct TestEngine {
    pub engine: Arc<Engine>,
    pub clock: ManualClock,
    pub store: TestStore,
}

pub async fn engine(backend: Backend) -> Option<TestEngine> {
    Some(engine_over(store(backend).await?))
}

/// An engine over `store` (migrated) with the shipped playbook and a manual clock.
pub fn engine_over(store: TestStore) -> TestEngine {
    let clock = ManualClock::new(start());
    let engine = Arc::new(Engine::new(store.store.clone(), playbook(), Arc::new(clock.clone())));
    TestEngine { engine, clock, store }
}

/// A real server on port 0 over SQLite, with one key per role.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub keys: HashMap<Role, String>,
    /// The server's clock: tests move it by hand.
    pub clock: ManualClock,
    /// The engine behind the server, for driving the dispatcher.
    pub engine: Arc<Engine>,
    /// The key that signs the server's tracking links.
    pub key: nurture_engine::tracking::TrackingKey,
    /// The store behind the engine, for tests that look at it directly.
    pub store: TestStore,
    /// The SMTP server the server's own mailer sends to (test e-mails).
    pub mail: crate::smtp::SmtpSink,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(Backend::Sqlite).await.expect("SQLite is always there")
}

/// What the test servers' webhooks may reach besides the Internet: their receivers on this
/// machine, as an operator with an on-premises CRM allows with `--webhook-allow-network`.
pub fn loopback() -> nurture_engine::webhook::Reach {
    nurture_engine::webhook::Reach::allowing(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
}

/// [`spawn_app`] on either backend (`None`: PostgreSQL unreachable outside CI).
pub async fn spawn_app_on(backend: Backend) -> Option<TestApp> {
    Some(spawn_app_over(engine(backend).await?).await)
}

/// [`spawn_app`] over a given engine.
pub async fn spawn_app_over(TestEngine { engine, store, clock }: TestEngine) -> TestApp {
    let mut keys = HashMap::new();
    for role in [Role::Admin, Role::Marketer, Role::Sdr, Role::Crm] {
        let key = format!("test-key-{}", role.as_str());
        store
            .store
            .create_api_key(
                &format!("{}-bot", role.as_str()),
                role,
                &key_hash(&key),
                start(),
                &key_audit(role.as_str()),
            )
            .await
            .unwrap();
        keys.insert(role, key);
    }
    engine
        .deploy_current(nurture_engine::engine::Deployer::cli())
        .await
        .expect("the shipped playbook deploys");
    let key = nurture_engine::tracking::TrackingKey::new(b"test tracking secret");
    let app = nurture_api::Application::bind("127.0.0.1:0", engine.clone())
        .await
        .unwrap()
        .with_manual_clock(clock.clone())
        .with_webhook_reach(loopback())
        .with_tracking(key.clone());
    let base = format!("http://127.0.0.1:{}", app.port());
    // The server's own mailer (previews, test e-mails) sends to an SMTP server of its own.
    let mail = crate::smtp::SmtpSink::start(0).await;
    let smtp = nurture_engine::mail::mailer(Some(&mail.url()), std::path::Path::new("unused"), 2, None).unwrap();
    let app = app.with_mailer(nurture_engine::engine::Sender {
        mailer: smtp,
        from: "灵犀工业云 <news@lumen-cloud.example>".into(),
        public_url: base.clone(),
        key: key.clone(),
        concurrency: 2,
        wechat: None,
        limits: Default::default(),
    });
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        base,
        client: http().build().unwrap(),
        keys,
        clock,
        engine,
        key,
        store,
        mail,
    }
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl TestApp {
    /// The URL of the server's database (on PostgreSQL, its schema), for processes a test
    /// starts beside it.
    pub fn database_url(&self) -> String {
        self.store.postgres_url().unwrap_or_else(|| self.store.url.clone())
    }

    /// A `registered` event for a new lead with this e-mail, as a CRM posts it (the welcome
    /// series starts); the lead's id.
    pub async fn register(&self, email: &str) -> String {
        let posted = self
            .call(
                "POST",
                "/v1/events",
                Role::Crm,
                Some(serde_json::json!({"lead": {"email": email}, "type": "registered"})),
            )
            .await;
        assert_eq!(posted.body["accepted"], 1, "{}", posted.body);
        self.call("GET", &format!("/v1/leads?email={email}"), Role::Sdr, None)
            .await
            .body["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A new lead, created by a marketer (201); its id.
    pub async fn lead(&self, body: serde_json::Value) -> String {
        let answer = self.call("PUT", "/v1/leads", Role::Marketer, Some(body)).await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    /// Behaviour events about a lead, as a CRM posts them, each accepted.
    pub async fn send_events(&self, lead: &str, events: &[(&str, serde_json::Value)]) {
        for (kind, properties) in events {
            let body = serde_json::json!({"lead": {"id": lead}, "type": kind, "properties": properties});
            let answer = self.call("POST", "/v1/events", Role::Crm, Some(body)).await;
            assert_eq!(answer.body["accepted"], 1, "{:?}", answer.body);
        }
    }

    /// A lead handed to `queue` by a marketer; the handoff as answered (201).
    pub async fn hand_off(&self, lead: &str, queue: &str, reason: &str) -> serde_json::Value {
        let body = serde_json::json!({"lead": {"id": lead}, "queue": queue, "reason": reason});
        let answer = self.call("POST", "/v1/handoffs", Role::Marketer, Some(body)).await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        answer.body
    }

    /// Sends a request as `role` (None: no key) with a raw body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        role: Option<Role>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(role) = role {
            request = request.bearer_auth(&self.keys[&role]);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer { status, body }
    }

    /// Sends a raw body of a given content type; answers the status, content type and text.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        role: Role,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, String, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.keys[&role]);
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, content_type, response.text().await.unwrap())
    }

    /// A lead's timeline entries of one kind (`campaign_step`, `message`, …), oldest first.
    pub async fn timeline(&self, lead: &str, kind: &str) -> Vec<Value> {
        let page = self
            .call("GET", &format!("/v1/leads/{lead}/timeline?limit=500"), Role::Sdr, None)
            .await
            .body;
        let mut items: Vec<Value> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect();
        items.reverse();
        items
    }

    /// The properties of a lead's behaviour events of one type, oldest first.
    pub async fn events(&self, lead: &str, kind: &str) -> Vec<Value> {
        self.timeline(lead, "event")
            .await
            .into_iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["properties"].clone())
            .collect()
    }

    /// (step, status, reason) of a lead's messages, from its timeline.
    pub async fn messages(&self, lead: &str) -> Vec<(String, String, Value)> {
        self.timeline(lead, "message")
            .await
            .iter()
            .map(|e| {
                (
                    e["step"].as_str().unwrap().to_owned(),
                    e["status"].as_str().unwrap().to_owned(),
                    e["reason"].clone(),
                )
            })
            .collect()
    }

    /// A lead's journey, oldest first, as `step:outcome`.
    pub async fn journey(&self, lead: &str) -> Vec<String> {
        self.timeline(lead, "campaign_step")
            .await
            .iter()
            .map(|e| format!("{}:{}", e["step"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
            .collect()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.base)).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Creates an API key for `role` named `name` (an SDR is known by their key's name).
    pub async fn key_named(&self, role: Role, name: &str) -> String {
        let key = format!("key-{name}");
        self.store
            .store
            .create_api_key(name, role, &key_hash(&key), start(), &key_audit(name))
            .await
            .unwrap();
        key
    }

    /// Sends a JSON request with a given key.
    /// Deploys one playbook file over the one in force, as a marketer.
    pub async fn deploy_file(&self, file: &str, yaml: &str) {
        let answer = self
            .client
            .put(format!("{}/v1/playbook?file={file}", self.base))
            .bearer_auth(&self.keys[&Role::Marketer])
            .header("content-type", "application/yaml")
            .body(yaml.to_owned())
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body = answer.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
    }

    pub async fn call_as(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn call(&self, method: &str, path: &str, role: Role, body: Option<Value>) -> Answer {
        self.send(
            method,
            path,
            Some(role),
            body.map(|b| serde_json::to_vec(&b).unwrap()),
            &[],
        )
        .await
    }
}

/// A database for the `nurture` binary under test: a PostgreSQL schema of its own (dropped
/// with the returned store), or an SQLite file `file` in `dir`; `None` when PostgreSQL is
/// unreachable outside CI.
pub async fn binary_database(
    backend: Backend,
    dir: &std::path::Path,
    file: &str,
) -> Option<(Option<TestStore>, String)> {
    match backend {
        Backend::Postgres => {
            let store = store(backend).await?;
            let url = store.postgres_url().expect("a PostgreSQL store has a schema");
            Some((Some(store), url))
        }
        Backend::Sqlite => Some((None, format!("sqlite://{}", dir.join(file).display()))),
    }
}

/// A JSON request to a running server with `key`: its status and JSON body (`null` if none).
pub async fn request(base: &str, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = http().build().unwrap();
    let mut request = client
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// [`request`] that must succeed: its JSON body.
pub async fn call_ok(base: &str, key: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, body) = request(base, key, method, path, body).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {body}");
    body
}
