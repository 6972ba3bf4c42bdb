//! A runner pass: the due leads picked, their journeys decided and written in one transaction.

use super::*;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::audit::Change;
use crate::clock::to_micros;
use crate::lead::Lead;
use crate::nurture::{Changes, LeadState};
use crate::playbook::Playbook;
use crate::store::{ActivityRow, PassWork, Tx};

/// Which leads a runner or enrolling pass takes.
pub(super) enum Pick<'a> {
    /// Those with the earliest due waits, at most this many enrollments' worth.
    Due(i64),
    /// These, by id.
    Ids(&'a [i64]),
}

/// What a dry run decided: the leads, those running in the campaign entered by hand now, the
/// suppressed e-mail hashes among them, and the leads that would enter, by campaign.
pub(super) struct DryDecision {
    pub(super) leads: Vec<Lead>,
    pub(super) running: HashSet<i64>,
    pub(super) suppressed: HashSet<String>,
    pub(super) entering: HashMap<String, HashSet<i64>>,
}

/// An enrolling pass, decided and never written: what `dry_run` reports (`Entry::Into`), and
/// what a deploy would enroll at once (`Entry::Matching`, with the playbook to deploy).
pub(super) struct DryPass<'a> {
    engine: &'a Engine,
    ids: &'a [i64],
    entry: Entry,
    now: DateTime<Utc>,
    playbook: Arc<Playbook>,
    /// The asked-for ids that are no lead.
    pub(super) absent: Vec<i64>,
    pub(super) decided: Option<DryDecision>,
}

impl<'a> DryPass<'a> {
    pub(super) fn new(engine: &'a Engine, ids: &'a [i64], entry: Entry, playbook: Arc<Playbook>) -> Self {
        Self {
            engine,
            ids,
            entry,
            now: engine.now(),
            playbook,
            absent: Vec::new(),
            decided: None,
        }
    }
}

#[async_trait::async_trait]
impl PassWork for DryPass<'_> {
    fn whole(&self) -> bool {
        true
    }

    async fn pick(&mut self, tx: &mut dyn Tx, held: &[i64]) -> EngineResult<Vec<Lead>> {
        let (leads, absent) = self
            .engine
            .pick(tx, &Pick::Ids(self.ids), &self.entry, self.now, held)
            .await?;
        self.absent = absent;
        Ok(leads)
    }

    async fn decide(&mut self, tx: &mut dyn Tx, leads: Vec<Lead>) -> EngineResult<()> {
        let running = match &self.entry {
            Entry::Into(campaign) => {
                let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
                tx.load_enrollments(&ids)
                    .await?
                    .into_iter()
                    .filter(|e| e.campaign == *campaign && e.status.is_open())
                    .map(|e| e.lead.0)
                    .collect()
            }
            _ => HashSet::new(),
        };
        let hashes: Vec<String> = leads
            .iter()
            .filter_map(|l| l.email.as_deref().map(crate::store::email_hash))
            .collect();
        let suppressed = tx.suppressed(&hashes).await?;
        let plan = self
            .engine
            .plan_pass(tx, leads.clone(), &self.playbook, self.now, &self.entry)
            .await?;
        self.decided = Some(DryDecision {
            leads,
            running,
            suppressed,
            entering: plan.moves.entered(),
        });
        Ok(())
    }

    /// A dry run writes nothing.
    async fn write(&mut self, _tx: &mut dyn Tx) -> EngineResult<()> {
        Ok(())
    }
}

/// A pass decided and not yet written.
pub(super) struct PassPlan {
    pub(super) states: IdMap<LeadState>,
    pub(super) changes: Changes,
    pub(super) moves: journeys::JourneyMoves,
}

/// A runner or enrolling pass as the store runs it (see [`Store::run_pass`]).
struct JourneyPass<'a> {
    engine: &'a Engine,
    pick: Pick<'a>,
    entry: &'a Entry,
    /// Recorded, naming the leads, when the pass enrolls or exits leads by hand.
    audit: Option<&'a Change>,
    now: DateTime<Utc>,
    playbook: Arc<Playbook>,
    plan: Option<PassPlan>,
    counts: JourneyCounts,
    /// The picked ids that are no lead.
    absent: Vec<i64>,
}

#[async_trait::async_trait]
impl PassWork for JourneyPass<'_> {
    fn whole(&self) -> bool {
        matches!(self.pick, Pick::Ids(_))
    }

    async fn pick(&mut self, tx: &mut dyn Tx, held: &[i64]) -> EngineResult<Vec<Lead>> {
        let (leads, absent) = self.engine.pick(tx, &self.pick, self.entry, self.now, held).await?;
        self.absent = absent;
        Ok(leads)
    }

    async fn decide(&mut self, tx: &mut dyn Tx, leads: Vec<Lead>) -> EngineResult<()> {
        let plan = self
            .engine
            .plan_pass(tx, leads, &self.playbook, self.now, self.entry)
            .await?;
        self.plan = Some(plan);
        Ok(())
    }

    async fn write(&mut self, tx: &mut dyn Tx) -> EngineResult<()> {
        let plan = self.plan.take().expect("a pass writes what it decided");
        let by_hand = match (self.audit, self.entry) {
            (Some(audit), Entry::Into(campaign)) => Some((audit, plan.moves.entering(campaign))),
            (Some(audit), Entry::Exit { campaign, .. }) => Some((audit, plan.moves.ending(campaign))),
            _ => None,
        };
        self.counts = self.engine.write_pass(tx, plan, &self.playbook, self.now).await?;
        if let Some((audit, leads)) = by_hand.filter(|(_, leads)| !leads.is_empty()) {
            let mut leads: Vec<i64> = leads.into_iter().collect();
            leads.sort_unstable();
            let leads: Vec<String> = leads.iter().map(i64::to_string).collect();
            let audit = audit.clone().with("count", leads.len()).with("leads", leads);
            tx.write_audit(&[audit], to_micros(self.now)).await?;
        }
        Ok(())
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
        Ok(self.pass(Pick::Due(limit), &Entry::Closed, None).await?.0.moved)
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
    pub(super) async fn pass(
        &self,
        pick: Pick<'_>,
        entry: &Entry,
        audit: Option<&Change>,
    ) -> EngineResult<(JourneyCounts, Vec<i64>)> {
        let mut work = JourneyPass {
            engine: self,
            pick,
            entry,
            audit,
            now: self.now(),
            playbook: self.playbook(),
            plan: None,
            counts: JourneyCounts::default(),
            absent: Vec::new(),
        };
        self.store.run_pass(&mut work).await?;
        self.totals.add(&work.counts.counted);
        Ok((work.counts, work.absent))
    }

    /// The leads a pass takes, read in `tx`, and the asked-for ids that are no lead.
    pub(super) async fn pick(
        &self,
        tx: &mut dyn Tx,
        pick: &Pick<'_>,
        entry: &Entry,
        now: DateTime<Utc>,
        held: &[i64],
    ) -> EngineResult<(Vec<Lead>, Vec<i64>)> {
        match pick {
            Pick::Due(limit) => {
                let paused = tx.frozen_campaigns().await?;
                let due = tx.due_leads(to_micros(now), &paused, held, *limit).await?;
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

    /// Writes a decided pass in `tx`.
    pub(super) async fn write_pass(
        &self,
        tx: &mut dyn Tx,
        plan: PassPlan,
        playbook: &Playbook,
        now: DateTime<Utc>,
    ) -> EngineResult<JourneyCounts> {
        let counts = self.write_journeys(tx, plan.moves).await?;
        let dirty: Vec<ActivityRow> = plan
            .states
            .values()
            .filter(|s| s.dirty)
            .map(|s| ActivityRow::from(&s.lead))
            .collect();
        tx.write_lead_activity(&dirty).await?;
        self.write_changes(tx, &plan.states, &plan.changes, playbook, now, Vec::new())
            .await?;
        Ok(counts)
    }
}
