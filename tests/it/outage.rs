//! A PostgreSQL outage as clients see it. The server reaches the database through a TCP proxy
//! that the test cuts: first refusing connections (the server is down), then accepting them and
//! never answering (the network is gone). `/readyz` must say "database unreachable" and every
//! request must fail with 503 and `Retry-After`, each in about two seconds rather than hanging,
//! and when the proxy is restored the same server carries on without a restart.
//!
//! PostgreSQL only: SQLite is a file inside the process, with no connection to lose.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{engine_over, postgres_store, spawn_app_over, TestApp};

/// What the proxy does with connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards to PostgreSQL.
    Up,
    /// Accepts and never answers: a network that swallows packets.
    Silent,
}

/// A TCP proxy to PostgreSQL on a port of its own. `down()` closes the port (connections are
/// refused, as by a stopped server) and cuts every connection through it.
struct Proxy {
    addr: SocketAddr,
    /// The test database's URL (`support::pg_url`), and the server it names.
    database: reqwest::Url,
    upstream: String,
    mode: Arc<Mutex<Mode>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepting: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let database = reqwest::Url::parse(&crate::support::pg_url()).unwrap();
        let upstream = format!(
            "{}:{}",
            database.host_str().unwrap_or("127.0.0.1"),
            database.port().unwrap_or(5432)
        );
        let mut proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            database,
            upstream,
            mode: Arc::new(Mutex::new(Mode::Up)),
            links: Arc::default(),
            accepting: None,
        };
        proxy.accept(listener);
        proxy
    }

    fn accept(&mut self, listener: TcpListener) {
        let (mode, links, upstream) = (self.mode.clone(), self.links.clone(), self.upstream.clone());
        self.accepting = Some(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if *mode.lock().unwrap() == Mode::Silent {
                    held.push(client);
                    continue;
                }
                let upstream = upstream.clone();
                links.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        }));
    }

    /// The test database's URL, through the proxy.
    fn url(&self) -> String {
        let mut url = self.database.clone();
        url.set_host(Some(&self.addr.ip().to_string())).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }

    fn cut_links(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// The database is down: the port refuses connections, open ones are cut.
    async fn down(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
            let _ = accepting.await; // the listener is closed once the task is gone
        }
        self.cut_links();
    }

    /// The network is gone: connections are accepted and never answered, open ones are cut.
    async fn silent(&mut self) {
        *self.mode.lock().unwrap() = Mode::Silent;
        self.cut_links();
        if self.accepting.is_none() {
            self.accept(TcpListener::bind(self.addr).await.unwrap());
        }
    }

    /// Back to normal, on the same port.
    async fn up(&mut self) {
        *self.mode.lock().unwrap() = Mode::Up;
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
            let _ = accepting.await;
        }
        self.accept(TcpListener::bind(self.addr).await.unwrap());
    }
}

/// A request with a client that gives up after 6 s: a server that hangs (the defect took 10 s)
/// fails the test instead of slowing it down.
async fn call(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(6))
        .build()
        .unwrap();
    let mut request = client
        .request(method.parse().unwrap(), format!("{}{path}", app.base))
        .bearer_auth(&app.keys[&nurture_engine::access::Role::Admin]);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} answers in time: {e}"));
    let status = answer.status().as_u16();
    let retry = answer
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, answer.json().await.unwrap_or(Value::Null))
}

/// Everything a client might do answers 503 with `Retry-After` and the `unavailable` code.
async fn all_unavailable(app: &TestApp, lead: &str, how: &str) {
    let (status, retry, body) = call(app, "GET", "/readyz", None).await;
    assert_eq!(
        (status, body),
        (503, json!({"status": "database unreachable"})),
        "{how}"
    );
    assert_eq!(retry.as_deref(), Some("5"), "{how}");
    for (method, path, body) in [
        (
            "PUT",
            "/v1/leads".to_owned(),
            Some(json!({"email": "during@outage.example"})),
        ),
        ("GET", format!("/v1/leads/{lead}"), None),
        ("GET", "/v1/leads?limit=5".to_owned(), None),
        (
            "POST",
            "/v1/events".to_owned(),
            Some(json!([{"lead": {"id": lead}, "type": "page_viewed"}])),
        ),
    ] {
        let (status, retry, answer) = call(app, method, &path, body).await;
        assert_eq!(status, 503, "{how}: {method} {path}: {answer}");
        assert_eq!(retry.as_deref(), Some("5"), "{how}: {method} {path}");
        assert_eq!(
            answer["error"]["code"], "unavailable",
            "{how}: {method} {path}: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_fast_and_recovers_without_a_restart() {
    let mut proxy = Proxy::start().await;
    let Some(store) = postgres_store(Some(&proxy.url())).await else {
        return;
    };
    store.store.migrate().await.unwrap();
    let app = spawn_app_over(engine_over(store)).await;

    let (status, _, ready) = call(&app, "GET", "/readyz", None).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
    let (status, _, lead) = call(
        &app,
        "PUT",
        "/v1/leads",
        Some(json!({"email": "before@outage.example"})),
    )
    .await;
    assert_eq!(status, 201, "{lead}");
    let id = lead["id"].as_str().unwrap().to_owned();

    proxy.down().await;
    all_unavailable(&app, &id, "server down").await;
    proxy.silent().await;
    all_unavailable(&app, &id, "network silent").await;

    proxy.up().await;
    let (status, _, ready) = call(&app, "GET", "/readyz", None).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "recovered");
    let (status, _, read) = call(&app, "GET", &format!("/v1/leads/{id}"), None).await;
    assert_eq!((status, read["email"].as_str()), (200, Some("before@outage.example")));
    let (status, _, after) = call(&app, "PUT", "/v1/leads", Some(json!({"email": "after@outage.example"}))).await;
    assert_eq!(status, 201, "{after}");
    let (_, _, list) = call(&app, "GET", "/v1/leads?limit=10", None).await;
    let emails: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["email"].as_str().unwrap())
        .collect();
    assert!(
        !emails.contains(&"during@outage.example"),
        "nothing from the outage was half-stored: {emails:?}"
    );
}
