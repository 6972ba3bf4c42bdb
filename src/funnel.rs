//! Each campaign's funnel per step (entered, waiting now, outcomes such as yes/no, handed off,
//! exited), as `demo` and `simulate` print it: a table for people, JSON for scripts.

use anyhow::Result;
use nurture_engine::engine::{Engine, StepFunnel};
use nurture_engine::store::Store;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct CampaignFunnel {
    pub id: String,
    pub name: String,
    pub version: String,
    pub steps: Vec<StepFunnel>,
}

/// Every campaign of the playbook in force, its steps in graph order, with their counts.
pub async fn read(engine: &Engine) -> Result<Vec<CampaignFunnel>> {
    let mut out = Vec::new();
    for campaign in engine.playbook().campaigns.values() {
        out.push(CampaignFunnel {
            id: campaign.id.clone(),
            name: campaign.name.clone(),
            version: campaign.version.clone(),
            steps: engine.funnel(campaign).await?,
        });
    }
    Ok(out)
}

/// The funnels as tables; steps no lead reached are left out.
pub fn print(funnels: &[CampaignFunnel]) {
    for campaign in funnels {
        println!("{} ({}), version {}", campaign.name, campaign.id, campaign.version);
        println!("  {:<26} {:>8} {:>8}  outcomes", "step", "entered", "waiting");
        for step in campaign.steps.iter().filter(|s| s.entered > 0 || s.waiting > 0) {
            let outcomes: Vec<String> = step.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            println!(
                "  {:<26} {:>8} {:>8}  {}",
                step.step,
                step.entered,
                step.waiting,
                outcomes.join(", ")
            );
        }
        println!();
    }
}

/// Leads per stage, in the order of the lead life cycle.
pub async fn stages(store: &dyn Store) -> Result<Vec<(String, i64)>> {
    let counts = store.stage_counts().await?;
    Ok(nurture_engine::lead::Stage::ALL
        .iter()
        .filter_map(|stage| {
            counts
                .iter()
                .find(|(s, _)| s == stage.as_str())
                .map(|(s, n)| (s.clone(), *n))
        })
        .collect())
}
