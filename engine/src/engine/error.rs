//! What an engine call can fail with, and the retry of a batch that lost a race.

use crate::lead::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    /// Something other than a lead that does not exist, said so.
    #[error("{0}")]
    Missing(String),
    /// A store failure passed on to callers other than the one that met it.
    #[error("{0}")]
    Failed(String),
    /// The request conflicts with the state it found (a paused campaign, an open handoff, a
    /// decision already made): the client must change something first. Never retried.
    #[error("{0}")]
    Conflict(String),
    /// The transaction lost a race with another writer (a unique key taken meanwhile, a
    /// deadlock); nothing was written and [`retrying`] runs the batch again.
    #[error("{0}")]
    Raced(String),
    /// The caller's role allows the route, but not this use of it (someone else's resource).
    #[error("{0}")]
    Forbidden(String),
    /// A server nurture relies on (the mail server) failed; the request may be retried.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => EngineError::Raced(message),
            other => EngineError::Store(other),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Runs a batch again when its transaction lost a race with another writer (a lead created by
/// both, a deadlock); everything it did was rolled back, so a retry is safe.
pub(super) async fn retrying<T, F, Fut>(mut work: F) -> EngineResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = EngineResult<T>>,
{
    let mut attempt = 0;
    loop {
        match work().await {
            Err(EngineError::Raced(message)) if attempt < 4 => {
                attempt += 1;
                tracing::debug!(attempt, conflict = %message, "Batch lost a race; retrying.");
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{retrying, EngineError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs `retrying` over work that always fails with `error` and says how often it ran.
    async fn attempts(error: fn() -> EngineError) -> usize {
        let runs = AtomicUsize::new(0);
        let _ = retrying(|| {
            runs.fetch_add(1, Ordering::Relaxed);
            async move { Err::<(), _>(error()) }
        })
        .await;
        runs.into_inner()
    }

    #[tokio::test]
    async fn a_lost_race_is_retried_and_a_client_conflict_is_not() {
        assert_eq!(attempts(|| EngineError::Raced("duplicate key".into())).await, 5);
        assert_eq!(attempts(|| EngineError::Conflict("campaign is paused".into())).await, 1);
        assert_eq!(attempts(|| EngineError::NotFound).await, 1);
    }
}
