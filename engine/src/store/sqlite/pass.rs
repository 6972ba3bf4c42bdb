//! Journey passes on SQLite: decided in a snapshot, outside the writer's turn, so that one pass
//! decides while another writes; written if nothing committed since may have changed what was
//! read, and otherwise decided again in the write transaction.
//!
//! A write transaction is numbered (`write_seq`), and a journey pass's says which leads it
//! wrote ([`PassLog`]). A pass decided in the snapshot numbered `seq` may write if every write
//! numbered since was a journey pass of this process over other leads.

use super::*;
use crate::engine::{EngineError, EngineResult};
use crate::store::{decide_and_write, pick_and_hold, PassWork};

/// A read transaction from [`SqliteStore::begin_snapshot`] and the write sequence number it sees.
pub struct Snapshot {
    pub tx: Box<dyn Tx>,
    pub seq: i64,
}

impl SqliteStore {
    /// See [`Store::run_pass`].
    pub(super) async fn pass(&self, work: &mut dyn PassWork) -> EngineResult<()> {
        if self.pass_in_snapshot(work).await? {
            return Ok(());
        }
        tracing::debug!("A pass decided in a snapshot is decided again in the write transaction.");
        let mut tx = self.begin_tx().await?;
        // Held here too, or passes deciding in snapshots meanwhile would take the same due
        // leads and, finding this pass in the log when they come to write, be decided again
        // in turn.
        let (leads, _held) = pick_and_hold(&mut tx, &self.held, work).await?;
        // Scoped even when empty: a pass that wrote nothing changed nothing a snapshot shows.
        tx.scope(&leads.iter().map(|l| l.id.0).collect::<Vec<_>>());
        decide_and_write(Box::new(tx), leads, work).await
    }

    /// Picks and decides a pass in a snapshot and writes it if the snapshot is still current
    /// then; whether it is done (written, or nothing to do).
    async fn pass_in_snapshot(&self, work: &mut dyn PassWork) -> EngineResult<bool> {
        let Snapshot { tx: mut read, seq } = self.begin_snapshot().await?;
        let leads = work.pick(read.as_mut(), &self.held.list()).await?;
        if leads.is_empty() {
            return Ok(true);
        }
        let picked = leads.len();
        let (mut leads, _taken) = self.held.take(leads);
        // A lead another pass wrote since this snapshot began shows here as it was. Taken
        // first, then asked about: a pass that wrote it and let it go before `take` is in
        // the log by then, and one still holding it kept it from this pass.
        let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
        let stale = self.written_since(seq, &ids);
        leads.retain(|l| !stale.contains(&l.id.0));
        // A due lead another pass holds or has just moved is that pass's; a lead asked for by
        // id is not dropped: the pass is decided again, after the other has written.
        if leads.is_empty() || (leads.len() < picked && work.whole()) {
            return Ok(false);
        }
        let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
        work.decide(read.as_mut(), leads).await?;
        read.commit().await?;
        let mut tx = self.begin_checked(seq, &ids);
        let written = match work.write(tx.as_mut()).await {
            Ok(()) => tx.commit().await.map_err(EngineError::from),
            Err(e) => Err(e),
        };
        match written {
            // Staged, it found out only when it came to write; it wrote nothing.
            Err(EngineError::Store(StoreError::Stale)) => Ok(false),
            written => written.map(|()| true),
        }
    }

    /// A read transaction in which a journey pass reads and decides outside the writer's turn,
    /// with the write sequence number it sees.
    pub async fn begin_snapshot(&self) -> StoreResult<Snapshot> {
        let mut tx = self.pool.begin().await?;
        // The first read starts the snapshot, so the number is the snapshot's own.
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM write_seq")
            .fetch_one(&mut *tx)
            .await?;
        Ok(Snapshot {
            tx: Box::new(SqliteTx::new(tx, None, None)),
            seq,
        })
    }

    /// The write transaction of a journey pass over `leads` decided in the snapshot numbered
    /// `seq`. It is staged: its writes are bound as they come and run together when it
    /// commits or first reads, and only then does it take the writer's turn and check the
    /// snapshot. If something committed since may have changed what the pass read (any write
    /// that was not a journey pass of this process, or one over any of these leads), it writes
    /// nothing and fails with [`StoreError::Stale`].
    pub fn begin_checked(&self, seq: i64, leads: &[i64]) -> Box<dyn Tx> {
        Box::new(SqliteTx {
            tx: None,
            turn: None,
            pass: None,
            frozen: None,
            staged: Some(Staged {
                writer: self.writer.clone(),
                since: seq,
                leads: sorted(leads),
                sql: String::new(),
                binds: Binds::default(),
            }),
            queued_mail: false,
        })
    }

    /// A write transaction of a journey pass over `leads`: passes over other leads decided
    /// in a snapshot stay valid when it commits.
    pub async fn begin_pass(&self, leads: &[i64]) -> StoreResult<Box<dyn Tx>> {
        let mut tx = self.begin_tx().await?;
        tx.scope(leads);
        Ok(Box::new(tx))
    }

    /// Of `leads` (read in the snapshot numbered `seq`), those a journey pass of this process
    /// wrote after that snapshot: the snapshot shows them as they were, and a pass that decided
    /// them there could not write.
    pub fn written_since(&self, seq: i64, leads: &[i64]) -> HashSet<i64> {
        self.writer
            .passes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .written_since(seq, leads)
    }
}
