//! A journey pass as a store runs it ([`Store::run_pass`]): the engine says which leads and what
//! to do with them ([`PassWork`]); the adapter decides how to read and write them safely
//! beside other passes. [`Held`] is the leads this process's passes hold meanwhile.

use async_trait::async_trait;
use std::sync::Mutex;

type IdSet = std::collections::HashSet<i64, rustc_hash::FxBuildHasher>;

use super::Tx;
use crate::engine::EngineResult;
use crate::lead::Lead;

/// The engine's side of a journey pass (the runner's and hand enrollment's). A store may call
/// `pick` and `decide` more than once (SQLite decides again what it decided in a snapshot that
/// went out of date); `write` writes what the last `decide` decided.
#[async_trait]
pub trait PassWork: Send {
    /// Whether the pass moves every lead it picks (leads asked for by id), rather than those
    /// no other pass holds (due leads: one another pass holds is that pass's to move).
    fn whole(&self) -> bool;
    /// The leads the pass takes, read in `tx`; `held` are those other passes hold now.
    async fn pick(&mut self, tx: &mut dyn Tx, held: &[i64]) -> EngineResult<Vec<Lead>>;
    /// Reads in `tx` what a pass over `leads` needs and decides it, writing nothing.
    async fn decide(&mut self, tx: &mut dyn Tx, leads: Vec<Lead>) -> EngineResult<()>;
    /// Writes in `tx` what the last `decide` decided (the store commits).
    async fn write(&mut self, tx: &mut dyn Tx) -> EngineResult<()>;
}

/// The leads that passes of this process have taken and not yet written.
pub struct Held {
    ids: Mutex<IdSet>,
    /// Counts the passes that have let their leads go (what an advance of a manual clock
    /// waits on when a due lead it came for was held).
    pub released: tokio::sync::watch::Sender<u64>,
    /// Counts the times an advance began to wait for a held lead (what a test waits on to
    /// know the advance is parked there, instead of timing it).
    pub waits: tokio::sync::watch::Sender<u64>,
}

/// Leads marked held by one pass, let go when dropped.
pub struct Taken<'a>(&'a Held, Vec<i64>);

impl Default for Held {
    fn default() -> Self {
        Self {
            ids: Default::default(),
            released: tokio::sync::watch::Sender::new(0),
            waits: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdSet> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn list(&self) -> Vec<i64> {
        self.lock().iter().copied().collect()
    }

    /// Of these leads, those no other pass holds, marked as this one's.
    pub fn take(&self, leads: Vec<Lead>) -> (Vec<Lead>, Taken<'_>) {
        let mut held = self.lock();
        let mine: Vec<Lead> = leads.into_iter().filter(|l| held.insert(l.id.0)).collect();
        let ids = mine.iter().map(|l| l.id.0).collect();
        (mine, Taken(self, ids))
    }

    /// All these leads, those no other pass holds marked as this one's.
    pub fn hold(&self, leads: Vec<Lead>) -> (Vec<Lead>, Taken<'_>) {
        let mut held = self.lock();
        let ids = leads.iter().map(|l| l.id.0).filter(|id| held.insert(*id)).collect();
        (leads, Taken(self, ids))
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.1.is_empty() {
            return;
        }
        let mut held = self.0.lock();
        for id in &self.1 {
            held.remove(id);
        }
        drop(held);
        self.0.released.send_modify(|n| *n += 1);
    }
}

/// Picks in the write transaction `tx` and holds what was picked: a due lead another pass took
/// since the pick is that pass's (picked again, as it holds it now, if that left none); a lead
/// asked for by id is moved here all the same, and a pass that took it finds it written.
/// Returns the leads and the hold, which lasts until the pass has committed.
pub(crate) async fn pick_and_hold<'h>(
    tx: &mut dyn Tx,
    held: &'h Held,
    work: &mut dyn PassWork,
) -> EngineResult<(Vec<Lead>, Taken<'h>)> {
    loop {
        let leads = work.pick(tx, &held.list()).await?;
        let picked = leads.len();
        let (leads, taken) = if work.whole() {
            held.hold(leads)
        } else {
            held.take(leads)
        };
        if picked == 0 || !leads.is_empty() {
            return Ok((leads, taken));
        }
    }
}

/// Decides a pass over `leads` in the write transaction `tx`, writes it and commits.
pub(crate) async fn decide_and_write(
    mut tx: Box<dyn Tx>,
    leads: Vec<Lead>,
    work: &mut dyn PassWork,
) -> EngineResult<()> {
    if !leads.is_empty() {
        work.decide(tx.as_mut(), leads).await?;
        work.write(tx.as_mut()).await?;
    }
    tx.commit().await?;
    Ok(())
}
