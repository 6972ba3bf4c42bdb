//! Notes and call outcomes about a lead: written inside the transaction of the change they come
//! with ([`NoteTx`]), read newest first ([`NoteStore`]). The same SQL on both backends.

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::{StoreError, StoreResult};
use crate::clock::{from_micros, to_micros};
use crate::handoff::HandoffId;
use crate::lead::LeadId;
use crate::note::{Call, Note, NoteInput};
use crate::store::sql::{SqlStore, SqlTx};

/// A note to write: what was said, about which lead, by whom, with which decision.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNote {
    pub lead_id: LeadId,
    pub handoff_id: Option<HandoffId>,
    pub decision: Option<String>,
    pub input: NoteInput,
    pub by: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The notes part of a write transaction.
#[async_trait]
pub trait NoteTx: Send {
    /// Writes a note and answers it as stored.
    async fn write_note(&mut self, note: &NewNote) -> StoreResult<Note>;
}

/// Reading notes.
#[async_trait]
pub trait NoteStore: Send + Sync {
    /// A lead's notes newest first: up to `limit` of those before `before` (an id).
    async fn notes(&self, lead: LeadId, before: Option<i64>, limit: i64) -> StoreResult<Vec<Note>>;
}

/// A note as stored.
#[derive(sqlx::FromRow)]
pub struct NoteRow {
    id: i64,
    lead_id: i64,
    handoff_id: Option<i64>,
    decision: Option<String>,
    text: Option<String>,
    call_outcome: Option<String>,
    follow_up_on: Option<String>,
    author: String,
    created_at: i64,
}

const NOTE_COLUMNS: &str = "id, lead_id, handoff_id, decision, text, call_outcome, follow_up_on, author, created_at";

impl NoteRow {
    fn note(self) -> StoreResult<Note> {
        let corrupt = |e: String| StoreError::Corrupt(format!("note {}: {e}", self.id));
        let call = match self.call_outcome.as_deref() {
            None => None,
            Some(outcome) => Some(Call {
                outcome: outcome.parse().map_err(corrupt)?,
                follow_up_on: self
                    .follow_up_on
                    .as_deref()
                    .map(|d| d.parse::<NaiveDate>().map_err(|e| corrupt(e.to_string())))
                    .transpose()?,
            }),
        };
        Ok(Note {
            id: self.id,
            lead_id: LeadId(self.lead_id),
            handoff_id: self.handoff_id.map(HandoffId),
            decision: self.decision,
            text: self.text,
            call,
            by: self.author,
            created_at: from_micros(self.created_at),
        })
    }
}

#[async_trait]
impl<T, DB> NoteTx for T
where
    T: SqlTx<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'r> NoteRow: FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn write_note(&mut self, note: &NewNote) -> StoreResult<Note> {
        let call = note.input.call.as_ref();
        let row: NoteRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO lead_notes (lead_id, handoff_id, decision, text, call_outcome, follow_up_on, author, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {NOTE_COLUMNS}"
        )))
        .bind(note.lead_id.0)
        .bind(note.handoff_id.map(|h| h.0))
        .bind(note.decision.clone())
        .bind(note.input.text.clone())
        .bind(call.map(|c| c.outcome.as_str().to_owned()))
        .bind(call.and_then(|c| c.follow_up_on).map(|d| d.to_string()))
        .bind(note.by.clone())
        .bind(to_micros(note.at))
        .fetch_one(self.connection().await?)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.note()
    }
}

#[async_trait]
impl<S, DB> NoteStore for S
where
    S: SqlStore<DB = DB>,
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> NoteRow: FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn notes(&self, lead: LeadId, before: Option<i64>, limit: i64) -> StoreResult<Vec<Note>> {
        let rows: Vec<NoteRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTE_COLUMNS} FROM lead_notes WHERE lead_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        )))
        .bind(lead.0)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(NoteRow::note).collect()
    }
}
