//! A runner pass: the due leads picked, their journeys decided and written in one transaction.

use super::*;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::clock::to_micros;
use crate::lead::Lead;
use crate::nurture::{Changes, LeadState};
use crate::playbook::Playbook;
use crate::store::{ActivityRow, Snapshot, StoreError, Tx};

/// Which leads a runner or enrolling pass takes.
pub(super) enum Pick<'a> {
    /// Those with the earliest due waits, at most this many enrollments' worth.
    Due(i64),
    /// These, by id.
    Ids(&'a [i64]),
}

/// A pass decided and not yet written.
pub(super) struct PassPlan {
    pub(super) states: IdMap<LeadState>,
    pub(super) changes: Changes,
    pub(super) moves: journeys::JourneyMoves,
}

/// Leads taken by a pass of this engine that decided outside the writer's turn and has not
/// written yet: other passes do not pick them meanwhile.
pub(super) struct Busy {
    pub(super) held: Mutex<IdSet>,
    /// Counts the passes that have let their leads go, for [`Engine::advance_clock`] to wait
    /// on when a due lead it came for was held.
    pub(super) released: tokio::sync::watch::Sender<u64>,
    /// Counts the times an advance began to wait for a held lead (what a test waits on to
    /// know the advance is parked there, instead of timing it).
    pub(super) waits: tokio::sync::watch::Sender<u64>,
}

/// Leads marked busy, unmarked when dropped.
pub(super) struct Taken<'a>(&'a Busy, Vec<i64>);

impl Default for Busy {
    fn default() -> Self {
        Self {
            held: Default::default(),
            released: tokio::sync::watch::Sender::new(0),
            waits: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Busy {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, IdSet> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn list(&self) -> Vec<i64> {
        self.lock().iter().copied().collect()
    }

    /// Of these leads, those no other pass holds, marked as this one's.
    pub(super) fn take(&self, leads: Vec<Lead>) -> (Vec<Lead>, Taken<'_>) {
        let mut busy = self.lock();
        let mine: Vec<Lead> = leads.into_iter().filter(|l| busy.insert(l.id.0)).collect();
        let ids = mine.iter().map(|l| l.id.0).collect();
        (mine, Taken(self, ids))
    }

    /// All these leads, those no other pass holds marked as this one's.
    pub(super) fn hold(&self, leads: Vec<Lead>) -> (Vec<Lead>, Taken<'_>) {
        let mut busy = self.lock();
        let ids = leads.iter().map(|l| l.id.0).filter(|id| busy.insert(*id)).collect();
        (leads, Taken(self, ids))
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.1.is_empty() {
            return;
        }
        let mut busy = self.0.lock();
        for id in &self.1 {
            busy.remove(id);
        }
        drop(busy);
        self.0.released.send_modify(|n| *n += 1);
    }
}

impl Engine {
    /// Runs the enrollments whose waits are over at the engine's `now`, up to `limit` leads'
    /// worth in one transaction; returns how many enrollments moved. Workers on one PostgreSQL
    /// database share the due work: each takes the leads no other worker holds.
    pub async fn run_due(&self, limit: i64) -> EngineResult<usize> {
        let started = std::time::Instant::now();
        let moved = retrying(|| self.run_due_once(limit)).await;
        self.phases.since(Phase::Runner, started);
        moved
    }

    pub(super) async fn run_due_once(&self, limit: i64) -> EngineResult<usize> {
        Ok(self.pass(Pick::Due(limit), &Entry::Closed).await?.0.moved)
    }

    /// The runner `serve` runs with the system clock: moves due enrollments in batches and,
    /// when none is due, sleeps until the next wake-up time (at most a second, so that waits
    /// written meanwhile by other workers or requests are seen), so a wait ends on time rather
    /// than at the next poll. Runs until the task is dropped.
    pub async fn run_campaigns(self: Arc<Self>) {
        loop {
            match self.run_timers(1_000).await {
                Ok(0) => {}
                Ok(handled) => tracing::debug!(handled, "Handoff timers ran."),
                Err(e) => tracing::warn!(error = %e, "Running handoff timers failed; retrying."),
            }
            match self.run_due(PASS_LEADS as i64).await {
                Ok(0) => {}
                Ok(moved) => {
                    tracing::debug!(moved, "Enrollments moved.");
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "Running due enrollments failed; retrying."),
            }
            let pause = match self.next_timer().await {
                Ok(Some(at)) => (at - self.clock.now()).to_std().unwrap_or_default(),
                _ => std::time::Duration::from_secs(1),
            };
            tokio::time::sleep(pause.min(std::time::Duration::from_secs(1))).await;
        }
    }

    /// After a change to leads that received no events: their campaigns move (goals, `until`
    /// waits, entries by trigger), the MQL rule is asked, and the leads are written.
    pub(super) async fn settle(
        &self,
        tx: &mut dyn Tx,
        states: &mut IdMap<LeadState>,
        playbook: &Playbook,
        now: DateTime<Utc>,
        changes: &mut Changes,
    ) -> EngineResult<()> {
        self.run_journeys(tx, states, playbook, now, &IdMap::default(), &Entry::Triggers, changes)
            .await?;
        for state in states.values_mut() {
            state.check_mql(playbook, now, changes);
        }
        let rows: Vec<Lead> = states.values().map(|s| s.lead.clone()).collect();
        tx.write_leads(&rows).await?;
        Ok(())
    }

    /// A journey pass over the leads `pick` takes (leads that receive no events: the runner's
    /// and hand enrollment's), written and committed; returns what moved and the picked ids
    /// that are no lead.
    ///
    /// Where the store reads snapshots and writes one transaction at a time (SQLite), the pass
    /// reads and decides in a snapshot, outside the writer's turn, so that one pass decides
    /// while another writes; it writes if nothing committed since may have changed what it
    /// read (`Store::begin_checked`), and otherwise is decided again in the write transaction,
    /// which is also the only way on PostgreSQL (where workers lock the rows they take).
    pub(super) async fn pass(&self, pick: Pick<'_>, entry: &Entry) -> EngineResult<(JourneyCounts, Vec<i64>)> {
        let now = self.now();
        let playbook = self.playbook();
        if let Some(Snapshot { tx: mut read, seq }) = self.store.begin_snapshot().await? {
            let (leads, absent) = self.pick(read.as_mut(), &pick, entry, now).await?;
            if leads.is_empty() {
                return Ok((JourneyCounts::default(), absent));
            }
            let picked = leads.len();
            let (mut leads, _taken) = self.busy.take(leads);
            // A lead another pass wrote since this snapshot began shows here as it was. Taken
            // first, then asked about: a pass that wrote it and let it go before `take` is in
            // the store's log by then, and one still holding it kept it from this pass.
            let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
            let stale = self.store.written_since(seq, &ids);
            leads.retain(|l| !stale.contains(&l.id.0));
            // A due lead another pass holds or has just moved is that pass's; a lead asked for
            // by id is not dropped: the pass is decided again below, after the other has
            // written.
            let whole = leads.len() == picked || matches!(pick, Pick::Due(_));
            if whole && !leads.is_empty() {
                let plan = self.plan_pass(read.as_mut(), leads, &playbook, now, entry).await?;
                read.commit().await?;
                let ids: Vec<i64> = plan.states.keys().copied().collect();
                if let Some(tx) = self.store.begin_checked(seq, &ids).await? {
                    match self.write_pass(tx, plan, &playbook, now).await {
                        // Staged, it found out only when it came to write; it wrote nothing.
                        Err(EngineError::Store(StoreError::Stale)) => {}
                        written => return Ok((written?, absent)),
                    }
                }
            }
            // Something changed since the snapshot, or another pass holds leads it took: decided
            // again below, in the write transaction.
            tracing::debug!("A pass decided in a snapshot is decided again in the write transaction.");
        }
        let mut tx = self.store.begin().await?;
        // Held here too, or passes deciding in snapshots meanwhile would take the same due
        // leads and, finding this pass in the log when they come to write, be decided again
        // in turn. A due lead one of them took since the pick is theirs (picked again, as
        // they hold it now, if that left none); a lead asked for by id is moved here all the
        // same, and a pass that took it finds it written.
        let (leads, absent, _held) = loop {
            let (leads, absent) = self.pick(tx.as_mut(), &pick, entry, now).await?;
            let picked = leads.len();
            let (leads, held) = match pick {
                Pick::Due(_) => self.busy.take(leads),
                Pick::Ids(_) => self.busy.hold(leads),
            };
            if picked == 0 || !leads.is_empty() {
                break (leads, absent, held);
            }
        };
        let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
        // Scoped even when empty: a pass that wrote nothing changed nothing a snapshot shows.
        tx.scope(&ids);
        if leads.is_empty() {
            tx.commit().await?;
            return Ok((JourneyCounts::default(), absent));
        }
        let plan = self.plan_pass(tx.as_mut(), leads, &playbook, now, entry).await?;
        Ok((self.write_pass(tx, plan, &playbook, now).await?, absent))
    }

    /// The leads a pass takes, read in `tx`, and the asked-for ids that are no lead.
    pub(super) async fn pick(
        &self,
        tx: &mut dyn Tx,
        pick: &Pick<'_>,
        entry: &Entry,
        now: DateTime<Utc>,
    ) -> EngineResult<(Vec<Lead>, Vec<i64>)> {
        match pick {
            Pick::Due(limit) => {
                let paused = tx.frozen_campaigns().await?;
                let due = tx.due_leads(to_micros(now), &paused, &self.busy.list(), *limit).await?;
                if due.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                Ok((tx.take_free_leads(&due).await?, Vec::new()))
            }
            Pick::Ids(ids) => {
                if let Entry::Into(campaign) = entry {
                    if tx.frozen_campaigns().await?.iter().any(|c| c == campaign) {
                        return Err(EngineError::Conflict(format!(
                            "campaign {campaign:?} is paused or retired; resume it before enrolling leads"
                        )));
                    }
                }
                let leads = tx.find_leads(ids, &[], &[]).await?;
                let found: HashSet<i64> = leads.iter().map(|lead| lead.id.0).collect();
                let absent = ids.iter().copied().filter(|id| !found.contains(id)).collect();
                Ok((leads, absent))
            }
        }
    }

    /// Reads what a pass over these leads needs in `tx` and decides it, writing nothing.
    pub(super) async fn plan_pass(
        &self,
        tx: &mut dyn Tx,
        leads: Vec<Lead>,
        playbook: &Playbook,
        now: DateTime<Utc>,
        entry: &Entry,
    ) -> EngineResult<PassPlan> {
        let mut states = load_states(tx, leads, playbook, now, &[]).await?;
        let mut changes = Changes::default();
        let moves = self
            .decide_journeys(tx, &mut states, playbook, now, &IdMap::default(), entry, &mut changes)
            .await?;
        for state in states.values_mut() {
            state.check_mql(playbook, now, &mut changes);
        }
        Ok(PassPlan { states, changes, moves })
    }

    /// Writes a decided pass in `tx` and commits.
    pub(super) async fn write_pass(
        &self,
        mut tx: Box<dyn Tx>,
        plan: PassPlan,
        playbook: &Playbook,
        now: DateTime<Utc>,
    ) -> EngineResult<JourneyCounts> {
        let counts = self.write_journeys(tx.as_mut(), plan.moves).await?;
        let dirty: Vec<ActivityRow> = plan
            .states
            .values()
            .filter(|s| s.dirty)
            .map(|s| ActivityRow::from(&s.lead))
            .collect();
        tx.write_lead_activity(&dirty).await?;
        self.write_changes(tx.as_mut(), &plan.states, &plan.changes, playbook, now, Vec::new())
            .await?;
        tx.commit().await?;
        Ok(counts)
    }
}
