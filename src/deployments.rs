//! What a process runs: the database's latest deployment, or at `serve`'s start a playbook
//! directory deployed (refused when it would retire campaigns or end running enrollments,
//! unless accepted); and `nurture playbook pull`, which writes a deployment back to files.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;

use nurture_engine::clock::Clock;
use nurture_engine::engine::{Deployed, Deployer, Engine};
use nurture_engine::playbook::bundle::{Bundle, Deployable};

use crate::cli::PlaybookArgs;
use crate::commands::open_store;
use crate::report;

/// How `serve` chooses what to run.
pub struct Start<'a> {
    pub url: &'a str,
    pub playbook: &'a PlaybookArgs,
    /// `--playbook` was given (flag or environment): deploy it.
    pub explicit: bool,
    pub accept_warnings: bool,
}

/// The engine `serve` runs, and the deploy it made at start, if any: `--playbook DIR` given
/// deploys DIR (nothing new when it is the latest deployment's content); else the latest
/// deployment runs; on a database with none, the playbook directory is deployed.
pub async fn start(start: Start<'_>, clock: Arc<dyn Clock>) -> Result<(Engine, Option<Deployed>)> {
    let dir = &start.playbook.playbook;
    let templates = start.playbook.templates.dir(dir);
    // A playbook to deploy is read before the database is opened: a refused one creates no
    // database file.
    let fresh = nurture_engine::store::missing_file(start.url)
        .with_context(|| format!("reading the database URL {}", start.url))?
        .is_some();
    let from_dir = if start.explicit || (fresh && dir.exists()) {
        Some(load(dir, &templates)?)
    } else {
        None
    };
    let store = open_store(start.url).await?;
    let resumed = Engine::new(store.clone(), Deployable::default(), clock.clone());
    if !start.explicit {
        if let Some(id) = resumed
            .resume_deployment()
            .await
            .context("reading the latest deployment")?
        {
            tracing::info!(deployment = id, "Running the latest deployment.");
            return Ok((resumed, None));
        }
        if !dir.exists() {
            tracing::warn!(playbook = %dir.display(), "Nothing deployed and no playbook directory; running without rules.");
            return Ok((resumed, None));
        }
    }
    let deployable = match from_dir {
        Some(deployable) => deployable,
        None => load(dir, &templates)?,
    };
    let latest = resumed.deployments(None, 1).await?.pop();
    if latest
        .as_ref()
        .is_some_and(|l| l.content_hash == deployable.bundle.hash())
    {
        resumed.resume_deployment().await?;
        tracing::info!(
            deployment = resumed.deployment_id(),
            playbook = %dir.display(),
            "The playbook directory is the latest deployment already."
        );
        return Ok((resumed, None));
    }
    let stranded = resumed.deploy_warnings(&deployable.playbook).await?;
    if start.explicit && !stranded.is_empty() && !start.accept_warnings {
        for warning in &stranded {
            eprintln!("{}", report::issue(warning));
        }
        let deployed = resumed.campaigns().await?;
        let retired = deployed
            .iter()
            .filter(|c| {
                c.status != nurture_engine::store::CampaignStatus::Retired
                    && !deployable.playbook.campaigns.contains_key(&c.id)
            })
            .count();
        bail!(
            "not starting: deploying {} would retire {retired} campaign{} and change what running enrollments do \
             ({} warning{} above). Start with --accept-warnings to deploy it anyway, or without --playbook to \
             run what is deployed (`nurture playbook pull DIR` writes that to files)",
            dir.display(),
            if retired == 1 { "" } else { "s" },
            stranded.len(),
            if stranded.len() == 1 { "" } else { "s" },
        );
    }
    if start.explicit && !start.accept_warnings {
        let enrolling = resumed.enrolling_at_once(&deployable.playbook).await?;
        let total: usize = enrolling.values().sum();
        let over = deployable.playbook.rules.deploy_confirm_over;
        if total as u64 > over {
            for (campaign, n) in enrolling.iter().filter(|(_, n)| **n > 0) {
                let who = if *n == 1 { "lead matches" } else { "leads match" };
                eprintln!("campaign {campaign}: {n} {who} its segment now and would enter it at once");
            }
            bail!(
                "not starting: deploying {} would enroll {total} lead{} at once (more than {over}, the Rules' \
                 deploy_confirm_over). Start with --accept-warnings to deploy it anyway",
                dir.display(),
                if total == 1 { "" } else { "s" }
            );
        }
    }
    let engine = Engine::new(store, deployable, clock);
    let deployed = engine
        .deploy_current(Deployer::cli())
        .await
        .context("recording the deployment")?;
    for warning in &deployed.warnings {
        tracing::warn!(file = %warning.file, "Deploying: {}", warning.message);
    }
    tracing::info!(
        deployment = deployed.deployment,
        playbook = %dir.display(),
        created = ?deployed.report.created,
        changed = ?deployed.report.changed,
        retired = ?deployed.report.retired,
        "Playbook deployed."
    );
    Ok((engine, Some(deployed)))
}

/// The engine a command that is not `serve` works with: the latest deployment; on a database
/// with none, the playbook directory as it is (not recorded: `serve` does that).
pub async fn engine(url: &str, playbook: &PlaybookArgs, clock: Arc<dyn Clock>) -> Result<Engine> {
    let store = open_store(url).await?;
    let engine = Engine::new(store.clone(), Deployable::default(), clock.clone());
    if engine.resume_deployment().await?.is_some() {
        return Ok(engine);
    }
    let dir = &playbook.playbook;
    if !dir.exists() {
        tracing::warn!(playbook = %dir.display(), "Nothing deployed and no playbook directory; running without rules.");
        return Ok(engine);
    }
    Ok(Engine::new(store, load(dir, &playbook.templates.dir(dir))?, clock))
}

/// Reads and validates a playbook directory; a refused one is an error listing every issue.
fn load(dir: &Path, templates: &Path) -> Result<Deployable> {
    match Deployable::load(dir, templates) {
        Ok(deployable) => Ok(deployable),
        Err(refused) => bail!("{} is refused: {refused}", dir.display()),
    }
}

/// `nurture playbook pull DIR`: a deployment's files written under DIR.
pub async fn pull(dir: &Path, deployment: Option<i64>, url: &str) -> Result<()> {
    let store = crate::commands::existing_store(url).await?;
    let engine = Engine::new(
        store,
        Deployable::default(),
        Arc::new(nurture_engine::clock::SystemClock),
    );
    let found = engine
        .deployment(deployment)
        .await
        .with_context(|| format!("reading deployments from {url} (run `nurture migrate` if it is older)"))?;
    let Some(found) = found else {
        match deployment {
            Some(id) => bail!("there is no deployment {id}; `GET /v1/deployments` lists them"),
            None => bail!("nothing is deployed in {url} yet; `nurture serve` deploys campaigns/ when it first starts"),
        }
    };
    // Checked again before anything is written: every path stays under DIR.
    let bundle = Bundle::from_files(found.files).map_err(|refused| anyhow::anyhow!("{refused}"))?;
    let files = bundle.files();
    for file in &files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &file.text).with_context(|| format!("writing {}", path.display()))?;
    }
    let head = found.head;
    println!(
        "Wrote the {} files of deployment {} (deployed {} by {} from the {}, content {}) to {}.",
        files.len(),
        head.id,
        head.deployed_at.format("%Y-%m-%d %H:%M UTC"),
        head.actor,
        head.origin.as_str(),
        &head.content_hash[..12.min(head.content_hash.len())],
        dir.display()
    );
    let on_disk = Bundle::read(&dir.join("campaigns"), &dir.join("templates")).unwrap_or_default();
    let kept: std::collections::BTreeSet<String> = files.into_iter().map(|f| f.path).collect();
    for file in on_disk.files() {
        if !kept.contains(&file.path) {
            println!(
                "Left alone: {} is not in deployment {}; delete it if it should not come back.",
                dir.join(&file.path).display(),
                head.id
            );
        }
    }
    Ok(())
}
