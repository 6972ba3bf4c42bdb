//! An adapter, like `mail` and `wechat`: webhook deliveries to a CRM over HTTP (reqwest).
//! Each POST carries `X-Nurture-Event`, `X-Nurture-Delivery` (the same id on every attempt) and
//! `X-Nurture-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>`. Redirects are
//! never followed (a 3xx is a failed attempt), and every attempt is bounded in time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use nurture_core::webhook::payload;
pub mod reach;
pub use reach::Reach;

/// How long one attempt may take, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header's value for a body sent at unix time `t`.
pub fn sign(secret: &str, t: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl Attempted {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One delivery attempt, as the client sends it.
pub struct Post<'a> {
    pub url: &'a str,
    pub event: &'a str,
    pub delivery: &'a str,
    pub signature: String,
    pub body: &'a str,
}

/// The port: something that POSTs a delivery.
#[async_trait::async_trait]
pub trait WebhookSender: Send + Sync {
    async fn post(&self, post: Post<'_>) -> Attempted;
}

/// The real client.
pub struct WebhookClient {
    client: reqwest::Client,
    timeout: Duration,
    reach: Reach,
}

impl WebhookClient {
    /// A client that connects only to addresses `reach` allows, whatever a name resolves to.
    pub fn new(timeout: Duration, reach: Reach) -> Result<Self, String> {
        crate::tls::install_provider();
        let client = reqwest::Client::builder()
            .dns_resolver(reach::Resolver(reach.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("nurture-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the webhook HTTP client: {e}"))?;
        Ok(Self { client, timeout, reach })
    }
}

#[async_trait::async_trait]
impl WebhookSender for WebhookClient {
    async fn post(&self, post: Post<'_>) -> Attempted {
        let started = Instant::now();
        // A literal address is connected to without resolving: check it here.
        let literal = origin(post.url).and_then(|(host, _)| host.parse::<IpAddr>().ok());
        if let Some(refused) = literal.and_then(|ip| self.reach.refuses(ip)) {
            return Attempted {
                status: None,
                error: Some(format!("not sent: {refused}")),
                duration_ms: 0,
            };
        }
        let sent = self
            .client
            .post(post.url)
            .header("content-type", "application/json")
            .header("x-nurture-event", post.event)
            .header("x-nurture-delivery", post.delivery)
            .header("x-nurture-signature", post.signature)
            .body(post.body.to_owned())
            .send()
            .await;
        let duration_ms = started.elapsed().as_millis() as i64;
        match sent {
            Ok(answer) => {
                let status = answer.status();
                let error = if status.is_success() {
                    None
                } else if status.is_redirection() {
                    let to = answer
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .unwrap_or("?");
                    Some(format!("answered {status} to {to}; redirects are not followed"))
                } else {
                    Some(format!("answered {status}"))
                };
                Attempted {
                    status: Some(status.as_u16()),
                    error,
                    duration_ms,
                }
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    format!("no answer within {} ms", self.timeout.as_millis())
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "request failed".to_owned()
                };
                Attempted {
                    status: None,
                    error: Some(format!("{why}: {}", error_chain(&e))),
                    duration_ms,
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The (host, port) of a URL, host in lower case without IPv6 brackets.
pub fn origin(url: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(url.trim()).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((host, url.port_or_known_default()?))
}

/// Checks a subscription's URL: http or https, with a host, not this server itself (`own`
/// holds the server's own origins as `host:port`), and not an address `reach` refuses (names
/// are resolved at each delivery). Returns the URL normalised.
pub fn check_url(raw: &str, own: &[(String, u16)], reach: &Reach) -> Result<String, String> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| format!("is not a URL ({e}); give e.g. https://crm.example/hooks/nurture"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https, not {}:", url.scheme()));
    }
    let Some(host) = url.host_str() else {
        return Err("has no host".into());
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let local = |h: &str| {
        h == "localhost"
            || h.parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    };
    for (own_host, own_port) in own {
        let own_host = own_host.to_ascii_lowercase();
        let same_host = host == own_host || (local(&host) && local(&own_host));
        if same_host && port == *own_port {
            return Err(format!(
                "points at this nurture server itself ({host}:{port}); give the CRM's receiving URL"
            ));
        }
    }
    if let Some(refused) = reach.refuses_host(&host) {
        return Err(refused.to_string());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed with Python's hmac module, independently of this code.
        assert_eq!(
            sign("s3cret", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn urls_must_be_http_and_not_this_server() {
        let own = vec![("127.0.0.1".to_owned(), 8080), ("nurture.example".to_owned(), 443)];
        let loopback = Reach::allowing(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        let check_url = |url: &str, own: &[(String, u16)]| check_url(url, own, &loopback);
        assert!(check_url("ftp://crm.example/x", &own)
            .unwrap_err()
            .contains("http or https"));
        assert!(check_url("not a url", &own).unwrap_err().contains("not a URL"));
        assert!(check_url("http://localhost:8080/hook", &own)
            .unwrap_err()
            .contains("itself"));
        assert!(check_url("https://nurture.example/v1/x", &own)
            .unwrap_err()
            .contains("itself"));
        assert!(check_url("http://[::1]:8080/", &own).unwrap_err().contains("itself"));
        assert_eq!(
            check_url("http://127.0.0.1:9000/hook", &own).unwrap(),
            "http://127.0.0.1:9000/hook"
        );
        assert!(check_url("https://crm.example/hooks", &own).is_ok());
    }

    #[test]
    fn urls_into_internal_networks_are_refused_unless_allowed() {
        let public = Reach::public();
        let err = super::check_url("http://169.254.169.254/latest/meta-data/", &[], &public).unwrap_err();
        assert!(err.starts_with("169.254.169.254 is a link-local address"), "{err}");
        assert!(err.contains("--webhook-allow-network 169.254.0.0/16"), "{err}");
        assert!(super::check_url("http://localhost:9000/", &[], &public).is_err());
        assert!(super::check_url("http://[fd00::1]/", &[], &public).is_err());
        let office = Reach::allowing(vec!["192.168.10.0/24".parse().unwrap()]);
        assert!(super::check_url("http://192.168.10.5/hooks", &[], &office).is_ok());
        assert!(super::check_url("http://192.168.11.5/hooks", &[], &office).is_err());
    }
}
