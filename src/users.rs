//! `nurture user …`: the people who sign in to the console. Their set-password links are
//! printed here, once; the database keeps only their hashes.

use anyhow::Result;
use nurture_engine::access::Role;
use nurture_engine::audit::By;
use nurture_engine::engine::{Engine, EngineError, Invited, SETUP_LINK};
use std::sync::Arc;

use crate::cli::UserCommand;
use crate::commands::open_store;

pub async fn users(command: UserCommand) -> Result<()> {
    let url = match &command {
        UserCommand::Create { link, .. } | UserCommand::Reset { link, .. } => link.db.database_url.clone(),
        UserCommand::List { db } | UserCommand::Deactivate { db, .. } => db.database_url.clone(),
    };
    let engine = Engine::new(
        open_store(&url).await?,
        Default::default(),
        Arc::new(nurture_engine::clock::SystemClock),
    );
    let by = By::cli();
    let show = |invited: &Invited, base: &str| {
        println!(
            "{} ({}) sets their password at this link, which works once, for {} hours:",
            invited.user.email,
            invited.user.role.as_str(),
            SETUP_LINK.num_hours()
        );
        println!("{}/set-password/{}", base.trim_end_matches('/'), invited.token);
    };
    match command {
        UserCommand::Create { email, role, link } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let invited = engine.create_user(&email, role, &by).await.map_err(explain)?;
            show(&invited, &link.public_url);
        }
        UserCommand::Reset { email, link } => {
            let invited = engine.reset_user(&email, &by).await.map_err(explain)?;
            show(&invited, &link.public_url);
        }
        UserCommand::List { .. } => {
            println!(
                "{:>4}  {:<32} {:<9} {:<9} {:<17} deactivated",
                "id", "email", "role", "password", "created"
            );
            for user in engine.users().await? {
                println!(
                    "{:>4}  {:<32} {:<9} {:<9} {:<17} {}",
                    user.id,
                    user.email,
                    user.role.as_str(),
                    if user.has_password { "set" } else { "not yet" },
                    user.created_at.format("%Y-%m-%d %H:%M"),
                    user.deactivated_at
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        UserCommand::Deactivate { email, .. } => {
            let user = engine.deactivate_user(&email, &by).await.map_err(explain)?;
            println!(
                "Deactivated {}: they cannot sign in, and their sessions have ended.",
                user.email
            );
        }
    }
    Ok(())
}

/// An engine error as the person at the command line should read it: each refused field with
/// why.
fn explain(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Invalid(problems) => anyhow::anyhow!(
            "{}",
            problems
                .iter()
                .map(|p| format!("--{}: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.into(),
    }
}
