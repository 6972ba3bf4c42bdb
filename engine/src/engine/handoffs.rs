//! Handoffs in the engine: opening them (from the MQL rule, a campaign's `handoff` step or the
//! API), round-robin routing, claims and decisions, the SLA and cool-down timers, and the
//! webhook events all of these emit into the durable outbox, in the same transaction.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

use super::attribution::{attribute, Reached};
use super::{load_states, view, Engine, EngineError, EngineResult, IdMap, LeadView};
use crate::audit::{AuditKind, By, Change};
use crate::clock::to_micros;
use crate::handoff::{catch_up, pick_member, Decision, Handoff, HandoffId, Member, MemberChange, Refusal};
use crate::lead::{FieldError, Lead, LeadRef, Stage};
use crate::note::NoteInput;
use crate::nurture::{Changes, HandoffRequest, LeadState};
use crate::playbook::{Playbook, Queue, Routing};
use crate::report::attribution::Conversion;
use crate::report::queue::{reason_key, wait_bucket, HandoffFact};
use crate::store::handoffs::{Emitted, HandoffLogEntry, NewNotification, QueueCounts, QueueCursor};
use crate::store::Tx;
use crate::store::{HandoffCount, NewNote};
use crate::webhook::payload::{Breach, Data, Decided, HandoffData, Mql, NoteAdded, Payload};

/// Webhook event types nurture emits (`*` subscribes to all).
pub const WEBHOOK_EVENTS: [&str; 14] = [
    "lead.created",
    "lead.updated",
    "lead.mql",
    "lead.handed_off",
    "lead.unsubscribed",
    "lead.note_added",
    "handoff.assigned",
    "handoff.claimed",
    "handoff.released",
    "handoff.accepted",
    "handoff.rejected",
    "handoff.converted",
    "handoff.decided",
    "handoff.sla_breached",
];

/// A webhook event before it is queued: the subscriptions that want it get one delivery each.
pub(crate) fn event(kind: &str, lead: Option<&Lead>, data: Data, now: DateTime<Utc>) -> Emitted {
    let payload = Payload {
        id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
        kind,
        occurred_at: now,
        lead,
        data,
    };
    Emitted {
        event: kind.to_owned(),
        lead_id: lead.map(|l| l.id.0),
        payload: serde_json::to_string(&payload).expect("a payload serialises"),
        at: now,
    }
}

/// `{"handoff": …}`.
fn about(h: &Handoff) -> Data {
    Data::Handoff(HandoffData { handoff: h.clone() })
}

fn log(h: &Handoff, action: &str, actor: Option<&str>, detail: Option<String>, now: DateTime<Utc>) -> HandoffLogEntry {
    HandoffLogEntry {
        handoff_id: h.id.0,
        action: action.to_owned(),
        actor: actor.map(str::to_owned),
        detail,
        at: to_micros(now),
        queue: Some(h.queue.clone()),
    }
}

/// One handoff counted in `queue` (for `member`, empty when no member is concerned) at `now`.
fn count(h: &Handoff, queue: &str, member: Option<&str>, fact: HandoffFact, now: DateTime<Utc>) -> HandoffCount {
    HandoffCount {
        queue: queue.to_owned(),
        hour: crate::report::hour_of(to_micros(now)),
        member: member.unwrap_or_default().to_owned(),
        fact,
        detail: String::new(),
        shard: h.id.0,
        n: 1,
    }
}

/// A claim by `member` of `h` at `now`, and how long `h` had waited since it was opened.
fn claim_counts(h: &Handoff, member: &str, now: DateTime<Utc>) -> [HandoffCount; 2] {
    let waited = (now - h.created_at).num_seconds();
    [
        count(h, &h.queue, Some(member), HandoffFact::Claimed, now),
        HandoffCount {
            detail: wait_bucket(waited).to_string(),
            ..count(h, &h.queue, Some(member), HandoffFact::ClaimWait, now)
        },
    ]
}

/// A queue's members in the playbook's order, with their stored state (a member never stored
/// starts level with the others).
pub(crate) fn members_of(playbook: &Playbook, queue: &str, stored: Vec<Member>) -> Vec<Member> {
    let Some(q) = playbook.queues.queues.get(queue) else {
        return Vec::new();
    };
    let mut members: Vec<Member> = q
        .members
        .iter()
        .map(|name| {
            stored
                .iter()
                .find(|m| m.member == *name)
                .cloned()
                .unwrap_or_else(|| Member::new(name))
        })
        .collect();
    for i in 0..members.len() {
        if !stored.iter().any(|m| m.member == members[i].member) {
            catch_up(&mut members, i);
        }
    }
    members
}

/// A claimed handoff and its lead (gone when the lead was erased).
pub type Claimed = (Handoff, Option<LeadView>);

/// Claims waiting to be written, and the turn to write them (see [`Engine::claim`]).
#[derive(Default)]
pub(crate) struct Claims {
    waiting: std::sync::Mutex<Vec<ClaimRequest>>,
    writing: tokio::sync::Mutex<()>,
}

struct ClaimRequest {
    queue: String,
    member: String,
    answer: tokio::sync::oneshot::Sender<EngineResult<Option<Claimed>>>,
}

/// The audit entry of a handoff decision (the note's words stay in the note).
fn decision_audit(by: &By, h: &Handoff, decision: &Decision, noted: bool) -> Change {
    let (kind, detail) = match decision {
        Decision::Accept => (AuditKind::HandoffAccepted, serde_json::json!({})),
        Decision::Reject { reason, recycle } => (
            AuditKind::HandoffRejected,
            serde_json::json!({"reason": reason, "recycle": recycle}),
        ),
        Decision::Convert { amount } => (
            AuditKind::HandoffConverted,
            serde_json::json!({"amount": amount.map(|a| a.as_decimal())}),
        ),
        Decision::Release => (AuditKind::HandoffReleased, serde_json::json!({})),
    };
    by.did(kind, h.id.0, detail)
        .with("lead", h.lead_id.0.to_string())
        .with("queue", h.queue.clone())
        .with("noted", noted)
}

/// What a decision on `h` (made by `by`; `claimed`: it claimed the handoff as it was made)
/// adds to its queue's counters: the decision, for whoever held the handoff, and that claim.
fn decision_counts(h: &Handoff, decision: &Decision, by: &str, claimed: bool, now: DateTime<Utc>) -> Vec<HandoffCount> {
    let member = h.claimed_by.as_deref().unwrap_or(by);
    let (fact, detail) = match decision {
        Decision::Accept => (HandoffFact::Accepted, String::new()),
        Decision::Reject { reason, .. } => (HandoffFact::Rejected, reason_key(reason)),
        Decision::Convert { .. } => (HandoffFact::Converted, String::new()),
        Decision::Release => (HandoffFact::Released, String::new()),
    };
    let mut counts = Vec::new();
    if claimed {
        counts.extend(claim_counts(h, member, now));
    }
    counts.push(HandoffCount {
        detail,
        ..count(h, &h.queue, Some(member), fact, now)
    });
    counts
}

/// Why a claim found nothing (see [`Engine::nothing_to_claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NothingToClaim {
    /// Open handoffs in the queue.
    pub open: usize,
    /// Of those, how many are assigned to each other member.
    pub others: std::collections::BTreeMap<String, usize>,
}

/// A queue as its board shows it (see [`Engine::queue_board`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBoard {
    pub queue: Queue,
    /// What waits and is worked now.
    pub counts: QueueCounts,
    /// Members in the playbook's order, with availability, capacity, weight and load.
    pub members: Vec<Member>,
    /// SLA breaches of this queue on each of the last seven days, oldest first, today last.
    pub breaches: [i64; 7],
}

/// An open handoff's page cursor.
pub fn queue_cursor(h: &Handoff) -> QueueCursor {
    (h.priority, to_micros(h.created_at), h.id.0)
}

impl Engine {
    /// Writes a batch's changes, then what follows from the handoffs it opened (their log,
    /// round-robin assignment, `lead.handed_off`), and queues the webhook events: those given,
    /// plus `lead.mql` for leads the MQL rule qualified. Returns the handoffs opened.
    pub(super) async fn write_changes(
        &self,
        tx: &mut dyn Tx,
        states: &IdMap<LeadState>,
        changes: &Changes,
        playbook: &Playbook,
        now: DateTime<Utc>,
        mut events: Vec<Emitted>,
    ) -> EngineResult<Vec<Handoff>> {
        let opened = tx.write_changes(changes).await?;
        let lead_of = |id: i64| states.get(&id).map(|s| &s.lead);
        for request in changes.handoffs.iter().filter(|r| r.origin == "mql") {
            events.push(event(
                "lead.mql",
                lead_of(request.lead_id.0),
                Data::Mql(Mql {
                    reason: request.reason.clone(),
                }),
                now,
            ));
        }
        let mut handoffs = Vec::new();
        if !opened.is_empty() {
            let ids: Vec<i64> = opened.iter().map(|o| o.id).collect();
            handoffs = tx.lock_handoffs(&ids).await?;
            let mut lines: Vec<HandoffLogEntry> = handoffs
                .iter()
                .map(|h| log(h, "opened", Some(&h.origin), Some(h.reason.clone()), now))
                .collect();
            let assigned = self.route(tx, playbook, &mut handoffs, now, &mut lines).await?;
            tx.update_handoffs(&assigned).await?;
            tx.log_handoffs(&lines).await?;
            let counts: Vec<HandoffCount> = handoffs
                .iter()
                .map(|h| count(h, &h.queue, None, HandoffFact::Opened, now))
                .collect();
            tx.count_handoffs(&counts).await?;
            let reached: Vec<Reached> = handoffs
                .iter()
                .map(|h| Reached {
                    lead: h.lead_id.0,
                    outcome: Conversion::Handoff,
                    campaign: None,
                    at: to_micros(now),
                })
                .collect();
            attribute(tx, &reached).await?;
            for h in &handoffs {
                events.push(event("lead.handed_off", lead_of(h.lead_id.0), about(h), now));
                if h.assigned_to.is_some() {
                    events.push(event("handoff.assigned", lead_of(h.lead_id.0), about(h), now));
                }
            }
        }
        tx.emit(&events).await?;
        Ok(handoffs)
    }

    /// Gives handoffs in `round_robin` queues to members in turn; returns those assigned.
    async fn route(
        &self,
        tx: &mut dyn Tx,
        playbook: &Playbook,
        handoffs: &mut [Handoff],
        now: DateTime<Utc>,
        lines: &mut Vec<HandoffLogEntry>,
    ) -> EngineResult<Vec<Handoff>> {
        let mut queues: Vec<String> = handoffs
            .iter()
            .filter(|h| h.assigned_to.is_none())
            .filter(|h| {
                playbook
                    .queues
                    .queues
                    .get(&h.queue)
                    .is_some_and(|q| q.routing == Routing::RoundRobin)
            })
            .map(|h| h.queue.clone())
            .collect();
        queues.sort();
        queues.dedup();
        let mut assigned = Vec::new();
        for queue in queues {
            let stored = tx.queue_members(&queue).await?;
            let mut members = members_of(playbook, &queue, stored);
            for h in handoffs
                .iter_mut()
                .filter(|h| h.queue == queue && h.assigned_to.is_none())
            {
                match pick_member(&mut members) {
                    Some(i) => {
                        h.assigned_to = Some(members[i].member.clone());
                        h.updated_at = now;
                        lines.push(log(h, "assigned", None, h.assigned_to.clone(), now));
                        assigned.push(h.clone());
                    }
                    None => lines.push(log(
                        h,
                        "unassigned",
                        None,
                        Some("every member is away or at capacity; anyone in the queue may claim it".into()),
                        now,
                    )),
                }
            }
            tx.write_members(&queue, &members, to_micros(now)).await?;
        }
        Ok(assigned)
    }

    fn queue_known(&self, playbook: &Playbook, queue: &str) -> EngineResult<()> {
        if playbook.queues.queues.contains_key(queue) {
            Ok(())
        } else {
            Err(EngineError::Missing(format!(
                "no queue {queue:?}; {}",
                playbook.queues.known()
            )))
        }
    }

    /// Open handoffs of a queue, highest priority first, then oldest, with their leads.
    pub async fn queue(
        &self,
        queue: &str,
        after: Option<QueueCursor>,
        limit: i64,
    ) -> EngineResult<Vec<(Handoff, Option<LeadView>)>> {
        self.queue_known(&self.playbook(), queue)?;
        let handoffs = self.store.queue_handoffs(queue, after, limit).await?;
        self.with_leads(handoffs).await
    }

    /// Why a claim of `queue` by `member` found nothing: how many handoffs are open there, and
    /// how many of those round robin gave to each other member (a claim takes only unassigned
    /// ones and the member's own). Reads at most the first 1,000 open handoffs.
    pub async fn nothing_to_claim(&self, queue: &str, member: &str) -> EngineResult<NothingToClaim> {
        self.queue_known(&self.playbook(), queue)?;
        let open = self.store.queue_handoffs(queue, None, 1_000).await?;
        let mut others: std::collections::BTreeMap<String, usize> = Default::default();
        for h in &open {
            if let Some(to) = h.assigned_to.as_deref().filter(|to| *to != member) {
                *others.entry(to.to_owned()).or_default() += 1;
            }
        }
        Ok(NothingToClaim {
            open: open.len(),
            others,
        })
    }

    /// Every queue of the playbook, in name order: what waits and is worked, the members, and
    /// the SLA breaches of the last seven days, days counted in `tz` (by its offset now: a day
    /// that changes the clock is counted an hour off).
    pub async fn queue_board(&self, tz: chrono_tz::Tz) -> EngineResult<Vec<QueueBoard>> {
        use chrono::Offset;
        const DAY: i64 = 86_400_000_000;
        let playbook = self.playbook();
        let now = to_micros(self.now());
        let offset = self.now().with_timezone(&tz).offset().fix().local_minus_utc() as i64 * 1_000_000;
        let today = (now + offset).div_euclid(DAY);
        let since = (today - 6) * DAY - offset;
        let counts = self.store.queue_counts(now).await?;
        let breaches = self.store.sla_breaches(since, offset).await?;
        let mut boards = Vec::with_capacity(playbook.queues.queues.len());
        for (name, queue) in &playbook.queues.queues {
            let mut days = [0; 7];
            for (_, day, count) in breaches.iter().filter(|(q, _, _)| q == name) {
                if let Some(slot) = usize::try_from(day - (today - 6)).ok().and_then(|i| days.get_mut(i)) {
                    *slot += count;
                }
            }
            boards.push(QueueBoard {
                queue: queue.clone(),
                counts: counts
                    .iter()
                    .find(|c| &c.queue == name)
                    .cloned()
                    .unwrap_or_else(|| QueueCounts {
                        queue: name.clone(),
                        ..QueueCounts::default()
                    }),
                members: self.members(name).await?,
                breaches: days,
            });
        }
        Ok(boards)
    }

    /// The handoffs `member` has claimed and not yet decided, oldest claim first, with their
    /// leads.
    pub async fn claimed_by(&self, member: &str, limit: i64) -> EngineResult<Vec<(Handoff, Option<LeadView>)>> {
        let handoffs = self.store.claimed_by(member, limit).await?;
        self.with_leads(handoffs).await
    }

    /// Handoffs with their leads (and the leads' tags), read in one transaction.
    async fn with_leads(&self, handoffs: Vec<Handoff>) -> EngineResult<Vec<(Handoff, Option<LeadView>)>> {
        let ids: Vec<i64> = handoffs.iter().map(|h| h.lead_id.0).collect();
        let mut tx = self.store.begin_read().await?;
        let leads = tx.find_leads(&ids, &[], &[]).await?;
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, tag, _) in tx.load_tags(&ids).await? {
            tags.entry(id).or_default().push(tag);
        }
        tx.commit().await?;
        let mut by_id: HashMap<i64, Lead> = leads.into_iter().map(|l| (l.id.0, l)).collect();
        Ok(handoffs
            .into_iter()
            .map(|h| {
                let lead = by_id
                    .remove(&h.lead_id.0)
                    .map(|l| view(l, tags.remove(&h.lead_id.0).unwrap_or_default()));
                (h, lead)
            })
            .collect())
    }

    /// What changed in the queues after line `after` of the handoffs' history (`None`: where
    /// the history ends now, and nothing): the position to ask from next, and the changes.
    pub async fn handoff_moves(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> EngineResult<(i64, Vec<crate::store::handoffs::HandoffMove>)> {
        Ok(self.store.handoff_moves(after, limit).await?)
    }

    /// One handoff and its history.
    pub async fn handoff(&self, id: HandoffId) -> EngineResult<(Handoff, Vec<HandoffLogEntry>)> {
        let h = self
            .store
            .handoff(id.0)
            .await?
            .ok_or_else(|| EngineError::Missing(format!("no handoff {}", id.0)))?;
        let log = self.store.handoff_log(id.0).await?;
        Ok((h, log))
    }

    /// Takes the next open handoff of a queue for `member`, with its lead; `None` when the
    /// queue is empty. Claims that arrive while another is being written are written together
    /// (group commit): one transaction hands out one handoff to each waiting caller, in
    /// order, so a crowd of SDRs pays for one transaction per batch, not one each.
    pub async fn claim(&self, queue: &str, member: &str) -> EngineResult<Option<Claimed>> {
        self.queue_known(&self.playbook(), queue)?;
        let ask = || {
            let (answer, answered) = tokio::sync::oneshot::channel();
            self.claims
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ClaimRequest {
                    queue: queue.to_owned(),
                    member: member.to_owned(),
                    answer,
                });
            answered
        };
        let mut answered = ask();
        loop {
            tokio::select! {
                biased;
                result = &mut answered => match result {
                    Ok(result) => return result,
                    // The caller writing our batch went away (its client hung up) before the
                    // batch was written: its transaction rolled back, so ask again.
                    Err(_) => answered = ask(),
                },
                turn = self.claims.writing.lock() => {
                    let batch = std::mem::take(&mut *self.claims.waiting.lock().unwrap_or_else(|p| p.into_inner()));
                    if batch.is_empty() {
                        // An earlier batch took this request; its answer is on the way.
                        drop(turn);
                        continue;
                    }
                    let asked: Vec<(String, String)> = batch.iter().map(|r| (r.queue.clone(), r.member.clone())).collect();
                    let results = super::retrying(|| self.claim_batch(&asked)).await;
                    match results {
                        Ok(results) => {
                            for (request, result) in batch.into_iter().zip(results) {
                                let _ = request.answer.send(Ok(result));
                            }
                        }
                        Err(e) => {
                            let message = e.to_string();
                            for request in batch {
                                let _ = request.answer.send(Err(EngineError::Failed(message.clone())));
                            }
                        }
                    }
                    drop(turn);
                }
            }
        }
    }

    /// One transaction handing out one handoff per (queue, member), in order.
    async fn claim_batch(&self, asked: &[(String, String)]) -> EngineResult<Vec<Option<Claimed>>> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let mut claimed: Vec<Option<Handoff>> = vec![None; asked.len()];
        // Pull queues hand out unassigned handoffs: all of a queue's callers in one go, in
        // order. Then each caller left without (a round-robin queue, where handoffs may be
        // theirs, or a queue running dry) asks for themselves.
        let playbook = self.playbook();
        let mut pulled: Vec<&str> = asked
            .iter()
            .map(|(q, _)| q.as_str())
            .filter(|q| {
                playbook
                    .queues
                    .queues
                    .get(*q)
                    .is_some_and(|q| q.routing == Routing::Claim)
            })
            .collect();
        pulled.sort_unstable();
        pulled.dedup();
        for queue in pulled {
            let slots: Vec<usize> = (0..asked.len()).filter(|i| asked[*i].0 == queue).collect();
            let members: Vec<String> = slots.iter().map(|i| asked[*i].1.clone()).collect();
            for (slot, got) in slots
                .into_iter()
                .zip(tx.claim_many(queue, &members, to_micros(now)).await?)
            {
                claimed[slot] = got;
            }
        }
        for (slot, (queue, member)) in asked.iter().enumerate() {
            if claimed[slot].is_none() {
                claimed[slot] = tx.claim_handoff(queue, member, to_micros(now)).await?;
            }
        }
        let got: Vec<&Handoff> = claimed.iter().flatten().collect();
        if got.is_empty() {
            tx.commit().await?;
            return Ok(vec![None; asked.len()]);
        }
        let lines: Vec<HandoffLogEntry> = got
            .iter()
            .map(|h| log(h, "claimed", h.claimed_by.as_deref(), None, now))
            .collect();
        tx.log_handoffs(&lines).await?;
        let counts: Vec<HandoffCount> = got
            .iter()
            .flat_map(|h| claim_counts(h, h.claimed_by.as_deref().unwrap_or_default(), now))
            .collect();
        tx.count_handoffs(&counts).await?;
        let ids: Vec<i64> = got.iter().map(|h| h.lead_id.0).collect();
        // Shown, not changed: read without locking the leads.
        let mut leads: HashMap<i64, Lead> = tx.view_leads(&ids).await?.into_iter().map(|l| (l.id.0, l)).collect();
        if tx
            .wanted_events()
            .await?
            .iter()
            .any(|w| w == "handoff.claimed" || w == "*")
        {
            let events: Vec<Emitted> = got
                .iter()
                .map(|h| event("handoff.claimed", leads.get(&h.lead_id.0), about(h), now))
                .collect();
            tx.emit(&events).await?;
        }
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, tag, _) in tx.load_tags(&ids).await? {
            tags.entry(id).or_default().push(tag);
        }
        tx.commit().await?;
        Ok(claimed
            .into_iter()
            .map(|h| {
                h.map(|h| {
                    let lead = leads
                        .remove(&h.lead_id.0)
                        .map(|l| view(l, tags.remove(&h.lead_id.0).unwrap_or_default()));
                    (h, lead)
                })
            })
            .collect())
    }

    /// Accepts, rejects, converts or releases a handoff on behalf of `by` (`oversees`: may act
    /// on what someone else holds, see [`Handoff::decide`]). The lead's stage follows: accepted (and its owner is `by`),
    /// recycled (resting for the queue's cool-down) or disqualified, customer.
    ///
    /// `note` is what the person who decided wrote: kept as a note on the lead (with the
    /// decision), and sent with the decision's webhook events and as `lead.note_added`.
    pub async fn decide(
        &self,
        id: HandoffId,
        decision: &Decision,
        note: Option<&str>,
        by: &By,
        oversees: bool,
    ) -> EngineResult<Handoff> {
        let note = match note.map(str::trim).filter(|n| !n.is_empty()) {
            None => None,
            Some(text) => match crate::note::note_text_problem(text) {
                Some(problem) => return Err(EngineError::Invalid(vec![FieldError::new("note", problem)])),
                None => Some(text.to_owned()),
            },
        };
        super::retrying(|| self.decide_once(id, decision, note.as_deref(), by, oversees)).await
    }

    async fn decide_once(
        &self,
        id: HandoffId,
        decision: &Decision,
        note: Option<&str>,
        who: &By,
        oversees: bool,
    ) -> EngineResult<Handoff> {
        let by = who.actor.as_str();
        let now = self.now();
        let playbook = self.playbook();
        let mut tx = self.store.begin().await?;
        let mut h = tx
            .lock_handoff(id.0)
            .await?
            .ok_or_else(|| EngineError::Missing(format!("no handoff {}", id.0)))?;
        let claimed = h.decide(decision, by, oversees, now).map_err(|refusal| match refusal {
            Refusal::Conflict(message) => EngineError::Conflict(message),
            Refusal::Invalid(message) => EngineError::Invalid(vec![FieldError::new("reason", message)]),
        })?;
        let detail = match decision {
            Decision::Reject { reason, recycle } => Some(format!("{reason} (recycle: {recycle})")),
            _ => None,
        };
        tx.update_handoffs(std::slice::from_ref(&h)).await?;
        tx.log_handoffs(&[log(&h, decision.verb(), Some(by), detail, now)])
            .await?;
        tx.count_handoffs(&decision_counts(&h, decision, by, claimed, now))
            .await?;
        let outcome = match decision {
            Decision::Accept => Some(Conversion::Accepted),
            Decision::Convert { .. } => Some(Conversion::Converted),
            _ => None,
        };
        if let Some(outcome) = outcome {
            let reached = Reached {
                lead: h.lead_id.0,
                outcome,
                campaign: None,
                at: to_micros(now),
            };
            attribute(tx.as_mut(), &[reached]).await?;
        }
        let leads = tx.find_leads(&[h.lead_id.0], &[], &[]).await?;
        let mut states = load_states(tx.as_mut(), leads, &playbook, now, &[]).await?;
        let mut changes = Changes::default();
        if let (Some(stage), Some(state)) = (decision.stage(), states.get_mut(&h.lead_id.0)) {
            let lead = &mut state.lead;
            lead.stage = stage;
            lead.updated_at = now;
            if stage == Stage::Accepted {
                lead.owner = Some(by.to_owned());
            }
            if stage == Stage::Recycled {
                let cooldown = playbook.queues.queues.get(&h.queue).and_then(|q| q.cooldown);
                lead.cooldown_until = cooldown.map(|c| now + c.to_chrono());
            }
            state.dirty = true;
            // Goals see the new stage at once; a recycled lead with no cool-down may enter
            // campaigns again now.
            self.settle(tx.as_mut(), &mut states, &playbook, now, &mut changes)
                .await?;
        }
        let lead = states.get(&h.lead_id.0).map(|s| &s.lead);
        let decided = || {
            Data::Decided(Decided {
                handoff: h.clone(),
                decision: decision.verb().to_owned(),
                note: note.map(str::to_owned),
            })
        };
        let mut emitted = vec![
            event(decision.event(), lead, decided(), now),
            event("handoff.decided", lead, decided(), now),
        ];
        if let Some(text) = note {
            let written = tx
                .write_note(&NewNote {
                    lead_id: h.lead_id,
                    handoff_id: Some(h.id),
                    decision: Some(decision.verb().to_owned()),
                    input: NoteInput {
                        text: Some(text.to_owned()),
                        call: None,
                    },
                    by: by.to_owned(),
                    at: now,
                })
                .await?;
            emitted.push(event(
                "lead.note_added",
                lead,
                Data::NoteAdded(NoteAdded { note: written }),
                now,
            ));
        }
        self.write_changes(tx.as_mut(), &states, &changes, &playbook, now, emitted)
            .await?;
        tx.write_audit(&[decision_audit(who, &h, decision, note.is_some())], to_micros(now))
            .await?;
        tx.commit().await?;
        Ok(h)
    }

    /// Hands a lead to a queue by API. Conflict when the lead already has an open handoff.
    pub async fn hand_off(
        &self,
        lead: &LeadRef,
        queue: &str,
        reason: &str,
        priority: Option<u8>,
        by: &str,
    ) -> EngineResult<Handoff> {
        if let Some(problem) = crate::lead::text_problem(reason) {
            return Err(EngineError::Invalid(vec![FieldError::new("reason", problem)]));
        }
        let playbook = self.playbook();
        self.queue_known(&playbook, queue)?;
        let id = self.find_lead(lead).await?.lead.id;
        let origin = format!("api:{by}");
        let (_, opened) = self
            .change_one_with(id, None, |state, now, changes| {
                let mut request = HandoffRequest::new(state, &playbook, queue, reason, origin.clone(), now);
                request.priority = priority;
                state.hand_off(request, now, changes);
            })
            .await?;
        opened.into_iter().next().ok_or_else(|| {
            EngineError::Conflict(format!(
                "lead {} already has an open handoff; accept, reject or convert it first",
                id.0
            ))
        })
    }

    /// Sets a member's availability, capacity or weight in a queue. A member who comes back
    /// takes their turn from where the others are, not from where they left.
    ///
    /// `by` is who asks; unless they `oversee` the queue (admins, marketers), they may set only
    /// their own availability: capacity and weight shape everyone's share of the work.
    pub async fn set_member(
        &self,
        queue: &str,
        member: &str,
        change: &MemberChange,
        who: &By,
        oversees: bool,
    ) -> EngineResult<Member> {
        let by = who.actor.as_str();
        let MemberChange {
            available,
            capacity,
            weight,
        } = *change;
        if !oversees {
            if member != by {
                return Err(EngineError::Forbidden(format!(
                    "{by} may set only their own availability, not {member}'s; a marketer or admin sets others'"
                )));
            }
            if capacity.is_some() || weight.is_some() {
                return Err(EngineError::Forbidden(
                    "capacity and weight are set by a marketer or admin; an SDR sets only their availability".into(),
                ));
            }
        }
        let playbook = self.playbook();
        self.queue_known(&playbook, queue)?;
        let q = &playbook.queues.queues[queue];
        let Some(index) = q.members.iter().position(|m| m == member) else {
            let members = if q.members.is_empty() {
                "it has none (members are listed in the Queues file)".to_owned()
            } else {
                format!("they are {}", q.members.join(", "))
            };
            return Err(EngineError::Missing(format!(
                "{member:?} is not a member of queue {queue:?}; {members}"
            )));
        };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let stored = tx.queue_members(queue).await?;
        let mut members = members_of(&playbook, queue, stored);
        let was_away = !members[index].available;
        let m = &mut members[index];
        if let Some(available) = available {
            m.available = available;
        }
        if let Some(capacity) = capacity {
            m.capacity = capacity;
        }
        if let Some(weight) = weight {
            m.weight = weight;
        }
        if was_away && members[index].available {
            catch_up(&mut members, index);
        }
        tx.write_members(queue, &members, to_micros(now)).await?;
        let audit = who.did(
            AuditKind::QueueMemberChanged,
            queue,
            serde_json::json!({
                "member": member,
                "available": available,
                "capacity": capacity,
                "weight": weight,
            }),
        );
        tx.write_audit(&[audit], to_micros(now)).await?;
        tx.commit().await?;
        Ok(members.swap_remove(index))
    }

    /// A queue's members and their state.
    pub async fn members(&self, queue: &str) -> EngineResult<Vec<Member>> {
        let playbook = self.playbook();
        self.queue_known(&playbook, queue)?;
        // A write transaction: the members' rows are read locked (PostgreSQL refuses
        // `FOR UPDATE` in a read-only one).
        let mut tx = self.store.begin().await?;
        let stored = tx.queue_members(queue).await?;
        tx.commit().await?;
        Ok(members_of(&playbook, queue, stored))
    }

    /// Runs the handoff timers due at the engine's `now`: SLA breaches (reported once, and
    /// moved when the queue says so) and cool-downs that ended (the lead may enter campaigns
    /// again). Returns how many were handled.
    pub async fn run_timers(&self, limit: i64) -> EngineResult<usize> {
        let breached = super::retrying(|| self.breach_once(limit)).await?;
        let cooled = super::retrying(|| self.cool_once(limit)).await?;
        Ok(breached + cooled)
    }

    /// Long on purpose: one SLA pass in one transaction: the breached handoffs read, each
    /// escalated, reassigned or returned by its queue's rule, logged, notified and written
    /// together.
    async fn breach_once(&self, limit: i64) -> EngineResult<usize> {
        let now = self.now();
        let playbook = self.playbook();
        let mut tx = self.store.begin().await?;
        let mut due = tx.sla_due(to_micros(now), limit).await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut lines = Vec::new();
        let mut events = Vec::new();
        let mut moved: Vec<Handoff> = Vec::new();
        // (handoff, the queue it breached, whom it was assigned to there, who to tell)
        let mut notify: Vec<(i64, String, Option<String>, Vec<String>)> = Vec::new();
        let mut counts = Vec::new();
        for h in &mut due {
            counts.push(count(h, &h.queue, h.assigned_to.as_deref(), HandoffFact::Breached, now));
            h.sla_breached_at = Some(now);
            h.updated_at = now;
            let queue = playbook.queues.queues.get(&h.queue);
            let sla = queue.and_then(|q| q.sla).map(|s| s.to_string());
            lines.push(log(
                h,
                "sla_breached",
                None,
                sla.as_ref()
                    .map(|s| format!("unclaimed past the {s} SLA of {}", h.queue)),
                now,
            ));
            events.push((
                h.lead_id.0,
                "handoff.sla_breached",
                Data::Breach(Breach {
                    handoff: h.clone(),
                    sla: sla.clone(),
                }),
            ));
            let people = queue.map(|q| q.notify_on_breach.clone()).unwrap_or_default();
            if !people.is_empty() {
                lines.push(log(h, "notified", None, Some(people.join(", ")), now));
                notify.push((h.id.0, h.queue.clone(), h.assigned_to.clone(), people));
            }
            let target = queue
                .and_then(|q| q.move_on_breach.clone())
                .filter(|t| playbook.queues.queues.contains_key(t));
            if let Some(target) = target {
                lines.push(log(h, "moved", None, Some(format!("{} → {target}", h.queue)), now));
                counts.push(count(h, &h.queue, None, HandoffFact::MovedOut, now));
                counts.push(count(h, &target, None, HandoffFact::MovedIn, now));
                h.moved_from = Some(std::mem::replace(&mut h.queue, target.clone()));
                h.assigned_to = None;
                // The new queue's own SLA starts now.
                h.sla_due_at = playbook.queues.queues[&target].sla.map(|s| now + s.to_chrono());
                h.sla_breached_at = None;
                moved.push(h.clone());
            }
        }
        let assigned = self.route(tx.as_mut(), &playbook, &mut moved, now, &mut lines).await?;
        for a in assigned {
            if let Some(h) = due.iter_mut().find(|h| h.id == a.id) {
                *h = a;
            }
        }
        tx.update_handoffs(&due).await?;
        tx.log_handoffs(&lines).await?;
        tx.count_handoffs(&counts).await?;
        let wanted = tx.wanted_events().await?;
        let emit = wanted.iter().any(|w| w == "handoff.sla_breached" || w == "*");
        if emit || !notify.is_empty() {
            let ids: Vec<i64> = events.iter().map(|(l, _, _)| *l).collect();
            let leads: HashMap<i64, Lead> = tx
                .find_leads(&ids, &[], &[])
                .await?
                .into_iter()
                .map(|l| (l.id.0, l))
                .collect();
            let mut mails = Vec::new();
            for (id, breached, assigned, people) in notify {
                let Some(h) = due.iter().find(|h| h.id.0 == id) else {
                    continue;
                };
                let sla = playbook.queues.queues.get(&breached).and_then(|q| q.sla);
                let (subject, body) = breach_notice(h, &breached, assigned.as_deref(), sla, leads.get(&h.lead_id.0));
                mails.extend(people.into_iter().map(|recipient| NewNotification {
                    lead_id: h.lead_id.0,
                    handoff_id: id,
                    recipient,
                    subject: subject.clone(),
                    body: body.clone(),
                }));
            }
            tx.queue_notifications(&mails, to_micros(now)).await?;
            if !emit {
                tx.commit().await?;
                self.add_breaches(&counts);
                return Ok(due.len());
            }
            let emitted: Vec<Emitted> = events
                .into_iter()
                .map(|(lead, kind, data)| event(kind, leads.get(&lead), data, now))
                .collect();
            tx.emit(&emitted).await?;
        }
        tx.commit().await?;
        self.add_breaches(&counts);
        Ok(due.len())
    }

    /// Adds a committed SLA pass's breaches to this process's totals.
    fn add_breaches(&self, counts: &[HandoffCount]) {
        let mut totals = self.breaches.lock().unwrap_or_else(|p| p.into_inner());
        for c in counts.iter().filter(|c| c.fact == HandoffFact::Breached) {
            *totals.entry(c.queue.clone()).or_default() += c.n as u64;
        }
    }

    async fn cool_once(&self, limit: i64) -> EngineResult<usize> {
        let now = self.now();
        let playbook = self.playbook();
        let mut tx = self.store.begin().await?;
        let due = tx.cooled_leads(to_micros(now), limit).await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let leads = tx.take_free_leads(&due).await?;
        let mut states = load_states(tx.as_mut(), leads, &playbook, now, &[]).await?;
        for state in states.values_mut() {
            state.lead.cooldown_until = None;
            state.dirty = true;
        }
        let mut changes = Changes::default();
        self.settle(tx.as_mut(), &mut states, &playbook, now, &mut changes)
            .await?;
        self.write_changes(tx.as_mut(), &states, &changes, &playbook, now, Vec::new())
            .await?;
        tx.commit().await?;
        Ok(states.len())
    }
}

/// Event types a subscription may name: the known ones, or `*`.
pub fn unknown_events(events: &[String]) -> Vec<String> {
    let known: HashSet<&str> = WEBHOOK_EVENTS.iter().copied().collect();
    events
        .iter()
        .filter(|e| e.as_str() != "*" && !known.contains(e.as_str()))
        .cloned()
        .collect()
}

/// The e-mail a queue's `on_breach.notify` sends: what waited, for how long, and where it is
/// now, with enough of the lead to act on without opening anything.
fn breach_notice(
    h: &Handoff,
    breached: &str,
    assigned: Option<&str>,
    sla: Option<crate::duration::Span>,
    lead: Option<&Lead>,
) -> (String, String) {
    let field = |name: &str| lead.and_then(|l| l.fields.get(name)).map(String::as_str);
    let name = [field("first_name"), field("last_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let email = lead.and_then(|l| l.email.as_deref()).unwrap_or("(no e-mail)");
    let who = if name.is_empty() {
        email.to_owned()
    } else {
        name.clone()
    };
    let company = field("company").map(|c| format!(" ({c})")).unwrap_or_default();
    let sla = sla.map(|s| s.to_string()).unwrap_or_else(|| "its".to_owned());
    let subject = format!("SLA breached: {who}{company} waited {sla} unclaimed in {breached}");
    let mut body = format!(
        "Handoff {} waited past the {sla} SLA of queue {breached} without being claimed.\n\n",
        h.id.0
    );
    let mut line = |label: &str, value: &str| body.push_str(&format!("{label:<10}{value}\n"));
    line(
        "Lead:",
        &if name.is_empty() {
            email.to_owned()
        } else {
            format!("{name} <{email}>")
        },
    );
    if let Some(c) = field("company") {
        line("Company:", c);
    }
    if let Some(t) = field("title") {
        line("Title:", t);
    }
    line("Reason:", &h.reason);
    line("Priority:", &h.priority.to_string());
    if let Some(score) = h.score {
        line("Score:", &score.to_string());
    }
    line(
        "Opened:",
        &h.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    if let Some(member) = assigned {
        line("Assigned:", &format!("{member} (in {breached})"));
    }
    if h.queue != breached {
        line("Now:", &format!("moved to queue {}", h.queue));
    }
    body.push_str(&format!(
        "\nGET /v1/handoffs/{} shows it; POST /v1/queues/{}/claim takes the next one.\n",
        h.id.0, h.queue
    ));
    (subject, body)
}
