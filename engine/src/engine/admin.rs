//! What the server and the API ask of the store through the engine: readiness, API keys,
//! settings, idempotent requests, planner statistics and the mail wake-up.

use super::*;
use crate::access::ApiKey;
use crate::store::Idempotency;

impl Engine {
    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Whether the database answers and every migration is applied.
    pub async fn ready(&self) -> EngineResult<bool> {
        Ok(self.store.ready().await?)
    }

    /// The key whose hash this is ([`crate::access::key_hash`]).
    pub async fn api_key(&self, hash: &str) -> EngineResult<Option<ApiKey>> {
        Ok(self.store.find_api_key(hash).await?)
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

    /// Brings the planner's statistics up to date on tables that changed a lot; returns the
    /// tables refreshed.
    pub async fn refresh_statistics(&self) -> EngineResult<Vec<String>> {
        Ok(self.store.refresh_statistics().await?)
    }

    /// Notified when a transaction that queued messages commits (see `Store::mail_queued`).
    pub async fn mail_queued(&self) -> Arc<tokio::sync::Notify> {
        self.store.mail_queued().await
    }
}
