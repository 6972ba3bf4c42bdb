//! Deploying a playbook: the campaigns recorded, and the warnings of what it would stop.

use super::*;
use crate::lead::Lead;
use std::sync::Arc;

use crate::audit::{AuditKind, By};
use crate::playbook::bundle::{Bundle, Deployable};
use crate::playbook::{Campaign, Issue, Playbook, PlaybookIssue};
use crate::store::{
    CampaignRecord, CampaignStatus, CampaignVersion, DeployReport, Deployment, DeploymentHead, NewDeployment, Origin,
};

/// Who deploys, and from where.
#[derive(Debug, Clone)]
pub struct Deployer {
    /// The API key's name, or the user at the command line.
    pub actor: String,
    pub origin: Origin,
    /// The deployment whose content is deployed again (a restore).
    pub restored_from: Option<i64>,
}

impl Deployer {
    /// The person at the command line: `$USER` (or `$USERNAME`), else `nurture`.
    pub fn cli() -> Self {
        Deployer {
            actor: By::cli().actor,
            origin: Origin::Cli,
            restored_from: None,
        }
    }
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// What changed, by campaign id.
    pub report: DeployReport,
    /// The deployment now in force: the new one, or, when the content was already deployed,
    /// that one (`unchanged`).
    pub deployment: i64,
    pub content_hash: String,
    /// The content was the latest deployment's already: nothing new was recorded.
    pub unchanged: bool,
    /// The playbook's own warnings, then what the deploy did to running enrollments.
    pub warnings: Vec<PlaybookIssue>,
}

impl Engine {
    /// Records `deployable` as deployed and puts it in force. A campaign whose content changed
    /// becomes a new version (the earlier ones are kept); an unchanged one is left as it is;
    /// one no longer in the playbook is retired. The deployment (files, who, from where, the
    /// warnings) is recorded in the same transaction, unless its content is the latest
    /// deployment's already.
    pub async fn deploy(&self, deployable: Deployable, by: Deployer) -> EngineResult<Deployed> {
        let now = self.now();
        let Deployable { playbook, bundle } = deployable;
        let mut warnings: Vec<PlaybookIssue> = playbook.warnings.iter().map(PlaybookIssue::from).collect();
        warnings.extend(self.deploy_warnings(&playbook).await?.iter().map(PlaybookIssue::from));
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
        let content_hash = bundle.hash();
        let latest = self.store.deployments(None, 1).await?.pop();
        let unchanged = latest.as_ref().filter(|l| l.content_hash == content_hash).map(|l| l.id);
        let record = NewDeployment {
            actor: by.actor,
            origin: by.origin,
            content_hash: content_hash.clone(),
            files: bundle.files(),
            warnings: warnings.clone(),
            restored_from: by.restored_from,
        };
        let (report, recorded) = self
            .store
            .deploy_campaigns(&versions, unchanged.is_none().then_some(&record), now)
            .await?;
        let deployment = recorded.or(unchanged).ok_or_else(|| {
            EngineError::Failed("the deployment was neither recorded nor found already deployed".into())
        })?;
        self.put_in_force(playbook, bundle, Some(deployment));
        Ok(Deployed {
            report,
            deployment,
            content_hash,
            unchanged: unchanged.is_some(),
            warnings,
        })
    }

    /// Records what is in force as deployed (the engine's playbook at start, in `demo`,
    /// `simulate` and the benchmarks).
    pub async fn deploy_current(&self, by: Deployer) -> EngineResult<Deployed> {
        let in_force = self.in_force();
        let deployable = Deployable {
            playbook: (*in_force.playbook).clone(),
            bundle: (*in_force.bundle).clone(),
        };
        self.deploy(deployable, by).await
    }

    /// Puts the latest recorded deployment in force, when there is one and it is not in force
    /// already: what `serve` runs at start, and how a process follows a deploy made by another
    /// process on the same database. Its id, when it changed what is in force.
    pub async fn resume_deployment(&self) -> EngineResult<Option<i64>> {
        let latest = self.store.latest_deployment_id().await?;
        if latest.is_none() || latest == self.deployment_id() {
            return Ok(None);
        }
        let Some(deployment) = self.store.deployment(latest).await? else {
            return Ok(None);
        };
        let id = deployment.head.id;
        let deployable = build_deployment(deployment).await?;
        let Deployable { playbook, bundle } = deployable;
        self.put_in_force(playbook, bundle, Some(id));
        Ok(Some(id))
    }

    /// A recorded deployment, built: what a restore deploys again.
    pub async fn deployable(&self, id: i64) -> EngineResult<Deployable> {
        let deployment = self.store.deployment(Some(id)).await?.ok_or(EngineError::NotFound)?;
        build_deployment(deployment).await
    }

    /// Recorded deployments, newest first: up to `limit` of those before the id `before`.
    pub async fn deployments(&self, before: Option<i64>, limit: i64) -> EngineResult<Vec<DeploymentHead>> {
        Ok(self.store.deployments(before, limit).await?)
    }

    /// One recorded deployment with its files; the latest when `id` is `None`.
    pub async fn deployment(&self, id: Option<i64>) -> EngineResult<Option<Deployment>> {
        Ok(self.store.deployment(id).await?)
    }

    fn put_in_force(&self, playbook: Playbook, bundle: Bundle, deployment: Option<i64>) {
        *self.in_force.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(super::InForce {
            playbook: Arc::new(playbook),
            bundle: Arc::new(bundle),
            deployment,
        });
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
                if record.status == CampaignStatus::Retired {
                    continue;
                }
                let open = self.store.open_enrollments(&record.id, None).await?;
                let file = self.store.campaign_versions(&record.id).await?.pop().map(|v| v.file);
                let message = if open > 0 {
                    format!(
                        "campaign {:?} is not in this playbook: deploying it retires the campaign, and its {} {} \
                         where {} (deploying the campaign again lets {} go on)",
                        record.id,
                        running(open),
                        by_count(open, "stops", "stop"),
                        by_count(open, "it is", "they are"),
                        by_count(open, "it", "them"),
                    )
                } else {
                    format!(
                        "campaign {:?} is not in this playbook: deploying it retires the campaign (no enrollment \
                         is running in it; deploying the campaign again brings it back)",
                        record.id
                    )
                };
                warn(file.as_deref().unwrap_or_default(), message);
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

    /// Campaigns as deployed, with the graph of each when it is in the playbook in force.
    pub async fn campaigns(&self) -> EngineResult<Vec<CampaignRecord>> {
        Ok(self.store.campaigns().await?)
    }

    /// A campaign's funnel: each step in graph order with its counts over all versions (zero
    /// where no enrollment arrived yet). What `demo`, `simulate` and the campaign page show.
    pub async fn funnel(&self, campaign: &Campaign) -> EngineResult<Vec<StepFunnel>> {
        let mut counts: HashMap<String, crate::store::StepCount> = self
            .store
            .step_counts(&campaign.id)
            .await?
            .into_iter()
            .map(|c| (c.step.clone(), c))
            .collect();
        let mut engaged: HashMap<String, crate::store::StepEngagement> = self
            .store
            .engagement(&campaign.id)
            .await?
            .into_iter()
            .map(|e| (e.step.clone(), e))
            .collect();
        Ok(campaign
            .steps()
            .map(|step| {
                let count = counts.remove(&step.id).unwrap_or_default();
                let engaged = engaged.remove(&step.id).unwrap_or_default();
                StepFunnel {
                    step: step.id.clone(),
                    kind: step.action.kind(),
                    entered: count.entered,
                    waiting: count.waiting,
                    outcomes: count.outcomes,
                    opened: engaged.opened,
                    clicked: engaged.clicked,
                }
            })
            .collect())
    }

    /// A campaign's figures as the console's list shows them: running and waiting now, and
    /// since its first deploy messages sent, their unique human opens and clicks, handoffs,
    /// and enrollments that left early (taken out, retired, or `exit_when` reached).
    pub async fn campaign_counts(&self, campaign: &Campaign) -> EngineResult<CampaignCounts> {
        let funnel = self.funnel(campaign).await?;
        self.counts_of(campaign, &funnel).await
    }

    /// [`Engine::campaign_counts`] from a funnel already read (see [`Engine::funnel`]).
    pub async fn counts_of(&self, campaign: &Campaign, funnel: &[StepFunnel]) -> EngineResult<CampaignCounts> {
        let lines = |outcome: &str| -> i64 { funnel.iter().filter_map(|s| s.outcomes.get(outcome)).sum() };
        Ok(CampaignCounts {
            running: self.store.open_enrollments(&campaign.id, None).await?,
            waiting: funnel.iter().map(|s| s.waiting).sum(),
            sent: lines("sent"),
            opened: funnel.iter().map(|s| s.opened).sum(),
            clicked: funnel.iter().map(|s| s.clicked).sum(),
            handed_off: lines("handed_off"),
            exited: lines("exited") + lines("goal"),
        })
    }

    /// The leads at one step of a campaign now, by id: up to `limit` after lead `after`, each
    /// with when it wakes (if it waits) and since when it is there. `None` when the campaign
    /// or the step is not in the playbook in force.
    pub async fn at_step(
        &self,
        campaign: &str,
        step: &str,
        after: Option<i64>,
        limit: i64,
    ) -> EngineResult<Option<Vec<(crate::store::AtStep, Option<Lead>)>>> {
        let known = self
            .playbook()
            .campaigns
            .get(campaign)
            .is_some_and(|c| c.step(step).is_some());
        if !known {
            return Ok(None);
        }
        let at = self.store.at_step(campaign, step, after, limit).await?;
        let ids: Vec<i64> = at.iter().map(|a| a.lead.0).collect();
        let mut tx = self.store.begin_read().await?;
        let leads = tx.find_leads(&ids, &[], &[]).await?;
        tx.commit().await?;
        let mut by_id: HashMap<i64, Lead> = leads.into_iter().map(|l| (l.id.0, l)).collect();
        Ok(Some(
            at.into_iter()
                .map(|a| {
                    let lead = by_id.remove(&a.lead.0);
                    (a, lead)
                })
                .collect(),
        ))
    }

    /// Every deployed version of a campaign, oldest first.
    pub async fn campaign_versions(&self, campaign: &str) -> EngineResult<Vec<CampaignVersion>> {
        Ok(self.store.campaign_versions(campaign).await?)
    }

    /// How many enrollments took each edge of a campaign's graph (all versions), for drawing,
    /// from its funnel (see [`Engine::funnel`]).
    pub fn edges_of(&self, campaign: &Campaign, funnel: &[StepFunnel]) -> crate::playbook::draw::EdgeCounts {
        let mut lines = Vec::new();
        for step in funnel {
            for (label, n) in &step.outcomes {
                match label.parse() {
                    Ok(outcome) => lines.push((step.step.as_str(), outcome, *n)),
                    Err(e) => tracing::warn!(campaign = %campaign.id, step = %step.step, "Step counts: {e}."),
                }
            }
        }
        crate::journey::edge_counts(campaign, lines)
    }

    /// Pauses or resumes a campaign.
    pub async fn set_campaign_status(&self, id: &str, status: CampaignStatus, by: &By) -> EngineResult<()> {
        let kind = match status {
            CampaignStatus::Paused => AuditKind::CampaignPaused,
            _ => AuditKind::CampaignResumed,
        };
        let audit = by.did(kind, id, serde_json::json!({}));
        if self.store.set_campaign_status(id, status, self.now(), &audit).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound)
        }
    }
}

/// One step of a campaign's funnel (see [`Engine::funnel`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct StepFunnel {
    pub step: String,
    pub kind: &'static str,
    /// Times an enrollment arrived at the step (one that loops back counts again).
    pub entered: i64,
    /// Enrollments waiting at the step now.
    pub waiting: i64,
    /// Journey lines by outcome: `yes`, `no`, `sent`, `waited`, `handed_off`, `goal` (exited), …
    pub outcomes: std::collections::BTreeMap<String, i64>,
    /// Of the messages the step sent, those a person opened, and those a person clicked in.
    pub opened: i64,
    pub clicked: i64,
}

/// A campaign's figures (see [`Engine::campaign_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct CampaignCounts {
    /// Enrollments running now (at a step or waiting).
    pub running: i64,
    /// Of those, waiting now (a wait, a deferred send).
    pub waiting: i64,
    /// Since the first deploy: messages its steps sent, …
    pub sent: i64,
    /// … of those, opened by a person at least once (mail proxies do not count), …
    pub opened: i64,
    /// … and clicked in by a person at least once (link scanners do not count).
    pub clicked: i64,
    /// Handoffs its steps made.
    pub handed_off: i64,
    /// Enrollments that left before the end: taken out by hand, their version retired, or
    /// its `exit_when` goal reached.
    pub exited: i64,
}

/// "1 running enrollment", "2 running enrollments".
pub(super) fn running(n: i64) -> String {
    format!("{n} running {}", by_count(n, "enrollment", "enrollments"))
}

/// The words for one thing or for several.
pub(super) fn by_count(n: i64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Validates a recorded deployment again, off the async workers (a large playbook is CPU
/// work). One this nurture refuses (stored by a release that accepted it) is an error that
/// says which deployment and why.
async fn build_deployment(deployment: Deployment) -> EngineResult<Deployable> {
    let id = deployment.head.id;
    let built = tokio::task::spawn_blocking(move || {
        crate::playbook::bundle::Bundle::from_files(deployment.files)
            .and_then(|bundle| bundle.build(crate::playbook::bundle::PLAYBOOK_FOLDER))
    })
    .await
    .map_err(|e| EngineError::Failed(format!("building deployment {id}: {e}")))?;
    built.map_err(|refused| {
        EngineError::Failed(format!(
            "deployment {id} does not validate with this version of nurture: {refused}; deploy a corrected playbook"
        ))
    })
}
