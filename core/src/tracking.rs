//! Signed tracking tokens for the links and pixels in messages: the open pixel (`/t/o/…`), a
//! click redirect (`/t/c/…`, which carries the original URL, so the server never redirects
//! anywhere a message did not link to) and unsubscribe (`/u/…`). A token is its payload and an
//! HMAC-SHA256 of it under the server's secret: an altered or forged token does not verify.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Open { message: i64 },
    Click { message: i64, url: String, link: String },
    Unsubscribe { message: i64 },
}

/// The server's signing key.
#[derive(Clone)]
pub struct TrackingKey(Vec<u8>);

impl std::fmt::Debug for TrackingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackingKey(…)")
    }
}

/// Bytes of the MAC kept in a token: 128 bits, plenty against forgery, short in URLs.
const MAC_BYTES: usize = 16;

impl TrackingKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(payload);
        mac
    }

    /// The token for `token`, safe in a URL path segment.
    pub fn sign(&self, token: &Token) -> String {
        let payload = match token {
            Token::Open { message } => format!("o\u{1f}{message}"),
            Token::Click { message, url, link } => format!("c\u{1f}{message}\u{1f}{link}\u{1f}{url}"),
            Token::Unsubscribe { message } => format!("u\u{1f}{message}"),
        };
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES])
        )
    }

    /// What a token stands for, if it was signed with this key and not altered.
    pub fn verify(&self, text: &str) -> Option<Token> {
        let (payload, tag) = text.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.mac(&payload).verify_truncated_left(&tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut parts = payload.splitn(4, '\u{1f}');
        let kind = parts.next()?;
        let message: i64 = parts.next()?.parse().ok()?;
        match kind {
            "o" => Some(Token::Open { message }),
            "u" => Some(Token::Unsubscribe { message }),
            "c" => {
                let link = parts.next()?.to_owned();
                let url = parts.next()?.to_owned();
                Some(Token::Click { message, url, link })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let key = TrackingKey::new(b"secret");
        for token in [
            Token::Open { message: 8812 },
            Token::Unsubscribe { message: 1 },
            Token::Click {
                message: 7,
                url: "https://www.lumen-cloud.example/whitepapers/2026?utm_source=nurture&x=1".into(),
                link: "demo".into(),
            },
        ] {
            let signed = key.sign(&token);
            assert!(
                signed.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{signed}"
            );
            assert_eq!(key.verify(&signed), Some(token.clone()));
            assert_eq!(TrackingKey::new(b"other").verify(&signed), None, "another server's key");
            let (payload, tag) = signed.split_once('.').unwrap();
            let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("o\u{1f}9999"));
            assert_eq!(key.verify(&forged), None, "a changed payload");
            assert_eq!(key.verify(&format!("{payload}.AAAA{tag}")), None);
            assert_eq!(key.verify(payload), None);
        }
        assert_eq!(key.verify("garbage"), None);
        assert_eq!(key.verify(""), None);
    }
}
