//! The engine facade: every write to the lead store goes through here, so that rules, attribute
//! tags and the MQL check apply the same way whether a change came from an event, an import, a
//! CRM upsert or an SDR. Work is done in batches inside one transaction.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::clock::Clock;
use crate::playbook::bundle::{Bundle, Deployable};
use crate::playbook::Playbook;
use crate::store::Store;

/// The most leads one journey pass takes: the runner's due batches and hand enrollment's
/// chunks. SQLite's multi-row writes hold as many rows a statement, so a pass usually writes
/// each table in one round trip to the database.
const PASS_LEADS: usize = 1_000;

mod admin;
mod advance;
mod attribution;
mod deliverability;
mod deploy;
mod dispatch;
mod enroll;
mod error;
mod handoffs;
mod ingest;
mod journeys;
mod leads;
mod notes;
mod pass;
mod phases;
mod preview;
mod reports;
mod users;
mod visitors;
mod webhooks;
pub use admin::{new_api_key, random_hex, NewApiKey};
pub use deploy::{CampaignCounts, Deployed, Deployer, StepFunnel};
pub use dispatch::{DispatchReport, Sender, DISPATCH_BATCH, MAX_ATTEMPTS};
use enroll::segment_of;
pub use enroll::{EnrollDryRun, EnrollReport, ExitReport, SegmentMember, SegmentPreview};
use error::retrying;
pub use error::{EngineError, EngineResult};
pub use handoffs::{queue_cursor, unknown_events, NothingToClaim, QueueBoard, WEBHOOK_EVENTS};
pub use ingest::{IngestReport, Rejected, RejectedError};
pub use journeys::{Entry, JourneyCounts, MESSAGE_EVENTS};
use leads::{load_states, view, LeadBook};
pub use leads::{ItemError, LeadView, Target, Upserted};
use pass::Pick;
pub use phases::{Phase, Phases};
pub use preview::{Preview, PreviewFor, PreviewLead, TestSent};
pub use reports::{
    MessageTotals, QueueNow, QueueReport, Report, ReportWindow, WindowAsked, DEFAULT_REPORT_DAYS, MAX_REPORT_DAYS,
};
pub use users::{Invited, SignedIn, MIN_PASSWORD, SESSION, SETUP_LINK};
pub use visitors::Tracked;
pub use webhooks::NewWebhook;

/// Maps keyed by ids the store assigned (leads, enrollments), which a pass builds and reads
/// for every lead it holds: FxHash, not SipHash, whose resistance to chosen keys these keys
/// do not need, on the hottest path of a pass.
pub(crate) type IdMap<V> = HashMap<i64, V, rustc_hash::FxBuildHasher>;

/// What the engine runs: the playbook, the bundle it was built from, and the deployment that
/// recorded it (none before the first deploy).
#[derive(Debug, Default)]
struct InForce {
    playbook: Arc<Playbook>,
    bundle: Arc<Bundle>,
    deployment: Option<i64>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    in_force: RwLock<Arc<InForce>>,
    clock: Arc<dyn Clock>,
    /// The time outside this server: webhook signatures carry it (`t=`), because a receiver
    /// checks them against its own clock, whatever `clock` says (a manual clock in a demo).
    wall: Arc<dyn Clock>,
    versions: journeys::Versions,
    claims: handoffs::Claims,
    /// One dispatch pass at a time in this process: when [`Engine::advance_clock`] sends what
    /// fell due, no pass of the background dispatcher is still on the wire with the time it
    /// read before the clock moved.
    dispatching: tokio::sync::Mutex<()>,
    /// The furthest time a manual clock's advance was asked to reach (microseconds; 0 before
    /// any): what leases taken meanwhile run from (see `dispatch`).
    advancing_to: std::sync::atomic::AtomicI64,
    /// Time spent per phase of work (see `phases`).
    phases: Phases,
    /// What this process's work added to the report counters (see `reports`).
    totals: MessageTotals,
    /// SLA breaches this process's timers recorded, per queue.
    breaches: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Engine {
    /// An engine that runs `deployable`, not yet recorded as deployed (see
    /// [`Engine::deploy_current`] and [`Engine::resume_deployment`]).
    pub fn new(store: Arc<dyn Store>, deployable: Deployable, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            in_force: RwLock::new(Arc::new(InForce {
                playbook: Arc::new(deployable.playbook),
                bundle: Arc::new(deployable.bundle),
                deployment: None,
            })),
            clock,
            wall: Arc::new(crate::clock::SystemClock),
            versions: Default::default(),
            claims: Default::default(),
            dispatching: Default::default(),
            advancing_to: Default::default(),
            phases: Default::default(),
            totals: Default::default(),
            breaches: Default::default(),
        }
    }

    /// SLA breaches this process's timers recorded (committed), per queue, since it started.
    pub fn breach_totals(&self) -> Vec<(String, u64)> {
        let breaches = self.breaches.lock().unwrap_or_else(|p| p.into_inner());
        breaches.iter().map(|(q, n)| (q.clone(), *n)).collect()
    }

    /// What this process's committed work added to the report counters, per campaign.
    pub fn message_totals(&self) -> Vec<(String, crate::report::MessageFigures)> {
        self.totals.read()
    }

    /// Time spent per phase of work since the engine started.
    pub fn phases(&self) -> &Phases {
        &self.phases
    }

    /// See `advancing_to`.
    fn advancing_to(&self) -> DateTime<Utc> {
        crate::clock::from_micros(self.advancing_to.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Now, to the microsecond: the precision both stores keep, so that an answer and a later
    /// read of the same lead agree.
    pub fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        self.clock.now().trunc_subsecs(6)
    }

    pub fn playbook(&self) -> Arc<Playbook> {
        self.in_force().playbook.clone()
    }

    /// The bundle in force (the playbook's files and templates).
    pub fn bundle(&self) -> Arc<Bundle> {
        self.in_force().bundle.clone()
    }

    /// The deployment in force, once one is recorded.
    pub fn deployment_id(&self) -> Option<i64> {
        self.in_force().deployment
    }

    fn in_force(&self) -> Arc<InForce> {
        self.in_force.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Refuses a segment the playbook in force does not define, as [`Self::list_leads`] does.
    pub fn check_segment(&self, id: &str) -> EngineResult<()> {
        segment_of(&self.playbook(), id).map(|_| ())
    }
}

fn distinct<T: std::hash::Hash + Eq + Clone>(items: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::lead::{Lead, LeadInput, LeadRef};
    use crate::store::sqlite::SqliteStore;
    use crate::store::AdminStore;
    use crate::tag::Actor;

    /// An engine on a fresh SQLite file in `dir`, with the shipped playbook, a manual clock
    /// on a Monday morning, and a lead for each of these e-mails.
    async fn engine_with(dir: &std::path::Path, emails: &[&str]) -> (Engine, ManualClock, Vec<Lead>) {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("engine.db");
        let store = SqliteStore::connect(file.to_str().unwrap()).await.unwrap();
        store.migrate().await.unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let playbook = Deployable::load(&root.join("campaigns"), &root.join("templates")).unwrap();
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
        let held = engine.store.held().take(vec![leads[0].clone()]);
        let refs: Vec<LeadRef> = leads.iter().map(|l| LeadRef::by_id(l.id.0)).collect();
        let report = engine
            .enroll("industry-drip", &refs, &crate::audit::By::cli())
            .await
            .unwrap();
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
            .enroll(
                "industry-drip",
                &[LeadRef::by_id(leads[0].id.0)],
                &crate::audit::By::cli(),
            )
            .await
            .unwrap();
        let waiting = engine.next_wake().await.unwrap().expect("the lead waits 3 days");
        let held = engine.store.held().take(vec![leads[0].clone()]);
        let mut waits = engine.store.held().waits.subscribe();
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
