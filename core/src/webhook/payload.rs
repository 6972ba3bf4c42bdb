//! What a webhook delivery carries: the envelope every event shares, and each event type's
//! `data`. The engine builds deliveries from these types and `/openapi.json` documents them
//! (OpenAPI 3.1 `webhooks`), so the two cannot differ.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::handoff::Handoff;
use crate::lead::Lead;
use crate::note::Note;

/// One delivery's body.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Payload<'a> {
    /// `evt_…`: the same on every attempt of every delivery of this event.
    pub id: String,
    /// The event type, e.g. `lead.handed_off`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub occurred_at: DateTime<Utc>,
    /// The lead as it stands after the event (null once erased).
    pub lead: Option<&'a Lead>,
    pub data: Data,
}

/// The part of a payload that depends on the event type.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Data {
    Nothing(Nothing),
    Mql(Mql),
    Unsubscribed(Unsubscribed),
    Decided(Decided),
    Handoff(HandoffData),
    Breach(Breach),
    NoteAdded(NoteAdded),
}

/// `lead.created`, `lead.updated`: the lead itself says it all.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Nothing {}

/// `lead.mql`: why the lead became marketing-qualified.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Mql {
    pub reason: String,
}

/// `lead.unsubscribed`: the channels the lead has just opted out of.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Unsubscribed {
    pub channels: Vec<String>,
}

/// `lead.handed_off` and the `handoff.*` decisions: the handoff as it stands after them.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct HandoffData {
    pub handoff: Handoff,
}

/// `handoff.decided`, and each decision's own event (`handoff.accepted`, `handoff.rejected`,
/// `handoff.converted`, `handoff.released`): the handoff as it stands after the decision, the
/// decision, and the note that came with it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Decided {
    pub handoff: Handoff,
    /// `accepted`, `rejected`, `converted` or `released`.
    pub decision: String,
    /// What the person who decided wrote (null when they wrote nothing).
    pub note: Option<String>,
}

/// `lead.note_added`: a note or a call outcome written about the lead.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NoteAdded {
    pub note: Note,
}

/// `handoff.sla_breached`: the handoff, and the SLA it went unclaimed past.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Breach {
    pub handoff: Handoff,
    /// The queue's SLA, e.g. `4h` (null when the queue has none any more).
    pub sla: Option<String>,
}

/// Which `data` each event type carries, for the document.
pub fn data_of(kind: &str) -> fn(&mut schemars::SchemaGenerator) -> schemars::Schema {
    fn of<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<T>()
    }
    match kind {
        "lead.created" | "lead.updated" => of::<Nothing>,
        "lead.mql" => of::<Mql>,
        "lead.unsubscribed" => of::<Unsubscribed>,
        "handoff.sla_breached" => of::<Breach>,
        "lead.note_added" => of::<NoteAdded>,
        "handoff.decided" | "handoff.accepted" | "handoff.rejected" | "handoff.converted" | "handoff.released" => {
            of::<Decided>
        }
        _ => of::<HandoffData>,
    }
}
