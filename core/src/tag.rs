//! Tags, scores and who changed them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::lead::LeadId;

/// Longest tag accepted.
pub const MAX_TAG_LEN: usize = 128;

/// The tag families of the method (标签体系): where a tag came from decides its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagFamily {
    /// 行为标签: set by tagging rules from behaviour events, and by campaign steps.
    Behaviour,
    /// 属性标签: derived from lead fields by the `attributes:` rules, kept in sync.
    Attribute,
    /// 来源标签: derived from the lead's `source` field.
    Source,
    /// 兴趣标签: behaviour rules whose tag starts with `interest:`.
    Interest,
    /// Added by a person (SDR, marketer) or a CRM through the API.
    Manual,
}

impl TagFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            TagFamily::Behaviour => "behaviour",
            TagFamily::Attribute => "attribute",
            TagFamily::Source => "source",
            TagFamily::Interest => "interest",
            TagFamily::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Behaviour,
            Self::Attribute,
            Self::Source,
            Self::Interest,
            Self::Manual,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }

    /// The family of a tag written by a behaviour rule.
    pub fn of_rule_tag(tag: &str) -> Self {
        if tag.starts_with("interest:") {
            TagFamily::Interest
        } else {
            TagFamily::Behaviour
        }
    }
}

/// What [`normalize_tag`] accepts, as a JSON Schema pattern: whitespace at either end
/// (trimmed), then 1 to 128 characters that are neither whitespace (`char::is_whitespace`),
/// nor control characters (`char::is_control`), nor commas.
pub const TAG_PATTERN: &str = concat!(
    "^[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*",
    "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\u0000-\\u001f\\u007f-\\u009f,]{1,128}",
    "[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
);

/// Normalises a tag: trimmed and lower-cased. Refuses empty tags, whitespace inside, control
/// characters and commas (tags travel in query strings and CSV), and over-long tags.
pub fn normalize_tag(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("a tag cannot be empty".into());
    }
    // Counted in characters, as JSON Schema's maxLength counts (see `TAG_SCHEMA`).
    if trimmed.chars().count() > MAX_TAG_LEN {
        return Err(format!("tag {raw:?} is longer than {MAX_TAG_LEN} characters"));
    }
    let tag = trimmed.to_lowercase();
    if tag.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
        return Err(format!(
            "tag {raw:?} contains whitespace, a control character or a comma; write e.g. interest:topic/iot"
        ));
    }
    Ok(tag)
}

/// Turns a free-text value (an industry, a webinar topic) into the value part of a tag:
/// lower-cased, whitespace runs become `-`, characters a tag refuses are dropped.
pub fn slug(value: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in value.trim().to_lowercase().chars() {
        if c.is_whitespace() {
            gap = true;
            continue;
        }
        if c.is_control() || c == ',' {
            continue;
        }
        if gap && !out.is_empty() {
            out.push('-');
        }
        gap = false;
        out.push(c);
    }
    out
}

/// Who made a change: a rule of the playbook, a person or system through an API key, or the
/// engine itself (decay, MQL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    Rule(String),
    User(String),
    System(String),
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Rule(_) => "rule",
            Actor::User(_) => "user",
            Actor::System(_) => "system",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Actor::Rule(n) | Actor::User(n) | Actor::System(n) => n,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

/// One recorded tag change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagChange {
    pub lead_id: LeadId,
    pub tag: String,
    pub family: TagFamily,
    pub added: bool,
    pub actor: Actor,
    pub at: DateTime<Utc>,
}

/// One entry of the score ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScoreChange {
    pub lead_id: LeadId,
    pub delta: i64,
    pub reason: String,
    pub actor: Actor,
    /// The rule that earned the points, for caps; `None` for manual and system changes.
    pub rule: Option<String>,
    /// When the behaviour happened (the event time), which cap windows are measured on.
    pub occurred_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_normalise() {
        assert_eq!(normalize_tag(" Interest:IoT ").unwrap(), "interest:iot");
        assert_eq!(normalize_tag("兴趣:物联网").unwrap(), "兴趣:物联网");
        assert!(normalize_tag("a b").is_err());
        assert!(normalize_tag("").is_err());
        assert!(normalize_tag("a,b").is_err());
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("  Smart   Manufacturing "), "smart-manufacturing");
        assert_eq!(slug("IoT"), "iot");
        assert_eq!(slug("智能制造"), "智能制造");
    }
}
