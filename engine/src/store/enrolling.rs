//! The event that enrolled a lead into an event-triggered campaign, kept beside its enrollment
//! for the templates and waits that read it. The same SQL on both backends.

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::{StoreError, StoreResult};
use crate::clock::{from_micros, to_micros};
use crate::condition::EventFact;
use crate::store::sql::SqlTx;

/// The enrolling events part of a transaction.
#[async_trait]
pub trait EnrollingTx: Send {
    /// Keeps the event that started each of these enrollments: (enrollment, lead, event).
    async fn write_enrolling_events(&mut self, rows: &[(i64, i64, EventFact)]) -> StoreResult<()>;
    /// The events that started these enrollments, for those an event started: (enrollment, event).
    async fn enrolling_events(&mut self, enrollment_ids: &[i64]) -> StoreResult<Vec<(i64, EventFact)>>;
}

#[async_trait]
impl<T, DB> EnrollingTx for T
where
    T: SqlTx<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> (i64, String, i64, String): FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn write_enrolling_events(&mut self, rows: &[(i64, i64, EventFact)]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let conn = self.connection().await?;
        for chunk in rows.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "INSERT INTO enrolling_events (enrollment_id, lead_id, type, occurred_at, properties) ",
            );
            q.push_values(chunk, |mut row, (enrollment, lead, event)| {
                row.push_bind(*enrollment)
                    .push_bind(*lead)
                    .push_bind(event.kind.clone())
                    .push_bind(to_micros(event.occurred_at))
                    .push_bind(Value::Object(event.properties.clone()).to_string());
            });
            q.push(" ON CONFLICT (enrollment_id) DO NOTHING");
            q.build().execute(&mut *conn).await.map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn enrolling_events(&mut self, enrollment_ids: &[i64]) -> StoreResult<Vec<(i64, EventFact)>> {
        if enrollment_ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.connection().await?;
        let mut out = Vec::new();
        for chunk in enrollment_ids.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<DB>::new(
                "SELECT enrollment_id, type, occurred_at, properties FROM enrolling_events WHERE enrollment_id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            let rows: Vec<(i64, String, i64, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
            for (id, kind, at, properties) in rows {
                let properties: Map<String, Value> = serde_json::from_str(&properties)
                    .map_err(|e| StoreError::Corrupt(format!("enrolling event of enrollment {id}: {e}")))?;
                out.push((
                    id,
                    EventFact {
                        kind,
                        occurred_at: from_micros(at),
                        properties,
                    },
                ));
            }
        }
        Ok(out)
    }
}
