//! What a store call can fail with, sorted into what a caller can act on.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first (a unique key taken meanwhile); the caller may retry.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database did not answer: unreachable, shutting down, out of connections, or no
    /// connection free within the pool's wait. Nothing is known to have been written; the
    /// caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not as expected: {0}")]
    Corrupt(String),
    /// A journey pass decided in a snapshot found, when it came to write, that something
    /// committed since may have changed what it read (see `SqliteStore::begin_checked`). Nothing was
    /// written; the pass is decided again.
    #[error("the snapshot a pass was decided in is out of date")]
    Stale,
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if unavailable(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Database(error)
        }
    }
}

/// Whether an error means the database could not be reached (rather than that it refused
/// what was asked): I/O, TLS, pool wait and closed pool, and PostgreSQL's connection
/// exceptions (class 08), shutdowns and "too many connections" (57P01-57P03, 53300).
fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")),
        _ => false,
    }
}

impl StoreError {
    /// Maps unique-constraint violations, deadlocks and serialisation failures (PostgreSQL
    /// 40P01, 40001) to [`StoreError::Conflict`]: the transaction lost a race and may be retried.
    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            let raced = matches!(db.code().as_deref(), Some("40P01" | "40001"));
            if db.is_unique_violation() || raced {
                return StoreError::Conflict(db.message().to_owned());
            }
        }
        StoreError::from(error)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
