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
    #[error("{0}")]
    Conflict(String),
    /// The caller's role allows the route, but not this use of it (someone else's resource).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => EngineError::Conflict(message),
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
            Err(EngineError::Conflict(message)) if attempt < 4 => {
                attempt += 1;
                tracing::debug!(attempt, conflict = %message, "Batch lost a race; retrying.");
            }
            other => return other,
        }
    }
}
