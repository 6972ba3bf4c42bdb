//! Notes and call outcomes: what an SDR writes about a lead, alone or with a handoff decision.
//! Pure: the input, its validation and the stored shape.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::handoff::HandoffId;
use crate::lead::{FieldError, LeadId};

/// The longest note taken, in characters.
pub const MAX_NOTE_LEN: usize = 10_000;

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Reached,
    Voicemail,
    WrongNumber,
    NotInterested,
    MeetingBooked,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 5] = [
        Self::Reached,
        Self::Voicemail,
        Self::WrongNumber,
        Self::NotInterested,
        Self::MeetingBooked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reached => "reached",
            Self::Voicemail => "voicemail",
            Self::WrongNumber => "wrong_number",
            Self::NotInterested => "not_interested",
            Self::MeetingBooked => "meeting_booked",
        }
    }
}

impl FromStr for CallOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|o| o.as_str()).collect();
            format!("unknown call outcome {s:?}; it is one of {}", known.join(", "))
        })
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call and what comes next, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Call {
    pub outcome: CallOutcome,
    /// The day to try again or follow up (`2026-12-10`), if one was set.
    pub follow_up_on: Option<NaiveDate>,
}

/// A call and what comes next, as written: `{"outcome": "voicemail", "follow_up_on":
/// "2026-12-10"}` (the day is optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallInput {
    pub outcome: CallOutcome,
    /// The day to try again or follow up (`2026-12-10`).
    #[serde(default)]
    pub follow_up_on: Option<NaiveDate>,
}

/// `{"text": "…", "call": {"outcome": "voicemail", "follow_up_on": "2026-12-10"}}`: a note, a
/// call, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub call: Option<CallInput>,
}

impl NoteInput {
    /// The note as it will be stored: its text trimmed. A note says something: text, a call,
    /// or both.
    pub fn validate(self) -> Result<NoteInput, Vec<FieldError>> {
        let text = self.text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let mut errors = Vec::new();
        if let Some(text) = &text {
            if let Some(problem) = note_text_problem(text) {
                errors.push(FieldError::new("text", problem));
            }
        }
        if text.is_none() && self.call.is_none() {
            errors.push(FieldError::new(
                "text",
                "a note needs text, a call ({\"outcome\": \"reached\"}), or both",
            ));
        }
        if errors.is_empty() {
            Ok(NoteInput { text, call: self.call })
        } else {
            Err(errors)
        }
    }
}

/// What is wrong with a note's text, if anything: NUL characters, or too long.
pub fn note_text_problem(text: &str) -> Option<String> {
    if text.contains('\0') {
        Some("contains a NUL character".into())
    } else if text.chars().count() > MAX_NOTE_LEN {
        Some(format!("is longer than {MAX_NOTE_LEN} characters"))
    } else {
        None
    }
}

/// A note as stored.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Note {
    #[serde(serialize_with = "id_as_string")]
    #[schemars(with = "String")]
    pub id: i64,
    pub lead_id: LeadId,
    /// The handoff whose decision it came with, if any.
    pub handoff_id: Option<HandoffId>,
    /// The decision it came with (`converted`, …), if any.
    pub decision: Option<String>,
    pub text: Option<String>,
    pub call: Option<Call>,
    /// Who wrote it: a user's e-mail or an API key's name.
    pub by: String,
    pub created_at: DateTime<Utc>,
}

fn id_as_string<S: serde::Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_says_something() {
        let empty = NoteInput {
            text: Some("   ".into()),
            call: None,
        };
        let errors = empty.validate().unwrap_err();
        assert_eq!(errors[0].field, "text");
        let call = NoteInput {
            text: Some("  left a message  ".into()),
            call: Some(CallInput {
                outcome: CallOutcome::Voicemail,
                follow_up_on: None,
            }),
        };
        assert_eq!(call.validate().unwrap().text.as_deref(), Some("left a message"));
        let long = NoteInput {
            text: Some("x".repeat(MAX_NOTE_LEN + 1)),
            call: None,
        };
        assert!(long.validate().unwrap_err()[0].message.contains("longer than"));
    }

    #[test]
    fn outcomes_read_back() {
        for o in CallOutcome::ALL {
            assert_eq!(o.as_str().parse::<CallOutcome>(), Ok(o));
        }
        assert!("busy".parse::<CallOutcome>().unwrap_err().contains("meeting_booked"));
    }
}
