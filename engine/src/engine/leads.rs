//! Leads: upserts, edits, manual tags and scores, lists, the timeline, erasure and decay.

use super::*;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

use crate::audit::{AuditKind, By, Change};
use crate::clock::to_micros;
use crate::lead::{ChannelConsent, ConsentStatus, EmailAddress, FieldError, Lead, LeadId, LeadInput, LeadRef};
use crate::nurture::{Changes, LeadState};
use crate::playbook::Playbook;
use crate::store::{email_hash, LeadFilter, StoreError, TimelineCursor, TimelineEntry, Tx};
use crate::tag::{normalize_tag, Actor, ScoreChange, TagFamily};
use crate::webhook::payload::{Data, Nothing, Unsubscribed};

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

/// Where an upsert item goes: found by its keys, or a lead addressed by id (PATCH).
#[derive(Debug, Clone)]
pub enum Target {
    Keys,
    Id(LeadId),
}

impl Engine {
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

    pub(super) async fn upsert_once(
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
        let (mut book, mut slots) = resolve_items(tx.as_mut(), items, &mut results, now).await?;
        let new_hashes: Vec<String> = book.new_emails().map(|e| email_hash(e)).collect();
        let suppressed = tx.suppressed(&new_hashes).await?;
        // The inputs applied in order.
        let before: Vec<_> = book.leads.iter().map(opted_out).collect();
        for (i, (_, input)) in items.iter().enumerate() {
            if let Some((slot, _)) = slots[i] {
                let lead = &mut book.leads[slot];
                input.apply(lead, now);
                if book.fresh[slot] {
                    opt_out_if_erased(lead, &suppressed, now);
                }
            }
        }
        refuse_collisions(tx.as_mut(), &book, &mut slots, &mut results).await?;
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
        let wanted = tx.wanted_events().await?;
        let events = lead_events(&wanted, &slots, &book, &states, &before, now);
        self.write_changes(tx.as_mut(), &states, &changes, &playbook, now, events)
            .await?;
        tx.commit().await?;
        let answers = results.into_iter().zip(slots).map(|answer| match answer {
            (Some(err), _) => err,
            (None, Some((slot, created))) => {
                let state = &states[&book.leads[slot].id.0];
                let v = view(state.lead.clone(), state.tags.keys().cloned().collect());
                Ok(if created {
                    Upserted::Created(v)
                } else {
                    Upserted::Updated(v)
                })
            }
            (None, None) => Err(ItemError::Conflict("not written".into())),
        });
        Ok(answers.collect())
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
    pub async fn tag_lead(&self, id: LeadId, add: &[String], remove: &[String], by: &By) -> EngineResult<LeadView> {
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
        let actor = Actor::User(by.actor.clone());
        let audit = by.did(
            AuditKind::LeadTagged,
            id.0,
            serde_json::json!({"added": add, "removed": remove}),
        );
        self.change_one(id, Some(audit), |state, now, changes| {
            for tag in &remove {
                state.remove_tag(tag, &actor, now, changes);
            }
            for tag in &add {
                state.add_tag(tag, TagFamily::Manual, &actor, now, changes);
            }
        })
        .await
    }

    /// Adds (or with a negative delta, removes) points by hand, recorded in the ledger.
    pub async fn score_lead(&self, id: LeadId, delta: i64, reason: &str, by: &By) -> EngineResult<LeadView> {
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
        let actor = Actor::User(by.actor.clone());
        let audit = by.did(
            AuditKind::LeadScored,
            id.0,
            serde_json::json!({"delta": delta, "reason": reason}),
        );
        self.change_one(id, Some(audit), |state, now, changes| {
            state.add_score(
                ScoreChange {
                    lead_id: id,
                    delta,
                    reason: reason.to_owned(),
                    actor,
                    rule: None,
                    occurred_at: now,
                    at: now,
                },
                changes,
            );
        })
        .await
    }

    /// Changes one lead in one transaction, with `audit` recorded in it.
    pub(super) async fn change_one(
        &self,
        id: LeadId,
        audit: Option<Change>,
        change: impl FnOnce(&mut LeadState, DateTime<Utc>, &mut Changes),
    ) -> EngineResult<LeadView> {
        Ok(self.change_one_with(id, audit, change).await?.0)
    }

    /// [`Engine::change_one`], also returning the handoffs the change opened.
    pub(super) async fn change_one_with(
        &self,
        id: LeadId,
        audit: Option<Change>,
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
        if let Some(audit) = audit {
            tx.write_audit(&[audit], to_micros(now)).await?;
        }
        tx.commit().await?;
        Ok((answer, opened))
    }

    /// Leads by id after `after`, at most `limit`, as stored (no tags, no segments): for tools
    /// that walk every lead.
    pub async fn lead_page(&self, after: Option<LeadId>, limit: i64) -> EngineResult<Vec<Lead>> {
        Ok(self.store.list_leads(&LeadFilter::default(), after, limit).await?)
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

    /// The console's lead search (see [`crate::store::LeadStore::search_leads`]): up to `limit`
    /// leads with their tags, and where the next page starts (none for a prefix search, which
    /// answers its first matches only).
    pub async fn search_leads(
        &self,
        search: &crate::store::LeadSearch,
        after: Option<LeadId>,
        limit: i64,
    ) -> EngineResult<(Vec<LeadView>, Option<LeadId>)> {
        if let Some(message) = search.prefix.as_deref().and_then(crate::lead::text_problem) {
            return Err(EngineError::Invalid(vec![FieldError::new("q", message)]));
        }
        let mut leads = self.store.search_leads(search, after, limit + 1).await?;
        let more = leads.len() as i64 > limit;
        leads.truncate(limit.max(0) as usize);
        let next = (more && search.prefix.is_none())
            .then(|| leads.last().map(|l| l.id))
            .flatten();
        let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
        let mut tx = self.store.begin_read().await?;
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, tag, _) in tx.load_tags(&ids).await? {
            tags.entry(id).or_default().push(tag);
        }
        tx.commit().await?;
        let views = leads
            .into_iter()
            .map(|l| {
                let tags = tags.remove(&l.id.0).unwrap_or_default();
                view(l, tags)
            })
            .collect();
        Ok((views, next))
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

    /// Where a lead's score came from, per rule and per person, most points first.
    pub async fn score_sources(&self, id: LeadId) -> EngineResult<Vec<crate::store::ScoreSource>> {
        Ok(self.store.score_sources(id).await?)
    }

    /// The behaviours that counted: the points rules gave a lead, newest first.
    pub async fn rule_points(&self, id: LeadId, limit: i64) -> EngineResult<Vec<crate::store::RulePoints>> {
        Ok(self.store.rule_points(id, limit).await?)
    }

    /// A lead's latest event of one type (its survey answers, say): when, and its properties.
    pub async fn latest_event(
        &self,
        id: LeadId,
        kind: &str,
    ) -> EngineResult<Option<(DateTime<Utc>, serde_json::Map<String, serde_json::Value>)>> {
        let Some((at, properties)) = self.store.latest_event(id, kind).await? else {
            return Ok(None);
        };
        let properties = serde_json::from_str(&properties)
            .map_err(|e| crate::store::StoreError::Corrupt(format!("event properties of lead {}: {e}", id.0)))?;
        Ok(Some((crate::clock::from_micros(at), properties)))
    }

    /// A lead's handoffs, newest first: the one open now and the earlier ones with their
    /// outcomes.
    pub async fn lead_handoffs(&self, id: LeadId, limit: i64) -> EngineResult<Vec<crate::handoff::Handoff>> {
        Ok(self.store.lead_handoffs(id.0, limit).await?)
    }

    /// Erases a person: lead, events, tags, ledger, handoffs; keeps a suppression hash.
    pub async fn erase_lead(&self, id: LeadId, by: &By) -> EngineResult<()> {
        let audit = by.did(AuditKind::LeadErased, id.0, serde_json::json!({}));
        if self.store.erase_lead(id, self.now(), &audit).await? {
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

pub(super) fn view(lead: Lead, mut tags: Vec<String>) -> LeadView {
    tags.sort();
    LeadView { lead, tags }
}

/// Loads what the rules need of these leads: tags, the events MQL conditions look at, and the
/// ledger entries of capped rules back to the widest cap window before `event_times`.
pub(super) async fn load_states(
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
pub(super) struct LeadBook {
    pub(super) leads: Vec<Lead>,
    pub(super) fresh: Vec<bool>,
    pub(super) by_id: HashMap<i64, usize>,
    pub(super) by_email: HashMap<String, usize>,
    pub(super) by_ext: HashMap<String, usize>,
}

impl LeadBook {
    pub(super) fn new(found: Vec<Lead>) -> Self {
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

    pub(super) fn push(&mut self, lead: Lead, fresh: bool) -> usize {
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

    pub(super) fn new_count(&self) -> usize {
        self.fresh.iter().filter(|f| **f).count()
    }

    pub(super) fn new_emails(&self) -> impl Iterator<Item = &String> {
        self.leads
            .iter()
            .zip(&self.fresh)
            .filter(|(_, f)| **f)
            .filter_map(|(l, _)| l.email.as_ref())
    }

    pub(super) fn assign_new_ids(&mut self, reserved: &[i64], now: DateTime<Utc>) {
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
    pub(super) fn resolve(&mut self, target: &Target, input: &LeadInput) -> Result<(usize, bool), ItemError> {
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
    pub(super) fn resolve_ref(
        &mut self,
        by: &LeadRef,
        email: Option<&str>,
        source: Option<&str>,
    ) -> Result<usize, String> {
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

/// Whether a lead is opted out of each channel.
fn opted_out(l: &Lead) -> [(&'static str, bool); 2] {
    [
        ("email", l.consent.email.status == ConsentStatus::OptedOut),
        ("wechat", l.consent.wechat.status == ConsentStatus::OptedOut),
    ]
}

/// Opts a new lead out of e-mail if its address was erased before (`suppressed` holds the
/// hashes of erased addresses among the batch's).
pub(super) fn opt_out_if_erased(lead: &mut Lead, suppressed: &HashSet<String>, now: DateTime<Utc>) {
    if lead.email.as_ref().is_some_and(|e| suppressed.contains(&email_hash(e))) {
        lead.consent.email = ChannelConsent {
            status: ConsentStatus::OptedOut,
            at: Some(now),
            source: Some("erased".into()),
        };
    }
}

/// The leads the valid items of an upsert write to, found in one query or made (with ids),
/// and each item's slot among them (and whether it creates the lead); an item that names no
/// lead it may write gets its error in `results`.
async fn resolve_items(
    tx: &mut dyn Tx,
    items: &[(Target, LeadInput)],
    results: &mut [Option<Result<Upserted, ItemError>>],
    now: DateTime<Utc>,
) -> EngineResult<(LeadBook, Vec<Option<(usize, bool)>>)> {
    // Only valid items are looked up: a refused item's keys may be unstorable (a NUL).
    let valid: Vec<&(Target, LeadInput)> = items
        .iter()
        .zip(results.iter())
        .filter(|(_, result)| result.is_none())
        .map(|(item, _)| item)
        .collect();
    let ids: Vec<i64> = valid
        .iter()
        .filter_map(|(t, _)| match t {
            Target::Id(id) => Some(id.0),
            Target::Keys => None,
        })
        .collect();
    let emails: Vec<String> = valid.iter().filter_map(|(_, i)| i.email_key()).collect();
    let exts: Vec<String> = valid.iter().filter_map(|(_, i)| i.external_id_key()).collect();
    let mut book = LeadBook::new(tx.find_leads(&ids, &emails, &exts).await?);
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
    let reserved = tx.reserve_lead_ids(book.new_count()).await?;
    book.assign_new_ids(&reserved, now);
    Ok((book, slots))
}

/// Refuses the items whose lead's e-mail or external id, changed, is another lead's outside
/// the batch (409).
async fn refuse_collisions(
    tx: &mut dyn Tx,
    book: &LeadBook,
    slots: &mut [Option<(usize, bool)>],
    results: &mut [Option<Result<Upserted, ItemError>>],
) -> EngineResult<()> {
    let mut emails = Vec::new();
    let mut exts = Vec::new();
    for lead in &book.leads {
        emails.extend(lead.email.clone());
        exts.extend(lead.external_id.clone());
    }
    let others = tx.find_leads(&[], &emails, &exts).await?;
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
    Ok(())
}

/// The webhook events of an upsert that subscribers want: each lead created or updated, and
/// the channels it newly opted out of (`before`: each slot's opt-outs before the upsert).
fn lead_events(
    wanted: &[String],
    slots: &[Option<(usize, bool)>],
    book: &LeadBook,
    states: &IdMap<LeadState>,
    before: &[[(&'static str, bool); 2]],
    now: DateTime<Utc>,
) -> Vec<crate::store::handoffs::Emitted> {
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
    events
}
