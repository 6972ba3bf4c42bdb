//! Running campaigns inside the engine's write transactions. The pure step function
//! ([`crate::journey::advance`]) decides; this module loads what it needs for a whole batch of
//! leads in a few queries, carries out its effects (tags, scores, handoffs, enrollments, outbox
//! messages) and writes everything set-based, in the caller's transaction.
//!
//! Three things move enrollments: an ingestion or change batch (events wake waits and goals,
//! and leads may enter campaigns), the runner (waits whose time has come), and `enroll` steps.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::attribution::{attribute, Reached};
use super::{Engine, EngineError, EngineResult, IdMap};
use crate::clock::to_micros;
use crate::condition::{EventFact, EventView};
use crate::journey::{advance, entry_matches, may_enter, Effect, Enrollment, JourneyFacts, MessageFact, Status};
use crate::lead::{ConsentStatus, Stage};
use crate::nurture::{Changes, HandoffRequest, LeadState};
use crate::pacing::Pacing;
use crate::playbook::{Campaign, Channel, Playbook};
use crate::report::attribution::Conversion;
use crate::report::{CountKey, MessageFigures};
use crate::store::reports::merge_deltas;
use crate::store::{email_hash, CountDelta, FlowCount, JourneyRow, NewMessage, SentMessage, Tx, WaitCount};
use crate::tag::{Actor, ScoreChange, TagFamily};

/// Event types that report on a message; their `message_id` property names it.
pub const MESSAGE_EVENTS: [&str; 3] = ["email_opened", "email_clicked", "email_replied"];

/// Campaign versions the engine has built, by (id, version): the playbook's own, and earlier
/// deployed versions built on demand for the enrollments that entered them.
#[derive(Default)]
pub(crate) struct Versions(Mutex<HashMap<VersionKey, Option<Arc<Campaign>>>>);

/// (campaign id, version).
type VersionKey = (String, String);

/// Which leads may enter campaigns in a journey pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// None: only running enrollments move (the runner's pass).
    Closed,
    /// By the campaigns' own triggers: segment conditions, and events of this batch.
    Triggers,
    /// Into this campaign, by hand (API or CLI): its trigger is not asked, its re-entry rule is.
    Into(String),
    /// Into these segment-triggered campaigns for leads that match them now (after a deploy).
    Matching(Vec<String>),
    /// Out of this campaign, by hand: the leads' running enrollments in it end, whatever
    /// step they are at (a paused campaign's too); nothing else moves.
    Exit {
        campaign: String,
        reason: String,
        by: String,
    },
}

/// What a journey pass did, for reports and the clock.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JourneyCounts {
    pub entered: usize,
    pub moved: usize,
    pub messages: usize,
    /// What it added to the report counters (sends skipped at their step), for the process's
    /// own totals once the pass is committed.
    pub counted: Vec<CountDelta>,
}

/// What a journey pass decided and has yet to write.
#[derive(Default)]
pub(super) struct JourneyMoves(Vec<Moved>);

impl JourneyMoves {
    /// The leads that enter `campaign` in these moves.
    pub(super) fn entering(&self, campaign: &str) -> HashSet<i64> {
        self.0
            .iter()
            .filter(|m| m.new && m.enrollment.campaign == campaign)
            .map(|m| m.enrollment.lead.0)
            .collect()
    }

    /// The leads that enter a campaign in these moves, by campaign.
    pub(super) fn entered(&self) -> HashMap<String, HashSet<i64>> {
        let mut by_campaign: HashMap<String, HashSet<i64>> = HashMap::new();
        for m in self.0.iter().filter(|m| m.new) {
            by_campaign
                .entry(m.enrollment.campaign.clone())
                .or_default()
                .insert(m.enrollment.lead.0);
        }
        by_campaign
    }

    /// The leads whose running enrollment in `campaign` these moves end.
    pub(super) fn ending(&self, campaign: &str) -> HashSet<i64> {
        self.0
            .iter()
            .filter(|m| !m.new && m.enrollment.campaign == campaign && !m.enrollment.status.is_open())
            .map(|m| m.enrollment.lead.0)
            .collect()
    }
}

/// What the messages skipped at their step (unreachable: unsubscribed, suppressed, no
/// address) add to the report counters; they never reach the dispatcher.
fn skipped_counts(messages: &[NewMessage]) -> Vec<CountDelta> {
    merge_deltas(messages.iter().filter_map(|m| {
        let language = m.language?;
        Some(CountDelta {
            key: CountKey {
                campaign: m.campaign_id.clone(),
                step: m.step.clone(),
                version: m.version.clone(),
                template: m.template.clone(),
                channel: m.channel.as_str().to_owned(),
                language: language.to_owned(),
            },
            hour: crate::report::hour_of(m.created_at),
            shard: m.enrollment_id,
            figures: MessageFigures {
                skipped: 1,
                ..Default::default()
            },
        })
    }))
}

/// What journey lines add to the flow counters: per campaign, version, step, outcome and
/// hour, the lines and the arrivals among them. Summed over borrowed keys first, so a pass
/// allocates per counter row, not per line; `versions[line_versions[i]]` is line i's version.
fn flow_counts(journey: &[JourneyRow], line_versions: &[usize], versions: &[String]) -> Vec<FlowCount> {
    type Key<'a> = (&'a str, &'a str, &'a str, crate::journey::Outcome, i64);
    // FxHash: the keys are the playbook's own names, not anything a caller sends.
    let mut sums: HashMap<Key<'_>, (i64, i64, i64), rustc_hash::FxBuildHasher> = HashMap::default();
    for (row, v) in journey.iter().zip(line_versions) {
        let key = (
            row.campaign_id.as_str(),
            versions[*v].as_str(),
            row.step.as_str(),
            row.outcome,
            crate::report::hour_of(row.at),
        );
        let sum = sums.entry(key).or_insert((row.enrollment_id, 0, 0));
        sum.1 += i64::from(row.arrived);
        sum.2 += 1;
    }
    sums.into_iter()
        .map(
            |((campaign, version, step, outcome, hour), (shard, entered, lines))| FlowCount {
                campaign: campaign.to_owned(),
                step: step.to_owned(),
                version: version.to_owned(),
                outcome: outcome.label().into_owned(),
                hour,
                shard,
                entered,
                lines,
            },
        )
        .collect()
}

/// One enrollment's result in a pass, before new enrollments have ids.
struct Moved {
    enrollment: Enrollment,
    new: bool,
    /// An enrollment that was running and keeps its status (say from one wait to the next).
    kept: bool,
    journey: Vec<crate::journey::JourneyEntry>,
    messages: Vec<NewMessage>,
    /// For a new enrollment, the event that enrolled the lead (kept with it).
    enrolling_event: Option<EventFact>,
}

/// Where one lead's journey puts what it decided: tags, scores and handoffs, and its moves.
struct Out<'a> {
    changes: &'a mut Changes,
    moved: &'a mut Vec<Moved>,
}

/// What one decide pass read for all its leads, which every lead's journey consults.
#[derive(Clone, Copy)]
struct Batch<'a> {
    /// Opens, clicks and replies of the open enrollments' messages, by enrollment.
    facts: &'a IdMap<Vec<MessageFact>>,
    /// What pacing needs: recent sends and suppressions of the batch's leads.
    pace: &'a PaceFacts,
    playbook: &'a Playbook,
    /// Campaigns paused or retired: their enrollments stay where they are.
    paused: &'a HashSet<String>,
    now: DateTime<Utc>,
    /// Which campaigns the leads may enter in this pass.
    enter: &'a Entry,
    /// The events that enrolled the open enrollments of campaigns that read them, by enrollment.
    enrolling: &'a IdMap<EventFact>,
}

impl Engine {
    /// The campaign version an enrollment runs on: the playbook's, or an earlier deployed one
    /// built from its stored source (read in the caller's transaction). `None` when it cannot
    /// be built any more.
    async fn campaign_version(
        &self,
        tx: &mut dyn Tx,
        playbook: &Playbook,
        id: &str,
        version: &str,
    ) -> EngineResult<Option<Arc<Campaign>>> {
        if let Some(current) = playbook.campaigns.get(id).filter(|c| c.version == version) {
            return Ok(Some(current.clone()));
        }
        let key = (id.to_owned(), version.to_owned());
        if let Some(known) = self.versions.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(known.clone());
        }
        let built = tx
            .campaign_source(id, version)
            .await?
            .and_then(|(file, source)| match playbook.build_version(&file, &source) {
                Ok(campaign) => Some(Arc::new(campaign)),
                Err(refused) => {
                    tracing::warn!(campaign = id, version, error = %refused, "An earlier campaign version no longer builds; its enrollments end.");
                    None
                }
            });
        self.versions
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, built.clone());
        Ok(built)
    }

    /// The journey pass over a batch of leads whose state is loaded and locked in `tx`.
    /// `new_events` are the events each lead received in this batch. With `enter`, leads
    /// may enter campaigns (segment and event triggers); without it (the runner's pass) only
    /// running enrollments move: waits whose time has come, and `enroll` steps.
    #[allow(clippy::too_many_arguments)] // One transaction's state, passed through; a struct would only rename it.
    pub(super) async fn run_journeys(
        &self,
        tx: &mut dyn Tx,
        states: &mut IdMap<LeadState>,
        playbook: &Playbook,
        now: DateTime<Utc>,
        new_events: &IdMap<Vec<EventView<'_>>>,
        enter: &Entry,
        changes: &mut Changes,
    ) -> EngineResult<JourneyCounts> {
        let moves = self
            .decide_journeys(tx, states, playbook, now, new_events, enter, changes)
            .await?;
        self.write_journeys(tx, moves).await
    }

    /// The deciding half of [`Self::run_journeys`]: reads what the batch needs in `tx` and runs
    /// the step function; tags, scores and handoffs go to `states` and `changes`, the moves are
    /// returned to be written.
    #[allow(clippy::too_many_arguments)] // As above.
    pub(super) async fn decide_journeys(
        &self,
        tx: &mut dyn Tx,
        states: &mut IdMap<LeadState>,
        playbook: &Playbook,
        now: DateTime<Utc>,
        new_events: &IdMap<Vec<EventView<'_>>>,
        enter: &Entry,
        changes: &mut Changes,
    ) -> EngineResult<JourneyMoves> {
        let lead_ids: Vec<i64> = states.keys().copied().collect();
        if lead_ids.is_empty() {
            return Ok(JourneyMoves::default());
        }
        let enrollments = tx.load_enrollments(&lead_ids).await?;
        if enrollments.is_empty() && (*enter == Entry::Closed || playbook.campaigns.is_empty()) {
            return Ok(JourneyMoves::default());
        }
        // Read in the transaction: a second pool connection here could wait on this very one.
        let paused: HashSet<String> = tx.frozen_campaigns().await?.into_iter().collect();
        let open: Vec<&Enrollment> = enrollments.iter().filter(|e| e.status.is_open()).collect();
        let facts = self.message_facts(tx, &open).await?;
        let pace = pace_facts(tx, states, playbook, now).await?;
        // The versions the enrollments run (an earlier one may read the event, the current not).
        let mut reading: Vec<i64> = Vec::new();
        for e in &open {
            let version = self.campaign_version(tx, playbook, &e.campaign, &e.version).await?;
            if version.is_some_and(|c| c.reads_event) {
                reading.push(e.id);
            }
        }
        let enrolling: IdMap<EventFact> = if reading.is_empty() {
            IdMap::default()
        } else {
            tx.enrolling_events(&reading).await?.into_iter().collect()
        };

        let batch = Batch {
            enrolling: &enrolling,
            facts: &facts,
            pace: &pace,
            playbook,
            paused: &paused,
            now,
            enter,
        };
        let mut by_lead: BTreeMap<i64, Vec<Enrollment>> = BTreeMap::new();
        for e in enrollments {
            by_lead.entry(e.lead.0).or_default().push(e);
        }
        let mut moved: Vec<Moved> = Vec::with_capacity(lead_ids.len());
        let mut lead_order = lead_ids.clone();
        lead_order.sort_unstable();
        for lead_id in lead_order {
            let Some(state) = states.get_mut(&lead_id) else {
                continue;
            };
            let history = by_lead.remove(&lead_id).unwrap_or_default();
            let events = new_events.get(&lead_id).map(Vec::as_slice).unwrap_or_default();
            let out = Out {
                changes: &mut *changes,
                moved: &mut moved,
            };
            self.journey_of_lead(tx, &batch, state, history, events, out).await?;
        }
        Ok(JourneyMoves(moved))
    }

    /// The writing half of [`Self::run_journeys`]: new enrollments get their ids, and so do
    /// their journey lines and messages; everything is written set-based in `tx`.
    pub(super) async fn write_journeys(&self, tx: &mut dyn Tx, moves: JourneyMoves) -> EngineResult<JourneyCounts> {
        let mut counts = JourneyCounts::default();
        let moved = moves.0;
        if moved.is_empty() {
            return Ok(counts);
        }
        let fresh = moved.iter().filter(|m| m.new).count();
        let mut ids = tx.reserve_enrollment_ids(fresh).await?.into_iter();
        let mut enrollments = Vec::with_capacity(moved.len());
        let mut enrolling = Vec::new();
        let mut kept = Vec::with_capacity(moved.len());
        let mut journey = Vec::with_capacity(moved.iter().map(|m| m.journey.len()).sum());
        let mut messages = Vec::with_capacity(moved.iter().map(|m| m.messages.len()).sum());
        let mut waits = Vec::new();
        let mut goals = Vec::new();
        // Each journey line's campaign version, as an index into `versions`.
        let mut versions: Vec<String> = Vec::with_capacity(moved.len());
        let mut line_versions: Vec<usize> = Vec::with_capacity(journey.capacity());
        for mut m in moved {
            if m.new {
                m.enrollment.id = ids
                    .next()
                    .ok_or_else(|| EngineError::Raced("enrollment ids ran out".into()))?;
                counts.entered += 1;
            }
            counts.moved += 1;
            let id = m.enrollment.id;
            if let Some(event) = m.enrolling_event.take() {
                enrolling.push((id, m.enrollment.lead.0, event));
            }
            waits.extend(m.journey.iter().filter_map(|j| {
                Some(WaitCount {
                    campaign: m.enrollment.campaign.clone(),
                    step: j.step.clone(),
                    version: m.enrollment.version.clone(),
                    hour: crate::report::hour_of(to_micros(j.at)),
                    bucket: crate::report::queue::wait_bucket(j.waited?),
                    shard: id,
                    n: 1,
                })
            }));
            goals.extend(
                m.journey
                    .iter()
                    .filter(|j| j.outcome == crate::journey::Outcome::Goal)
                    .map(|j| Reached {
                        lead: m.enrollment.lead.0,
                        outcome: Conversion::Goal,
                        campaign: Some(m.enrollment.campaign.clone()),
                        at: to_micros(j.at),
                    }),
            );
            if versions.last() != Some(&m.enrollment.version) {
                versions.push(m.enrollment.version.clone());
            }
            line_versions.extend(std::iter::repeat_n(versions.len() - 1, m.journey.len()));
            journey.extend(m.journey.into_iter().map(|j| JourneyRow {
                enrollment_id: id,
                lead_id: m.enrollment.lead.0,
                campaign_id: m.enrollment.campaign.clone(),
                step: j.step,
                outcome: j.outcome,
                detail: j.detail,
                at: to_micros(j.at),
                arrived: j.arrived,
            }));
            for mut message in m.messages {
                message.enrollment_id = id;
                messages.push(message);
            }
            if m.kept {
                kept.push(m.enrollment);
            } else {
                enrollments.push(m.enrollment);
            }
        }
        counts.messages = messages.len();
        tx.write_enrollments(&enrollments).await?;
        tx.move_enrollments(&kept).await?;
        let flows = flow_counts(&journey, &line_versions, &versions);
        tx.write_journey(&journey).await?;
        tx.insert_messages(&messages).await?;
        counts.counted = skipped_counts(&messages);
        tx.count_messages(&counts.counted).await?;
        tx.count_waits(&waits).await?;
        tx.count_flows(&flows).await?;
        attribute(tx, &goals).await?;
        tx.write_enrolling_events(&enrolling).await?;
        Ok(counts)
    }

    /// What each open enrollment's messages have seen: opens by people, clicks, responses.
    async fn message_facts(&self, tx: &mut dyn Tx, open: &[&Enrollment]) -> EngineResult<IdMap<Vec<MessageFact>>> {
        let mut out: IdMap<Vec<MessageFact>> = IdMap::default();
        if open.is_empty() {
            return Ok(out);
        }
        let ids: Vec<i64> = open.iter().map(|e| e.id).collect();
        let sent: Vec<SentMessage> = tx.load_messages(&ids).await?;
        if sent.is_empty() {
            return Ok(out);
        }
        let leads: Vec<i64> = open
            .iter()
            .map(|e| e.lead.0)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let since = open.iter().map(|e| to_micros(e.entered_at)).min();
        let needs: Vec<(String, Option<i64>)> = MESSAGE_EVENTS.iter().map(|t| (t.to_string(), since)).collect();
        let mut about: HashMap<i64, Vec<EventFact>> = HashMap::new();
        for (_, event) in tx.load_events(&leads, &needs).await? {
            let id = match event.properties.get("message_id") {
                Some(serde_json::Value::Number(n)) => n.as_i64(),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            };
            if let Some(id) = id {
                about.entry(id).or_default().push(event);
            }
        }
        for message in sent {
            let mut fact = MessageFact {
                step: message.step.clone(),
                id: message.id,
                ..Default::default()
            };
            let events: Vec<&EventFact> = about.get(&message.id).into_iter().flatten().collect();
            // Clicks on several links of the message within seconds: a scanner, whatever it
            // said it was.
            let clicks: Vec<(DateTime<Utc>, &str)> = events
                .iter()
                .filter(|e| e.kind == "email_clicked")
                .map(|e| {
                    (
                        e.occurred_at,
                        e.properties.get("url").and_then(|v| v.as_str()).unwrap_or_default(),
                    )
                })
                .collect();
            let mut burst = crate::fetch::in_burst(&clicks).into_iter();
            for event in events {
                let automated = event.view().by_machine();
                match event.kind.as_str() {
                    "email_opened" if automated => fact.opened_automated = true,
                    "email_opened" => fact.opened = true,
                    "email_clicked" => {
                        let link = event
                            .properties
                            .get("link")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned();
                        let in_burst = burst.next() == Some(true);
                        if automated || in_burst {
                            fact.clicked_automated.push(link);
                        } else {
                            fact.clicked.push(link);
                            fact.responded = true;
                        }
                    }
                    "email_replied" => fact.responded = true,
                    _ => {}
                }
            }
            out.entry(message.enrollment_id).or_default().push(fact);
        }
        Ok(out)
    }

    /// Runs one lead's journeys in `batch`: its open enrollments, then the campaigns it enters;
    /// tags, scores and handoffs go to `state` and `out.changes`, the moves to `out.moved`.
    ///
    /// Long on purpose: the loop over one lead's work, which `enroll` steps add to as it runs;
    /// the parts that stand alone are `Work`, `apply` and `version_unavailable`.
    async fn journey_of_lead(
        &self,
        tx: &mut dyn Tx,
        batch: &Batch<'_>,
        state: &mut LeadState,
        history: Vec<Enrollment>,
        new_events: &[EventView<'_>],
        out: Out<'_>,
    ) -> EngineResult<()> {
        let Out { changes, moved } = out;
        let Batch {
            facts,
            pace,
            playbook,
            paused,
            now,
            enter,
            enrolling,
        } = *batch;
        if let Entry::Exit { campaign, reason, by } = enter {
            for e in history
                .into_iter()
                .filter(|e| e.status.is_open() && e.campaign == *campaign)
            {
                moved.push(exited_by_hand(e, reason, by, now));
            }
            return Ok(());
        }
        // Entries ask the lead's past enrollments (re-entry); the runner's pass has none, so
        // it runs the enrollments themselves instead of copies.
        let runs = |e: &Enrollment| e.status.is_open() && !paused.contains(&e.campaign);
        let (running, history): (Vec<Enrollment>, Vec<Enrollment>) = if *enter == Entry::Closed {
            (history.into_iter().filter(runs).collect(), Vec::new())
        } else {
            (history.iter().filter(|e| runs(e)).cloned().collect(), history)
        };
        let mut work = Work::new(history, state.lead.id, now);
        for e in running {
            match self.campaign_version(tx, playbook, &e.campaign, &e.version).await? {
                Some(campaign) => work.items.push((e, campaign, false)),
                None => moved.push(version_unavailable(e, now)),
            }
        }
        // A recycled lead rests through its queue's cool-down: no campaign takes it meanwhile.
        let resting = state.lead.resting(now) && !matches!(enter, Entry::Into(_));
        if *enter != Entry::Closed && !resting {
            let kinds: Vec<&str> = new_events.iter().map(|e| e.kind).collect();
            for campaign in playbook.campaigns.values().filter(|c| !paused.contains(&c.id)) {
                let wanted = match enter {
                    Entry::Into(id) => *id == campaign.id,
                    Entry::Matching(ids) => {
                        ids.contains(&campaign.id) && entry_matches(campaign, state, &playbook.segments, &[], now)
                    }
                    _ => entry_matches(campaign, state, &playbook.segments, &kinds, now),
                };
                if wanted {
                    // The latest event of the trigger's type in the batch enrolled the lead.
                    let event = campaign.entry.event.as_deref().and_then(|kind| {
                        new_events.iter().rev().find(|e| e.kind == kind).map(|e| EventFact {
                            kind: e.kind.to_owned(),
                            occurred_at: e.occurred_at,
                            properties: e.properties.clone(),
                        })
                    });
                    work.enter(campaign, event);
                }
            }
        }
        let mut pacing = pace.pacing(state, playbook);
        let no_messages: Vec<MessageFact> = Vec::new();
        let mut guard = 0;
        while let Some((enrollment, campaign, new)) = work.next() {
            let before = enrollment.status;
            guard += 1;
            if guard > 1_000 {
                break;
            }
            let messages = facts.get(&enrollment.id).filter(|_| !new).unwrap_or(&no_messages);
            let enrolling_event = if new { work.events.remove(&campaign.id) } else { None };
            let mut journey_facts = JourneyFacts {
                lead: std::borrow::Cow::Borrowed(&state.lead),
                tags: state.tags.keys().cloned().collect(),
                events: &state.events,
                messages,
                enrolling_event: enrolling_event.as_ref().or_else(|| enrolling.get(&enrollment.id)),
            };
            let result = advance(
                &campaign,
                enrollment,
                &mut journey_facts,
                &playbook.segments,
                &mut pacing,
                now,
            );
            if !result.moved() && !new {
                continue;
            }
            if new && matches!(state.lead.stage, Stage::New | Stage::Recycled) {
                state.lead.stage = Stage::Nurturing;
                state.lead.updated_at = now;
                state.dirty = true;
            }
            let mut outbox = Vec::new();
            for effect in result.effects {
                match effect {
                    // An `enroll` step hands the lead on whatever the target's trigger says,
                    // but keeps its re-entry rule and never makes a second running enrollment.
                    Effect::Enroll { campaign: other, .. } => {
                        if let Some(target) = playbook.campaigns.get(&other).filter(|_| !paused.contains(&other)) {
                            if !work.runs(&other) {
                                work.enter(target, None);
                            }
                        }
                    }
                    effect => outbox.extend(apply(effect, state, &campaign, playbook, now, changes)),
                }
            }
            moved.push(Moved {
                kept: !new && result.enrollment.status == before,
                enrollment: result.enrollment,
                new,
                journey: result.journey,
                messages: outbox,
                enrolling_event,
            });
        }
        Ok(())
    }
}

/// A lead's enrollments to run in a pass: the running ones, then those it enters (`enroll`
/// steps add to them as they run).
struct Work {
    items: Vec<(Enrollment, Arc<Campaign>, bool)>,
    /// Campaigns entered in this pass.
    entered: HashSet<String>,
    /// The events that enrolled the lead into campaigns entered in this pass, by campaign.
    events: HashMap<String, EventFact>,
    /// The lead's enrollments, past and running, that entries ask (re-entry).
    history: Vec<Enrollment>,
    lead: crate::lead::LeadId,
    now: DateTime<Utc>,
}

impl Work {
    fn new(history: Vec<Enrollment>, lead: crate::lead::LeadId, now: DateTime<Utc>) -> Self {
        Self {
            items: Vec::new(),
            entered: HashSet::new(),
            events: HashMap::new(),
            history,
            lead,
            now,
        }
    }

    /// Enters `campaign` if its re-entry rule allows, enrolled by `event` if one did.
    fn enter(&mut self, campaign: &Arc<Campaign>, event: Option<EventFact>) {
        let past: Vec<&Enrollment> = self.history.iter().filter(|e| e.campaign == campaign.id).collect();
        if may_enter(campaign.entry.reentry, &past, self.now) {
            self.entered.insert(campaign.id.clone());
            if let Some(event) = event {
                self.events.insert(campaign.id.clone(), event);
            }
            let start = Enrollment::start(0, campaign, self.lead, self.now);
            self.items.push((start, campaign.clone(), true));
        }
    }

    /// Whether the lead entered `campaign` in this pass or has it still to run.
    fn runs(&self, campaign: &str) -> bool {
        self.entered.contains(campaign) || self.items.iter().any(|(e, _, _)| e.campaign == campaign)
    }

    /// The next enrollment to run: highest campaign priority first, so that when a frequency
    /// cap leaves room for one send, the campaign that matters more gets it.
    fn next(&mut self) -> Option<(Enrollment, Arc<Campaign>, bool)> {
        let index = self
            .items
            .iter()
            .enumerate()
            .max_by_key(|(_, (_, campaign, _))| campaign.priority)
            .map(|(i, _)| i)?;
        Some(self.items.remove(index))
    }
}

/// An enrollment taken out of its campaign by hand, with who did it and why in its journey.
fn exited_by_hand(e: Enrollment, reason: &str, by: &str, now: DateTime<Utc>) -> Moved {
    ended(e, "exited_by_hand", format!("taken out by hand by {by}: {reason}"), now)
}

/// A running enrollment whose campaign version can no longer be built, ended.
fn version_unavailable(e: Enrollment, now: DateTime<Utc>) -> Moved {
    let detail = format!("campaign version {} can no longer be built", e.version);
    ended(e, "version_unavailable", detail, now)
}

/// An enrollment ended where it stands, with `outcome` and one journey line saying why.
fn ended(e: Enrollment, outcome: &str, detail: String, now: DateTime<Utc>) -> Moved {
    let line = crate::journey::JourneyEntry {
        step: e.step.clone(),
        at: now,
        outcome: crate::journey::Outcome::Exited,
        detail,
        arrived: false,
        waited: None,
    };
    let mut ended = e;
    ended.status = Status::Exited;
    ended.outcome = Some(outcome.into());
    ended.wake_at = None;
    ended.updated_at = now;
    Moved {
        enrollment: ended,
        new: false,
        kept: false,
        journey: vec![line],
        messages: Vec::new(),
        enrolling_event: None,
    }
}

/// Carries out a step's effect on the lead (tags, score, handoff into `state` and `changes`);
/// a send is returned as the message to queue. `enroll` effects are the caller's.
fn apply(
    effect: Effect,
    state: &mut LeadState,
    campaign: &Campaign,
    playbook: &Playbook,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> Option<NewMessage> {
    // Only tag and score changes name who made them; a send needs no actor.
    let actor = || Actor::Rule(format!("campaign:{}/{}", campaign.id, step_of(&effect)));
    match effect {
        Effect::Send {
            step,
            channel,
            template,
            seq,
            skipped,
        } => {
            let status = if skipped.is_some() { "skipped" } else { "pending" };
            let default = playbook.rules.default_language;
            let language = skipped
                .is_some()
                .then(|| playbook.templates.language_of(&template, &state.lead, default).code());
            return Some(NewMessage {
                enrollment_id: 0,
                seq,
                lead_id: state.lead.id.0,
                campaign_id: campaign.id.clone(),
                version: campaign.version.clone(),
                step,
                channel,
                template,
                status: status.to_owned(),
                reason: skipped,
                next_attempt_at: (status == "pending").then(|| to_micros(now)),
                created_at: to_micros(now),
                language,
            });
        }
        Effect::Tag {
            ref add, ref remove, ..
        } => {
            let actor = actor();
            for tag in add {
                state.add_tag(tag, TagFamily::of_rule_tag(tag), &actor, now, changes);
            }
            for tag in remove {
                state.remove_tag(tag, &actor, now, changes);
            }
        }
        Effect::Score { ref step, points } => state.add_score(
            ScoreChange {
                lead_id: state.lead.id,
                delta: points,
                reason: format!("campaign {} step {step}", campaign.id),
                actor: actor(),
                rule: None,
                occurred_at: now,
                at: now,
            },
            changes,
        ),
        Effect::Handoff {
            step,
            queue,
            reason,
            priority,
        } => {
            let origin = format!("campaign:{}/{step}", campaign.id);
            let mut request = HandoffRequest::new(state, playbook, &queue, &reason, origin, now);
            request.priority = Some(priority);
            request.campaign = Some(campaign.id.clone());
            request.step = Some(step);
            state.hand_off(request, now, changes);
        }
        Effect::Enroll { .. } => {}
    }
    None
}

fn step_of(effect: &Effect) -> &str {
    match effect {
        Effect::Send { step, .. }
        | Effect::Tag { step, .. }
        | Effect::Score { step, .. }
        | Effect::Handoff { step, .. }
        | Effect::Enroll { step, .. } => step,
    }
}

/// What pacing needs of a batch of leads: their recent sends (when the playbook caps sends)
/// and which of their addresses are suppressed.
pub(super) struct PaceFacts {
    sent: IdMap<Vec<(Channel, DateTime<Utc>)>>,
    /// Lead id → why its address is suppressed.
    suppressed: IdMap<String>,
}

/// Loads the pacing facts of the leads in `states`, in the caller's transaction.
pub(super) async fn pace_facts(
    tx: &mut dyn Tx,
    states: &IdMap<LeadState>,
    playbook: &Playbook,
    now: DateTime<Utc>,
) -> EngineResult<PaceFacts> {
    let mut sent: IdMap<Vec<(Channel, DateTime<Utc>)>> = IdMap::default();
    if let Some(per) = playbook.rules.frequency.values().map(|c| c.per).max() {
        let ids: Vec<i64> = states.keys().copied().collect();
        for row in tx.recent_sends(&ids, to_micros(now - per.to_chrono())).await? {
            let channel = match row.channel {
                Channel::Email | Channel::Wechat => row.channel,
                Channel::Webhook => continue,
            };
            sent.entry(row.lead_id)
                .or_default()
                .push((channel, crate::clock::from_micros(row.created_at)));
        }
    }
    let mut leads_of: HashMap<String, Vec<i64>> = HashMap::new();
    for s in states.values() {
        if let Some(email) = &s.lead.email {
            leads_of
                .entry(email_hash(email.as_str()))
                .or_default()
                .push(s.lead.id.0);
        }
    }
    let hashes: Vec<String> = leads_of.keys().cloned().collect();
    let mut suppressed = IdMap::default();
    for s in tx.suppressions(&hashes).await? {
        for lead in leads_of.get(&s.email_hash).into_iter().flatten() {
            suppressed.insert(*lead, s.reason.clone());
        }
    }
    Ok(PaceFacts { sent, suppressed })
}

impl PaceFacts {
    /// The pacing of one lead: its sends so far, and the channels it cannot get.
    fn pacing<'a>(&self, state: &LeadState, playbook: &'a Playbook) -> Pacing<'a> {
        let lead = &state.lead;
        let mut pacing = Pacing::new(&playbook.rules, lead.id, lead.timezone(playbook.rules.default_timezone));
        for (channel, at) in self.sent.get(&lead.id.0).into_iter().flatten() {
            pacing.sent(*channel, *at);
        }
        for channel in [Channel::Email, Channel::Wechat] {
            let suppressed = match channel {
                Channel::Email => self.suppressed.get(&lead.id.0),
                _ => None,
            };
            if let Some(why) = why_not_send(state, channel, suppressed.map(String::as_str)) {
                pacing.unreachable(channel, why);
            }
        }
        pacing
    }
}

/// Why a message must not go to this lead on this channel, if it must not. `suppressed`: why
/// the lead's address is on the suppression list, if it is.
fn why_not_send(state: &LeadState, channel: Channel, suppressed: Option<&str>) -> Option<String> {
    let lead = &state.lead;
    match channel {
        Channel::Email => {
            if lead.email.is_none() {
                Some("no_email".into())
            } else if lead.consent.email.status == ConsentStatus::OptedOut {
                Some("unsubscribed".into())
            } else {
                suppressed.map(|why| format!("suppressed: {why}"))
            }
        }
        Channel::Wechat => {
            if lead.consent.wechat.status == ConsentStatus::OptedOut {
                Some("unsubscribed".into())
            } else if lead
                .attributes
                .get("wechat_openid")
                .and_then(|v| v.as_str())
                .is_none_or(|v| v.trim().is_empty())
            {
                Some("no_wechat_openid".into())
            } else {
                None
            }
        }
        Channel::Webhook => None,
    }
}
