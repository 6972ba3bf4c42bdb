//! `nurture serve`: the API, the campaign runners, the dispatcher, the webhook deliverer and
//! the upkeep tasks, wired to one `Engine`.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{ClockKind, ServeArgs};

/// Long on purpose: the server's wiring in start-up order (store, playbook, clock, mail, tasks,
/// HTTP, shutdown), each step a few lines.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let manual = args.clock == ClockKind::Manual;
    // Set to where it last stood once the database is open (see `resume_manual_clock`).
    let manual_clock = manual.then(|| nurture_engine::clock::ManualClock::new(chrono::DateTime::UNIX_EPOCH));
    let clock: Arc<dyn nurture_engine::clock::Clock> = match &manual_clock {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(nurture_engine::clock::SystemClock),
    };
    let explicit =
        std::env::var_os("NURTURE_PLAYBOOK").is_some() || std::env::args().any(|a| a.starts_with("--playbook"));
    let start = crate::deployments::Start {
        url: &args.db.database_url,
        playbook: &args.playbook,
        explicit,
        accept_warnings: args.accept_warnings,
    };
    let (engine, deployed) = crate::deployments::start(start, clock).await?;
    let engine = Arc::new(engine);
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
        .setting("tracking_secret", &nurture_engine::engine::random_hex())
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
            match keeping.refresh_statistics().await {
                Ok(tables) if tables.is_empty() => {}
                Ok(tables) => tracing::debug!(?tables, "Planner statistics refreshed."),
                Err(e) => tracing::warn!(error = %e, "Refreshing planner statistics failed; it will be retried."),
            }
        }
    });
    // Every five minutes: finished hours' report counters folded into a row per key and hour
    // and per day of the report zone; anonymous visitors' page views past their keeping forgotten.
    let folding = engine.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            every.tick().await;
            match folding.fold_counters().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "Report counters folded."),
                Err(e) => tracing::warn!(error = %e, "Folding the report counters failed; it will be retried."),
            }
            match folding.forget_anonymous_visits().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(views = n, "Anonymous visitors' old page views forgotten."),
                Err(e) => tracing::warn!(error = %e, "Forgetting old anonymous page views failed; it will be retried."),
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
    if let Some(deployed) = &deployed {
        engine.enter_matching_after(&deployed.report);
    }
    tokio::spawn(follow_deployments(engine.clone()));
    if !manual {
        // One runner per core: on SQLite one decides its next pass while another writes; on
        // PostgreSQL they take different leads.
        for _ in 0..crate::commands::cores() {
            tokio::spawn(engine.clone().run_campaigns());
        }
    }
    let mut app = nurture_api::Application::bind(&args.listen, engine.clone())
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    app = app.with_mailer(sender.clone());
    if let Some(clock) = manual_clock {
        app = app.with_manual_clock(clock).with_sender(sender);
    }
    app = app
        .with_tracking(key)
        .with_public_url(&args.public_url)
        .with_webhook_reach(reach)
        .with_rate_limit(args.rate_limit);
    tracing::info!(listen = %args.listen, port = app.port(), backend = engine.backend(), "Serving the nurture API.");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("Stopped.");
    Ok(())
}

/// The dispatcher: sends pending messages (and notifications to the team) as they come. Idle,
/// it wakes when a transaction queues mail (in this process, or on PostgreSQL in any process
/// on the database), and every half second for retries and deferred sends falling due.
async fn dispatch_messages(engine: Arc<nurture_engine::engine::Engine>, sender: nurture_engine::engine::Sender) {
    let queued = engine.mail_queued().await;
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

/// The domain of a `Name <user@domain>` sender.
fn from_domain(from: &str) -> Option<String> {
    let address = from.rsplit('<').next()?.trim_end_matches('>').trim();
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_owned())
}

/// Puts in force a deployment another process on the same database made (PostgreSQL with
/// several `serve` processes): the latest deployment's id is looked at every two seconds.
async fn follow_deployments(engine: Arc<nurture_engine::engine::Engine>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        every.tick().await;
        match engine.resume_deployment().await {
            Ok(Some(id)) => tracing::info!(deployment = id, "Following a deployment made by another process."),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "Reading the latest deployment failed; it will be retried."),
        }
    }
}
