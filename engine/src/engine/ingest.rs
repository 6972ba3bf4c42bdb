//! Behaviour events in: a batch resolved to leads, stored, the rules applied, journeys moved.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::bounce::Bounce;
use crate::clock::to_micros;
use crate::condition::EventView;
use crate::event::EventInput;
use crate::lead::{EmailAddress, FieldError, Lead};
use crate::nurture::{Changes, LeadState};
use crate::report::MessageFigures;
use crate::store::reports::merge_deltas;
use crate::store::{email_hash, ActivityRow, CountDelta, CountedMessage, Engagement, NewEvent, Tx};
use crate::webhook::payload::{Data, Nothing};

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

/// Whether two events of one batch under one idempotency key are the same event.
pub(super) fn same_event(a: &EventInput, b: &EventInput) -> bool {
    a.lead == b.lead && a.kind == b.kind && a.occurred_at == b.occurred_at && a.properties == b.properties
}

impl Engine {
    /// Ingests behaviour events set-based: leads resolved or created in one query, events
    /// inserted in one statement, rules evaluated in memory, changes written in batches, all in
    /// one transaction.
    pub async fn ingest_events(&self, inputs: Vec<EventInput>) -> EngineResult<IngestReport> {
        let started = std::time::Instant::now();
        let report = retrying(|| self.ingest_once(&inputs)).await;
        self.phases.since(Phase::Ingest, started);
        report
    }

    pub(super) async fn ingest_once(&self, inputs: &[EventInput]) -> EngineResult<IngestReport> {
        let now = self.now();
        let mut report = IngestReport::default();
        let valid = screen(inputs, now, &mut report);
        if valid.is_empty() {
            return Ok(report);
        }
        let mut tx = self.store.begin().await?;
        let (book, slots) = resolve_leads(tx.as_mut(), &valid, now, &mut report).await?;
        let per_lead = store_events(tx.as_mut(), &valid, &slots, &book, now, &mut report).await?;
        let counted = self.apply_events(tx.as_mut(), book, per_lead, now).await?;
        tx.commit().await?;
        self.totals.add(&counted);
        report.rejected.sort_by_key(|r| r.index);
        Ok(report)
    }

    /// Applies stored events to their leads (new leads made by them too): bounces, rules,
    /// journeys, MQL; writes the leads and what changed. Returns what it added to the report
    /// counters.
    async fn apply_events(
        &self,
        tx: &mut dyn Tx,
        book: LeadBook,
        mut per_lead: BTreeMap<i64, Vec<EventView<'_>>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> EngineResult<Vec<CountDelta>> {
        let playbook = self.playbook();
        // Before the journeys run: a bounce in this batch already stops this batch's sends.
        self.suppress_bounced(tx, &book.leads, &per_lead, now).await?;
        let mut counted = count_engagement(tx, &per_lead).await?;
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
        let mut states = load_states(tx, leads, &playbook, now, &[earliest]).await?;
        let mut changes = Changes::default();
        let mut new_events: IdMap<Vec<EventView<'_>>> = IdMap::default();
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
                new_events.insert(*id, events.clone());
            }
            state.check_mql(&playbook, now, &mut changes);
        }
        let journeys = self
            .run_journeys(
                tx,
                &mut states,
                &playbook,
                now,
                &new_events,
                &Entry::Triggers,
                &mut changes,
            )
            .await?;
        counted.extend(journeys.counted);
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
        self.write_changes(tx, &states, &changes, &playbook, now, events)
            .await?;
        Ok(counted)
    }
}

/// An event that passed validation: its index in the request, the event, and its lead's
/// e-mail normalised once.
type Valid<'a> = (usize, &'a EventInput, Option<String>);

/// The valid events of a batch; those invalid or repeating an earlier event's idempotency key
/// go to `report` (a repeat of the same event as a duplicate).
fn screen<'a>(
    inputs: &'a [EventInput],
    now: chrono::DateTime<chrono::Utc>,
    report: &mut IngestReport,
) -> Vec<Valid<'a>> {
    let mut seen_keys: HashMap<&str, &EventInput> = HashMap::new();
    let mut valid = Vec::with_capacity(inputs.len());
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
    valid
}

/// The leads these events name, found in one query or made (a made lead whose address was
/// erased before stays opted out), and each event's slot among them; an event whose lead
/// cannot be made goes to `report`.
async fn resolve_leads(
    tx: &mut dyn Tx,
    valid: &[Valid<'_>],
    now: chrono::DateTime<chrono::Utc>,
    report: &mut IngestReport,
) -> EngineResult<(LeadBook, Vec<Option<usize>>)> {
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
    let mut slots: Vec<Option<usize>> = Vec::with_capacity(valid.len());
    for (index, event, email) in valid {
        match book.resolve_ref(&event.lead, email.as_deref(), event.source.as_deref()) {
            Ok(slot) => slots.push(Some(slot)),
            Err(error) => {
                report.rejected.push(Rejected::not_found(*index, error));
                slots.push(None);
            }
        }
    }
    let reserved = tx.reserve_lead_ids(book.new_count()).await?;
    book.assign_new_ids(&reserved, now);
    let new_hashes: Vec<String> = book.new_emails().map(|e| email_hash(e)).collect();
    let suppressed = tx.suppressed(&new_hashes).await?;
    for (slot, lead) in book.leads.iter_mut().enumerate() {
        if book.fresh[slot] {
            super::leads::opt_out_if_erased(lead, &suppressed, now);
        }
    }
    Ok((book, slots))
}

/// Inserts the events of resolved leads and returns the accepted ones by lead. An event whose
/// idempotency key names a stored event is a duplicate if it is that event again, and is
/// refused otherwise.
async fn store_events<'a>(
    tx: &mut dyn Tx,
    valid: &[Valid<'a>],
    slots: &[Option<usize>],
    book: &LeadBook,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut IngestReport,
) -> EngineResult<BTreeMap<i64, Vec<EventView<'a>>>> {
    let (inputs_of, rows): (Vec<(usize, &EventInput)>, Vec<NewEvent>) = valid
        .iter()
        .zip(slots)
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
    Ok(per_lead)
}

/// Counts what this batch's events say of the messages they name (`message_id`): opens and
/// clicks (people's and machines' apart; a message's first human one of each is also kept on
/// the message and counted per campaign step), bounces, complaints and unsubscribes, on the
/// report counters of the hour the message was sent. Events about messages never sent (a
/// relay's refusal, counted when it was recorded) or unknown change no counter.
async fn count_engagement(
    tx: &mut dyn Tx,
    events: &BTreeMap<i64, Vec<EventView<'_>>>,
) -> EngineResult<Vec<CountDelta>> {
    let mut opened: Vec<(i64, i64, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let mut clicked = Vec::new();
    let mut said: Vec<(i64, i64, MessageFigures)> = Vec::new();
    for (lead, view) in events
        .iter()
        .flat_map(|(lead, views)| views.iter().map(move |v| (*lead, v)))
    {
        let Some(message) = (match view.properties.get("message_id") {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }) else {
            continue;
        };
        let automated = view.by_machine();
        let mut figures = MessageFigures::default();
        match (view.kind, automated) {
            ("email_opened", false) => {
                opened.push((lead, message, view.occurred_at));
                figures.opens = 1;
            }
            ("email_clicked", false) => {
                clicked.push((lead, message, view.occurred_at));
                figures.clicks = 1;
            }
            ("email_opened", true) => figures.opens_automated = 1,
            ("email_clicked", true) => figures.clicks_automated = 1,
            ("unsubscribed", _) => figures.unsubscribed = 1,
            (kind, _) => match Bounce::of(kind, view.properties) {
                Some(Bounce::Hard) => figures.bounced_hard = 1,
                Some(Bounce::Soft) => figures.bounced_soft = 1,
                Some(Bounce::Complaint) => figures.complained = 1,
                None => continue,
            },
        }
        said.push((lead, message, figures));
    }
    if said.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<i64> = said.iter().map(|(_, id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let known: HashMap<i64, CountedMessage> = tx
        .counted_messages(&ids)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    // An event counts for a message of its own lead only.
    let theirs = |lead: i64, id: i64| known.get(&id).is_some_and(|m| m.lead == lead);
    let firsts = |seen: Vec<(i64, i64, chrono::DateTime<chrono::Utc>)>| -> Vec<(i64, chrono::DateTime<chrono::Utc>)> {
        seen.into_iter()
            .filter(|(lead, id, _)| theirs(*lead, *id))
            .map(|(_, id, at)| (id, at))
            .collect()
    };
    let (opened, clicked) = (firsts(opened), firsts(clicked));
    let unique = |opened: i64, clicked: i64| MessageFigures {
        opened,
        clicked,
        ..Default::default()
    };
    for id in tx.engaged(Engagement::Opened, &opened).await? {
        said.push((known[&id].lead, id, unique(1, 0)));
    }
    for id in tx.engaged(Engagement::Clicked, &clicked).await? {
        said.push((known[&id].lead, id, unique(0, 1)));
    }
    let deltas = said.into_iter().filter_map(|(lead, id, figures)| {
        let m = known.get(&id).filter(|m| m.lead == lead)?;
        Some(CountDelta {
            key: m.key.clone(),
            hour: m.hour,
            shard: id,
            figures,
        })
    });
    let deltas = merge_deltas(deltas);
    tx.count_messages(&deltas).await?;
    Ok(deltas)
}
