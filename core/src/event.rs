//! Behaviour events as clients send them.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::lead::{map_problem, text_problem, EmailAddress, FieldError, LeadRef};

/// Largest `properties` object of one event, as compact JSON.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;
/// Longest event type.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// How far ahead of the engine's clock an event's `occurred_at` may be (clocks differ).
pub const MAX_FUTURE: chrono::TimeDelta = chrono::TimeDelta::days(1);
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// One behaviour event as posted to `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub lead: LeadRef,
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_.\-]*$"), length(min = 1, max = 64))]
    pub kind: String,
    /// RFC 3339; at most a day ahead of the engine's clock.
    #[serde(default, deserialize_with = "rfc3339")]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub properties: Map<String, Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Where the lead came from, used when the event creates the lead.
    #[serde(default)]
    pub source: Option<String>,
}

/// An RFC 3339 time, with a message that says so when it is not one (chrono's own says only
/// "input contains invalid characters").
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.trim().parse::<DateTime<Utc>>().map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not an RFC 3339 time ({e}); write e.g. 2026-11-20T08:00:00Z or 2026-11-20T16:00:00+08:00"
        ))
    })
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
    /// Checks the event and returns every problem, each naming its field. `now` is the
    /// engine's time: an event more than [`MAX_FUTURE`] after it is refused, because its time
    /// becomes the lead's last activity and would keep the lead from ever going dormant.
    pub fn validate(&self, now: DateTime<Utc>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(at) = self.occurred_at.filter(|at| *at > now + MAX_FUTURE) {
            errors.push(FieldError::new(
                "occurred_at",
                format!(
                    "is {}, more than a day after now ({}); send when the event happened (RFC 3339, e.g. 2026-11-20T08:00:00Z)",
                    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        if let Err(message) = check_event_type(&self.kind) {
            errors.push(FieldError::new("type", message));
        }
        let LeadRef { id, email, external_id } = &self.lead;
        if self.lead.names_nobody() {
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
    fn times_are_rfc3339_and_at_most_a_day_ahead() {
        let now: DateTime<Utc> = "2026-11-20T08:00:00Z".parse().unwrap();
        let parse = |at: &str| {
            serde_json::from_value::<EventInput>(serde_json::json!({
                "lead": {"email": "a@b.example"}, "type": "page_view", "occurred_at": at
            }))
        };
        let bad = parse("20/11/2026").unwrap_err().to_string();
        assert!(
            bad.starts_with("\"20/11/2026\" is not an RFC 3339 time (input contains invalid characters); write e.g. 2026-11-20T08:00:00Z"),
            "{bad}"
        );
        assert!(parse("2026-11-21T07:59:59Z").unwrap().validate(now).is_empty());
        let far = parse("9999-12-31T00:00:00Z").unwrap().validate(now);
        assert_eq!(far.len(), 1);
        assert_eq!(far[0].field, "occurred_at");
        assert_eq!(
            far[0].message,
            "is 9999-12-31T00:00:00Z, more than a day after now (2026-11-20T08:00:00Z); send when the event happened (RFC 3339, e.g. 2026-11-20T08:00:00Z)"
        );
    }

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
