//! What the server and the API ask of the store through the engine: readiness, API keys,
//! settings, idempotent requests, planner statistics and the mail wake-up.

use super::*;
use crate::access::{ApiKey, Role};
use crate::audit::{AuditKind, By};
use crate::store::{ApiKeyRecord, Idempotency};

/// A key just made: shown once, never stored.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct NewApiKey {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The key itself: store it now, it is not shown again.
    pub key: String,
}

/// 256 random bits in hex: the stuff of API keys, webhook secrets and the tracking secret.
pub fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// A new API key: `nurt_` and [`random_hex`].
pub fn new_api_key() -> String {
    format!("nurt_{}", random_hex())
}

impl Engine {
    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Whether the database answers and every migration is applied.
    pub async fn ready(&self) -> EngineResult<bool> {
        Ok(self.store.ready().await?)
    }

    /// The unrevoked key whose hash this is ([`crate::access::key_hash`]).
    pub async fn api_key(&self, hash: &str) -> EngineResult<Option<ApiKey>> {
        Ok(self.store.find_api_key(hash).await?)
    }

    /// Creates a key; the key itself is in the answer only (its hash is stored).
    pub async fn create_api_key(&self, name: &str, role: Role, by: &By) -> EngineResult<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || crate::lead::text_problem(name).is_some() {
            return Err(EngineError::Invalid(vec![crate::lead::FieldError::new(
                "name",
                "a key needs a name people recognise (the SDR's name, the CRM's): printable, not empty",
            )]));
        }
        let key = new_api_key();
        let audit = by.did(
            AuditKind::KeyCreated,
            "",
            serde_json::json!({"name": name, "role": role.as_str()}),
        );
        let id = self
            .store
            .create_api_key(name, role, &crate::access::key_hash(&key), self.now(), &audit)
            .await?;
        Ok(NewApiKey {
            id,
            name: name.to_owned(),
            role,
            key,
        })
    }

    /// Every key, revoked ones too, oldest first.
    pub async fn api_keys(&self) -> EngineResult<Vec<ApiKeyRecord>> {
        Ok(self.store.api_keys().await?)
    }

    /// Revokes a key: it stops working within a second, on every server of the database.
    /// Revoking a revoked key changes nothing. The key as it is then.
    pub async fn revoke_api_key(&self, id: i64, by: &By) -> EngineResult<ApiKeyRecord> {
        let audit = by.did(AuditKind::KeyRevoked, id, serde_json::json!({}));
        self.store
            .revoke_api_key(id, self.now(), &audit)
            .await?
            .ok_or_else(|| EngineError::Missing(format!("no API key has id {id}")))
    }

    /// Replaces a key with a new one of the same name and role, and revokes the old one.
    pub async fn rotate_api_key(&self, id: i64, by: &By) -> EngineResult<NewApiKey> {
        let key = new_api_key();
        let hash = crate::access::key_hash(&key);
        let audit = by.did(AuditKind::KeyRotated, id, serde_json::json!({}));
        match self.store.rotate_api_key(id, &hash, self.now(), &audit).await? {
            Some(successor) => Ok(NewApiKey {
                id: successor.id,
                name: successor.name,
                role: successor.role,
                key,
            }),
            None if self.store.api_key(id).await?.is_some() => Err(EngineError::Conflict(format!(
                "API key {id} is revoked; create a new key instead (POST /v1/admin/keys)"
            ))),
            None => Err(EngineError::Missing(format!("no API key has id {id}"))),
        }
    }

    /// Recorded changes that pass `filter`, newest first: up to `limit` before `before` (an id).
    pub async fn audit_log(
        &self,
        filter: &crate::audit::AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> EngineResult<Vec<crate::audit::AuditEntry>> {
        Ok(self.store.audit_log(filter, before, limit).await?)
    }

    /// A setting generated once: `fresh` is stored if none is, and the stored value returned.
    pub async fn setting(&self, name: &str, fresh: &str) -> EngineResult<String> {
        Ok(self.store.setting(name, fresh).await?)
    }

    /// Begins an idempotent request: go ahead, replay the first answer, or refuse.
    pub async fn idempotency_begin(&self, scope: &str, key: &str, fingerprint: &str) -> EngineResult<Idempotency> {
        Ok(self
            .store
            .idempotency_begin(scope, key, fingerprint, self.now())
            .await?)
    }

    /// Records the answer of an idempotent request, for replays.
    pub async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, body: &str) -> EngineResult<()> {
        Ok(self.store.idempotency_finish(scope, key, status, body).await?)
    }

    /// Forgets a begun request that failed, so a retry can run it.
    pub async fn idempotency_abort(&self, scope: &str, key: &str) -> EngineResult<()> {
        Ok(self.store.idempotency_abort(scope, key).await?)
    }

    /// What waits for the engine now (`/metrics`): enrollments waiting, due wake-ups and
    /// messages not yet taken, webhook deliveries, open handoffs per queue.
    pub async fn backlog(&self) -> EngineResult<crate::store::Backlog> {
        Ok(self.store.backlog(self.now()).await?)
    }

    /// Brings the planner's statistics up to date on tables that changed a lot; returns the
    /// tables refreshed.
    pub async fn refresh_statistics(&self) -> EngineResult<Vec<String>> {
        Ok(self.store.refresh_statistics().await?)
    }

    /// Folds the report counters of hours that ended more than an hour ago (see
    /// `Store::fold_counters`), and rolls up the UTC days that did (see
    /// `ReportStore::roll_up_counters`); returns the key-hours folded into and day rows written.
    pub async fn fold_counters(&self) -> EngineResult<u64> {
        let hour = crate::report::hour_of(crate::clock::to_micros(self.now()));
        let folded = self.store.fold_counters(hour - 1, self.report_timezone()).await?;
        // A transaction that took its time before midnight commits after it: an hour's margin.
        let rolled = self.store.roll_up_counters((hour - 1).div_euclid(24)).await?;
        Ok(folded + rolled)
    }

    /// Notified when a transaction that queued messages commits (see `Store::mail_queued`).
    pub async fn mail_queued(&self) -> Arc<tokio::sync::Notify> {
        self.store.mail_queued().await
    }
}
