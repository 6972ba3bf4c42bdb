//! Mail transports: an adapter, like `store`. The engine composes an [`OutgoingEmail`] (plain
//! data); a [`Mailer`] turns it into MIME (lettre) and delivers it: over SMTP with a connection
//! pool, or as `.eml` files in an outbox directory (the embedded default for `serve` and `demo`).
//!
//! Whether a failure is worth retrying is decided here, once, in [`SendError`].

use async_trait::async_trait;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey,
};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod rate;
#[cfg(feature = "smtp-sink")]
pub mod sink;

/// Expands to the items given when this crate is built with `smtp-sink` (test builds, and
/// `--features smtp-sink` for the SMTP benchmarks), else to nothing; `without_smtp_sink!` is
/// its complement. The binary's code that needs [`sink`] goes inside, so that it follows this
/// crate's feature, which test builds turn on through a dev-dependency.
#[cfg(feature = "smtp-sink")]
#[macro_export]
macro_rules! with_smtp_sink {
    ($($item:item)*) => { $($item)* };
}

#[cfg(not(feature = "smtp-sink"))]
#[macro_export]
macro_rules! with_smtp_sink {
    ($($item:item)*) => {};
}

/// The complement of [`with_smtp_sink!`].
#[cfg(feature = "smtp-sink")]
#[macro_export]
macro_rules! without_smtp_sink {
    ($($item:item)*) => {};
}

#[cfg(not(feature = "smtp-sink"))]
#[macro_export]
macro_rules! without_smtp_sink {
    ($($item:item)*) => { $($item)* };
}

/// A finished e-mail, ready to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Stable per message, so a resend after a crash is recognisably the same e-mail.
    pub message_id: String,
    /// RFC 8058: `<https://…/u/TOKEN>`, with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub unsubscribe_url: String,
}

/// Why a send failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later: a 4xx answer, a timeout, a refused connection.
    #[error("transient: {0}")]
    Transient(String),
    /// Never worth retrying: a 5xx answer, an address or message the relay will not take.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The relay refused the recipient for good (550 5.1.1 no such user, …): a hard bounce,
    /// which suppresses the address. Only answers about the recipient count: a refusal of the
    /// sender or by policy (5.7.x) says nothing about the reader's address.
    #[error("recipient refused: {0}")]
    Rejected(String),
}

/// Whether a permanent SMTP answer refuses the recipient: by its enhanced status code when it
/// has one (5.1.x addressing, 5.2.1 mailbox disabled), else by its reply code (550, 551, 553).
pub fn recipient_refused(code: Option<u16>, text: &str) -> bool {
    let enhanced = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':')
        .find_map(|word| {
            let mut parts = word.split('.');
            let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
            let all_digits = |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
            (parts.next().is_none() && class == "5" && all_digits(subject) && all_digits(detail))
                .then(|| (subject.to_owned(), detail.to_owned()))
        });
    match enhanced {
        Some((subject, detail)) => subject == "1" || (subject == "2" && detail == "1"),
        None => matches!(code, Some(550 | 551 | 553)),
    }
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError>;
    /// Where mail goes, for logs.
    fn describe(&self) -> String;
}

/// The MIME message: a text and an HTML part, UTF-8 (Chinese subjects are encoded as RFC 2047
/// words by lettre), and the one-click unsubscribe headers.
pub fn compose(email: &OutgoingEmail) -> Result<Message, SendError> {
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|e| SendError::Permanent(format!("the sender {:?} is not an address: {e}", email.from)))?;
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|e| SendError::Permanent(format!("the recipient {:?} is not an address: {e}", email.to)))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()));
    // Internal mail (a notification to a team lead) has no unsubscribe link and no HTML.
    if !email.unsubscribe_url.is_empty() {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{}>", email.unsubscribe_url),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(email.text.clone());
    if email.html.is_empty() {
        return builder
            .singlepart(text)
            .map_err(|e| SendError::Permanent(format!("the message could not be built: {e}")));
    }
    builder
        .multipart(
            MultiPart::alternative().singlepart(text).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(email.html.clone()),
            ),
        )
        .map_err(|e| SendError::Permanent(format!("the message could not be built: {e}")))
}

/// SMTP through a pooled lettre transport: `smtp://host:port` (plain; `?tls=required` for
/// STARTTLS) or `smtps://host:port`, credentials in the URL.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    url: String,
    dkim: Option<Arc<Dkim>>,
}

/// DKIM signing of outgoing mail (RFC 6376), relaxed/relaxed, over the headers receivers
/// check, the one-click unsubscribe pair included (RFC 8058 wants them signed).
pub struct Dkim(DkimConfig);

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dkim(…)")
    }
}

impl Dkim {
    /// `key` is the private key file's text: an RSA key in PKCS#1 PEM
    /// (`openssl genrsa -traditional 2048`), or an Ed25519 key as the base64 of its 32 bytes.
    pub fn new(selector: &str, domain: &str, key: &str) -> Result<Self, String> {
        let key = key.trim();
        let algorithm = if key.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            DkimSigningAlgorithm::Rsa
        } else if key.starts_with("-----BEGIN") {
            return Err(
                "the DKIM key must be an RSA key in PKCS#1 PEM (-----BEGIN RSA PRIVATE KEY-----); convert one with `openssl rsa -traditional -in key.pem -out dkim.pem`"
                    .into(),
            );
        } else {
            DkimSigningAlgorithm::Ed25519
        };
        let signing = DkimSigningKey::new(key, algorithm).map_err(|e| format!("the DKIM key does not load: {e}"))?;
        let headers = [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
        ]
        .into_iter()
        .map(HeaderName::new_from_ascii_str)
        .collect();
        let relaxed = DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        };
        Ok(Self(DkimConfig::new(
            selector.to_owned(),
            domain.to_owned(),
            signing,
            headers,
            relaxed,
        )))
    }

    fn sign(dkim: Option<&Arc<Dkim>>, mut message: Message) -> Message {
        if let Some(dkim) = dkim {
            message.sign(&dkim.0);
        }
        message
    }
}

impl SmtpMailer {
    pub fn from_url(url: &str, pool_size: u32) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("the SMTP URL {url:?} is not valid: {e}"))?
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(pool_size.max(1)))
            .timeout(Some(std::time::Duration::from_secs(30)))
            .build();
        // Credentials stay out of logs.
        let shown = match url.split_once('@') {
            Some((scheme_user, host)) => format!("{}://…@{host}", scheme_user.split("://").next().unwrap_or("smtp")),
            None => url.to_owned(),
        };
        Ok(Self {
            transport,
            url: shown,
            dkim: None,
        })
    }

    /// Signs every message with this DKIM key.
    pub fn with_dkim(mut self, dkim: Option<Arc<Dkim>>) -> Self {
        self.dkim = dkim;
        self
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let message = Dkim::sign(self.dkim.as_ref(), compose(email)?);
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
                let text = e.to_string();
                Err(if recipient_refused(code, &text) {
                    SendError::Rejected(text)
                } else {
                    SendError::Permanent(text)
                })
            }
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }

    fn describe(&self) -> String {
        format!("SMTP {}", self.url)
    }
}

/// `.eml` files in a directory: what `serve` and `demo` do when no SMTP relay is given.
pub struct FileMailer {
    transport: AsyncFileTransport<Tokio1Executor>,
    dir: PathBuf,
    dkim: Option<Arc<Dkim>>,
}

impl FileMailer {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            transport: AsyncFileTransport::new(dir),
            dir: dir.to_path_buf(),
            dkim: None,
        })
    }

    /// Signs every message with this DKIM key.
    pub fn with_dkim(mut self, dkim: Option<Arc<Dkim>>) -> Self {
        self.dkim = dkim;
        self
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let message = Dkim::sign(self.dkim.as_ref(), compose(email)?);
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| SendError::Transient(format!("writing to {}: {e}", self.dir.display())))
    }

    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }
}

/// Renders and composes every message, then drops it: for simulations and benchmarks, where
/// no mail may leave but a template that fails must still be found.
pub struct ComposeOnly;

#[async_trait]
impl Mailer for ComposeOnly {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        compose(email).map(|_| ())
    }

    fn describe(&self) -> String {
        "composed, then dropped (no mail leaves)".into()
    }
}

/// SMTP when a URL is given, else `.eml` files in `outbox`.
pub fn mailer(
    smtp_url: Option<&str>,
    outbox: &Path,
    pool_size: u32,
    dkim: Option<Arc<Dkim>>,
) -> Result<Arc<dyn Mailer>, String> {
    match smtp_url {
        Some(url) => Ok(Arc::new(SmtpMailer::from_url(url, pool_size)?.with_dkim(dkim))),
        None => Ok(Arc::new(
            FileMailer::new(outbox)
                .map_err(|e| format!("creating the outbox {}: {e}", outbox.display()))?
                .with_dkim(dkim),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_about_the_recipient_are_hard_bounces() {
        assert!(recipient_refused(
            Some(550),
            "permanent error (550): 5.1.1 no such user"
        ));
        assert!(recipient_refused(
            Some(550),
            "permanent error (550): 5.2.1 mailbox disabled"
        ));
        assert!(recipient_refused(
            Some(550),
            "permanent error (550): mailbox unavailable"
        ));
        assert!(recipient_refused(
            Some(553),
            "permanent error (553): mailbox name not allowed"
        ));
        assert!(!recipient_refused(
            Some(550),
            "permanent error (550): 5.7.1 relaying denied"
        ));
        assert!(!recipient_refused(
            Some(554),
            "permanent error (554): no valid recipients"
        ));
        assert!(!recipient_refused(
            Some(535),
            "permanent error (535): 5.7.8 authentication failed"
        ));
        assert!(!recipient_refused(
            Some(552),
            "permanent error (552): 5.3.4 message too big"
        ));
    }

    #[test]
    fn composed_mail_has_both_parts_the_unsubscribe_headers_and_encoded_chinese() {
        let email = OutgoingEmail {
            from: "灵犀工业云 <news@lumen-cloud.example>".into(),
            to: "li.wei@acme.example".into(),
            subject: "伟，欢迎加入灵犀工业云会员".into(),
            html: "<p>欢迎</p>".into(),
            text: "欢迎".into(),
            message_id: "<m42.abc@lumen-cloud.example>".into(),
            unsubscribe_url: "https://t.example/u/tok".into(),
        };
        let raw = String::from_utf8(compose(&email).unwrap().formatted()).unwrap();
        assert!(raw.contains("Subject: =?utf-8?"), "{raw}");
        assert!(raw.contains("Message-ID: <m42.abc@lumen-cloud.example>"), "{raw}");
        assert!(raw.contains("List-Unsubscribe: <https://t.example/u/tok>"), "{raw}");
        assert!(
            raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("Content-Type: text/plain; charset=utf-8"), "{raw}");
        assert!(raw.contains("Content-Type: text/html; charset=utf-8"), "{raw}");
        let bad = OutgoingEmail {
            to: "not an address".into(),
            ..email
        };
        assert!(matches!(compose(&bad), Err(SendError::Permanent(_))));
    }
}
