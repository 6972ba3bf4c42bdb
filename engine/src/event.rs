//! Behaviour events as clients send them.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::lead::{map_problem, text_problem, EmailAddress, FieldError, LeadRef};

/// Largest `properties` object of one event, as compact JSON.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;
/// Longest event type.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// One behaviour event as posted to `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub lead: LeadRef,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub properties: Map<String, Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Where the lead came from, used when the event creates the lead.
    #[serde(default)]
    pub source: Option<String>,
}

/// Event types are short snake-case names such as `whitepaper_downloaded`.
pub fn check_event_type(kind: &str) -> Result<(), String> {
    let mut chars = kind.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = kind
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if !starts_well || !rest_ok || kind.len() > MAX_EVENT_TYPE_LEN {
        return Err(format!(
            "event type {kind:?} is not valid: use lower-case letters, digits, '_', '.' or '-', \
             starting with a letter, at most {MAX_EVENT_TYPE_LEN} characters (e.g. whitepaper_downloaded)"
        ));
    }
    Ok(())
}

impl EventInput {
    /// Checks the event and returns every problem, each naming its field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(message) = check_event_type(&self.kind) {
            errors.push(FieldError::new("type", message));
        }
        let LeadRef { id, email, external_id } = &self.lead;
        if id.is_none() && email.is_none() && external_id.is_none() {
            errors.push(FieldError::new("lead", "name the lead by email, external_id or id"));
        }
        if let Some(email) = email {
            if let Err(message) = EmailAddress::parse(email) {
                errors.push(FieldError::new("lead.email", message));
            }
        }
        for (field, value) in [
            ("lead.external_id", external_id),
            ("lead.id", id),
            ("source", &self.source),
        ] {
            if let Some(message) = value.as_deref().and_then(text_problem) {
                errors.push(FieldError::new(field, message));
            }
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || key.contains('\0') {
                errors.push(FieldError::new(
                    "idempotency_key",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes without NUL characters"),
                ));
            }
        }
        let size = serde_json::to_string(&self.properties).map(|s| s.len()).unwrap_or(0);
        if size > MAX_PROPERTIES_BYTES {
            errors.push(FieldError::new(
                "properties",
                format!("is {size} bytes as JSON; the limit is {MAX_PROPERTIES_BYTES}"),
            ));
        }
        if self.kind == "email_bounced" && crate::bounce::Bounce::of(&self.kind, &self.properties).is_none() {
            errors.push(FieldError::new(
                "properties.kind",
                "an email_bounced event says what kind of bounce it was: \"hard\" (the address does not exist) or \"soft\" (a full mailbox, a server down)",
            ));
        }
        errors.extend(map_problem(&self.properties, "properties"));
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types() {
        assert!(check_event_type("whitepaper_downloaded").is_ok());
        assert!(check_event_type("email.opened").is_ok());
        assert!(check_event_type("Whitepaper").is_err());
        assert!(check_event_type("1st").is_err());
        assert!(check_event_type("a b").is_err());
        assert!(check_event_type(&"a".repeat(65)).is_err());
    }
}
