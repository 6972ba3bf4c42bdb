//! The engine facade: every write to the lead store goes through here, so that rules, attribute
//! tags and the MQL check apply the same way whether a change came from an event, an import, a
//! CRM upsert or an SDR. Work is done in batches inside one transaction.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::clock::{to_micros, Clock};
use crate::condition::EventView;
use crate::event::EventInput;
use crate::lead::{ChannelConsent, ConsentStatus, EmailAddress, FieldError, Lead, LeadId, LeadInput, LeadRef};
use crate::nurture::{Changes, LeadState};
use crate::playbook::{Issue, Playbook};
use crate::store::{
    email_hash, ActivityRow, CampaignRecord, CampaignStatus, CampaignVersion, DeployReport, LeadFilter, NewEvent,
    Snapshot, Store, StoreError, TimelineCursor, TimelineEntry, Tx,
};
use crate::tag::{normalize_tag, Actor, ScoreChange, TagFamily};
use crate::webhook::payload::{Data, Nothing, Unsubscribed};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    /// Something other than a lead that does not exist, said so.
    #[error("{0}")]
    Missing(String),
    /// A store failure passed on to callers other than the one that met it.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller's role allows the route, but not this use of it (someone else's resource).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => EngineError::Conflict(message),
            other => EngineError::Store(other),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// The most leads one journey pass takes: the runner's due batches and hand enrollment's
/// chunks. SQLite's multi-row writes hold as many rows a statement, so a pass usually writes
/// each table in one round trip to the database.
const PASS_LEADS: usize = 1_000;

/// What enrolling leads by hand did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct EnrollReport {
    pub enrolled: usize,
    /// Already running in the campaign, or not allowed back yet by its re-entry rule.
    pub skipped: usize,
    /// Indexes of the leads given that do not exist.
    pub not_found: Vec<usize>,
}

/// A lead with its tags, as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct LeadView {
    #[serde(flatten)]
    pub lead: Lead,
    pub tags: Vec<String>,
}

/// The outcome of one item of an upsert.
#[derive(Debug, Clone, PartialEq)]
pub enum Upserted {
    Created(LeadView),
    Updated(LeadView),
}

/// Why one item of a batch was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemError {
    Invalid(Vec<FieldError>),
    Conflict(String),
    NotFound(String),
}

/// The answer to an ingested batch of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// An item of a batch that was refused, and why: the shape of every bulk answer's rejected
/// items, `{"index", "error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Rejected {
    /// The item's position in the request, from 0.
    pub index: usize,
    pub error: RejectedError,
}

/// Why one item was refused, in the shape of the API's error body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct RejectedError {
    /// `validation_failed`, `not_found` or `idempotency_key_reused`.
    pub code: String,
    pub message: String,
    /// For `validation_failed`: each field and what is wrong with it.
    pub details: Vec<FieldError>,
}

impl Rejected {
    pub fn invalid(index: usize, details: Vec<FieldError>) -> Self {
        let message = crate::lead::summary(&details);
        Self {
            index,
            error: RejectedError {
                code: "validation_failed".into(),
                message,
                details,
            },
        }
    }

    /// An idempotency key that already names another event (`earlier` says which).
    pub fn key_reused(index: usize, input: &EventInput, earlier: &str) -> Self {
        let key = input.idempotency_key.as_deref().unwrap_or_default();
        Self {
            index,
            error: RejectedError {
                code: "idempotency_key_reused".into(),
                message: format!(
                    "idempotency_key {key:?} already names {earlier} with another lead, type, time or \
                     properties; send a new key for a new event (a retry must repeat the event as it was)"
                ),
                details: vec![FieldError::new("idempotency_key", "already names another event")],
            },
        }
    }

    pub fn not_found(index: usize, message: String) -> Self {
        Self {
            index,
            error: RejectedError {
                code: "not_found".into(),
                message,
                details: Vec::new(),
            },
        }
    }
}

/// The condition of segment `id`, or why there is none.
fn segment_of<'p>(playbook: &'p Playbook, id: &str) -> EngineResult<&'p crate::condition::Condition> {
    playbook.segments.get(id).ok_or_else(|| {
        EngineError::Invalid(vec![FieldError::new(
            "segment",
            format!("segment {id:?} does not exist"),
        )])
    })
}

/// Whether two events of one batch under one idempotency key are the same event.
fn same_event(a: &EventInput, b: &EventInput) -> bool {
    a.lead == b.lead && a.kind == b.kind && a.occurred_at == b.occurred_at && a.properties == b.properties
}

/// Where an upsert item goes: found by its keys, or a lead addressed by id (PATCH).
#[derive(Debug, Clone)]
pub enum Target {
    Keys,
    Id(LeadId),
}

mod deliverability;
mod dispatch;
mod handoffs;
mod journeys;
mod phases;
mod webhooks;
pub use dispatch::{DispatchReport, Sender, DISPATCH_BATCH, MAX_ATTEMPTS};
pub use handoffs::{queue_cursor, unknown_events, WEBHOOK_EVENTS};
pub use journeys::{Entry, JourneyCounts, MESSAGE_EVENTS};
pub use phases::{Phase, Phases};
pub use webhooks::NewWebhook;

pub struct Engine {
    store: Arc<dyn Store>,
    playbook: RwLock<Arc<Playbook>>,
    clock: Arc<dyn Clock>,
    /// The time outside this server: webhook signatures carry it (`t=`), because a receiver
    /// checks them against its own clock, whatever `clock` says (a manual clock in a demo).
    wall: Arc<dyn Clock>,
    versions: journeys::Versions,
    claims: handoffs::Claims,
    busy: Busy,
    /// One dispatch pass at a time in this process: when [`Engine::advance_clock`] sends what
    /// fell due, no pass of the background dispatcher is still on the wire with the time it
    /// read before the clock moved.
    dispatching: tokio::sync::Mutex<()>,
    /// The furthest time a manual clock's advance was asked to reach (microseconds; 0 before
    /// any): what leases taken meanwhile run from (see `dispatch`).
    advancing_to: std::sync::atomic::AtomicI64,
    /// Time spent per phase of work (see `phases`).
    phases: Phases,
}

/// Which leads a runner or enrolling pass takes.
enum Pick<'a> {
    /// Those with the earliest due waits, at most this many enrollments' worth.
    Due(i64),
    /// These, by id.
    Ids(&'a [i64]),
}

/// Maps keyed by ids the store assigned (leads, enrollments), which a pass builds and reads
/// for every lead it holds: FxHash, not SipHash, whose resistance to chosen keys these keys
/// do not need (SipHash was 2.4% of a wake-and-branch step's instructions).
pub(crate) type IdMap<V> = HashMap<i64, V, rustc_hash::FxBuildHasher>;
/// A set of such ids, hashed the same way.
type IdSet = HashSet<i64, rustc_hash::FxBuildHasher>;

/// A pass decided and not yet written.
struct PassPlan {
    states: IdMap<LeadState>,
    changes: Changes,
    moves: journeys::JourneyMoves,
}

/// Leads taken by a pass of this engine that decided outside the writer's turn and has not
/// written yet: other passes do not pick them meanwhile.
struct Busy {
    held: Mutex<IdSet>,
    /// Counts the passes that have let their leads go, for [`Engine::advance_clock`] to wait
    /// on when a due lead it came for was held.
    released: tokio::sync::watch::Sender<u64>,
    /// Counts the times an advance began to wait for a held lead (what a test waits on to
    /// know the advance is parked there, instead of timing it).
    waits: tokio::sync::watch::Sender<u64>,
}

/// Leads marked busy, unmarked when dropped.
struct Taken<'a>(&'a Busy, Vec<i64>);

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
    fn lock(&self) -> std::sync::MutexGuard<'_, IdSet> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list(&self) -> Vec<i64> {
        self.lock().iter().copied().collect()
    }

    /// Of these leads, those no other pass holds, marked as this one's.
    fn take(&self, leads: Vec<Lead>) -> (Vec<Lead>, Taken<'_>) {
        let mut busy = self.lock();
        let mine: Vec<Lead> = leads.into_iter().filter(|l| busy.insert(l.id.0)).collect();
        let ids = mine.iter().map(|l| l.id.0).collect();
        (mine, Taken(self, ids))
    }

    /// All these leads, those no other pass holds marked as this one's.
    fn hold(&self, leads: Vec<Lead>) -> (Vec<Lead>, Taken<'_>) {
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
    pub fn new(store: Arc<dyn Store>, playbook: Playbook, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            playbook: RwLock::new(Arc::new(playbook)),
            clock,
            wall: Arc::new(crate::clock::SystemClock),
            versions: Default::default(),
            claims: Default::default(),
            busy: Default::default(),
            dispatching: Default::default(),
            advancing_to: Default::default(),
            phases: Default::default(),
        }
    }

    /// Time spent per phase of work since the engine started.
    pub fn phases(&self) -> &Phases {
        &self.phases
    }

    /// See `advancing_to`.
    fn advancing_to(&self) -> DateTime<Utc> {
        crate::clock::from_micros(self.advancing_to.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Now, to the microsecond: the precision both stores keep, so that an answer and a later
    /// read of the same lead agree.
    pub fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        self.clock.now().trunc_subsecs(6)
    }

    pub fn playbook(&self) -> Arc<Playbook> {
        self.playbook.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs the enrollments whose waits are over at the engine's `now`, up to `limit` leads'
    /// worth in one transaction; returns how many enrollments moved. Workers on one PostgreSQL
    /// database share the due work: each takes the leads no other worker holds.
    pub async fn run_due(&self, limit: i64) -> EngineResult<usize> {
        let started = std::time::Instant::now();
        let moved = retrying(|| self.run_due_once(limit)).await;
        self.phases.since(Phase::Runner, started);
        moved
    }

    async fn run_due_once(&self, limit: i64) -> EngineResult<usize> {
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
    async fn settle(
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
    async fn pass(&self, pick: Pick<'_>, entry: &Entry) -> EngineResult<(JourneyCounts, Vec<i64>)> {
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
    async fn pick(
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
    async fn plan_pass(
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
    async fn write_pass(
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

    /// Enrolls leads into a campaign by hand (API or CLI): its trigger is not asked, its
    /// re-entry rule is, and a lead already running in it stays where it is. Leads that cannot
    /// be found are reported by their index.
    pub async fn enroll(&self, campaign: &str, leads: &[LeadRef]) -> EngineResult<EnrollReport> {
        let nameless: Vec<FieldError> = leads
            .iter()
            .enumerate()
            .filter(|(_, by)| by.names_nobody())
            .map(|(i, _)| {
                FieldError::new(
                    format!("leads[{i}]"),
                    "name the lead by its id (a string), or {\"email\": …} or {\"external_id\": …}",
                )
            })
            .collect();
        if !nameless.is_empty() {
            return Err(EngineError::Invalid(nameless));
        }
        let mut report = EnrollReport::default();
        // Every reference resolved in one query, not one lookup per lead.
        let email_of = |by: &LeadRef| {
            by.email
                .as_deref()
                .and_then(|e| EmailAddress::parse(e).ok())
                .map(|e| e.into_string())
        };
        let ext_of = |by: &LeadRef| by.external_id.as_deref().map(|x| x.trim().to_owned());
        let emails: Vec<String> = leads.iter().filter(|by| by.id.is_none()).filter_map(email_of).collect();
        let exts: Vec<String> = leads.iter().filter(|by| by.id.is_none()).filter_map(ext_of).collect();
        // Ids need no lookup here: the enrolling transaction reads (and locks) those leads
        // anyway and says which it did not find. E-mails and external ids are resolved first.
        let (by_email, by_ext): (HashMap<String, i64>, HashMap<String, i64>) = if emails.is_empty() && exts.is_empty() {
            Default::default()
        } else {
            let mut tx = self.store.begin_read().await?;
            let found = tx.find_leads(&[], &emails, &exts).await?;
            tx.commit().await?;
            (
                found
                    .iter()
                    .filter_map(|lead| Some((lead.email.clone()?, lead.id.0)))
                    .collect(),
                found
                    .iter()
                    .filter_map(|lead| Some((lead.external_id.clone()?, lead.id.0)))
                    .collect(),
            )
        };
        let mut ids = Vec::new();
        let mut index_of: HashMap<i64, Vec<usize>> = HashMap::new();
        for (index, by) in leads.iter().enumerate() {
            let hit = match &by.id {
                Some(id) => id.parse::<i64>().ok(),
                None => email_of(by)
                    .and_then(|e| by_email.get(&e).copied())
                    .or_else(|| ext_of(by).and_then(|x| by_ext.get(&x).copied())),
            };
            match hit {
                Some(id) => {
                    ids.push(id);
                    index_of.entry(id).or_default().push(index);
                }
                None => report.not_found.push(index),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        for missing in self.enroll_ids(campaign, &ids, &mut report).await? {
            report.not_found.extend(index_of.remove(&missing).unwrap_or_default());
        }
        report.not_found.sort_unstable();
        Ok(report)
    }

    /// Enrolls every lead of a segment into a campaign by hand, in batches.
    pub async fn enroll_segment(&self, campaign: &str, segment: &str) -> EngineResult<EnrollReport> {
        let mut report = EnrollReport::default();
        let mut after = None;
        loop {
            let (page, next) = self
                .list_leads(&LeadFilter::default(), Some(segment), after, 500)
                .await?;
            let ids: Vec<i64> = page.iter().map(|v| v.lead.id.0).collect();
            self.enroll_ids(campaign, &ids, &mut report).await?;
            match next {
                Some(next) => after = Some(next),
                None => return Ok(report),
            }
        }
    }

    /// Enrolls these leads; returns the ids that are not leads.
    async fn enroll_ids(&self, campaign: &str, ids: &[i64], report: &mut EnrollReport) -> EngineResult<Vec<i64>> {
        let playbook = self.playbook();
        if !playbook.campaigns.contains_key(campaign) {
            return Err(EngineError::NotFound);
        }
        let entry = Entry::Into(campaign.to_owned());
        let mut missing = Vec::new();
        for chunk in ids.chunks(PASS_LEADS) {
            let (entered, absent) = retrying(|| self.enter_once(&entry, chunk)).await?;
            report.enrolled += entered;
            report.skipped += (chunk.len() - absent.len()).saturating_sub(entered);
            missing.extend(absent);
        }
        Ok(missing)
    }

    /// After a deploy, enrolls in the background the leads that already match its new and
    /// changed campaigns (a scan of every lead, so the deploy's caller does not wait for it).
    pub fn enter_matching_after(self: &Arc<Self>, deployed: &DeployReport) {
        let fresh: Vec<String> = deployed.created.iter().chain(&deployed.changed).cloned().collect();
        if fresh.is_empty() {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            match engine.enter_matching(&fresh).await {
                Ok(n) => tracing::info!(entered = n, "Leads that already matched entered the new campaigns."),
                Err(e) => tracing::warn!(error = %e, "Entering leads that already match failed."),
            }
        });
    }

    /// Enrolls the leads that match these segment-triggered campaigns now: what a deploy does
    /// for new and changed campaigns, so that leads that already match do not wait for their
    /// next change. Scans every lead in batches; returns how many entered.
    pub async fn enter_matching(&self, campaigns: &[String]) -> EngineResult<usize> {
        let playbook = self.playbook();
        let wanted: Vec<String> = campaigns
            .iter()
            .filter(|id| {
                playbook
                    .campaigns
                    .get(*id)
                    .is_some_and(|c| c.entry.trigger == crate::playbook::Trigger::Segment)
            })
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let entry = Entry::Matching(wanted);
        let mut entered = 0;
        let mut after = None;
        loop {
            let leads = self.store.list_leads(&LeadFilter::default(), after, 500).await?;
            let Some(last) = leads.last().map(|l| l.id) else {
                return Ok(entered);
            };
            let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
            entered += retrying(|| self.enter_once(&entry, &ids)).await?.0;
            after = Some(last);
        }
    }

    /// One enrolling pass: (how many entered, the ids that are not leads).
    async fn enter_once(&self, entry: &Entry, ids: &[i64]) -> EngineResult<(usize, Vec<i64>)> {
        let (counts, absent) = self.pass(Pick::Ids(ids), entry).await?;
        Ok((counts.entered, absent))
    }

    /// Where a manual clock stood when it last moved (the `settings` row): a restarted
    /// `serve --clock manual` resumes there instead of at the wall clock, so that times already
    /// stored are never in its future.
    pub const MANUAL_CLOCK_SETTING: &'static str = "manual_clock";

    /// Sets a manual clock, at start, to where it stood when it last moved, or else to `fresh`;
    /// returns the time it shows.
    pub async fn resume_manual_clock(
        &self,
        clock: &crate::clock::ManualClock,
        fresh: DateTime<Utc>,
    ) -> EngineResult<DateTime<Utc>> {
        let stored = self
            .store
            .setting(Self::MANUAL_CLOCK_SETTING, &to_micros(fresh).to_string())
            .await?;
        let at = stored
            .parse::<i64>()
            .map(crate::clock::from_micros)
            .map_err(|e| EngineError::Failed(format!("the stored manual clock {stored:?} is not a time: {e}")))?;
        clock.advance_to(at);
        Ok(clock.now())
    }

    /// Moves a manual clock to `at`, recording it first (see [`Self::MANUAL_CLOCK_SETTING`]).
    async fn move_clock(&self, clock: &crate::clock::ManualClock, at: DateTime<Utc>) -> EngineResult<()> {
        self.store
            .put_setting(Self::MANUAL_CLOCK_SETTING, &to_micros(at).to_string())
            .await?;
        clock.advance_to(at);
        Ok(())
    }

    /// Hands every message that is due to the mailer while the clock stands still, so that each
    /// is recorded as sent at the time its step ran. Without a sender (tests that dispatch by
    /// hand, benchmarks), nothing is sent here.
    async fn send_due(&self, sender: Option<&Sender>) -> EngineResult<()> {
        let Some(sender) = sender else {
            return Ok(());
        };
        // Each pass claims what is due now; what it leaves (a retry, a message over a rate
        // limit) is due later, so the loop ends.
        while self.dispatch(sender, DISPATCH_BATCH).await?.handled() > 0 {}
        self.send_notifications(sender, 500).await?;
        Ok(())
    }

    /// Moves a manual clock forward by `by`, running every step that falls due on the way, in
    /// order of due time, each at its own due time, and (given a `sender`) handing the
    /// messages those steps made to the mailer at that time too; returns once the engine is
    /// idle at the new time. `clock` must be the engine's own clock. Returns how many
    /// enrollments moved.
    ///
    /// A due lead another pass of this engine holds (an enrolling pass after a deploy, say) is
    /// waited for and then moved, so that what the clock made due has moved when this returns;
    /// one held by another process is left to it.
    pub async fn advance_clock(
        &self,
        clock: &crate::clock::ManualClock,
        by: chrono::Duration,
        sender: Option<&Sender>,
    ) -> EngineResult<usize> {
        let target = clock.now() + by;
        self.advancing_to
            .fetch_max(to_micros(target), std::sync::atomic::Ordering::Relaxed);
        let mut moved = 0;
        self.send_due(sender).await?;
        self.await_sends_in_flight().await?;
        while let Some(at) = self.next_timer().await?.filter(|at| *at <= target) {
            self.move_clock(clock, at).await?;
            let (n, stuck) = self.run_at(at, sender).await?;
            moved += n;
            if stuck {
                // Due but not movable (another process holds its lead): do not spin.
                break;
            }
        }
        self.move_clock(clock, target).await?;
        loop {
            let released = self.busy.released.subscribe();
            moved += self.run_due(PASS_LEADS as i64).await?;
            self.run_timers(1_000).await?;
            if !self.held_here(released).await {
                self.send_due(sender).await?;
                return Ok(moved);
            }
        }
    }

    /// Moves every enrollment due at the clock's time `at`, batch by batch, and (given a
    /// `sender`) sends their mail at that time: each batch's mail goes out while the next batch
    /// moves, so that neither waits for the other. Returns how many moved, and whether what is
    /// due at `at` cannot be moved here (another process holds its leads).
    async fn run_at(&self, at: DateTime<Utc>, sender: Option<&Sender>) -> EngineResult<(usize, bool)> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let moved_some = tokio::sync::Notify::new();
        let finished = AtomicBool::new(false);
        let running = async {
            let outcome = self.run_batches_at(at, &moved_some).await;
            finished.store(true, Ordering::SeqCst);
            moved_some.notify_one();
            outcome
        };
        let sending = async {
            loop {
                // Read before sending: once the runner has finished, what is due after that
                // send has all been sent.
                let last = finished.load(Ordering::SeqCst);
                self.send_due(sender).await?;
                if last {
                    return EngineResult::Ok(());
                }
                moved_some.notified().await;
            }
        };
        let (outcome, ()) = futures_util::future::try_join(running, sending).await?;
        Ok(outcome)
    }

    /// The runner's side of [`Self::run_at`]: batches of what is due at `at`, `moved_some`
    /// told after each.
    async fn run_batches_at(&self, at: DateTime<Utc>, moved_some: &tokio::sync::Notify) -> EngineResult<(usize, bool)> {
        let mut moved = 0;
        loop {
            let released = self.busy.released.subscribe();
            let n = self.run_due(PASS_LEADS as i64).await? + self.run_timers(1_000).await?;
            moved += n;
            moved_some.notify_one();
            if self.next_timer().await? != Some(at) {
                return Ok((moved, false));
            }
            if n == 0 && !self.held_here(released).await {
                return Ok((moved, true));
            }
        }
    }

    /// Waits (a few seconds at most) for the sends in flight at this clock's time to be
    /// recorded, in any process on the database. A dispatcher leases what it sends until a few
    /// minutes past its own clock: moving this clock past that would let this engine take and
    /// send again what another process, whose manual clock stands still, is sending. A lease
    /// whose holder died is not waited for longer.
    async fn await_sends_in_flight(&self) -> EngineResult<()> {
        let waiting_until = std::time::Instant::now() + dispatch::IN_FLIGHT_WAIT;
        let now = self.now();
        while self.store.sends_in_flight(now, now + dispatch::LEASE).await? && std::time::Instant::now() < waiting_until
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Whether a pass of this engine held leads since `released` was subscribed: if one still
    /// holds some, once it has let them go. Then what it held may be due, and is asked again.
    async fn held_here(&self, mut released: tokio::sync::watch::Receiver<u64>) -> bool {
        if released.has_changed().unwrap_or(false) {
            return true;
        }
        if self.busy.lock().is_empty() {
            return false;
        }
        self.busy.waits.send_modify(|n| *n += 1);
        // The sender lives as long as the engine, which `self` borrows.
        released.changed().await.is_ok()
    }

    /// When the next wait ends (outside paused campaigns), if any enrollment waits.
    pub async fn next_wake(&self) -> EngineResult<Option<DateTime<Utc>>> {
        let paused: Vec<String> = self
            .store
            .campaigns()
            .await?
            .into_iter()
            .filter(|c| c.status != "active")
            .map(|c| c.id)
            .collect();
        Ok(self.store.next_wake(&paused).await?)
    }

    /// When the engine next has work of its own: a wait ends, an SLA falls due, a cool-down
    /// ends.
    pub async fn next_timer(&self) -> EngineResult<Option<DateTime<Utc>>> {
        let wake = self.next_wake().await?;
        let timer = self.store.next_handoff_timer().await?.map(crate::clock::from_micros);
        Ok(match (wake, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Records the playbook's campaigns as deployed and puts the playbook in force. A campaign
    /// whose content changed becomes a new version (the earlier ones are kept); an unchanged one
    /// is left as it is; one no longer in the playbook is retired.
    pub async fn deploy(&self, playbook: Playbook) -> EngineResult<DeployReport> {
        let now = self.now();
        let versions: Vec<CampaignVersion> = playbook
            .campaigns
            .values()
            .map(|c| CampaignVersion {
                campaign_id: c.id.clone(),
                version: c.version.clone(),
                number: 0,
                name: c.name.clone(),
                campaign_type: c.campaign_type.as_str().to_owned(),
                definition: c.definition.clone(),
                source: playbook
                    .sources
                    .iter()
                    .find(|(file, _)| *file == c.file)
                    .map(|(_, text)| text.clone())
                    .unwrap_or_default(),
                file: c.file.clone(),
                deployed_at: now,
            })
            .collect();
        let report = self.store.deploy_campaigns(&versions, now).await?;
        *self.playbook.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(playbook);
        Ok(report)
    }

    /// What deploying `playbook` would do to running enrollments, as warnings (asked by
    /// validation and before a deploy): a campaign it leaves out is retired, and its running
    /// enrollments stop where they are; an earlier version that no longer builds with it (a
    /// segment, queue, template or campaign it names is gone) ends its enrollments at their
    /// next step. Versions with no running enrollment are not built.
    pub async fn deploy_warnings(&self, playbook: &Playbook) -> EngineResult<Vec<Issue>> {
        let mut warnings = Vec::new();
        let mut warn = |file: &str, message: String| warnings.push(Issue::new(file, message).warning());
        for record in self.store.campaigns().await? {
            let Some(campaign) = playbook.campaigns.get(&record.id) else {
                if record.status == "retired" {
                    continue;
                }
                let open = self.store.open_enrollments(&record.id, None).await?;
                if open > 0 {
                    let file = self.store.campaign_versions(&record.id).await?.pop().map(|v| v.file);
                    warn(
                        file.as_deref().unwrap_or_default(),
                        format!(
                            "campaign {:?} is not in this playbook: deploying it retires the campaign, and its {} {} \
                             where {} (deploying the campaign again lets {} go on)",
                            record.id,
                            running(open),
                            by_count(open, "stops", "stop"),
                            by_count(open, "it is", "they are"),
                            by_count(open, "it", "them"),
                        ),
                    );
                }
                continue;
            };
            for version in self.store.campaign_versions(&record.id).await? {
                if version.version == campaign.version {
                    continue;
                }
                let open = self.store.open_enrollments(&record.id, Some(&version.version)).await?;
                if open == 0 {
                    continue;
                }
                if let Err(refused) = playbook.build_version(&version.file, &version.source) {
                    let why = refused
                        .errors()
                        .next()
                        .map(|issue| issue.message.clone())
                        .unwrap_or_else(|| refused.to_string());
                    warn(
                        &version.file,
                        format!(
                            "campaign {:?} version {} (deployed {}): {} entered it, and {} at {} next step, since that \
                             version no longer builds with this playbook ({why}). To let {} finish, keep what that \
                             version uses",
                            record.id,
                            version.version,
                            version.deployed_at.format("%Y-%m-%d %H:%M UTC"),
                            running(open),
                            by_count(open, "it ends", "they end"),
                            by_count(open, "its", "their"),
                            by_count(open, "it", "them"),
                        ),
                    );
                }
            }
        }
        Ok(warnings)
    }

    /// Records the playbook in force as deployed (at start).
    pub async fn deploy_current(&self) -> EngineResult<DeployReport> {
        self.deploy((*self.playbook()).clone()).await
    }

    /// Campaigns as deployed, with the graph of each when it is in the playbook in force.
    pub async fn campaigns(&self) -> EngineResult<Vec<CampaignRecord>> {
        Ok(self.store.campaigns().await?)
    }

    /// Pauses or resumes a campaign.
    pub async fn set_campaign_status(&self, id: &str, status: CampaignStatus) -> EngineResult<()> {
        if self.store.set_campaign_status(id, status, self.now()).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound)
        }
    }

    /// Reads a lead with its tags.
    pub async fn get_lead(&self, id: LeadId) -> EngineResult<LeadView> {
        let mut tx = self.store.begin_read().await?;
        let lead = tx
            .find_leads(&[id.0], &[], &[])
            .await?
            .into_iter()
            .next()
            .ok_or(EngineError::NotFound)?;
        let tags = tx.load_tags(&[id.0]).await?;
        Ok(view(lead, tags.into_iter().map(|(_, t, _)| t).collect()))
    }

    /// Finds a lead by id, e-mail or external id.
    pub async fn find_lead(&self, by: &LeadRef) -> EngineResult<LeadView> {
        let problems: Vec<FieldError> = [("id", &by.id), ("email", &by.email), ("external_id", &by.external_id)]
            .into_iter()
            .filter_map(|(name, value)| {
                let message = crate::lead::text_problem(value.as_deref()?)?;
                Some(FieldError::new(name, message))
            })
            .collect();
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        let id = match (&by.id, &by.email, &by.external_id) {
            (Some(id), _, _) => id.parse::<i64>().map_err(|_| EngineError::NotFound)?,
            (None, email, ext) => {
                let emails: Vec<String> = email
                    .iter()
                    .filter_map(|e| EmailAddress::parse(e).ok())
                    .map(|e| e.as_str().to_owned())
                    .collect();
                let exts: Vec<String> = ext.iter().map(|x| x.trim().to_owned()).collect();
                let mut tx = self.store.begin_read().await?;
                let found = tx.find_leads(&[], &emails, &exts).await?;
                found.first().ok_or(EngineError::NotFound)?.id.0
            }
        };
        self.get_lead(LeadId(id)).await
    }

    /// Upserts leads by external id, else e-mail; one transaction for the batch. Each item's
    /// result comes back in order; a refused item does not stop the others.
    pub async fn upsert_leads(
        &self,
        items: Vec<(Target, LeadInput)>,
        actor: &Actor,
    ) -> EngineResult<Vec<Result<Upserted, ItemError>>> {
        retrying(|| self.upsert_once(&items, actor)).await
    }

    async fn upsert_once(
        &self,
        items: &[(Target, LeadInput)],
        _actor: &Actor,
    ) -> EngineResult<Vec<Result<Upserted, ItemError>>> {
        let now = self.now();
        let playbook = self.playbook();
        let mut results: Vec<Option<Result<Upserted, ItemError>>> = vec![None; items.len()];
        for (i, (target, input)) in items.iter().enumerate() {
            let errors = input.validate(matches!(target, Target::Keys));
            if !errors.is_empty() {
                results[i] = Some(Err(ItemError::Invalid(errors)));
            }
        }
        let mut tx = self.store.begin().await?;
        // Only valid items are looked up: a refused item's keys may be unstorable (a NUL).
        let valid = || {
            items
                .iter()
                .zip(&results)
                .filter(|(_, result)| result.is_none())
                .map(|(item, _)| item)
        };
        let ids: Vec<i64> = valid()
            .filter_map(|(t, _)| match t {
                Target::Id(id) => Some(id.0),
                Target::Keys => None,
            })
            .collect();
        let emails: Vec<String> = valid().filter_map(|(_, i)| i.email_key()).collect();
        let exts: Vec<String> = valid().filter_map(|(_, i)| i.external_id_key()).collect();
        let mut book = LeadBook::new(tx.find_leads(&ids, &emails, &exts).await?);

        // Pass 1: decide which lead each item writes to, creating slots for new leads.
        let mut slots: Vec<Option<(usize, bool)>> = vec![None; items.len()];
        for (i, (target, input)) in items.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            match book.resolve(target, input) {
                Ok(slot) => slots[i] = Some(slot),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let new_slots = book.new_count();
        let reserved = tx.reserve_lead_ids(new_slots).await?;
        book.assign_new_ids(&reserved, now);
        let new_hashes: Vec<String> = book.new_emails().map(|e| email_hash(e)).collect();
        let suppressed = tx.suppressed(&new_hashes).await?;

        // Pass 2: apply the inputs in order.
        let opted_out = |l: &Lead| {
            [
                ("email", l.consent.email.status == ConsentStatus::OptedOut),
                ("wechat", l.consent.wechat.status == ConsentStatus::OptedOut),
            ]
        };
        let before: Vec<_> = book.leads.iter().map(opted_out).collect();
        for (i, (_, input)) in items.iter().enumerate() {
            if let Some((slot, _)) = slots[i] {
                let lead = &mut book.leads[slot];
                input.apply(lead, now);
                if book.fresh[slot] {
                    if let Some(email) = &lead.email {
                        if suppressed.contains(&email_hash(email)) {
                            lead.consent.email = ChannelConsent {
                                status: ConsentStatus::OptedOut,
                                at: Some(now),
                                source: Some("erased".into()),
                            };
                        }
                    }
                }
            }
        }
        // A changed e-mail or external id may collide with a lead outside the batch.
        let mut collision_check_emails = Vec::new();
        let mut collision_check_exts = Vec::new();
        for lead in &book.leads {
            collision_check_emails.extend(lead.email.clone());
            collision_check_exts.extend(lead.external_id.clone());
        }
        let others = tx
            .find_leads(&[], &collision_check_emails, &collision_check_exts)
            .await?;
        let touched: HashSet<i64> = book.leads.iter().map(|l| l.id.0).collect();
        for other in others.iter().filter(|o| !touched.contains(&o.id.0)) {
            for (i, slot) in slots.iter_mut().enumerate() {
                let Some((s, _)) = *slot else { continue };
                let lead = &book.leads[s];
                let clash = (lead.email.is_some() && lead.email == other.email)
                    || (lead.external_id.is_some() && lead.external_id == other.external_id);
                if clash {
                    results[i] = Some(Err(ItemError::Conflict(format!(
                        "the email or external_id is already used by lead {}",
                        other.id
                    ))));
                    *slot = None;
                }
            }
        }
        let keep: HashSet<usize> = slots.iter().flatten().map(|(s, _)| *s).collect();
        let leads: Vec<Lead> = book
            .leads
            .iter()
            .enumerate()
            .filter(|(s, _)| keep.contains(s))
            .map(|(_, l)| l.clone())
            .collect();
        let mut states = load_states(tx.as_mut(), leads, &playbook, now, &[]).await?;
        let mut changes = Changes::default();
        for state in states.values_mut() {
            state.sync_attribute_tags(&playbook.rules, now, &mut changes);
            state.check_mql(&playbook, now, &mut changes);
        }
        // A changed field can make a lead start matching a segment-triggered campaign.
        self.settle(tx.as_mut(), &mut states, &playbook, now, &mut changes)
            .await?;
        // Webhook events: a lead created or updated, and channels newly unsubscribed.
        let wanted = tx.wanted_events().await?;
        let wants = |kind: &str| wanted.iter().any(|w| w == kind || w == "*");
        let mut events = Vec::new();
        let mut seen = HashSet::new();
        for &(slot, created) in slots.iter().flatten() {
            let Some(state) = states.get(&book.leads[slot].id.0).filter(|_| seen.insert(slot)) else {
                continue;
            };
            let kind = if created { "lead.created" } else { "lead.updated" };
            if wants(kind) {
                events.push(handoffs::event(kind, Some(&state.lead), Data::Nothing(Nothing {}), now));
            }
            let newly: Vec<&str> = opted_out(&state.lead)
                .iter()
                .zip(before.get(slot).copied().unwrap_or_default())
                .filter(|((_, after), (_, was))| *after && !was)
                .map(|((channel, _), _)| *channel)
                .collect();
            if !newly.is_empty() && wants("lead.unsubscribed") {
                events.push(handoffs::event(
                    "lead.unsubscribed",
                    Some(&state.lead),
                    Data::Unsubscribed(Unsubscribed {
                        channels: newly.iter().map(|c| c.to_string()).collect(),
                    }),
                    now,
                ));
            }
        }
        self.write_changes(tx.as_mut(), &states, &changes, &playbook, now, events)
            .await?;
        tx.commit().await?;

        let mut out = Vec::with_capacity(items.len());
        for (i, result) in results.into_iter().enumerate() {
            out.push(match (result, slots[i]) {
                (Some(err), _) => err,
                (None, Some((slot, created))) => {
                    let id = book.leads[slot].id.0;
                    let state = &states[&id];
                    let v = view(state.lead.clone(), state.tags.keys().cloned().collect());
                    Ok(if created {
                        Upserted::Created(v)
                    } else {
                        Upserted::Updated(v)
                    })
                }
                (None, None) => Err(ItemError::Conflict("not written".into())),
            });
        }
        Ok(out)
    }

    /// Changes one lead's fields (PATCH).
    pub async fn patch_lead(&self, id: LeadId, input: LeadInput, actor: &Actor) -> EngineResult<LeadView> {
        let mut results = self.upsert_leads(vec![(Target::Id(id), input)], actor).await?;
        match results.pop() {
            Some(Ok(Upserted::Created(v) | Upserted::Updated(v))) => Ok(v),
            Some(Err(ItemError::Invalid(errors))) => Err(EngineError::Invalid(errors)),
            Some(Err(ItemError::Conflict(m))) => Err(EngineError::Conflict(m)),
            Some(Err(ItemError::NotFound(_))) | None => Err(EngineError::NotFound),
        }
    }

    /// Adds and removes manual tags, recorded with who did it.
    pub async fn tag_lead(
        &self,
        id: LeadId,
        add: &[String],
        remove: &[String],
        actor: &Actor,
    ) -> EngineResult<LeadView> {
        let mut errors = Vec::new();
        let mut normal = |list: &[String], name: &str| -> Vec<String> {
            list.iter()
                .enumerate()
                .filter_map(|(i, t)| match normalize_tag(t) {
                    Ok(t) => Some(t),
                    Err(m) => {
                        errors.push(FieldError::new(format!("{name}[{i}]"), m));
                        None
                    }
                })
                .collect()
        };
        let add = normal(add, "add");
        let remove = normal(remove, "remove");
        if !errors.is_empty() {
            return Err(EngineError::Invalid(errors));
        }
        self.change_one(id, |state, now, changes| {
            for tag in &remove {
                state.remove_tag(tag, actor, now, changes);
            }
            for tag in &add {
                state.add_tag(tag, TagFamily::Manual, actor, now, changes);
            }
        })
        .await
    }

    /// Adds (or with a negative delta, removes) points by hand, recorded in the ledger.
    pub async fn score_lead(&self, id: LeadId, delta: i64, reason: &str, actor: &Actor) -> EngineResult<LeadView> {
        let mut problems = Vec::new();
        if delta == 0 || delta.unsigned_abs() > crate::lead::MAX_MANUAL_DELTA.unsigned_abs() {
            problems.push(FieldError::new(
                "delta",
                format!(
                    "must be a non-zero whole number of at most {} points either way",
                    crate::lead::MAX_MANUAL_DELTA
                ),
            ));
        }
        if let Some(m) = crate::lead::text_problem(reason) {
            problems.push(FieldError::new("reason", m));
        }
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        self.change_one(id, |state, now, changes| {
            state.add_score(
                ScoreChange {
                    lead_id: id,
                    delta,
                    reason: reason.to_owned(),
                    actor: actor.clone(),
                    rule: None,
                    occurred_at: now,
                    at: now,
                },
                changes,
            );
        })
        .await
    }

    async fn change_one(
        &self,
        id: LeadId,
        change: impl FnOnce(&mut LeadState, DateTime<Utc>, &mut Changes),
    ) -> EngineResult<LeadView> {
        Ok(self.change_one_with(id, change).await?.0)
    }

    /// [`Engine::change_one`], also returning the handoffs the change opened.
    async fn change_one_with(
        &self,
        id: LeadId,
        change: impl FnOnce(&mut LeadState, DateTime<Utc>, &mut Changes),
    ) -> EngineResult<(LeadView, Vec<crate::handoff::Handoff>)> {
        let now = self.now();
        let playbook = self.playbook();
        let mut tx = self.store.begin().await?;
        let leads = tx.find_leads(&[id.0], &[], &[]).await?;
        if leads.is_empty() {
            return Err(EngineError::NotFound);
        }
        let mut states = load_states(tx.as_mut(), leads, &playbook, now, &[]).await?;
        let state = states.get_mut(&id.0).ok_or(EngineError::NotFound)?;
        let mut changes = Changes::default();
        change(state, now, &mut changes);
        state.check_mql(&playbook, now, &mut changes);
        // A manual tag, score or field change can end a goal, wake an `until`, or start a match.
        self.run_journeys(
            tx.as_mut(),
            &mut states,
            &playbook,
            now,
            &IdMap::default(),
            &Entry::Triggers,
            &mut changes,
        )
        .await?;
        let state = states.get_mut(&id.0).ok_or(EngineError::NotFound)?;
        state.check_mql(&playbook, now, &mut changes);
        if state.dirty {
            tx.write_leads(std::slice::from_ref(&state.lead)).await?;
        }
        let answer = view(state.lead.clone(), state.tags.keys().cloned().collect());
        let opened = self
            .write_changes(tx.as_mut(), &states, &changes, &playbook, now, Vec::new())
            .await?;
        tx.commit().await?;
        Ok((answer, opened))
    }

    /// Ingests behaviour events set-based: leads resolved or created in one query, events
    /// inserted in one statement, rules evaluated in memory, changes written in batches, all in
    /// one transaction.
    pub async fn ingest_events(&self, inputs: Vec<EventInput>) -> EngineResult<IngestReport> {
        let started = std::time::Instant::now();
        let report = retrying(|| self.ingest_once(&inputs)).await;
        self.phases.since(Phase::Ingest, started);
        report
    }

    async fn ingest_once(&self, inputs: &[EventInput]) -> EngineResult<IngestReport> {
        let now = self.now();
        let playbook = self.playbook();
        let mut report = IngestReport::default();
        let mut seen_keys: HashMap<&str, &EventInput> = HashMap::new();
        // (index in the request, the event, its lead's e-mail normalised once)
        let mut valid: Vec<(usize, &EventInput, Option<String>)> = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.iter().enumerate() {
            let errors = input.validate(now);
            let earlier = input.idempotency_key.as_deref().and_then(|k| seen_keys.get(k).copied());
            if !errors.is_empty() {
                report.rejected.push(Rejected::invalid(index, errors));
            } else if let Some(earlier) = earlier {
                if same_event(earlier, input) {
                    report.duplicates += 1;
                } else {
                    report
                        .rejected
                        .push(Rejected::key_reused(index, input, "an earlier event of this batch"));
                }
            } else {
                if let Some(key) = input.idempotency_key.as_deref() {
                    seen_keys.insert(key, input);
                }
                let email = input
                    .lead
                    .email
                    .as_deref()
                    .and_then(|e| EmailAddress::parse(e).ok())
                    .map(|e| e.into_string());
                valid.push((index, input, email));
            }
        }
        if valid.is_empty() {
            return Ok(report);
        }
        let mut tx = self.store.begin().await?;
        let ids: Vec<i64> = valid
            .iter()
            .filter_map(|(_, e, _)| e.lead.id.as_deref()?.parse().ok())
            .collect();
        let emails: Vec<String> = valid.iter().filter_map(|(_, _, email)| email.clone()).collect();
        let exts: Vec<String> = valid
            .iter()
            .filter_map(|(_, e, _)| e.lead.external_id.as_deref().map(|x| x.trim().to_owned()))
            .collect();
        let (ids, emails, exts) = (distinct(ids), distinct(emails), distinct(exts));
        let mut book = LeadBook::new(tx.find_leads(&ids, &emails, &exts).await?);
        let mut slot_of: Vec<Option<usize>> = Vec::with_capacity(valid.len());
        for (index, event, email) in &valid {
            match book.resolve_ref(&event.lead, email.as_deref(), event.source.as_deref()) {
                Ok(slot) => slot_of.push(Some(slot)),
                Err(error) => {
                    report.rejected.push(Rejected::not_found(*index, error));
                    slot_of.push(None);
                }
            }
        }
        let reserved = tx.reserve_lead_ids(book.new_count()).await?;
        book.assign_new_ids(&reserved, now);
        let new_hashes: Vec<String> = book.new_emails().map(|e| email_hash(e)).collect();
        let suppressed = tx.suppressed(&new_hashes).await?;
        for (slot, lead) in book.leads.iter_mut().enumerate() {
            if book.fresh[slot] && lead.email.as_ref().is_some_and(|e| suppressed.contains(&email_hash(e))) {
                lead.consent.email = ChannelConsent {
                    status: ConsentStatus::OptedOut,
                    at: Some(now),
                    source: Some("erased".into()),
                };
            }
        }

        let (inputs_of, rows): (Vec<(usize, &EventInput)>, Vec<NewEvent>) = valid
            .iter()
            .zip(&slot_of)
            .filter_map(|((index, e, _), slot)| {
                slot.map(|s| {
                    let row = NewEvent {
                        lead_id: book.leads[s].id.0,
                        kind: &e.kind,
                        properties: &e.properties,
                        occurred_at: to_micros(e.occurred_at.unwrap_or(now)),
                        received_at: to_micros(now),
                        idempotency_key: e.idempotency_key.as_deref(),
                        source: e.source.as_deref(),
                    };
                    ((*index, *e), row)
                })
            })
            .unzip();
        let inserted_keys = tx.insert_events(&rows).await?;
        // A key used before must name the same event again; another event under it is refused.
        let reused: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.idempotency_key.filter(|k| !inserted_keys.contains(*k)))
            .collect();
        let stored: HashMap<String, (i64, crate::condition::EventFact)> = if reused.is_empty() {
            HashMap::new()
        } else {
            tx.keyed_events(&reused)
                .await?
                .into_iter()
                .map(|(key, lead, fact)| (key, (lead, fact)))
                .collect()
        };
        let mut per_lead: BTreeMap<i64, Vec<EventView>> = BTreeMap::new();
        for (row, (index, input)) in rows.iter().zip(&inputs_of) {
            if let Some(key) = row.idempotency_key.filter(|k| !inserted_keys.contains(*k)) {
                let same = stored.get(key).is_some_and(|(lead, fact)| {
                    *lead == row.lead_id
                        && fact.kind == row.kind
                        && fact.properties == *row.properties
                        && input
                            .occurred_at
                            .is_none_or(|at| to_micros(at) == to_micros(fact.occurred_at))
                });
                if same {
                    report.duplicates += 1;
                } else {
                    report
                        .rejected
                        .push(Rejected::key_reused(*index, input, "an event stored earlier"));
                }
                continue;
            }
            report.accepted += 1;
            per_lead.entry(row.lead_id).or_default().push(EventView {
                kind: row.kind,
                occurred_at: crate::clock::from_micros(row.occurred_at),
                properties: row.properties,
            });
        }
        // Before the journeys run: a bounce in this batch already stops this batch's sends.
        self.suppress_bounced(tx.as_mut(), &book.leads, &per_lead, now).await?;
        let fresh_ids: HashSet<i64> = book
            .leads
            .iter()
            .enumerate()
            .filter(|(s, _)| book.fresh[*s])
            .map(|(_, l)| l.id.0)
            .collect();
        let leads: Vec<Lead> = book
            .leads
            .into_iter()
            .filter(|l| per_lead.contains_key(&l.id.0) || fresh_ids.contains(&l.id.0))
            .collect();
        let earliest = per_lead.values().flatten().map(|e| e.occurred_at).min().unwrap_or(now);
        let mut states = load_states(tx.as_mut(), leads, &playbook, now, &[earliest]).await?;
        let mut changes = Changes::default();
        let mut new_events: IdMap<Vec<String>> = IdMap::default();
        for (id, state) in states.iter_mut() {
            if fresh_ids.contains(id) {
                state.dirty = true;
                state.sync_attribute_tags(&playbook.rules, now, &mut changes);
            }
            if let Some(events) = per_lead.get_mut(id) {
                events.sort_by_key(|e| e.occurred_at);
                for event in events.iter() {
                    state.apply_event(&playbook.rules, *event, now, &mut changes);
                }
                new_events.insert(*id, events.iter().map(|e| e.kind.to_owned()).collect());
            }
            state.check_mql(&playbook, now, &mut changes);
        }
        self.run_journeys(
            tx.as_mut(),
            &mut states,
            &playbook,
            now,
            &new_events,
            &Entry::Triggers,
            &mut changes,
        )
        .await?;
        for state in states.values_mut() {
            state.check_mql(&playbook, now, &mut changes);
        }
        let (fresh, known): (Vec<&LeadState>, Vec<&LeadState>) = states
            .values()
            .filter(|s| s.dirty)
            .partition(|s| fresh_ids.contains(&s.lead.id.0));
        tx.write_leads(&fresh.iter().map(|s| s.lead.clone()).collect::<Vec<_>>())
            .await?;
        tx.write_lead_activity(&known.iter().map(|s| ActivityRow::from(&s.lead)).collect::<Vec<_>>())
            .await?;
        let mut events = Vec::new();
        if !fresh.is_empty()
            && tx
                .wanted_events()
                .await?
                .iter()
                .any(|w| w == "lead.created" || w == "*")
        {
            for state in &fresh {
                events.push(handoffs::event(
                    "lead.created",
                    Some(&state.lead),
                    Data::Nothing(Nothing {}),
                    now,
                ));
            }
        }
        self.write_changes(tx.as_mut(), &states, &changes, &playbook, now, events)
            .await?;
        tx.commit().await?;
        report.rejected.sort_by_key(|r| r.index);
        Ok(report)
    }

    /// Refuses a segment the playbook in force does not define, as [`Self::list_leads`] does.
    pub fn check_segment(&self, id: &str) -> EngineResult<()> {
        segment_of(&self.playbook(), id).map(|_| ())
    }

    /// Leads matching the filter and, when given, the named segment; `after` is the last id of
    /// the previous page. Segment membership is evaluated by the engine in batches.
    pub async fn list_leads(
        &self,
        filter: &LeadFilter,
        segment: Option<&str>,
        after: Option<LeadId>,
        limit: i64,
    ) -> EngineResult<(Vec<LeadView>, Option<LeadId>)> {
        if let Some(message) = filter.q.as_deref().and_then(crate::lead::text_problem) {
            return Err(EngineError::Invalid(vec![FieldError::new("q", message)]));
        }
        let playbook = self.playbook();
        let condition = segment.map(|id| segment_of(&playbook, id)).transpose()?;
        let now = self.now();
        let mut out = Vec::new();
        let mut cursor = after;
        let batch = if condition.is_some() { 500 } else { limit + 1 };
        loop {
            let leads = self.store.list_leads(filter, cursor, batch).await?;
            let exhausted = (leads.len() as i64) < batch;
            let mut tx = self.store.begin_read().await?;
            let states = load_states(tx.as_mut(), leads.clone(), &playbook, now, &[]).await?;
            for lead in leads {
                let state = &states[&lead.id.0];
                cursor = Some(lead.id);
                if condition.is_none_or(|c| c.eval(state, &playbook.segments, now)) {
                    out.push(view(state.lead.clone(), state.tags.keys().cloned().collect()));
                    if out.len() as i64 > limit {
                        out.pop();
                        let next = out.last().map(|v| v.lead.id);
                        return Ok((out, next));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
        }
    }

    /// A lead's timeline, newest first.
    pub async fn timeline(
        &self,
        id: LeadId,
        before: Option<TimelineCursor>,
        limit: i64,
    ) -> EngineResult<(Vec<TimelineEntry>, Option<TimelineCursor>)> {
        let mut tx = self.store.begin_read().await?;
        if tx.find_leads(&[id.0], &[], &[]).await?.is_empty() {
            return Err(EngineError::NotFound);
        }
        drop(tx);
        let mut entries = self.store.timeline(id, before, limit + 1).await?;
        let next = if entries.len() as i64 > limit {
            entries.truncate(limit as usize);
            entries.last().map(|e| TimelineCursor {
                at: to_micros(e.at),
                kind: e.kind,
                seq: e.seq,
            })
        } else {
            None
        };
        Ok((entries, next))
    }

    /// Erases a person: lead, events, tags, ledger, handoffs; keeps a suppression hash.
    pub async fn erase_lead(&self, id: LeadId) -> EngineResult<()> {
        if self.store.erase_lead(id, self.now()).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound)
        }
    }

    /// Runs score decay once over all inactive leads; returns how many decayed.
    pub async fn decay(&self) -> EngineResult<u64> {
        match self.playbook().rules.decay {
            Some(decay) => Ok(self.store.decay(decay, self.now()).await?),
            None => Ok(0),
        }
    }
}

/// "1 running enrollment", "2 running enrollments".
fn running(n: i64) -> String {
    format!("{n} running {}", by_count(n, "enrollment", "enrollments"))
}

/// The words for one thing or for several.
fn by_count(n: i64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Runs a batch again when its transaction lost a race with another writer (a lead created by
/// both, a deadlock); everything it did was rolled back, so a retry is safe.
async fn retrying<T, F, Fut>(mut work: F) -> EngineResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = EngineResult<T>>,
{
    let mut attempt = 0;
    loop {
        match work().await {
            Err(EngineError::Conflict(message)) if attempt < 4 => {
                attempt += 1;
                tracing::debug!(attempt, conflict = %message, "Batch lost a race; retrying.");
            }
            other => return other,
        }
    }
}

fn distinct<T: std::hash::Hash + Eq + Clone>(items: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

fn view(lead: Lead, mut tags: Vec<String>) -> LeadView {
    tags.sort();
    LeadView { lead, tags }
}

/// Loads what the rules need of these leads: tags, the events MQL conditions look at, and the
/// ledger entries of capped rules back to the widest cap window before `event_times`.
async fn load_states(
    tx: &mut dyn Tx,
    leads: Vec<Lead>,
    playbook: &Playbook,
    now: DateTime<Utc>,
    event_times: &[DateTime<Utc>],
) -> Result<IdMap<LeadState>, StoreError> {
    let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
    let mut states: IdMap<LeadState> = leads.into_iter().map(|l| (l.id.0, LeadState::new(l))).collect();
    if ids.is_empty() {
        return Ok(states);
    }
    for (id, tag, family) in tx.load_tags(&ids).await? {
        if let Some(s) = states.get_mut(&id) {
            s.tags.insert(tag, family);
        }
    }
    if !playbook.event_needs.is_empty() {
        let needs: Vec<(String, Option<i64>)> = playbook
            .event_needs
            .iter()
            .map(|(k, w)| (k.clone(), w.map(|w| to_micros(now - w.to_chrono()))))
            .collect();
        for (id, fact) in tx.load_events(&ids, &needs).await? {
            if let Some(s) = states.get_mut(&id) {
                s.events.push(fact);
            }
        }
    }
    let capped: Vec<&crate::playbook::TaggingRule> =
        playbook.rules.tagging.iter().filter(|r| r.cap.is_some()).collect();
    if let (Some(earliest), false) = (event_times.iter().min(), capped.is_empty()) {
        let widest = capped
            .iter()
            .filter_map(|r| r.cap)
            .map(|c| c.per.to_chrono())
            .max()
            .unwrap_or_default();
        let names: Vec<String> = capped.iter().map(|r| r.id.clone()).collect();
        for (id, rule, at, delta) in tx.load_cap_usage(&ids, &names, to_micros(*earliest - widest)).await? {
            if let Some(s) = states.get_mut(&id) {
                s.cap_usage
                    .entry(rule)
                    .or_default()
                    .push((crate::clock::from_micros(at), delta));
            }
        }
    }
    Ok(states)
}

/// The leads a batch touches, found or new, with indexes by e-mail and external id so that
/// repeated keys inside one batch land on the same lead.
struct LeadBook {
    leads: Vec<Lead>,
    fresh: Vec<bool>,
    by_id: HashMap<i64, usize>,
    by_email: HashMap<String, usize>,
    by_ext: HashMap<String, usize>,
}

impl LeadBook {
    fn new(found: Vec<Lead>) -> Self {
        let mut book = LeadBook {
            leads: Vec::new(),
            fresh: Vec::new(),
            by_id: HashMap::new(),
            by_email: HashMap::new(),
            by_ext: HashMap::new(),
        };
        for lead in found {
            book.push(lead, false);
        }
        book
    }

    fn push(&mut self, lead: Lead, fresh: bool) -> usize {
        let slot = self.leads.len();
        if !fresh {
            self.by_id.insert(lead.id.0, slot);
        }
        if let Some(e) = &lead.email {
            self.by_email.insert(e.clone(), slot);
        }
        if let Some(x) = &lead.external_id {
            self.by_ext.insert(x.clone(), slot);
        }
        self.leads.push(lead);
        self.fresh.push(fresh);
        slot
    }

    fn new_count(&self) -> usize {
        self.fresh.iter().filter(|f| **f).count()
    }

    fn new_emails(&self) -> impl Iterator<Item = &String> {
        self.leads
            .iter()
            .zip(&self.fresh)
            .filter(|(_, f)| **f)
            .filter_map(|(l, _)| l.email.as_ref())
    }

    fn assign_new_ids(&mut self, reserved: &[i64], now: DateTime<Utc>) {
        let mut ids = reserved.iter();
        for (slot, lead) in self.leads.iter_mut().enumerate() {
            if self.fresh[slot] {
                if let Some(id) = ids.next() {
                    lead.id = LeadId(*id);
                    lead.created_at = now;
                    lead.updated_at = now;
                    self.by_id.insert(*id, slot);
                }
            }
        }
    }

    /// The slot an upsert item writes to, and whether it creates the lead.
    fn resolve(&mut self, target: &Target, input: &LeadInput) -> Result<(usize, bool), ItemError> {
        let email = input.email_key();
        let ext = input.external_id_key();
        let by_email = email.as_ref().and_then(|e| self.by_email.get(e).copied());
        let by_ext = ext.as_ref().and_then(|x| self.by_ext.get(x).copied());
        let slot = match target {
            Target::Id(id) => Some(
                *self
                    .by_id
                    .get(&id.0)
                    .ok_or_else(|| ItemError::NotFound(format!("lead {id} not found")))?,
            ),
            Target::Keys => match (by_ext, by_email) {
                (Some(x), _) => Some(x),
                (None, Some(e)) => match (&self.leads[e].external_id, &ext) {
                    (Some(theirs), Some(ours)) if theirs != ours => {
                        return Err(ItemError::Conflict(format!(
                            "email {} belongs to lead {} whose external_id is {theirs:?}",
                            email.unwrap_or_default(),
                            self.leads[e].id
                        )))
                    }
                    _ => Some(e),
                },
                (None, None) => None,
            },
        };
        if let (Some(slot), Some(e)) = (slot, by_email) {
            if e != slot && email.is_some() && input.email.is_some() {
                return Err(ItemError::Conflict(format!(
                    "email {} is already used by lead {}",
                    email.unwrap_or_default(),
                    self.leads[e].id
                )));
            }
        }
        match slot {
            Some(slot) => {
                if let Some(e) = email {
                    self.by_email.insert(e, slot);
                }
                if let Some(x) = ext {
                    self.by_ext.insert(x, slot);
                }
                Ok((slot, false))
            }
            None => {
                let mut lead = Lead::new(LeadId(0), Utc::now());
                lead.email = email;
                lead.external_id = ext;
                Ok((self.push(lead, true), true))
            }
        }
    }

    /// The slot an event's lead reference names, creating the lead for an unknown e-mail or
    /// external id (with the event's source).
    fn resolve_ref(&mut self, by: &LeadRef, email: Option<&str>, source: Option<&str>) -> Result<usize, String> {
        if let Some(id) = &by.id {
            return id
                .parse::<i64>()
                .ok()
                .and_then(|id| self.by_id.get(&id).copied())
                .ok_or_else(|| format!("lead {id} not found"));
        }
        let ext = by.external_id.as_deref().map(str::trim);
        if let Some(slot) = ext
            .and_then(|x| self.by_ext.get(x))
            .or_else(|| email.and_then(|e| self.by_email.get(e)))
        {
            return Ok(*slot);
        }
        let mut lead = Lead::new(LeadId(0), Utc::now());
        lead.email = email.map(str::to_owned);
        lead.external_id = ext.map(str::to_owned);
        if let Some(source) = source.filter(|s| !s.trim().is_empty()) {
            lead.fields.insert("source", source.to_owned());
        }
        Ok(self.push(lead, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::sqlite::SqliteStore;

    /// An engine on a fresh SQLite file in `dir`, with the shipped playbook, a manual clock
    /// on a Monday morning, and a lead for each of these e-mails.
    async fn engine_with(dir: &std::path::Path, emails: &[&str]) -> (Engine, ManualClock, Vec<Lead>) {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("engine.db");
        let store = SqliteStore::connect(file.to_str().unwrap()).await.unwrap();
        store.migrate().await.unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let playbook = Playbook::load_dir(&root.join("campaigns"), &root.join("templates")).unwrap();
        let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
        let engine = Engine::new(Arc::new(store), playbook, Arc::new(clock.clone()));
        let mut leads = Vec::new();
        for email in emails {
            let input: LeadInput = serde_json::from_value(serde_json::json!({ "email": email })).unwrap();
            let done = engine
                .upsert_leads(vec![(Target::Keys, input)], &Actor::User("test".into()))
                .await
                .unwrap();
            match done.into_iter().next() {
                Some(Ok(Upserted::Created(view))) => leads.push(view.lead),
                other => panic!("{other:?}"),
            }
        }
        (engine, clock, leads)
    }

    /// A lead asked for by id while another pass of this engine holds it is enrolled all the
    /// same: the pass is decided again in the write transaction instead of leaving it out.
    #[tokio::test]
    async fn a_lead_enrolled_by_id_is_not_left_out_while_another_pass_holds_it() {
        let dir = std::env::temp_dir().join(format!("nurture-busy-{}", std::process::id()));
        let (engine, _clock, leads) = engine_with(&dir, &["held@x.example", "free@x.example"]).await;
        let held = engine.busy.take(vec![leads[0].clone()]);
        let refs: Vec<LeadRef> = leads.iter().map(|l| LeadRef::by_id(l.id.0)).collect();
        let report = engine.enroll("industry-drip", &refs).await.unwrap();
        drop(held);
        assert_eq!(report.enrolled, 2, "{report:?}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A wait the clock ends while another pass of this engine holds its lead (an enrolling
    /// pass after a deploy, say) has ended when the advance returns: the advance waits for
    /// that pass rather than leave the step to whichever pass comes next.
    #[tokio::test]
    async fn advancing_the_clock_waits_for_a_pass_that_holds_a_due_lead() {
        let dir = std::env::temp_dir().join(format!("nurture-advance-{}", std::process::id()));
        let (engine, clock, leads) = engine_with(&dir, &["held@x.example"]).await;
        let engine = Arc::new(engine);
        engine
            .enroll("industry-drip", &[LeadRef::by_id(leads[0].id.0)])
            .await
            .unwrap();
        let waiting = engine.next_wake().await.unwrap().expect("the lead waits 3 days");
        let held = engine.busy.take(vec![leads[0].clone()]);
        let mut waits = engine.busy.waits.subscribe();
        let mut advancing = tokio::spawn({
            let (engine, clock) = (engine.clone(), clock.clone());
            async move { engine.advance_clock(&clock, chrono::Duration::days(4), None).await }
        });
        // The advance must park waiting for the held lead, not return without it.
        tokio::select! {
            _ = waits.changed() => {}
            early = &mut advancing => panic!("the advance returned while the due lead was held: {early:?}"),
        }
        drop(held);
        let moved = advancing.await.unwrap().unwrap();
        assert_eq!(moved, 1, "the held lead's wait ended");
        let next = engine.next_wake().await.unwrap().expect("it waits at its next step");
        assert!(next > waiting, "{next} after {waiting}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
