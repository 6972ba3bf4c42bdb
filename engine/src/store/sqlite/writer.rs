//! The one writer: SQLite takes one write transaction at a time, so numbered write
//! transactions queue for one connection here, which keeps its page cache warm.

use super::*;
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::collections::HashSet;

/// What a write transaction needs, shared by the store and its staged transactions (see
/// [`Staged`]), which take their turn only when they come to write.
#[derive(Clone)]
pub(super) struct Writer {
    /// The one connection numbered write transactions run on. SQLite drops a connection's page
    /// cache whenever another connection has written since it last read; writing from one
    /// connection keeps the writer's cache warm from one transaction to the next. It never
    /// checkpoints on commit: [`Checkpointer`] does that off the writer's turn.
    pub(super) pool: SqlitePool,
    /// SQLite has one writer. Write transactions of this process queue here, first come first
    /// served, instead of in SQLite's busy handler, whose sleeps (1, 2, 5, … 100 ms) make the
    /// tail latency of concurrent writes tens of milliseconds. Other processes on the same
    /// file still meet the busy timeout.
    pub(super) turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    pub(super) checkpointer: Checkpointer,
    /// Notified when a transaction that queued messages commits (the dispatcher waits on it).
    pub(super) mail: std::sync::Arc<tokio::sync::Notify>,
    /// The journey passes committed lately, by write sequence number (see `begin_checked`).
    pub(super) passes: std::sync::Arc<std::sync::Mutex<PassLog>>,
}

/// The lead sets of the journey passes this process committed lately, by write sequence
/// number: a pass decided in a snapshot may still write if everything committed since was a
/// pass over other leads. Kept short: a snapshot older than the log is simply decided again.
#[derive(Default)]
pub(super) struct PassLog(std::collections::VecDeque<(i64, std::sync::Arc<[i64]>)>);

impl PassLog {
    pub(super) const KEEP: usize = 256;

    pub(super) fn record(&mut self, seq: i64, leads: std::sync::Arc<[i64]>) {
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back((seq, leads));
    }

    /// Of `leads`, those the passes numbered after `seq` wrote (each pass's leads are sorted).
    pub(super) fn written_since(&self, seq: i64, leads: &[i64]) -> HashSet<i64> {
        let later: Vec<&[i64]> = self
            .0
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(_, theirs)| &**theirs)
            .collect();
        leads
            .iter()
            .copied()
            .filter(|id| later.iter().any(|theirs| theirs.binary_search(id).is_ok()))
            .collect()
    }

    /// Whether every write transaction numbered `after + 1 .. before` was a journey pass over
    /// none of `leads` (sorted).
    pub(super) fn disjoint(&self, after: i64, before: i64, leads: &[i64]) -> bool {
        (after + 1..before).all(|seq| {
            self.0
                .iter()
                .find(|(s, _)| *s == seq)
                .is_some_and(|(_, theirs)| theirs.iter().all(|id| leads.binary_search(id).is_err()))
        })
    }
}

impl Writer {
    /// A write transaction with the next write sequence number: what every write that changes
    /// what a journey pass reads (leads, their tags, events and ledger, enrollments, messages,
    /// suppressions, campaigns) runs in.
    pub(super) async fn numbered_tx(&self) -> StoreResult<(WriteTx, i64)> {
        let mut tx = self.pool.begin_with(WRITE_BEGIN).await?;
        let seq: i64 = sqlx::query_scalar("UPDATE write_seq SET seq = seq + 1 RETURNING seq")
            .fetch_one(&mut *tx)
            .await?;
        Ok((
            WriteTx {
                tx,
                checkpointer: self.checkpointer.clone(),
            },
            seq,
        ))
    }

    /// The write transaction numbered `seq`, of the journey pass over `leads` if any.
    pub(super) fn pass(&self, seq: i64, leads: Option<std::sync::Arc<[i64]>>) -> Pass {
        Pass {
            seq,
            leads,
            log: self.passes.clone(),
            checkpointer: self.checkpointer.clone(),
            mail: self.mail.clone(),
        }
    }

    /// This process's turn to write and the transaction numbered after `since`, with its pass
    /// over `leads`, if every write numbered between was a pass of this process over other
    /// leads; `None` (the transaction rolled back) if not.
    pub(super) async fn begin_checked(
        &self,
        since: i64,
        leads: std::sync::Arc<[i64]>,
    ) -> StoreResult<Option<(tokio::sync::OwnedMutexGuard<()>, Transaction<'static, Sqlite>, Pass)>> {
        let turn = self.turn.clone().lock_owned().await;
        let (tx, next) = self.numbered_tx().await?;
        // Passes of this process record themselves before they give up the writer's turn, so
        // every pass numbered before `next` is in the log by now; any other writer is not.
        let fresh = self
            .passes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .disjoint(since, next, &leads);
        if !fresh {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some((turn, tx.tx, self.pass(next, Some(leads)))))
    }

    /// `n` ids of an AUTOINCREMENT table for a staged pass, in a turn of their own: usually one
    /// statement ([`bump_sequence`]), else a transaction of [`reserve_ids`].
    pub(super) async fn reserve(&self, table: &'static str, n: usize) -> StoreResult<Vec<i64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let _turn = self.turn.lock().await;
        let mut conn = self.pool.acquire().await?;
        if let Some(ids) = bump_sequence(&mut conn, table, n).await? {
            return Ok(ids);
        }
        let mut tx = sqlx::Connection::begin_with(&mut *conn, WRITE_BEGIN).await?;
        let ids = reserve_ids(&mut tx, table, n).await?;
        tx.commit().await?;
        Ok(ids)
    }
}

/// A numbered write transaction on the writer connection. It derefs to the connection, as a
/// sqlx transaction does; committing it wakes the checkpointer.
pub(crate) struct WriteTx {
    pub(super) tx: Transaction<'static, Sqlite>,
    pub(super) checkpointer: Checkpointer,
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.checkpointer.wake();
        Ok(())
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}
