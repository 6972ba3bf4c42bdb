//! Leads into campaigns by hand (`POST /v1/campaigns/{id}/enroll`) and after a deploy.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::audit::{AuditKind, By, Change};
use crate::lead::{EmailAddress, FieldError, LeadRef};
use crate::playbook::Playbook;
use crate::store::{DeployReport, LeadFilter};

/// What enrolling leads by hand did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct EnrollReport {
    pub enrolled: usize,
    /// Already running in the campaign, or not allowed back yet by its re-entry rule.
    pub skipped: usize,
    /// Indexes of the leads given that do not exist.
    pub not_found: Vec<usize>,
}

/// Who a segment holds now: how many, and a sample with why each matches.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct SegmentPreview {
    pub segment: String,
    /// The segment's condition, as the playbook writes it.
    pub when: String,
    /// Leads that match now.
    pub count: usize,
    /// Leads looked at (every lead).
    pub scanned: usize,
    /// The first matching leads by id, each with why it matches.
    pub sample: Vec<SegmentMember>,
}

/// One lead of a segment preview.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct SegmentMember {
    pub lead: LeadView,
    /// The conditions that made it match (`segment icp: tag industry:energy`, …).
    pub why: Vec<String>,
}

/// What taking leads out of a campaign by hand did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct ExitReport {
    /// Running enrollments ended.
    pub exited: usize,
    /// Leads found that were not running in the campaign.
    pub not_in: usize,
    /// Indexes of the leads given that do not exist.
    pub not_found: Vec<usize>,
}

/// What enrolling leads would do, decided as enrolling decides it and written nowhere
/// (`dry_run`).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct EnrollDryRun {
    pub dry_run: bool,
    /// Leads that would enter.
    pub would_enter: usize,
    /// Of those, leads no e-mail would reach, by why: `no_email`, `unsubscribed`, `suppressed`.
    pub unreachable: BTreeMap<String, usize>,
    /// Leads that would not enter, by why: `already_in` (running in it now), `reentry` (its
    /// re-entry rule keeps them out).
    pub skipped: BTreeMap<String, usize>,
    /// Indexes of the leads given that do not exist.
    pub not_found: Vec<usize>,
    /// Up to ten lead ids for each reason above, to look at.
    pub examples: BTreeMap<String, Vec<String>>,
}

impl EnrollDryRun {
    fn count(&mut self, reason: &str, lead: i64, skipped: bool) {
        *if skipped {
            &mut self.skipped
        } else {
            &mut self.unreachable
        }
        .entry(reason.to_owned())
        .or_default() += 1;
        let examples = self.examples.entry(reason.to_owned()).or_default();
        if examples.len() < 10 {
            examples.push(lead.to_string());
        }
    }
}

/// The condition of segment `id`, or why there is none.
pub(super) fn segment_of<'p>(playbook: &'p Playbook, id: &str) -> EngineResult<&'p crate::condition::Condition> {
    playbook.segments.get(id).ok_or_else(|| {
        EngineError::Invalid(vec![FieldError::new(
            "segment",
            format!("segment {id:?} does not exist"),
        )])
    })
}

impl Engine {
    /// What enrolling these leads (or, with `segment`, that segment's leads) would do, decided
    /// in a pass as enrolling decides it, and written nowhere.
    pub async fn enroll_dry_run(
        &self,
        campaign: &str,
        leads: &[LeadRef],
        segment: Option<&str>,
    ) -> EngineResult<EnrollDryRun> {
        let playbook = self.playbook();
        if !playbook.campaigns.contains_key(campaign) {
            return Err(EngineError::NotFound);
        }
        let mut report = EnrollDryRun {
            dry_run: true,
            ..Default::default()
        };
        let mut pages: Vec<Vec<i64>> = Vec::new();
        let mut index_of = HashMap::new();
        match segment {
            Some(segment) => {
                let mut after = None;
                loop {
                    let (page, next) = self
                        .list_leads(&LeadFilter::default(), Some(segment), after, PASS_LEADS as i64)
                        .await?;
                    pages.push(page.iter().map(|v| v.lead.id.0).collect());
                    match next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
            }
            None => {
                let (ids, by_index, not_found) = self.resolve(leads).await?;
                report.not_found = not_found;
                index_of = by_index;
                pages.extend(ids.chunks(PASS_LEADS).map(<[i64]>::to_vec));
            }
        }
        for ids in pages {
            let entry = Entry::Into(campaign.to_owned());
            let mut pass = super::pass::DryPass::new(self, &ids, entry, playbook.clone());
            self.store.run_pass(&mut pass).await?;
            for missing in std::mem::take(&mut pass.absent) {
                report.not_found.extend(index_of.remove(&missing).unwrap_or_default());
            }
            let Some(super::pass::DryDecision {
                leads,
                running,
                suppressed,
                mut entering,
            }) = pass.decided
            else {
                continue;
            };
            let entering = entering.remove(campaign).unwrap_or_default();
            for lead in leads {
                let id = lead.id.0;
                if !entering.contains(&id) {
                    let reason = if running.contains(&id) { "already_in" } else { "reentry" };
                    report.count(reason, id, true);
                    continue;
                }
                report.would_enter += 1;
                match &lead.email {
                    None => report.count("no_email", id, false),
                    Some(_) if lead.consent.email.status == crate::lead::ConsentStatus::OptedOut => {
                        report.count("unsubscribed", id, false)
                    }
                    Some(email) if suppressed.contains(&crate::store::email_hash(email)) => {
                        report.count("suppressed", id, false)
                    }
                    Some(_) => {}
                }
            }
        }
        report.not_found.sort_unstable();
        Ok(report)
    }

    /// Takes leads out of a deployed campaign by hand: each running enrollment of theirs in it
    /// ends at once, its journey saying who and why. Leads that cannot be found are reported
    /// by their index; leads not running in it are counted.
    pub async fn exit(&self, campaign: &str, leads: &[LeadRef], reason: &str, by: &By) -> EngineResult<ExitReport> {
        let reason = reason.trim();
        if reason.is_empty() || crate::lead::text_problem(reason).is_some() {
            return Err(EngineError::Invalid(vec![FieldError::new(
                "reason",
                "say why the leads leave (it is kept in their journey), in printable text",
            )]));
        }
        if self.store.campaigns().await?.iter().all(|c| c.id != campaign) {
            return Err(EngineError::Missing(format!(
                "no campaign {campaign:?} was ever deployed"
            )));
        }
        let (ids, mut index_of, mut not_found) = self.resolve(leads).await?;
        let entry = Entry::Exit {
            campaign: campaign.to_owned(),
            reason: reason.to_owned(),
            by: by.actor.clone(),
        };
        let audit = by.did(
            AuditKind::CampaignExited,
            campaign,
            serde_json::json!({"reason": reason}),
        );
        let mut report = ExitReport::default();
        for chunk in ids.chunks(PASS_LEADS) {
            let (counts, absent) = retrying(|| self.pass(Pick::Ids(chunk), &entry, Some(&audit))).await?;
            report.exited += counts.moved;
            report.not_in += (chunk.len() - absent.len()).saturating_sub(counts.moved);
            for missing in absent {
                not_found.extend(index_of.remove(&missing).unwrap_or_default());
            }
        }
        not_found.sort_unstable();
        report.not_found = not_found;
        Ok(report)
    }

    /// Enrolls leads into a campaign by hand (API or CLI): its trigger is not asked, its
    /// re-entry rule is, and a lead already running in it stays where it is. Leads that cannot
    /// be found are reported by their index.
    pub async fn enroll(&self, campaign: &str, leads: &[LeadRef], by: &By) -> EngineResult<EnrollReport> {
        let (ids, mut index_of, not_found) = self.resolve(leads).await?;
        let mut report = EnrollReport {
            not_found,
            ..Default::default()
        };
        let audit = by.did(AuditKind::CampaignEnrolled, campaign, serde_json::json!({}));
        for missing in self.enroll_ids(campaign, &ids, &audit, &mut report).await? {
            report.not_found.extend(index_of.remove(&missing).unwrap_or_default());
        }
        report.not_found.sort_unstable();
        Ok(report)
    }

    /// The leads `leads` names: their ids (sorted, once each), the indexes naming each id, and
    /// the indexes naming no lead. E-mails and external ids are resolved in one query; ids are
    /// left for the pass, which reads (and locks) those leads anyway and says which it did not
    /// find.
    async fn resolve(&self, leads: &[LeadRef]) -> EngineResult<(Vec<i64>, HashMap<i64, Vec<usize>>, Vec<usize>)> {
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
        let email_of = |by: &LeadRef| {
            by.email
                .as_deref()
                .and_then(|e| EmailAddress::parse(e).ok())
                .map(|e| e.into_string())
        };
        let ext_of = |by: &LeadRef| by.external_id.as_deref().map(|x| x.trim().to_owned());
        let emails: Vec<String> = leads.iter().filter(|by| by.id.is_none()).filter_map(email_of).collect();
        let exts: Vec<String> = leads.iter().filter(|by| by.id.is_none()).filter_map(ext_of).collect();
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
        let mut not_found = Vec::new();
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
                None => not_found.push(index),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok((ids, index_of, not_found))
    }

    /// Who segment `id` holds now: every lead is evaluated (in batches, as a segment-filtered
    /// list is), the first `sample` matches kept with why each matches. Nothing changes.
    pub async fn segment_preview(&self, id: &str, sample: usize) -> EngineResult<SegmentPreview> {
        let playbook = self.playbook();
        let condition = playbook
            .segments
            .get(id)
            .ok_or_else(|| EngineError::Missing(format!("no segment {id:?} is deployed")))?;
        let now = self.now();
        let mut preview = SegmentPreview {
            segment: id.to_owned(),
            when: condition.to_string(),
            count: 0,
            scanned: 0,
            sample: Vec::new(),
        };
        let mut after = None;
        loop {
            let leads = self.store.list_leads(&LeadFilter::default(), after, 500).await?;
            let Some(last) = leads.last() else {
                return Ok(preview);
            };
            after = Some(last.id);
            preview.scanned += leads.len();
            let mut tx = self.store.begin_read().await?;
            let states = load_states(tx.as_mut(), leads, &playbook, now, &[]).await?;
            tx.commit().await?;
            let mut ids: Vec<&i64> = states.keys().collect();
            ids.sort_unstable();
            for id in ids {
                let state = &states[id];
                if !condition.eval(state, &playbook.segments, now) {
                    continue;
                }
                preview.count += 1;
                if preview.sample.len() < sample {
                    preview.sample.push(SegmentMember {
                        lead: view(state.lead.clone(), state.tags.keys().cloned().collect()),
                        why: condition.reasons(state, &playbook.segments, now),
                    });
                }
            }
        }
    }

    /// Enrolls every lead of a segment into a campaign by hand, in batches.
    pub async fn enroll_segment(&self, campaign: &str, segment: &str, by: &By) -> EngineResult<EnrollReport> {
        let mut report = EnrollReport::default();
        let audit = by.did(
            AuditKind::CampaignEnrolled,
            campaign,
            serde_json::json!({"segment": segment}),
        );
        let mut after = None;
        loop {
            let (page, next) = self
                .list_leads(&LeadFilter::default(), Some(segment), after, 500)
                .await?;
            let ids: Vec<i64> = page.iter().map(|v| v.lead.id.0).collect();
            self.enroll_ids(campaign, &ids, &audit, &mut report).await?;
            match next {
                Some(next) => after = Some(next),
                None => return Ok(report),
            }
        }
    }

    /// Enrolls these leads; returns the ids that are not leads.
    pub(super) async fn enroll_ids(
        &self,
        campaign: &str,
        ids: &[i64],
        audit: &Change,
        report: &mut EnrollReport,
    ) -> EngineResult<Vec<i64>> {
        let playbook = self.playbook();
        if !playbook.campaigns.contains_key(campaign) {
            return Err(EngineError::NotFound);
        }
        let entry = Entry::Into(campaign.to_owned());
        let mut missing = Vec::new();
        for chunk in ids.chunks(PASS_LEADS) {
            let (entered, absent) = retrying(|| self.enter_once(&entry, chunk, Some(audit))).await?;
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
            entered += retrying(|| self.enter_once(&entry, &ids, None)).await?.0;
            after = Some(last);
        }
    }

    /// How many leads deploying `playbook` would enroll at once, per new or changed
    /// segment-triggered campaign: the leads that match it now and may enter, decided as the
    /// scan after a deploy decides it ([`Engine::enter_matching`]), with nothing written.
    /// Scans every lead, and only when the deploy has such campaigns.
    pub async fn enrolling_at_once(&self, playbook: &Playbook) -> EngineResult<BTreeMap<String, usize>> {
        let records = self.store.campaigns().await?;
        let fresh: Vec<String> = playbook
            .campaigns
            .values()
            .filter(|c| c.entry.trigger == crate::playbook::Trigger::Segment)
            .filter(|c| {
                records
                    .iter()
                    .find(|r| r.id == c.id)
                    .is_none_or(|r| r.version != c.version || r.status == crate::store::CampaignStatus::Retired)
            })
            .map(|c| c.id.clone())
            .collect();
        let mut counts: BTreeMap<String, usize> = fresh.iter().map(|id| (id.clone(), 0)).collect();
        if fresh.is_empty() {
            return Ok(counts);
        }
        let playbook = Arc::new(playbook.clone());
        let mut after = None;
        loop {
            let leads = self
                .store
                .list_leads(&LeadFilter::default(), after, PASS_LEADS as i64)
                .await?;
            let Some(last) = leads.last().map(|l| l.id) else {
                return Ok(counts);
            };
            let ids: Vec<i64> = leads.iter().map(|l| l.id.0).collect();
            let entry = Entry::Matching(fresh.clone());
            let mut pass = super::pass::DryPass::new(self, &ids, entry, playbook.clone());
            self.store.run_pass(&mut pass).await?;
            for (campaign, entering) in pass.decided.map(|d| d.entering).unwrap_or_default() {
                if let Some(n) = counts.get_mut(&campaign) {
                    *n += entering.len();
                }
            }
            after = Some(last);
        }
    }

    /// One enrolling pass: (how many entered, the ids that are not leads).
    pub(super) async fn enter_once(
        &self,
        entry: &Entry,
        ids: &[i64],
        audit: Option<&Change>,
    ) -> EngineResult<(usize, Vec<i64>)> {
        let (counts, absent) = self.pass(Pick::Ids(ids), entry, audit).await?;
        Ok((counts.entered, absent))
    }

    /// Where a manual clock stood when it last moved (the `settings` row): a restarted
    /// `serve --clock manual` resumes there instead of at the wall clock, so that times already
    /// stored are never in its future.
    pub const MANUAL_CLOCK_SETTING: &'static str = "manual_clock";
}
