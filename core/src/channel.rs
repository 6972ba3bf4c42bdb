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

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Channel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "email" => Ok(Channel::Email),
            "wechat" => Ok(Channel::Wechat),
            "webhook" => Ok(Channel::Webhook),
            other => Err(format!("channel {other:?}")),
        }
    }
}

/// For rows that store a channel as text.
impl TryFrom<String> for Channel {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::Channel;

    #[test]
    fn a_stored_channel_reads_back_and_an_unknown_one_is_refused() {
        for channel in [Channel::Email, Channel::Wechat, Channel::Webhook] {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            assert_eq!(channel.to_string(), channel.as_str());
        }
        assert_eq!("sms".parse::<Channel>(), Err("channel \"sms\"".to_owned()));
    }
}
