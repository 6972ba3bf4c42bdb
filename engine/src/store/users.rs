//! Console users and their sessions. The same SQL on both backends. Secrets are never stored:
//! a password as its argon2 PHC string, the set-password link and the session cookie as the
//! SHA-256 of their tokens.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Type};

use super::{audit, StoreError, StoreResult};
use crate::access::{Role, User};
use crate::audit::Change;
use crate::clock::from_micros;
use crate::store::sql::SqlStore;

/// The columns of a [`UserRow`], in its order.
const USER_COLUMNS: &str = "id, email, role, password_hash, language, created_at, deactivated_at";

/// Ends every session of user `$1` (a new password, a deactivation, "sign out everywhere").
const END_SESSIONS: &str = "DELETE FROM sessions WHERE user_id = $1";

/// A user as stored.
#[derive(sqlx::FromRow)]
pub struct UserRow {
    id: i64,
    email: String,
    role: String,
    password_hash: Option<String>,
    language: Option<String>,
    created_at: i64,
    deactivated_at: Option<i64>,
}

impl UserRow {
    fn user(self) -> StoreResult<(User, Option<String>)> {
        let role: Role = self.role.parse().map_err(StoreError::Corrupt)?;
        Ok((
            User {
                id: self.id,
                email: self.email,
                role,
                language: self.language,
                created_at: from_micros(self.created_at),
                deactivated_at: self.deactivated_at.map(from_micros),
                has_password: self.password_hash.is_some(),
            },
            self.password_hash,
        ))
    }
}

/// A session's user, with the CSRF token of its forms.
#[derive(sqlx::FromRow)]
pub struct SessionRow {
    #[sqlx(flatten)]
    user: UserRow,
    csrf: String,
}

/// A new user: who, and the set-password link's token hash and expiry (microseconds).
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub role: Role,
    pub setup_hash: &'a str,
    pub setup_expires_at: i64,
}

/// Console users and sessions.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a user, recording `audit` about their id; `Conflict` when the e-mail is taken.
    async fn create_user(&self, user: &NewUser<'_>, now: i64, audit: &Change) -> StoreResult<User>;
    /// Every user, oldest first.
    async fn users(&self) -> StoreResult<Vec<User>>;
    /// The user with this e-mail, with their password's PHC string when one is set.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<(User, Option<String>)>>;
    /// Gives an active user a new set-password link (their password stays until it is used),
    /// recording `audit`; `None` when there is no such active user.
    async fn reset_user(
        &self,
        email: &str,
        setup_hash: &str,
        expires_at: i64,
        now: i64,
        audit: &Change,
    ) -> StoreResult<Option<User>>;
    /// Sets the password of the active user whose unexpired link has this hash, uses the link
    /// up and ends the user's sessions; `None` when no such link is open.
    async fn set_password(&self, setup_hash: &str, password_hash: &str, now: i64) -> StoreResult<Option<User>>;
    /// Deactivates a user and ends their sessions, recording `audit`; `None` when there is no
    /// such user. Deactivating a deactivated user changes and records nothing.
    async fn deactivate_user(&self, email: &str, now: i64, audit: &Change) -> StoreResult<Option<User>>;
    /// Opens a session for a user until `expires_at`.
    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The active user and CSRF token of an unexpired session.
    async fn session(&self, token_hash: &str, now: i64) -> StoreResult<Option<(User, String)>>;
    /// Ends one session.
    async fn end_session(&self, token_hash: &str) -> StoreResult<()>;
    /// Ends every session of a user; how many there were.
    async fn end_sessions(&self, user_id: i64) -> StoreResult<u64>;
}

#[async_trait]
impl<S, DB> UserStore for S
where
    S: SqlStore<DB = DB>,
    DB: super::sql::Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> UserRow: FromRow<'r, DB::Row>,
    for<'r> SessionRow: FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn create_user(&self, user: &NewUser<'_>, now: i64, change: &Change) -> StoreResult<User> {
        let mut tx = self.write_tx().await?;
        let row: UserRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO users (email, role, created_at, setup_hash, setup_expires_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {USER_COLUMNS}"
        )))
        .bind(user.email)
        .bind(user.role.as_str())
        .bind(now)
        .bind(user.setup_hash)
        .bind(user.setup_expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        let (created, _) = row.user()?;
        audit::insert::<DB>(&mut *tx, &[change.about(created.id)], now).await?;
        S::commit(tx).await?;
        Ok(created)
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users ORDER BY id")))
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(|r| r.user().map(|(u, _)| u)).collect()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<(User, Option<String>)>> {
        let row: Option<UserRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        )))
        .bind(email)
        .fetch_optional(self.pool())
        .await?;
        row.map(UserRow::user).transpose()
    }

    async fn reset_user(
        &self,
        email: &str,
        setup_hash: &str,
        expires_at: i64,
        now: i64,
        change: &Change,
    ) -> StoreResult<Option<User>> {
        let mut tx = self.write_tx().await?;
        let row: Option<UserRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE users SET setup_hash = $2, setup_expires_at = $3 WHERE email = $1 AND deactivated_at IS NULL \
             RETURNING {USER_COLUMNS}"
        )))
        .bind(email)
        .bind(setup_hash)
        .bind(expires_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (user, _) = row.user()?;
        audit::insert::<DB>(&mut *tx, &[change.about(user.id)], now).await?;
        S::commit(tx).await?;
        Ok(Some(user))
    }

    async fn set_password(&self, setup_hash: &str, password_hash: &str, now: i64) -> StoreResult<Option<User>> {
        let mut tx = self.write_tx().await?;
        let row: Option<UserRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE users SET password_hash = $2, setup_hash = NULL, setup_expires_at = NULL \
             WHERE setup_hash = $1 AND setup_expires_at > $3 AND deactivated_at IS NULL RETURNING {USER_COLUMNS}"
        )))
        .bind(setup_hash)
        .bind(password_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (user, _) = row.user()?;
        // A new password signs the user out everywhere.
        sqlx::query(END_SESSIONS).bind(user.id).execute(&mut *tx).await?;
        S::commit(tx).await?;
        Ok(Some(user))
    }

    async fn deactivate_user(&self, email: &str, now: i64, change: &Change) -> StoreResult<Option<User>> {
        let mut tx = self.write_tx().await?;
        let deactivated: Option<UserRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE users SET deactivated_at = $2, setup_hash = NULL, setup_expires_at = NULL \
             WHERE email = $1 AND deactivated_at IS NULL RETURNING {USER_COLUMNS}"
        )))
        .bind(email)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let row = match deactivated {
            Some(row) => {
                sqlx::query(END_SESSIONS).bind(row.id).execute(&mut *tx).await?;
                audit::insert::<DB>(&mut *tx, &[change.about(row.id)], now).await?;
                Some(row)
            }
            None => {
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
                )))
                .bind(email)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        S::commit(tx).await?;
        row.map(|r| r.user().map(|(u, _)| u)).transpose()
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn session(&self, token_hash: &str, now: i64) -> StoreResult<Option<(User, String)>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT u.id, u.email, u.role, u.password_hash, u.language, u.created_at, u.deactivated_at, s.csrf \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.deactivated_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.user.user()?.0, r.csrf))).transpose()
    }

    async fn end_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn end_sessions(&self, user_id: i64) -> StoreResult<u64> {
        let done = sqlx::query(END_SESSIONS).bind(user_id).execute(self.pool()).await?;
        Ok(<DB as super::sql::Dialect>::rows_affected(&done))
    }
}
