//! Who may do what through the API: roles of API keys.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Playbooks, campaigns, leads and reports.
    Marketer,
    /// Reading leads, manual tags and scores, queues and handoffs.
    Sdr,
    /// Leads, events and webhooks: the CRM integration.
    Crm,
}

impl Role {
    /// Admins and marketers oversee the queues: they may decide anyone's handoff and set any
    /// member's availability, capacity and weight. An SDR acts only on their own.
    pub fn oversees_queues(self) -> bool {
        matches!(self, Role::Admin | Role::Marketer)
    }

    /// SDRs and admins work leads in the console: claim, decide, write notes and calls, keep
    /// contact details; marketers read the same pages.
    pub fn works_leads(self) -> bool {
        matches!(self, Role::Sdr | Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Sdr => "sdr",
            Role::Crm => "crm",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "marketer" => Ok(Role::Marketer),
            "sdr" => Ok(Role::Sdr),
            "crm" => Ok(Role::Crm),
            other => Err(format!(
                "unknown role {other:?}; roles are admin, marketer, sdr and crm"
            )),
        }
    }
}

/// An API key as the store knows it: its name (recorded as the actor of changes) and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// Keys are stored as the SHA-256 of the key, never the key itself.
pub fn key_hash(key: &str) -> String {
    sha256_hex(&[key])
}

/// Hash of a normalised e-mail, kept after erasure so the person is not contacted again.
pub fn email_hash(email: &str) -> String {
    sha256_hex(&["suppression:", email])
}

/// The SHA-256 of these parts one after the other, in lower-case hex. Hex goes through
/// `encode_to_slice`: `hex::encode` collects the digits as `char`s, which cost twice the hash
/// itself for every send's suppression check (callgrind).
pub(crate) fn sha256_hex(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    let mut digits = vec![0u8; 64];
    // 32 bytes always fill 64 digits, all ASCII: neither step can fail.
    hex::encode_to_slice(hasher.finalize(), &mut digits).unwrap_or_default();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_in_lower_case_hex() {
        // FIPS 180-2's example: stored key and suppression hashes must not change.
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(&["a", "bc"]), key_hash("abc"));
        assert_eq!(email_hash("li.na@example.cn"), key_hash("suppression:li.na@example.cn"));
    }
}

/// A person who signs in to the console: an admin, a marketer or an SDR (the CRM stays a
/// machine, with an API key). Their e-mail is their name in the audit trail and in the queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub role: Role,
    /// `zh` or `en`: the console's language for them; else their browser's.
    pub language: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When they were deactivated: they can no longer sign in, and their sessions ended.
    pub deactivated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether a password is set (the set-password link was used).
    pub has_password: bool,
}
