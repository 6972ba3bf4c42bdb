//! Notes and call outcomes: what a person writes about a lead, kept, shown in its timeline and
//! sent to the CRM as `lead.note_added`.

use super::handoffs::event;
use super::{Engine, EngineError, EngineResult};
use crate::audit::{AuditKind, By};
use crate::clock::to_micros;
use crate::lead::LeadId;
use crate::note::{Note, NoteInput};
use crate::store::NewNote;
use crate::webhook::payload::{Data, NoteAdded};

impl Engine {
    /// Writes a note (a call's outcome, text, or both) about a lead, by `by`.
    pub async fn add_note(&self, lead: LeadId, input: NoteInput, by: &By) -> EngineResult<Note> {
        let input = input.validate().map_err(EngineError::Invalid)?;
        super::retrying(|| self.add_note_once(lead, &input, by)).await
    }

    async fn add_note_once(&self, lead: LeadId, input: &NoteInput, by: &By) -> EngineResult<Note> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let Some(found) = tx.find_leads(&[lead.0], &[], &[]).await?.pop() else {
            return Err(EngineError::NotFound);
        };
        let note = tx
            .write_note(&NewNote {
                lead_id: lead,
                handoff_id: None,
                decision: None,
                input: input.clone(),
                by: by.actor.clone(),
                at: now,
            })
            .await?;
        let data = Data::NoteAdded(NoteAdded { note: note.clone() });
        tx.emit(&[event("lead.note_added", Some(&found), data, now)]).await?;
        let call = input.call.as_ref();
        let audit = by.did(
            AuditKind::LeadNoteAdded,
            lead.0,
            serde_json::json!({
                "note": note.id.to_string(),
                "call": call.map(|c| c.outcome.as_str()),
                "follow_up_on": call.and_then(|c| c.follow_up_on).map(|d| d.to_string()),
            }),
        );
        tx.write_audit(&[audit], to_micros(now)).await?;
        tx.commit().await?;
        Ok(note)
    }

    /// A lead's notes, newest first: up to `limit` of those before `before` (a note id).
    pub async fn notes(&self, lead: LeadId, before: Option<i64>, limit: i64) -> EngineResult<Vec<Note>> {
        self.get_lead(lead).await?;
        Ok(self.store.notes(lead, before, limit).await?)
    }
}
