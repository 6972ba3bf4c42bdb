//! Webhooks to the CRM: subscriptions, and the deliverer that sends the durable outbox the
//! write transactions fill (see `handoffs.rs`), retrying with exponential backoff for 24 hours.

use chrono::Duration;
use futures_util::stream::{self, StreamExt};
use sha2::Digest;

use super::{Engine, EngineError, EngineResult};
use crate::audit::{AuditKind, By};
use crate::clock::{from_micros, to_micros};
use crate::lead::FieldError;
use crate::store::handoffs::{Delivery, DeliveryOutcome, PendingDelivery, Webhook};
use crate::webhook::{check_url, sign, Post, Reach, WebhookSender};

/// How long a delivery is retried before it is given up.
pub const RETRY_FOR: Duration = Duration::hours(24);
/// Deliveries in flight at once.
pub const CONCURRENCY: usize = 16;

/// When to try again after `attempts` attempts: 30 s, 1, 2, 4, 8 minutes, then every 10
/// minutes (so a receiver that comes back is caught up soon), with a fixed jitter per delivery
/// (±20%) so that retries spread out.
pub fn backoff(delivery: &str, attempts: i64) -> Duration {
    let base = (30i64 << (attempts - 1).clamp(0, 5)).min(600);
    let digest = sha2::Sha256::digest(format!("{delivery}/{attempts}").as_bytes());
    let spread = i64::from(digest[0]) * 40 / 255 - 20;
    Duration::seconds(base + base * spread / 100)
}

/// A new subscription, checked.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    pub secret: Option<String>,
}

impl Engine {
    /// Subscribes a URL to event types. `own` are this server's origins (`host:port`), which a
    /// subscription may not point at, nor at an address `reach` refuses. Without a secret, one
    /// is generated (and returned once).
    pub async fn create_webhook(
        &self,
        input: NewWebhook,
        own: &[(String, u16)],
        reach: &Reach,
        by: &By,
    ) -> EngineResult<Webhook> {
        let mut problems = Vec::new();
        let mut url = check_url(&input.url, own, reach)
            .map_err(|e| problems.push(FieldError::new("url", e)))
            .ok();
        // A name that resolves only inside is refused now, to say so at once; a name that does
        // not resolve yet is accepted (each delivery resolves it again, and checks again).
        if let Some((host, port)) = url.as_deref().and_then(crate::webhook::origin) {
            let lookup = tokio::time::timeout(std::time::Duration::from_secs(2), reach.resolve(&host, port)).await;
            if let Ok(Err(why @ crate::webhook::reach::Unreachable::Resolved(..))) = lookup {
                problems.push(FieldError::new("url", why.to_string()));
                url = None;
            }
        }
        if input.events.is_empty() {
            problems.push(FieldError::new(
                "events",
                format!(
                    "name at least one event type: {} (or \"*\")",
                    super::WEBHOOK_EVENTS.join(", ")
                ),
            ));
        }
        let unknown = super::unknown_events(&input.events);
        if !unknown.is_empty() {
            problems.push(FieldError::new(
                "events",
                format!(
                    "unknown event types {}; they are {} (or \"*\" for all)",
                    unknown.join(", "),
                    super::WEBHOOK_EVENTS.join(", ")
                ),
            ));
        }
        if input.secret.as_deref().is_some_and(|s| s.len() < 16 || s.len() > 256) {
            problems.push(FieldError::new(
                "secret",
                "must be 16 to 256 characters (or leave it out to have one made)",
            ));
        } else if let Some(problem) = input.secret.as_deref().and_then(crate::lead::text_problem) {
            problems.push(FieldError::new("secret", problem));
        }
        let Some(url) = url.filter(|_| problems.is_empty()) else {
            return Err(EngineError::Invalid(problems));
        };
        let secret = input.secret.unwrap_or_else(|| format!("whsec_{}", super::random_hex()));
        let mut events = input.events;
        events.sort();
        events.dedup();
        let audit = by.did(
            AuditKind::WebhookCreated,
            "",
            serde_json::json!({"url": url, "events": events}),
        );
        Ok(self
            .store
            .create_webhook(&url, &events, &secret, to_micros(self.now()), &audit)
            .await?)
    }

    pub async fn webhooks(&self) -> EngineResult<Vec<Webhook>> {
        Ok(self.store.webhooks().await?)
    }

    pub async fn webhook(&self, id: i64) -> EngineResult<Webhook> {
        self.store
            .webhook(id)
            .await?
            .ok_or_else(|| EngineError::Missing(format!("no webhook {id}")))
    }

    pub async fn delete_webhook(&self, id: i64, by: &By) -> EngineResult<()> {
        let audit = by.did(AuditKind::WebhookDeleted, id, serde_json::json!({}));
        if self.store.delete_webhook(id, to_micros(self.now()), &audit).await? {
            Ok(())
        } else {
            Err(EngineError::Missing(format!("no webhook {id}")))
        }
    }

    /// A subscription's delivery log, newest first.
    pub async fn deliveries(&self, id: i64, before: Option<i64>, limit: i64) -> EngineResult<Vec<Delivery>> {
        self.webhook(id).await?;
        Ok(self.store.deliveries(id, before, limit).await?)
    }

    /// Sends the deliveries due at the engine's `now`, up to `limit`, at most [`CONCURRENCY`]
    /// at a time, and records each attempt. Returns how many were attempted.
    pub async fn deliver_webhooks(&self, sender: &dyn WebhookSender, limit: i64) -> EngineResult<usize> {
        let now = self.now();
        // A lease longer than an attempt can take: a crash makes the delivery due again then.
        let lease = now + Duration::minutes(2);
        let due = self
            .store
            .claim_deliveries(to_micros(now), to_micros(lease), limit)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let outcomes: Vec<DeliveryOutcome> = stream::iter(due)
            .map(|d| self.attempt(sender, d))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        self.store.finish_deliveries(&outcomes).await?;
        Ok(outcomes.len())
    }

    async fn attempt(&self, sender: &dyn WebhookSender, d: PendingDelivery) -> DeliveryOutcome {
        let now = self.now();
        let t = self.wall.now().timestamp();
        let attempted = if d.url.is_empty() {
            crate::webhook::Attempted {
                status: None,
                error: Some("the subscription is gone".into()),
                duration_ms: 0,
            }
        } else {
            sender
                .post(Post {
                    url: &d.url,
                    event: &d.event,
                    delivery: &d.delivery_id,
                    signature: sign(&d.secret, t, &d.payload),
                    body: &d.payload,
                })
                .await
        };
        let next = now + backoff(&d.delivery_id, d.attempts);
        let (status, next_attempt_at) = if attempted.delivered() {
            ("delivered", None)
        } else if d.url.is_empty() || next > from_micros(d.created_at) + RETRY_FOR {
            ("failed", None)
        } else {
            ("pending", Some(to_micros(next)))
        };
        if !attempted.delivered() {
            tracing::debug!(delivery = %d.delivery_id, url = %d.url, error = ?attempted.error, status, "Webhook delivery attempt failed.");
        }
        DeliveryOutcome {
            id: d.id,
            attempt: d.attempts,
            status,
            status_code: attempted.status.map(i64::from),
            error: attempted.error,
            at: to_micros(now),
            duration_ms: attempted.duration_ms,
            next_attempt_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_ten_minutes_and_spreads() {
        let secs: Vec<i64> = (1..=8).map(|a| backoff("dlv_x", a).num_seconds()).collect();
        for (a, s) in secs.iter().enumerate() {
            let base = (30i64 << a.min(5)).min(600);
            assert!((base * 8 / 10..=base * 12 / 10).contains(s), "attempt {}: {s} s", a + 1);
        }
        assert_ne!(backoff("dlv_a", 3), backoff("dlv_b", 3), "jitter differs per delivery");
    }
}
