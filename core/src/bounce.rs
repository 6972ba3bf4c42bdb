//! Bounces and complaints, and when they put an address on the suppression list: a hard
//! bounce or a complaint at once, soft bounces at the third within 30 days. Pure.

use chrono::Duration;
use serde_json::{Map, Value};

/// Soft bounces within [`SOFT_WINDOW`] that suppress an address.
pub const SOFT_LIMIT: usize = 3;
/// The window soft bounces are counted in.
pub const SOFT_WINDOW: Duration = Duration::days(30);

/// What a bounce or complaint event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounce {
    /// The address does not exist, or the relay refused the recipient for good.
    Hard,
    /// A full mailbox, a server down: worth trying again, until it keeps happening.
    Soft,
    /// The reader marked the message as spam.
    Complaint,
}

impl Bounce {
    /// The bounce an event reports, if it reports one: `email_bounced` with `kind: hard|soft`,
    /// or `email_complained`.
    pub fn of(kind: &str, properties: &Map<String, Value>) -> Option<Self> {
        match kind {
            "email_complained" => Some(Bounce::Complaint),
            "email_bounced" => match properties.get("kind").and_then(Value::as_str).map(str::trim) {
                Some(k) if k.eq_ignore_ascii_case("hard") => Some(Bounce::Hard),
                Some(k) if k.eq_ignore_ascii_case("soft") => Some(Bounce::Soft),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Why an address is suppressed, given the bounces just reported and how many soft bounces it
/// had in the last 30 days (these included); `None` when it is not.
pub fn suppression(reported: &[Bounce], soft_in_window: usize) -> Option<&'static str> {
    if reported.contains(&Bounce::Complaint) {
        Some("complaint")
    } else if reported.contains(&Bounce::Hard) {
        Some("hard_bounce")
    } else if reported.contains(&Bounce::Soft) && soft_in_window >= SOFT_LIMIT {
        Some("soft_bounces")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn events_say_what_bounced() {
        assert_eq!(
            Bounce::of("email_bounced", &props(json!({"kind": "hard"}))),
            Some(Bounce::Hard)
        );
        assert_eq!(
            Bounce::of("email_bounced", &props(json!({"kind": "Soft"}))),
            Some(Bounce::Soft)
        );
        assert_eq!(Bounce::of("email_bounced", &props(json!({"kind": "maybe"}))), None);
        assert_eq!(
            Bounce::of("email_complained", &props(json!({}))),
            Some(Bounce::Complaint)
        );
        assert_eq!(Bounce::of("email_opened", &props(json!({"kind": "hard"}))), None);
    }

    #[test]
    fn hard_bounces_and_complaints_suppress_at_once_soft_ones_at_the_third() {
        assert_eq!(suppression(&[Bounce::Hard], 0), Some("hard_bounce"));
        assert_eq!(suppression(&[Bounce::Complaint], 0), Some("complaint"));
        assert_eq!(suppression(&[Bounce::Soft], 2), None);
        assert_eq!(suppression(&[Bounce::Soft], 3), Some("soft_bounces"));
        assert_eq!(
            suppression(&[], 5),
            None,
            "old soft bounces alone do not suppress again"
        );
    }
}
