//! `nurture`: the one binary. Subcommands serve the API, migrate the database, create API
//! keys, import leads, validate the playbook and benchmark ingestion.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;

/// The process allocator. See the commit that added it for the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod demo;
mod funnel;
mod import;
mod report;
mod simulate;

#[derive(Parser)]
#[command(name = "nurture", version, about = "B2B lead-nurturing marketing automation engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (SQLite in the working directory unless told otherwise).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations.
    Migrate(DbArgs),
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Work with leads.
    Leads {
        #[command(subcommand)]
        command: LeadsCommand,
    },
    /// Work with the playbook.
    Playbook {
        #[command(subcommand)]
        command: PlaybookCommand,
    },
    /// Run the shipped playbook for 30 virtual days over ~1,000 realistic leads (temporary SQLite,
    /// manual clock) and print each campaign's funnel; sample e-mails land in ./outbox/.
    Demo {
        #[arg(long, default_value_t = 1_000)]
        leads: usize,
        #[arg(long, default_value_t = 30)]
        days: i64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[command(flatten)]
        playbook: PlaybookArgs,
        /// Where the sample e-mails are written.
        #[arg(long, default_value = "outbox")]
        outbox: PathBuf,
    },
    /// What-if: run a playbook over leads from a CSV file for some days, with drawn opens,
    /// clicks and replies; no message leaves. Prints each campaign's funnel per step.
    Simulate {
        #[command(flatten)]
        playbook: PlaybookArgs,
        /// The leads, as `nurture leads import` reads them (a header row of lead fields).
        #[arg(long)]
        leads: PathBuf,
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// The share of delivered e-mails opened by a person.
        #[arg(long, default_value_t = 0.25)]
        open_rate: f64,
        /// The share of opened e-mails clicked.
        #[arg(long, default_value_t = 0.2)]
        click_rate: f64,
        /// The share of opened e-mails answered.
        #[arg(long, default_value_t = 0.02)]
        reply_rate: f64,
        /// An event every lead sends at the start, such as `registered` (repeatable).
        #[arg(long = "event")]
        events: Vec<String>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The report as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Measure the engine.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Args, Clone)]
struct DbArgs {
    /// `sqlite://nurture.db` (the embedded default) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://nurture.db")]
    database_url: String,
}

#[derive(Args, Clone)]
struct PlaybookArgs {
    /// The playbook directory (Rules, Segments, Campaigns, Queues as YAML).
    #[arg(long, env = "NURTURE_PLAYBOOK", default_value = "campaigns/")]
    playbook: PathBuf,
    #[command(flatten)]
    templates: TemplatesArgs,
}

#[derive(Args, Clone)]
struct TemplatesArgs {
    /// The templates directory (`NAME.hbs`, `NAME.subject.hbs`, `partials/`, `en/`, …). When it
    /// is not given and `templates/` is not here, the `templates/` beside the playbook directory.
    #[arg(long, env = "NURTURE_TEMPLATES")]
    templates: Option<PathBuf>,
}

impl TemplatesArgs {
    /// The directory to use for a playbook in `playbook`.
    fn dir(&self, playbook: &std::path::Path) -> PathBuf {
        if let Some(dir) = &self.templates {
            return dir.clone();
        }
        let here = PathBuf::from("templates/");
        if here.is_dir() {
            return here;
        }
        let beside = playbook
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(|parent| parent.join("templates")));
        match beside {
            Some(dir) if dir.is_dir() => dir,
            _ => here,
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "NURTURE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    playbook: PlaybookArgs,
    /// Base of tracking and unsubscribe links.
    #[arg(long, env = "NURTURE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    public_url: String,
    /// Requests a second each API key may make (bursts of twice that); beyond: 429 with
    /// Retry-After. 0: no limit.
    #[arg(long, env = "NURTURE_RATE_LIMIT", default_value_t = nurture_api::DEFAULT_RATE_LIMIT)]
    rate_limit: u32,
    /// Send mail over SMTP (used by the campaign engine).
    #[arg(long, env = "NURTURE_SMTP_URL", conflicts_with = "outbox")]
    smtp_url: Option<String>,
    /// Write mail as .eml files here instead (used by the campaign engine).
    #[arg(long, env = "NURTURE_OUTBOX")]
    outbox: Option<PathBuf>,
    /// The sender of campaign e-mail: `Name <address>`.
    #[arg(long, env = "NURTURE_FROM", default_value = "nurture <nurture@localhost>")]
    from: String,
    /// SMTP connections kept open (and messages on the wire at once).
    #[arg(long, env = "NURTURE_SMTP_POOL", default_value_t = 8)]
    smtp_pool: u32,
    /// Sign campaign e-mail with DKIM: the private key file (RSA in PKCS#1 PEM, or an Ed25519
    /// key as base64). Publish the public key at SELECTOR._domainkey.DOMAIN.
    #[arg(long, env = "NURTURE_DKIM_KEY")]
    dkim_key: Option<PathBuf>,
    /// The DKIM selector.
    #[arg(long, env = "NURTURE_DKIM_SELECTOR", default_value = "nurture")]
    dkim_selector: String,
    /// The signing domain (`d=`); by default the domain of --from.
    #[arg(long, env = "NURTURE_DKIM_DOMAIN")]
    dkim_domain: Option<String>,
    /// E-mails a second in all (0: no limit). Size --smtp-pool to the relay's concurrency.
    #[arg(long, env = "NURTURE_SEND_RATE", default_value_t = 0)]
    send_rate: u32,
    /// E-mails a second to one recipient domain, e.g. `qq.com=10`; repeat for more domains.
    #[arg(long = "domain-rate", value_parser = nurture_engine::mail::rate::parse_domain_rate)]
    domain_rates: Vec<(String, u32)>,
    /// E-mails a second to each other recipient domain (0: no limit).
    #[arg(long, env = "NURTURE_DOMAIN_RATE_DEFAULT", default_value_t = 0)]
    domain_rate_default: u32,
    /// Warm-up of a new sending domain: e-mails the first day and the daily growth, e.g.
    /// `200/d,1.5x` or `{start: 200/d, growth: 1.5x}`. Mail beyond the day's allowance waits
    /// in the outbox for the next day.
    #[arg(long, env = "NURTURE_WARMUP")]
    warmup: Option<nurture_engine::mail::rate::Warmup>,
    /// `system` (default) or `manual` (time moves only when told; demos and tests).
    #[arg(long, env = "NURTURE_CLOCK", value_enum, default_value_t = ClockKind::System)]
    clock: ClockKind,
    /// The WeChat Official Account that sends `channel: wechat` template messages.
    #[arg(long, env = "NURTURE_WECHAT_APPID", requires = "wechat_secret")]
    wechat_appid: Option<String>,
    #[arg(
        long,
        env = "NURTURE_WECHAT_SECRET",
        requires = "wechat_appid",
        hide_env_values = true
    )]
    wechat_secret: Option<String>,
    /// The Official Account API (a gateway or a test server may stand in).
    #[arg(long, env = "NURTURE_WECHAT_API_URL", default_value = nurture_engine::wechat::DEFAULT_API_URL)]
    wechat_api_url: String,
    /// Let webhooks reach this network (CIDR, e.g. `10.20.0.0/16`, or one address), for a CRM
    /// on your own network; repeat for more. Without it, webhooks go to public addresses only.
    #[arg(
        long = "webhook-allow-network",
        env = "NURTURE_WEBHOOK_ALLOW_NETWORK",
        value_delimiter = ',',
        value_name = "CIDR",
        value_parser = nurture_engine::webhook::reach::parse_network)]
    webhook_allow_network: Vec<nurture_engine::webhook::reach::IpNet>,
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key; it is printed once, alone on the last line, and only its hash is stored.
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum LeadsCommand {
    /// Import leads from a CSV file whose header row names lead fields.
    Import {
        file: PathBuf,
        /// Exit successfully even when some rows were rejected (they are still listed).
        #[arg(long)]
        allow_rejects: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        playbook: PlaybookArgs,
    },
}

#[derive(Subcommand)]
enum PlaybookCommand {
    /// Validate the playbook directory and print every error with file:line:column.
    Validate {
        #[arg(default_value = "campaigns/")]
        dir: PathBuf,
        #[command(flatten)]
        templates: TemplatesArgs,
        /// Also warn about running enrollments that deploying this playbook to this database
        /// would strand (as `POST /v1/playbook/validate` does); the database is only read.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Draw a campaign as DOT, Mermaid or SVG (drawn in-process; Graphviz is not needed).
    Graph {
        /// The campaign's id.
        id: String,
        #[arg(long, default_value = "svg")]
        format: nurture_engine::playbook::draw::Format,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        playbook: PlaybookArgs,
    },
    /// Print the JSON Schema of playbook files, for editors (see the README).
    Schema,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Validate a generated campaign of this many steps, as a deploy does, and print the time.
    Playbook {
        #[arg(long, default_value_t = 500)]
        steps: usize,
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Ingest synthetic behaviour events through the engine, rules applied, and print events/s.
    Ingest {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Defaults to a fresh SQLite file in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Events per batch (one request, one transaction).
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Concurrent clients, each sending batches for its own share of the leads; defaults to
        /// one per CPU core, as a server takes requests from several CRM connections at once.
        #[arg(long)]
        streams: Option<usize>,
    },
    /// SDRs claiming handoffs over HTTP: --sdrs concurrent clients pull a queue of --handoffs
    /// until it is empty; prints claims/s and p50/p99/max latency, and checks each went out once.
    Claim {
        #[arg(long, default_value_t = 50)]
        sdrs: usize,
        #[arg(long, default_value_t = 5_000)]
        handoffs: usize,
        /// Defaults to a fresh SQLite file in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The real `serve` end to end: N leads and N events over HTTP from concurrent clients,
    /// each event starting a drip whose first step sends an e-mail (W1), then the manual clock
    /// advanced past its 3-day wait (W2); prints e-mails/s reaching a local SMTP server.
    E2e {
        #[arg(long, default_value_t = 20_000)]
        leads: usize,
        /// `postgres://…` (a fresh database is made on that server, and dropped), or
        /// `sqlite://…`; defaults to a fresh SQLite file in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Leads or events per request.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// The server's SMTP connections (`serve --smtp-pool`).
        #[arg(long, default_value_t = 8)]
        smtp_pool: u32,
        /// Keep the PostgreSQL database the run made (its URL is printed), to look at its
        /// tables and plans afterwards; drop it by hand when done.
        #[arg(long)]
        keep_database: bool,
    },
    /// Send N e-mails over SMTP to a local sink through the dispatcher (render, send, record);
    /// print messages/s and CPU per message.
    Dispatch {
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        /// Defaults to a fresh SQLite file in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
        /// SMTP connections (and messages on the wire at once).
        #[arg(long, default_value_t = 16)]
        smtp_pool: u32,
        /// Messages claimed per dispatch pass.
        #[arg(long, default_value_t = 2_000)]
        batch: i64,
        /// E-mails a second in all (0: no limit).
        #[arg(long, default_value_t = 0)]
        send_rate: u32,
        /// The shipped templates the e-mails are rendered from.
        #[arg(long, default_value = "templates")]
        templates: PathBuf,
    },
    /// How late waits end on the system clock: leads enter at a steady rate over --spread
    /// seconds, each waits --wait seconds; prints p50/p90/p99/max lateness.
    Wake {
        #[arg(long, default_value_t = 20_000)]
        leads: usize,
        /// Defaults to a fresh SQLite file in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 20)]
        spread: u64,
        #[arg(long, default_value_t = 5)]
        wait: u64,
    },
    /// Run the campaign engine over N leads: W1 (first touch), the dispatcher's rendering, and
    /// W2 (waits end, branch on opened, next send); print steps/s, e-mails/s and peak RSS.
    Engine {
        #[arg(long, default_value_t = 100_000)]
        leads: usize,
        /// Defaults to a fresh SQLite file in a temporary directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Leads per transaction.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Concurrent engine workers; defaults to one per CPU core.
        #[arg(long)]
        workers: Option<usize>,
        /// The shipped templates the e-mails are rendered from.
        #[arg(long, default_value = "templates")]
        templates: PathBuf,
        /// The storage floor script (`floor.sh`), run with the same N; its figures and the ratio
        /// to their median are reported.
        #[arg(long)]
        floor: Option<PathBuf>,
        /// How many times the floor script runs (it swings more from run to run than the engine).
        #[arg(long, default_value_t = 3)]
        floor_runs: usize,
    },
}

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
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(db) => {
            open_store(&db.database_url).await?;
            println!("Migrations applied to {}.", db.database_url);
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Create { role, name, db },
        } => {
            let role: nurture_engine::access::Role = role.parse().map_err(anyhow::Error::msg)?;
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let store = open_store(&db.database_url).await?;
            let key = format!("nurt_{}", hex_key());
            store
                .create_api_key(
                    name.trim(),
                    role,
                    &nurture_engine::access::key_hash(&key),
                    chrono::Utc::now(),
                )
                .await
                .context("storing the API key")?;
            println!(
                "Created a {} key named {:?}. It is shown only now; store it safely:",
                role.as_str(),
                name.trim()
            );
            println!("{key}");
            Ok(())
        }
        Command::Leads {
            command:
                LeadsCommand::Import {
                    file,
                    allow_rejects,
                    db,
                    playbook,
                },
        } => {
            let engine = build_engine(
                &db.database_url,
                &playbook,
                false,
                Arc::new(nurture_engine::clock::SystemClock),
            )
            .await?;
            import::run(&engine, &file, allow_rejects).await
        }
        Command::Playbook { command } => playbook_command(command).await,
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
        Command::Bench {
            command: BenchCommand::Playbook { steps, runs },
        } => bench::playbook(steps, runs),
        Command::Bench {
            command:
                BenchCommand::Ingest {
                    events,
                    database_url,
                    batch,
                    streams,
                },
        } => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            bench::ingest(events, database_url, batch, streams.unwrap_or(cores)).await
        }
        Command::Bench {
            command:
                BenchCommand::Claim {
                    sdrs,
                    handoffs,
                    database_url,
                },
        } => {
            bench::claim::run(bench::claim::Options {
                sdrs,
                handoffs,
                database_url,
            })
            .await
        }
        Command::Bench {
            command:
                BenchCommand::E2e {
                    leads,
                    database_url,
                    clients,
                    batch,
                    smtp_pool,
                    keep_database,
                },
        } => {
            bench::e2e::run(bench::e2e::Options {
                leads,
                database_url,
                clients,
                batch,
                smtp_pool,
                keep_database,
            })
            .await
        }
        Command::Bench {
            command:
                BenchCommand::Dispatch {
                    messages,
                    database_url,
                    smtp_pool,
                    batch,
                    send_rate,
                    templates,
                },
        } => {
            bench::dispatch::run(bench::dispatch::Options {
                messages,
                database_url,
                pool: smtp_pool,
                batch,
                send_rate,
                templates,
            })
            .await
        }
        Command::Bench {
            command:
                BenchCommand::Wake {
                    leads,
                    database_url,
                    spread,
                    wait,
                },
        } => {
            bench::wake::run(bench::wake::Options {
                leads,
                database_url,
                spread,
                wait,
            })
            .await
        }
        Command::Bench {
            command:
                BenchCommand::Engine {
                    leads,
                    database_url,
                    batch,
                    workers,
                    templates,
                    floor,
                    floor_runs,
                },
        } => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            bench::engine::run(bench::engine::Options {
                leads,
                database_url,
                batch,
                workers: workers.unwrap_or(cores),
                templates,
                floor,
                floor_runs,
            })
            .await
        }
    }
}

/// `nurture playbook …`: validation, pictures and the editor schema. No database is needed,
/// unless validation is asked to look at one.
async fn playbook_command(command: PlaybookCommand) -> Result<()> {
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
            let picture = draw::draw(campaign, format, None).map_err(anyhow::Error::msg)?;
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
    }
}

/// The dispatcher: sends pending messages (and notifications to the team) as they come. Idle,
/// it wakes when a transaction queues mail (in this process, or on PostgreSQL in any process
/// on the database), and every half second for retries and deferred sends falling due.
async fn dispatch_messages(engine: Arc<nurture_engine::engine::Engine>, sender: nurture_engine::engine::Sender) {
    let queued = engine.store().mail_queued().await;
    loop {
        match engine.send_notifications(&sender, 50).await {
            Ok(0) => {}
            Ok(sent) => tracing::info!(sent, "Notifications sent."),
            Err(e) => tracing::warn!(error = %e, "Sending notifications failed; retrying."),
        }
        match engine.dispatch(&sender, nurture_engine::engine::DISPATCH_BATCH).await {
            Ok(report) if report.handled() > 0 => {
                tracing::info!(
                    sent = report.sent,
                    failed = report.failed,
                    retrying = report.retrying,
                    skipped = report.skipped,
                    "Messages dispatched."
                );
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Dispatching messages failed; retrying."),
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), queued.notified()).await;
    }
}

/// The webhook deliverer: sends due deliveries as they come, and polls every half second when
/// idle (retries fall due on the engine's clock).
async fn deliver_webhooks(engine: Arc<nurture_engine::engine::Engine>, client: nurture_engine::webhook::WebhookClient) {
    loop {
        match engine.deliver_webhooks(&client, 200).await {
            Ok(0) => {}
            Ok(attempted) => {
                tracing::debug!(attempted, "Webhook deliveries attempted.");
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "Delivering webhooks failed; retrying."),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Ctrl-C, or SIGTERM from a service manager: stop taking requests and finish those under way.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("Shutting down.");
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

fn hex_key() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The warnings about running enrollments in the database at `url` that deploying `playbook`
/// would strand. The database is read, not created or migrated.
async fn stranded_enrollments(
    url: &str,
    playbook: &nurture_engine::playbook::Playbook,
) -> Result<Vec<nurture_engine::playbook::Issue>> {
    let missing =
        nurture_engine::store::missing_file(url).with_context(|| format!("reading the database URL {url}"))?;
    if let Some(file) = missing {
        bail!(
            "there is no database at {}; give --database-url the database `nurture serve` uses",
            file.display()
        );
    }
    let store = nurture_engine::store::connect(url)
        .await
        .with_context(|| format!("opening the database {url}"))?;
    let engine =
        nurture_engine::engine::Engine::new(store, Default::default(), Arc::new(nurture_engine::clock::SystemClock));
    engine.deploy_warnings(playbook).await.with_context(|| {
        format!(
            "reading the deployed campaigns and their enrollments from {url} (run `nurture migrate` if it is older)"
        )
    })
}

async fn open_store(url: &str) -> Result<Arc<dyn nurture_engine::store::Store>> {
    let store = nurture_engine::store::connect(url)
        .await
        .with_context(|| format!("opening the database {url}"))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// Loads the playbook (refusing it whole, with every error) and opens the store.
async fn build_engine(
    url: &str,
    args: &PlaybookArgs,
    explicit: bool,
    clock: Arc<dyn nurture_engine::clock::Clock>,
) -> Result<nurture_engine::engine::Engine> {
    let playbook = &args.playbook;
    let loaded = if playbook.exists() || explicit {
        let loaded = nurture_engine::playbook::Playbook::load_dir(playbook, &args.templates.dir(playbook))
            .map_err(|refused| anyhow::anyhow!("{refused}"))?;
        for warning in &loaded.warnings {
            tracing::warn!(%warning, "Playbook warning.");
        }
        loaded
    } else {
        tracing::warn!(playbook = %playbook.display(), "No playbook directory; running without rules.");
        Default::default()
    };
    let store = open_store(url).await?;
    Ok(nurture_engine::engine::Engine::new(store, loaded, clock))
}

/// What time `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClockKind {
    /// The system's clock.
    System,
    /// Time moves only by `POST /v1/admin/clock/advance`.
    Manual,
}

async fn serve(args: ServeArgs) -> Result<()> {
    let manual = args.clock == ClockKind::Manual;
    // Set to where it last stood once the database is open (see `resume_manual_clock`).
    let manual_clock = manual.then(|| nurture_engine::clock::ManualClock::new(chrono::DateTime::UNIX_EPOCH));
    let clock: Arc<dyn nurture_engine::clock::Clock> = match &manual_clock {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(nurture_engine::clock::SystemClock),
    };
    let explicit =
        std::env::var_os("NURTURE_PLAYBOOK").is_some() || std::env::args().any(|a| a.starts_with("--playbook"));
    let engine = Arc::new(build_engine(&args.db.database_url, &args.playbook, explicit, clock).await?);
    if let Some(clock) = &manual_clock {
        let now = engine
            .resume_manual_clock(clock, chrono::Utc::now())
            .await
            .context("reading where the manual clock stood")?;
        tracing::info!(%now, "Manual clock: time moves only by POST /v1/admin/clock/advance.");
    }
    let outbox = args.outbox.clone().unwrap_or_else(|| PathBuf::from("outbox"));
    let dkim = match &args.dkim_key {
        Some(path) => {
            let key =
                std::fs::read_to_string(path).with_context(|| format!("reading the DKIM key {}", path.display()))?;
            let domain = match &args.dkim_domain {
                Some(domain) => domain.clone(),
                None => from_domain(&args.from)
                    .with_context(|| format!("--from {:?} has no domain to sign for; give --dkim-domain", args.from))?,
            };
            let dkim = nurture_engine::mail::Dkim::new(&args.dkim_selector, &domain, &key)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--dkim-key {}", path.display()))?;
            Some(Arc::new(dkim))
        }
        None => None,
    };
    let mailer = nurture_engine::mail::mailer(args.smtp_url.as_deref(), &outbox, args.smtp_pool, dkim)
        .map_err(anyhow::Error::msg)?;
    let secret = engine
        .store()
        .setting("tracking_secret", &hex_key())
        .await
        .context("reading the tracking secret")?;
    let key = nurture_engine::tracking::TrackingKey::new(secret.as_bytes());
    let sender = nurture_engine::engine::Sender {
        mailer: mailer.clone(),
        from: args.from.clone(),
        public_url: args.public_url.clone(),
        key: key.clone(),
        concurrency: args.smtp_pool.max(1) as usize,
        wechat: match (&args.wechat_appid, &args.wechat_secret) {
            (Some(appid), Some(secret)) => Some(Arc::new(
                nurture_engine::wechat::Wechat::new(nurture_engine::wechat::WechatConfig {
                    api_url: args.wechat_api_url.clone(),
                    appid: appid.clone(),
                    secret: secret.clone(),
                })
                .map_err(anyhow::Error::msg)?,
            )),
            _ => None,
        },
        limits: Arc::new(nurture_engine::mail::rate::SendLimits::new(
            args.send_rate,
            &args.domain_rates,
            args.domain_rate_default,
            args.warmup,
        )),
    };
    tracing::info!(mail = %mailer.describe(), public_url = %args.public_url, "Sending campaign mail.");
    match &sender.wechat {
        Some(wechat) => tracing::info!(wechat = %wechat.describe(), "Sending WeChat template messages."),
        None => tracing::info!(
            "No WeChat Official Account configured: WeChat steps wait for one (--wechat-appid, --wechat-secret)."
        ),
    }
    tokio::spawn(dispatch_messages(engine.clone(), sender.clone()));
    let reach = nurture_engine::webhook::Reach::allowing(args.webhook_allow_network.clone());
    let webhooks = nurture_engine::webhook::WebhookClient::new(nurture_engine::webhook::ATTEMPT_TIMEOUT, reach.clone())
        .map_err(anyhow::Error::msg)?;
    tokio::spawn(deliver_webhooks(engine.clone(), webhooks));
    // Wall-clock upkeep, whatever the engine's clock: the planner's statistics follow the
    // tables as they grow.
    let keeping = engine.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            every.tick().await;
            match keeping.store().refresh_statistics().await {
                Ok(tables) if tables.is_empty() => {}
                Ok(tables) => tracing::debug!(?tables, "Planner statistics refreshed."),
                Err(e) => tracing::warn!(error = %e, "Refreshing planner statistics failed; it will be retried."),
            }
        }
    });
    if !manual {
        let decaying = engine.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                every.tick().await;
                match decaying.decay().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(leads = n, "Scores decayed."),
                    Err(e) => tracing::warn!(error = %e, "Score decay failed; it will be retried."),
                }
            }
        });
    }
    let deployed = engine
        .deploy_current()
        .await
        .context("recording the deployed campaigns")?;
    tracing::info!(
        created = ?deployed.created,
        changed = ?deployed.changed,
        unchanged = deployed.unchanged.len(),
        retired = ?deployed.retired,
        "Playbook deployed."
    );
    engine.enter_matching_after(&deployed);
    if !manual {
        // One runner per core: on SQLite one decides its next pass while another writes; on
        // PostgreSQL they take different leads.
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        for _ in 0..cores {
            tokio::spawn(engine.clone().run_campaigns());
        }
    }
    let mut app = nurture_api::Application::bind(&args.listen, engine.clone())
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    if let Some(clock) = manual_clock {
        app = app.with_manual_clock(clock).with_sender(sender);
    }
    app = app
        .with_tracking(key)
        .with_public_url(&args.public_url)
        .with_webhook_reach(reach)
        .with_rate_limit(args.rate_limit);
    tracing::info!(listen = %args.listen, port = app.port(), backend = engine.store().backend(), "Serving the nurture API.");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("Stopped.");
    Ok(())
}

/// The domain of a `Name <user@domain>` sender.
fn from_domain(from: &str) -> Option<String> {
    let address = from.rsplit('<').next()?.trim_end_matches('>').trim();
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_owned())
}
