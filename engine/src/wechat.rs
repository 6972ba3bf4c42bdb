//! WeChat template messages, the method's fallback channel, through the Official Account API:
//! an access token from `GET /cgi-bin/token` (cached until shortly before it expires, shared by
//! every send), then `POST /cgi-bin/message/template/send` with `touser` (the lead's
//! `wechat_openid`), `template_id`, `url` and `data`. The base URL is configurable so that tests
//! and private gateways can stand in for `https://api.weixin.qq.com`.
//!
//! WeChat answers HTTP 200 with an `errcode`; the codes sort into what a retry can fix (system
//! busy, quota, an expired token: refreshed once at once) and what it cannot (an openid that no
//! longer follows the account, an unknown template): the same transient/permanent split as SMTP.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use crate::mail::SendError;

/// The public API.
pub const DEFAULT_API_URL: &str = "https://api.weixin.qq.com";

/// A token is refreshed this long before WeChat says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Every request gives up after this long (a transient failure).
const TIMEOUT: Duration = Duration::from_secs(10);

/// An Official Account's credentials and where its API is.
#[derive(Debug, Clone)]
pub struct WechatConfig {
    pub api_url: String,
    pub appid: String,
    pub secret: String,
}

/// One template message to one follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateMessage {
    pub touser: String,
    pub template_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Each value as WeChat wants it: `{"first": {"value": "…"}}`.
    #[serde(serialize_with = "values")]
    pub data: IndexMap<String, String>,
}

fn values<S: serde::Serializer>(data: &IndexMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(data.len()))?;
    for (key, value) in data {
        map.serialize_entry(key, &serde_json::json!({ "value": value }))?;
    }
    map.end()
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    expires_in: Option<u64>,
    msgid: Option<i64>,
}

struct Token {
    value: String,
    good_until: Instant,
}

/// Where WeChat template messages go: the Official Account API, or nowhere (simulations).
#[async_trait::async_trait]
pub trait WechatSender: Send + Sync {
    /// Sends one message; returns WeChat's `msgid`.
    async fn send(&self, message: &TemplateMessage) -> Result<i64, SendError>;
    /// Where messages go, for logs.
    fn describe(&self) -> String;
}

/// Accepts every message and sends none: `nurture simulate` and `demo`, where nothing leaves.
pub struct DropWechat;

#[async_trait::async_trait]
impl WechatSender for DropWechat {
    async fn send(&self, _message: &TemplateMessage) -> Result<i64, SendError> {
        Ok(0)
    }

    fn describe(&self) -> String {
        "dropped (no WeChat message leaves)".into()
    }
}

/// The Official Account API client. One per server; cheap to share.
pub struct Wechat {
    config: WechatConfig,
    http: reqwest::Client,
    token: Mutex<Option<Token>>,
}

impl Wechat {
    pub fn new(config: WechatConfig) -> Result<Self, String> {
        crate::tls::install_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("the WeChat HTTP client: {e}"))?;
        Ok(Self {
            config,
            http,
            token: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_url.trim_end_matches('/'))
    }

    /// The cached access token, fetched when there is none or it is about to expire (or when
    /// WeChat said the cached one is no longer valid). Concurrent sends wait for one fetch.
    async fn token(&self, stale: Option<&str>) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            let refused = stale == Some(token.value.as_str());
            if !refused && Instant::now() < token.good_until {
                return Ok(token.value.clone());
            }
        }
        let answer = self
            .call(self.http.get(self.url("/cgi-bin/token")).query(&[
                ("grant_type", "client_credential"),
                ("appid", self.config.appid.as_str()),
                ("secret", self.config.secret.as_str()),
            ]))
            .await?;
        let Some(value) = answer.access_token.filter(|_| answer.errcode == 0) else {
            // Wrong credentials or an address not on the account's IP list: the operator must
            // act, and the message waits for it (retried, never lost to a typo).
            return Err(SendError::Transient(format!(
                "WeChat refused an access token (errcode {}: {}); check the appid, the secret and the account's IP allow-list",
                answer.errcode, answer.errmsg
            )));
        };
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(7_200));
        *cached = Some(Token {
            value: value.clone(),
            good_until: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        });
        Ok(value)
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
        let response = request
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("WeChat API unreachable: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SendError::Transient(format!("WeChat API answered HTTP {status}")));
        }
        response
            .json::<Answer>()
            .await
            .map_err(|e| SendError::Transient(format!("WeChat API answered something that is not its JSON: {e}")))
    }
}

#[async_trait::async_trait]
impl WechatSender for Wechat {
    fn describe(&self) -> String {
        format!(
            "WeChat Official Account {} at {}",
            self.config.appid, self.config.api_url
        )
    }

    async fn send(&self, message: &TemplateMessage) -> Result<i64, SendError> {
        let mut token = self.token(None).await?;
        for attempt in 0..2 {
            let answer = self
                .call(
                    self.http
                        .post(self.url("/cgi-bin/message/template/send"))
                        .query(&[("access_token", token.as_str())])
                        .json(message),
                )
                .await?;
            match answer.errcode {
                0 => return Ok(answer.msgid.unwrap_or_default()),
                // The token expired or was replaced (another server fetched a new one): fetch
                // again and retry once, now.
                40001 | 40014 | 42001 if attempt == 0 => token = self.token(Some(&token)).await?,
                code => return Err(classify(code, &answer.errmsg)),
            }
        }
        Err(SendError::Transient("WeChat kept refusing fresh access tokens".into()))
    }
}

/// Whether a WeChat error code can be fixed by trying again later.
fn classify(code: i64, message: &str) -> SendError {
    let text = format!("WeChat errcode {code}: {message}");
    match code {
        // System busy; API call quota reached; token problems that outlived a refresh.
        -1 | 45009 | 45011 | 40001 | 40014 | 42001 => SendError::Transient(text),
        // The follower unsubscribed or refused template messages, an invalid openid or
        // template, bad arguments: the same message would fail again.
        _ => SendError::Permanent(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_what_wechat_expects() {
        let mut data = IndexMap::new();
        data.insert("first".to_owned(), "您好".to_owned());
        data.insert("remark".to_owned(), "点击查看".to_owned());
        let message = TemplateMessage {
            touser: "o123".into(),
            template_id: "TM1".into(),
            url: None,
            data,
        };
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::json!({"touser": "o123", "template_id": "TM1", "data": {"first": {"value": "您好"}, "remark": {"value": "点击查看"}}})
        );
    }

    #[test]
    fn errors_sort_into_retry_or_give_up() {
        assert!(matches!(classify(-1, "system busy"), SendError::Transient(_)));
        assert!(matches!(
            classify(45009, "api freq out of limit"),
            SendError::Transient(_)
        ));
        assert!(matches!(classify(43004, "require subscribe"), SendError::Permanent(_)));
        assert!(matches!(
            classify(40037, "invalid template_id"),
            SendError::Permanent(_)
        ));
    }
}
