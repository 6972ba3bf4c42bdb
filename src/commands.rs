//! The subcommands that are not a module of their own: API keys and the playbook tools, and
//! the store and engine every command opens.

use anyhow::{bail, Context, Result};
use nurture_engine::audit::By;
use std::sync::Arc;

use crate::cli::{ApikeyCommand, PlaybookCommand, WhichKey};
use crate::report;

/// `nurture apikey …`: create (printed once; only its hash is stored), list, revoke, rotate.
pub async fn api_keys(command: ApikeyCommand) -> Result<()> {
    use nurture_engine::engine::{Engine, NewApiKey};
    let url = match &command {
        ApikeyCommand::Create { db, .. }
        | ApikeyCommand::List { db }
        | ApikeyCommand::Revoke { db, .. }
        | ApikeyCommand::Rotate { db, .. } => db.database_url.clone(),
    };
    let engine = Engine::new(
        open_store(&url).await?,
        Default::default(),
        Arc::new(nurture_engine::clock::SystemClock),
    );
    let show = |made: &NewApiKey, what: &str| {
        println!(
            "{what} a {} key named {:?} (id {}). It is shown only now; store it safely:",
            made.role.as_str(),
            made.name,
            made.id
        );
        println!("{}", made.key);
    };
    match command {
        ApikeyCommand::Create { role, name, .. } => {
            let role: nurture_engine::access::Role = role.parse().map_err(anyhow::Error::msg)?;
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let made = engine
                .create_api_key(&name, role, &By::cli())
                .await
                .context("storing the API key")?;
            show(&made, "Created");
        }
        ApikeyCommand::List { .. } => {
            let keys = engine.api_keys().await?;
            println!("{:>4}  {:<24} {:<9} {:<17} revoked", "id", "name", "role", "created");
            for key in keys {
                println!(
                    "{:>4}  {:<24} {:<9} {:<17} {}",
                    key.id,
                    key.name,
                    key.role.as_str(),
                    key.created_at.format("%Y-%m-%d %H:%M"),
                    key.revoked_at
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        ApikeyCommand::Revoke { which, .. } => {
            for id in chosen(&engine, &which, false).await? {
                engine.revoke_api_key(id, &By::cli()).await?;
                println!("Revoked key {id}: within a second it works on no server of this database.");
            }
        }
        ApikeyCommand::Rotate { which, .. } => {
            let id = chosen(&engine, &which, true).await?[0];
            let made = engine.rotate_api_key(id, &By::cli()).await?;
            println!("Revoked key {id}.");
            show(&made, "Made");
        }
    }
    Ok(())
}

/// The unrevoked keys `which` names: one by id, or every key with the name (exactly one when
/// `one`).
async fn chosen(engine: &nurture_engine::engine::Engine, which: &WhichKey, one: bool) -> Result<Vec<i64>> {
    let live: Vec<_> = engine
        .api_keys()
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    let (ids, named): (Vec<i64>, String) = match (&which.id, &which.name) {
        (Some(id), _) => (
            live.iter().filter(|k| k.id == *id).map(|k| k.id).collect(),
            format!("with id {id}"),
        ),
        (None, Some(name)) => (
            live.iter().filter(|k| k.name == name.trim()).map(|k| k.id).collect(),
            format!("named {name:?}"),
        ),
        (None, None) => bail!("give --id or --name"),
    };
    if ids.is_empty() {
        bail!("no unrevoked API key {named}; `nurture apikey list` shows them");
    }
    if one && ids.len() > 1 {
        bail!("{} unrevoked keys are {named} (ids {:?}); give --id", ids.len(), ids);
    }
    Ok(ids)
}

/// `nurture playbook …`: validation, pictures and the editor schema. No database is needed,
/// unless validation is asked to look at one.
pub async fn playbook(command: PlaybookCommand) -> Result<()> {
    use nurture_engine::playbook::{draw, Playbook};
    match command {
        PlaybookCommand::Validate {
            dir,
            templates,
            database_url,
        } => {
            let started = std::time::Instant::now();
            match Playbook::load_dir(&dir, &templates.dir(&dir)) {
                Ok(mut playbook) => {
                    if let Some(url) = database_url {
                        let stranded = stranded_enrollments(&url, &playbook).await?;
                        playbook.warnings.extend(stranded);
                    }
                    // Diagnostics go to standard error, as compilers do; the summary to standard output.
                    for warning in &playbook.warnings {
                        eprintln!("{}", report::issue(warning));
                    }
                    println!("{}", report::summary(&dir, &playbook, started.elapsed()));
                    Ok(())
                }
                Err(refused) => {
                    for issue in &refused.0 {
                        eprintln!("{}", report::issue(issue));
                    }
                    let errors = refused.errors().count();
                    bail!(
                        "the playbook in {} is refused: {errors} error{}",
                        dir.display(),
                        if errors == 1 { "" } else { "s" }
                    )
                }
            }
        }
        PlaybookCommand::Graph {
            id,
            format,
            output,
            playbook,
        } => {
            let loaded = Playbook::load_dir(&playbook.playbook, &playbook.templates.dir(&playbook.playbook))
                .map_err(|refused| anyhow::anyhow!("{refused}"))?;
            let Some(campaign) = loaded.campaigns.get(&id) else {
                let known: Vec<&str> = loaded.campaigns.keys().map(String::as_str).collect();
                bail!(
                    "campaign {id:?} is not in the playbook; its campaigns are: {}",
                    known.join(", ")
                );
            };
            let picture = draw::draw(campaign, format, None, None).map_err(anyhow::Error::msg)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, picture).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("Wrote {}.", path.display());
                }
                None => print!("{picture}"),
            }
            Ok(())
        }
        PlaybookCommand::Schema => {
            let schema = nurture_engine::playbook::schema::playbook_schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
        PlaybookCommand::Pull { dir, deployment, db } => {
            crate::deployments::pull(&dir, deployment, &db.database_url).await
        }
    }
}

/// The warnings about running enrollments in the database at `url` that deploying `playbook`
/// would strand. The database is read, not created or migrated.
async fn stranded_enrollments(
    url: &str,
    playbook: &nurture_engine::playbook::Playbook,
) -> Result<Vec<nurture_engine::playbook::Issue>> {
    let store = existing_store(url).await?;
    let engine =
        nurture_engine::engine::Engine::new(store, Default::default(), Arc::new(nurture_engine::clock::SystemClock));
    engine.deploy_warnings(playbook).await.with_context(|| {
        format!(
            "reading the deployed campaigns and their enrollments from {url} (run `nurture migrate` if it is older)"
        )
    })
}

/// The database at `url` as it is: nothing is created or migrated (a tool that only reads).
pub async fn existing_store(url: &str) -> Result<Arc<dyn nurture_engine::store::Store>> {
    let missing =
        nurture_engine::store::missing_file(url).with_context(|| format!("reading the database URL {url}"))?;
    if let Some(file) = missing {
        bail!(
            "there is no database at {}; give --database-url the database `nurture serve` uses",
            file.display()
        );
    }
    nurture_engine::store::connect(url)
        .await
        .with_context(|| format!("opening the database {url}"))
}

pub async fn open_store(url: &str) -> Result<Arc<dyn nurture_engine::store::Store>> {
    let store = nurture_engine::store::connect(url)
        .await
        .with_context(|| format!("opening the database {url}"))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// The CPU cores this process may use: `serve` runs a campaign runner on each, and the
/// benchmarks a worker or stream.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
