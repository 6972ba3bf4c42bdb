//! Deploying a playbook: the campaigns recorded, and the warnings of what it would stop.

use super::*;
use std::sync::Arc;

use crate::playbook::{Campaign, Issue, Playbook};
use crate::store::{CampaignRecord, CampaignStatus, CampaignVersion, DeployReport};

impl Engine {
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
                if record.status == CampaignStatus::Retired {
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
        Ok(campaign
            .steps()
            .map(|step| {
                let count = counts.remove(&step.id).unwrap_or_default();
                StepFunnel {
                    step: step.id.clone(),
                    kind: step.action.kind(),
                    entered: count.entered,
                    waiting: count.waiting,
                    outcomes: count.outcomes,
                }
            })
            .collect())
    }

    /// Every deployed version of a campaign, oldest first.
    pub async fn campaign_versions(&self, campaign: &str) -> EngineResult<Vec<CampaignVersion>> {
        Ok(self.store.campaign_versions(campaign).await?)
    }

    /// How many enrollments took each edge of a campaign's graph (all versions), for drawing.
    pub async fn edge_counts(&self, campaign: &Campaign) -> EngineResult<crate::playbook::draw::EdgeCounts> {
        let counts = self.store.step_counts(&campaign.id).await?;
        let mut lines = Vec::new();
        for count in &counts {
            for (label, n) in &count.outcomes {
                match label.parse() {
                    Ok(outcome) => lines.push((count.step.as_str(), outcome, *n)),
                    Err(e) => tracing::warn!(campaign = %campaign.id, step = %count.step, "Step counts: {e}."),
                }
            }
        }
        Ok(crate::journey::edge_counts(campaign, lines))
    }

    /// Pauses or resumes a campaign.
    pub async fn set_campaign_status(&self, id: &str, status: CampaignStatus) -> EngineResult<()> {
        if self.store.set_campaign_status(id, status, self.now()).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound)
        }
    }
}

/// One step of a campaign's funnel (see [`Engine::funnel`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepFunnel {
    pub step: String,
    pub kind: &'static str,
    /// Times an enrollment arrived at the step (one that loops back counts again).
    pub entered: i64,
    /// Enrollments waiting at the step now.
    pub waiting: i64,
    /// Journey lines by outcome: `yes`, `no`, `sent`, `waited`, `handed_off`, `goal` (exited), …
    pub outcomes: std::collections::BTreeMap<String, i64>,
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
