//! The command line: what each subcommand and flag means. Parsing only; `main` runs them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use crate::bench;

#[derive(Parser)]
#[command(name = "nurture", version, about = "B2B lead-nurturing marketing automation engine")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the REST API (SQLite in the working directory unless told otherwise).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations.
    Migrate(DbArgs),
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Manage the people who sign in to the console (admins, marketers, SDRs).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Work with leads.
    Leads {
        #[command(subcommand)]
        command: LeadsCommand,
    },
    /// What campaigns and messages did: sent, delivered, opens, clicks, bounces, unsubscribes
    /// and rates, by step and by day (tables, or CSV with --csv).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
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
pub struct DbArgs {
    /// `sqlite://nurture.db` (the embedded default) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://nurture.db")]
    pub database_url: String,
}

/// Where the playbook is when `--playbook` is not given.
pub const DEFAULT_PLAYBOOK: &str = "campaigns/";

#[derive(Args, Clone)]
pub struct PlaybookArgs {
    /// The playbook directory (Rules, Segments, Campaigns, Queues as YAML).
    #[arg(long, env = "NURTURE_PLAYBOOK", default_value = DEFAULT_PLAYBOOK)]
    pub playbook: PathBuf,
    #[command(flatten)]
    pub templates: TemplatesArgs,
}

#[derive(Args, Clone)]
pub struct TemplatesArgs {
    /// The templates directory (`NAME.hbs`, `NAME.subject.hbs`, `partials/`, `en/`, …). When it
    /// is not given and `templates/` is not here, the `templates/` beside the playbook directory.
    #[arg(long, env = "NURTURE_TEMPLATES")]
    pub templates: Option<PathBuf>,
}

impl TemplatesArgs {
    /// The directory to use for a playbook in `playbook`.
    pub fn dir(&self, playbook: &std::path::Path) -> PathBuf {
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
pub struct ServeArgs {
    #[arg(long, env = "NURTURE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub db: DbArgs,
    /// What runs is the database's latest deployment; on a database with none, the playbook
    /// directory is deployed. Given explicitly, `--playbook` deploys that directory at start.
    #[command(flatten)]
    pub playbook: PlaybookArgs,
    /// Deploy `--playbook` even when that retires campaigns or ends running enrollments
    /// (without it, `serve` prints what would happen and refuses to start).
    #[arg(long, env = "NURTURE_ACCEPT_WARNINGS")]
    pub accept_warnings: bool,
    /// Base of tracking and unsubscribe links.
    #[arg(long, env = "NURTURE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// Requests a second each API key may make (bursts of twice that); beyond: 429 with
    /// Retry-After. 0: no limit.
    #[arg(long, env = "NURTURE_RATE_LIMIT", default_value_t = nurture_api::DEFAULT_RATE_LIMIT)]
    pub rate_limit: u32,
    /// Send mail over SMTP (used by the campaign engine).
    #[arg(long, env = "NURTURE_SMTP_URL", conflicts_with = "outbox")]
    pub smtp_url: Option<String>,
    /// Write mail as .eml files here instead (used by the campaign engine).
    #[arg(long, env = "NURTURE_OUTBOX")]
    pub outbox: Option<PathBuf>,
    /// The sender of campaign e-mail: `Name <address>`.
    #[arg(long, env = "NURTURE_FROM", default_value = "nurture <nurture@localhost>")]
    pub from: String,
    /// SMTP connections kept open (and messages on the wire at once).
    #[arg(long, env = "NURTURE_SMTP_POOL", default_value_t = 8)]
    pub smtp_pool: u32,
    /// Sign campaign e-mail with DKIM: the private key file (RSA in PKCS#1 PEM, or an Ed25519
    /// key as base64). Publish the public key at SELECTOR._domainkey.DOMAIN.
    #[arg(long, env = "NURTURE_DKIM_KEY")]
    pub dkim_key: Option<PathBuf>,
    /// The DKIM selector.
    #[arg(long, env = "NURTURE_DKIM_SELECTOR", default_value = "nurture")]
    pub dkim_selector: String,
    /// The signing domain (`d=`); by default the domain of --from.
    #[arg(long, env = "NURTURE_DKIM_DOMAIN")]
    pub dkim_domain: Option<String>,
    /// E-mails a second in all (0: no limit). Size --smtp-pool to the relay's concurrency.
    #[arg(long, env = "NURTURE_SEND_RATE", default_value_t = 0)]
    pub send_rate: u32,
    /// E-mails a second to one recipient domain, e.g. `qq.com=10`; repeat for more domains.
    #[arg(long = "domain-rate", value_parser = nurture_engine::mail::rate::parse_domain_rate)]
    pub domain_rates: Vec<(String, u32)>,
    /// E-mails a second to each other recipient domain (0: no limit).
    #[arg(long, env = "NURTURE_DOMAIN_RATE_DEFAULT", default_value_t = 0)]
    pub domain_rate_default: u32,
    /// Warm-up of a new sending domain: e-mails the first day and the daily growth, e.g.
    /// `200/d,1.5x` or `{start: 200/d, growth: 1.5x}`. Mail beyond the day's allowance waits
    /// in the outbox for the next day.
    #[arg(long, env = "NURTURE_WARMUP")]
    pub warmup: Option<nurture_engine::mail::rate::Warmup>,
    /// `system` (default) or `manual` (time moves only when told; demos and tests).
    #[arg(long, env = "NURTURE_CLOCK", value_enum, default_value_t = ClockKind::System)]
    pub clock: ClockKind,
    /// The WeChat Official Account that sends `channel: wechat` template messages.
    #[arg(long, env = "NURTURE_WECHAT_APPID", requires = "wechat_secret")]
    pub wechat_appid: Option<String>,
    #[arg(
        long,
        env = "NURTURE_WECHAT_SECRET",
        requires = "wechat_appid",
        hide_env_values = true
    )]
    pub wechat_secret: Option<String>,
    /// The Official Account API (a gateway or a test server may stand in).
    #[arg(long, env = "NURTURE_WECHAT_API_URL", default_value = nurture_engine::wechat::DEFAULT_API_URL)]
    pub wechat_api_url: String,
    /// Let webhooks reach this network (CIDR, e.g. `10.20.0.0/16`, or one address), for a CRM
    /// on your own network; repeat for more. Without it, webhooks go to public addresses only.
    #[arg(
        long = "webhook-allow-network",
        env = "NURTURE_WEBHOOK_ALLOW_NETWORK",
        value_delimiter = ',',
        value_name = "CIDR",
        value_parser = nurture_engine::webhook::reach::parse_network)]
    pub webhook_allow_network: Vec<nurture_engine::webhook::reach::IpNet>,
}

#[derive(Subcommand)]
pub enum ApikeyCommand {
    /// Create a key; it is printed once, alone on the last line, and only its hash is stored.
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List every key (id, name, role, created, revoked); keys themselves are never shown.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key (by id), or every key with a name: within a second it works on no server
    /// of the database.
    Revoke {
        #[command(flatten)]
        which: WhichKey,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace a key with a new one of the same name and role (printed once, alone on the
    /// last line); the old one is revoked.
    Rotate {
        #[command(flatten)]
        which: WhichKey,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Invite a person: prints a one-time link (valid 72 hours) where they set their password.
    Create {
        #[arg(long)]
        email: String,
        /// admin, marketer or sdr.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// List every user (e-mail, role, whether a password is set, deactivated).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// A new set-password link for a user who forgot theirs (the old password works until it
    /// is used).
    Reset {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Deactivate a user: they cannot sign in, and their sessions end at once.
    Deactivate {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// The database, and the server's public URL the set-password link starts with.
#[derive(Args, Clone)]
pub struct LinkArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The console's address as people reach it (`serve --public-url`).
    #[arg(long, env = "NURTURE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
}

/// A key by `--id`, or by `--name`.
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
pub struct WhichKey {
    /// The key's id (`nurture apikey list`).
    #[arg(long)]
    pub id: Option<i64>,
    /// The key's name.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Subcommand)]
pub enum LeadsCommand {
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
pub enum ReportCommand {
    /// A campaign's messages by step and by day, and its flow (`nurture report campaign
    /// industry-drip --since 30d`).
    Campaign {
        /// The campaign's id.
        id: String,
        #[command(flatten)]
        window: ReportWindowArgs,
    },
    /// One template's messages, in every campaign step that sends it, by day.
    Message {
        /// The template's name (`welcome`).
        template: String,
        #[command(flatten)]
        window: ReportWindowArgs,
    },
    /// What became of a queue's handoffs by day, per member, and the reasons for rejections
    /// (`nurture report queue sdr --since 30d`).
    Queue {
        /// The queue's name (`sdr`).
        queue: String,
        #[command(flatten)]
        window: ReportWindowArgs,
    },
}

#[derive(Args, Clone)]
pub struct ReportWindowArgs {
    /// Whole days back from --to: `30d`, `12w` (default 30 days).
    #[arg(long)]
    pub since: Option<String>,
    /// The first day (2026-11-01), instead of --since.
    #[arg(long)]
    pub from: Option<String>,
    /// The last day, included (default: today).
    #[arg(long)]
    pub to: Option<String>,
    /// `day` or `week`.
    #[arg(long, default_value = "day")]
    pub by: String,
    /// The IANA time zone days are counted in (default: the Rules' time zone).
    #[arg(long)]
    pub tz: Option<String>,
    /// Print CSV (a line per day, step, version, template, channel and language) instead of tables.
    #[arg(long)]
    pub csv: bool,
    /// What a campaign's split arms are compared on: open, click or handoff.
    #[arg(long, default_value = "open")]
    pub rate: String,
    /// A campaign's conversions: outcomes credited within this many days of a step reaching
    /// the lead: 1d, 3d, 7d, 14d, 30d (the default), 60d or 90d.
    #[arg(long)]
    pub window: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub playbook: PlaybookArgs,
}

#[derive(Subcommand)]
pub enum PlaybookCommand {
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
    /// Write the deployed playbook and templates to DIR/campaigns/ and DIR/templates/, so that
    /// what runs can go back into version control. Files there that the deployment does not
    /// hold are listed and left alone.
    Pull {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// This deployment (`GET /v1/deployments` lists them) instead of the latest.
        #[arg(long)]
        deployment: Option<i64>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    Playbook(bench::PlaybookOptions),
    Ingest(bench::IngestOptions),
    Claim(bench::claim::Options),
    Console(bench::console::Options),
    E2e(bench::E2eOptions),
    Dispatch(bench::DispatchOptions),
    Wake(bench::wake::Options),
    Engine(bench::engine::Options),
    /// The reports of `/v1/reports` over 90 days of counters (p50/p99 per report).
    Report(bench::report::Options),
    /// Page views through `POST /t/events` from concurrent browsers (page views/s, p50/p99).
    Track(bench::track::Options),
}

/// What time `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockKind {
    /// The system's clock.
    System,
    /// Time moves only by `POST /v1/admin/clock/advance`.
    Manual,
}
