//! `/metrics` shows what waits for the engine, read from the store: enrollments waiting, the
//! runner's and the dispatcher's lag, webhook deliveries not yet made, open handoffs per queue
//! and those past their SLA; both backends, on the manual clock (the test server runs no
//! dispatcher and no webhook deliverer, so what is queued stays queued).

use nurture_engine::access::Role;
use serde_json::json;

use crate::support::TestApp;

both_backends!(crate::support::spawn_app_on;
    metrics_show_what_waits_for_the_engine,
);

/// The value of the series `series` (name and labels, as written) in a scrape.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn advance(app: &TestApp, by: &str) {
    let moved = app
        .call("POST", "/v1/admin/clock/advance", Role::Admin, Some(json!({"by": by})))
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
}

async fn metrics_show_what_waits_for_the_engine(app: TestApp) {
    let text = app.metrics().await;
    for (series, expected) in [
        ("nurture_enrollments_waiting", 0.0),
        ("nurture_runner_lag_seconds", 0.0),
        ("nurture_outbox_pending", 0.0),
        ("nurture_outbox_lag_seconds", 0.0),
        ("nurture_webhooks_pending", 0.0),
        ("nurture_webhook_deliveries_failed_total", 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series}: {text}");
    }
    assert!(
        !text.contains("nurture_queue_open{") && !text.contains("nurture_sla_breaches_total"),
        "no queue has a handoff yet: {text}"
    );

    let subscribed = app
        .call(
            "POST",
            "/v1/webhooks",
            Role::Crm,
            Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.handed_off"]})),
        )
        .await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
    // Two people register: each gets the welcome e-mail (queued, due now) and waits two days.
    let li = app.register("li.wei@acme.example").await;
    app.register("mei@acme.example").await;
    advance(&app, "1m").await;
    app.hand_off(&li, "sales", "Asked for a quote").await;
    // Handed off, li leaves the welcome series (its exit_when): mei alone waits there; both
    // e-mails are still queued (the dispatcher checks an exit when it takes a message).
    let text = app.metrics().await;
    for (series, expected) in [
        ("nurture_enrollments_waiting", 1.0),
        ("nurture_runner_lag_seconds", 0.0),
        ("nurture_outbox_pending", 2.0),
        ("nurture_outbox_lag_seconds", 60.0),
        ("nurture_webhooks_pending", 1.0),
        (r#"nurture_queue_open{queue="sales"}"#, 1.0),
        (r#"nurture_queue_past_sla{queue="sales"}"#, 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series}: {text}");
    }

    // A day and an hour on: the sales SLA (24 h) has passed; the e-mails still wait.
    advance(&app, "25h").await;
    let text = app.metrics().await;
    for (series, expected) in [
        ("nurture_outbox_lag_seconds", 60.0 + 25.0 * 3600.0),
        (r#"nurture_queue_open{queue="sales"}"#, 1.0),
        (r#"nurture_queue_past_sla{queue="sales"}"#, 1.0),
        (r#"nurture_sla_breaches_total{queue="sales"}"#, 1.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series}: {text}");
    }

    // Paused, the welcome series holds mei's wake-up (due two days after she registered) on
    // purpose: no lag. Resumed, the wake-up is due and waits for the runner, which the test
    // server only runs when the clock moves.
    let paused = app
        .call("POST", "/v1/campaigns/welcome/pause", Role::Marketer, None)
        .await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    advance(&app, "1d").await;
    let text = app.metrics().await;
    assert_eq!(value(&text, "nurture_enrollments_waiting"), Some(1.0), "{text}");
    assert_eq!(value(&text, "nurture_runner_lag_seconds"), Some(0.0), "{text}");
    let resumed = app
        .call("POST", "/v1/campaigns/welcome/resume", Role::Marketer, None)
        .await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    let text = app.metrics().await;
    // Registered at 0, due at 2 d; now 1 m + 25 h + 1 d.
    let late = 60.0 + 49.0 * 3600.0 - 48.0 * 3600.0;
    assert_eq!(value(&text, "nurture_runner_lag_seconds"), Some(late), "{text}");
}
