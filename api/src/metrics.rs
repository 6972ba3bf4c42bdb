//! `GET /metrics`: Prometheus text format. Request counts and latencies by route (the matched
//! pattern, never the raw path, so that lead ids do not become labels), what ingestion and
//! upserts did, where the engine's time went, and what waits for it (read from the store when
//! scraped).

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::time::Instant;

use nurture_engine::report::MessageFigures;

use crate::AppState;

/// The server's metrics, in a registry of its own (one per server, so tests do not share).
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    events: IntCounterVec,
    leads: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "nurture_http_requests_total",
                "HTTP requests answered, by method, route and status.",
            ),
            &["method", "route", "status"],
        )
        .expect("a valid metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "nurture_http_request_duration_seconds",
                "Time to answer an HTTP request.",
            ),
            &["method", "route"],
        )
        .expect("a valid metric definition");
        let events = IntCounterVec::new(
            Opts::new(
                "nurture_events_total",
                "Behaviour events received, by outcome (accepted, duplicate, rejected).",
            ),
            &["outcome"],
        )
        .expect("a valid metric definition");
        let leads = IntCounterVec::new(
            Opts::new(
                "nurture_lead_upserts_total",
                "Lead upserts through the API, by outcome (created, updated, rejected).",
            ),
            &["outcome"],
        )
        .expect("a valid metric definition");
        for collector in [&requests, &events, &leads] {
            registry
                .register(Box::new(collector.clone()))
                .expect("metric names are unique");
        }
        registry
            .register(Box::new(latency.clone()))
            .expect("metric names are unique");
        Self {
            registry,
            requests,
            latency,
            events,
            leads,
        }
    }

    pub fn events(&self, accepted: usize, duplicates: usize, rejected: usize) {
        for (outcome, n) in [
            ("accepted", accepted),
            ("duplicate", duplicates),
            ("rejected", rejected),
        ] {
            self.events.with_label_values(&[outcome]).inc_by(n as u64);
        }
    }

    pub fn leads(&self, created: usize, updated: usize, rejected: usize) {
        for (outcome, n) in [("created", created), ("updated", updated), ("rejected", rejected)] {
            self.leads.with_label_values(&[outcome]).inc_by(n as u64);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .latency
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .inc();
    response
}

pub async fn render(State(state): State<AppState>) -> Response {
    let mut families = state.metrics.registry.gather();
    let phases = state.engine.phases();
    // The count before the times: a pass adds its time before its messages, so times read
    // after the count include every pass it counts.
    let dispatched = phases.dispatched();
    let seconds = phases
        .totals()
        .into_iter()
        .map(|(phase, spent)| counter(Some(("phase", phase.name())), spent.as_secs_f64()))
        .collect();
    families.push(counters(
        "nurture_engine_seconds_total",
        "Time the engine spent per phase of work: ingest, runner, dispatch (passes that found work), \
         and within dispatch claim, render, send and record (record overlaps send).",
        seconds,
    ));
    families.push(counters(
        "nurture_dispatched_messages_total",
        "Messages claimed by dispatch passes that have ended, whatever their outcome (sent, \
         failed, held back, skipped); counted after the pass's time is in \
         nurture_engine_seconds_total.",
        vec![counter(None, dispatched as f64)],
    ));
    let messages: Vec<Metric> = state
        .engine
        .message_totals()
        .iter()
        .flat_map(|(campaign, figures)| {
            MessageFigures::NAMES
                .iter()
                .zip(figures.to_array())
                .map(move |(outcome, n)| counter_of(&[("campaign", campaign), ("outcome", outcome)], n as f64))
        })
        .collect();
    if !messages.is_empty() {
        families.push(counters(
            "nurture_messages_total",
            "What this process recorded of campaign messages, per campaign and outcome: sent, failed, \
             skipped, bounced_hard, bounced_soft, complained, unsubscribed, opened and clicked (a message's \
             first human open or click), opens and clicks (every human one), opens_automated and \
             clicks_automated (mail proxies, link scanners). Each process counts its own; the reports \
             (/v1/reports) read everyone's.",
            messages,
        ));
    }
    let breaches: Vec<Metric> = state
        .engine
        .breach_totals()
        .iter()
        .map(|(queue, n)| counter_of(&[("queue", queue)], *n as f64))
        .collect();
    if !breaches.is_empty() {
        families.push(counters(
            "nurture_sla_breaches_total",
            "Handoffs left unclaimed past their queue's SLA, per queue, as this process's timers \
             recorded them (each breach once, by whichever process found it).",
            breaches,
        ));
    }
    // What waits, read from the store when scraped; a scrape while the database is away still
    // answers the process's own series.
    match state.engine.backlog().await {
        // A family with no series (no queue has a handoff) is left out: the encoder refuses it.
        Ok(backlog) => families.extend(
            backlog_families(&backlog, state.engine.now())
                .into_iter()
                .filter(|f| !f.get_metric().is_empty()),
        ),
        Err(e) => tracing::warn!(error = %e, "Reading the backlog for /metrics failed."),
    }
    match TextEncoder::new().encode_to_string(&families) {
        Ok(text) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => crate::error::ApiError::Internal(format!("encoding metrics: {e}")).into_response(),
    }
}

/// The backlog as gauges: how much waits, and for how long the oldest due item has waited
/// (0 when nothing due waits).
fn backlog_families(b: &nurture_engine::store::Backlog, now: chrono::DateTime<chrono::Utc>) -> Vec<MetricFamily> {
    let lag = |oldest: Option<chrono::DateTime<chrono::Utc>>| {
        oldest.map_or(0.0, |at| ((now - at).num_milliseconds().max(0) as f64) / 1000.0)
    };
    let one = |value: f64| vec![gauge(None, value)];
    let per_queue = |pick: fn(&(String, i64, i64)) -> i64| {
        b.queues
            .iter()
            .map(|q| gauge(Some(("queue", q.0.as_str())), pick(q) as f64))
            .collect()
    };
    vec![
        gauges(
            "nurture_enrollments_waiting",
            "Enrollments waiting at a step (a wait, a send window, an until).",
            one(b.waiting as f64),
        ),
        gauges(
            "nurture_runner_lag_seconds",
            "How long the oldest wake-up that is due has waited for the runner (0: none waits).",
            one(lag(b.oldest_due_wake)),
        ),
        gauges(
            "nurture_outbox_pending",
            "Messages waiting to be sent (due now or retried later).",
            one(b.outbox as f64),
        ),
        gauges(
            "nurture_outbox_lag_seconds",
            "How long the oldest message that is due has waited for the dispatcher (0: none waits).",
            one(lag(b.oldest_due_message)),
        ),
        gauges(
            "nurture_webhooks_pending",
            "Webhook deliveries not yet made (due now or retried later).",
            one(b.webhooks_pending as f64),
        ),
        counters(
            "nurture_webhook_deliveries_failed_total",
            "Webhook deliveries given up after a day of failed attempts.",
            vec![counter(None, b.webhooks_failed as f64)],
        ),
        gauges(
            "nurture_queue_open",
            "Open (unclaimed) handoffs, by queue.",
            per_queue(|q| q.1),
        ),
        gauges(
            "nurture_queue_past_sla",
            "Open handoffs past their queue's SLA, by queue.",
            per_queue(|q| q.2),
        ),
    ]
}

/// One value of a gauge, with its label if any.
fn gauge(label: Option<(&str, &str)>, value: f64) -> Metric {
    let mut gauge = prometheus::proto::Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::from_label(labels(label.as_slice()));
    metric.set_gauge(gauge);
    metric
}

/// A gauge family of these values.
fn gauges(name: &str, help: &str, values: Vec<Metric>) -> MetricFamily {
    family(name, help, MetricType::GAUGE, values)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).into());
            pair.set_value((*value).into());
            pair
        })
        .collect()
}

/// One value of a counter the engine keeps, read when scraped, with its label if any.
fn counter(label: Option<(&str, &str)>, value: f64) -> Metric {
    counter_of(label.as_slice(), value)
}

/// One value of a counter, with its labels.
fn counter_of(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut counter = Counter::default();
    counter.set_value(value);
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_counter(counter);
    metric
}

/// A counter family of these values.
fn counters(name: &str, help: &str, values: Vec<Metric>) -> MetricFamily {
    family(name, help, MetricType::COUNTER, values)
}

fn family(name: &str, help: &str, kind: MetricType, values: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.into());
    family.set_help(help.into());
    family.set_field_type(kind);
    family.set_metric(values);
    family
}
