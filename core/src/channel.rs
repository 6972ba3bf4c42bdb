//! The channels a message goes out on.

use serde::{Deserialize, Serialize};

/// Where a send step's message goes: e-mail and WeChat reach a person, who may opt out of
/// each (`Consent`); a webhook reaches a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Wechat,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Wechat => "wechat",
            Channel::Webhook => "webhook",
        }
    }
}
