//! Who may do what through the API: roles of API keys.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    pub name: String,
    pub role: Role,
}

/// Keys are stored as the SHA-256 of the key, never the key itself.
pub fn key_hash(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}
