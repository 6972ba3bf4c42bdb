//! `nurture`: the one binary. Subcommands serve the API, migrate the database, create API
//! keys, import leads, validate the playbook and benchmark ingestion.

use anyhow::Result;
use clap::Parser;
use std::sync::Arc;

use cli::{BenchCommand, Cli, Command, LeadsCommand};

/// The process allocator. See the commit that added it for the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod builtin;
mod cli;
mod commands;
mod demo;
mod deployments;
mod funnel;
mod import;
mod report;
mod reports;
mod serve;
mod simulate;
mod users;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(*args).await,
        Command::Migrate(db) => {
            commands::open_store(&db.database_url).await?;
            println!("Migrations applied to {}.", db.database_url);
            Ok(())
        }
        Command::Apikey { command } => commands::api_keys(command).await,
        Command::User { command } => users::users(command).await,
        Command::Report { command } => reports::run(command).await,
        Command::Leads {
            command:
                LeadsCommand::Import {
                    file,
                    allow_rejects,
                    db,
                    playbook,
                },
        } => {
            let engine = deployments::engine(
                &db.database_url,
                &playbook,
                Arc::new(nurture_engine::clock::SystemClock),
            )
            .await?;
            import::run(&engine, &file, allow_rejects).await
        }
        Command::Playbook { command } => commands::playbook(command).await,
        Command::Demo {
            leads,
            days,
            seed,
            playbook,
            outbox,
        } => {
            let templates = playbook.templates.dir(&playbook.playbook);
            demo::run(leads, days, seed, &playbook.playbook, &templates, &outbox).await
        }
        Command::Simulate {
            playbook,
            leads,
            days,
            open_rate,
            click_rate,
            reply_rate,
            events,
            seed,
            json,
        } => {
            let templates = playbook.templates.dir(&playbook.playbook);
            simulate::run(simulate::Options {
                playbook: playbook.playbook,
                templates,
                leads,
                days,
                open_rate,
                click_rate,
                reply_rate,
                events,
                seed,
                json,
            })
            .await
        }
        Command::Bench { command } => match command {
            BenchCommand::Playbook(options) => bench::playbook(options),
            BenchCommand::Ingest(options) => bench::ingest(options).await,
            BenchCommand::Claim(options) => bench::claim::run(options).await,
            BenchCommand::Console(options) => bench::console::run(options).await,
            BenchCommand::E2e(options) => bench::e2e(options).await,
            BenchCommand::Dispatch(options) => bench::dispatch(options).await,
            BenchCommand::Wake(options) => bench::wake::run(options).await,
            BenchCommand::Engine(options) => bench::engine::run(options).await,
            BenchCommand::Report(options) => bench::report::run(options).await,
            BenchCommand::Track(options) => bench::track::run(options).await,
        },
    }
}

/// The error and its causes, each said once: database drivers often repeat their cause in
/// their own message.
fn explain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
