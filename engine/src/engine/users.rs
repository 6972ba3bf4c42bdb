//! Console users: invited with a one-time link that sets their password, signed in with a
//! session, signed out one session or everywhere. Passwords are argon2id PHC strings, hashed off
//! the async runtime (a hash takes tens of milliseconds of CPU by design).

use super::*;
use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use crate::access::{key_hash, Role, User};
use crate::audit::{AuditKind, By};
use crate::clock::to_micros;
use crate::lead::{EmailAddress, FieldError};
use crate::store::{NewUser, StoreError};

/// How long a set-password link works.
pub const SETUP_LINK: chrono::Duration = chrono::Duration::hours(72);
/// How long a session lasts without signing in again.
pub const SESSION: chrono::Duration = chrono::Duration::days(14);
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// The longest password accepted (argon2 takes any length; a bound keeps requests cheap).
pub const MAX_PASSWORD: usize = 1_024;

/// A user invited or reset: the one-time token of their set-password link (shown once, stored
/// only as its hash).
#[derive(Debug, Clone)]
pub struct Invited {
    pub user: User,
    pub token: String,
}

/// A session opened: the cookie's token (stored only as its hash) and the CSRF token its forms
/// carry.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub token: String,
    pub csrf: String,
}

/// A password's hash, compared against when the e-mail is unknown, so that a sign-in takes the
/// same time whether or not the account exists.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_hex()).unwrap_or_default())
}

fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

impl Engine {
    /// Invites a person: a user of `role` (admin, marketer or SDR) whose set-password link
    /// works for [`SETUP_LINK`].
    pub async fn create_user(&self, email: &str, role: Role, by: &By) -> EngineResult<Invited> {
        let email = EmailAddress::parse(email)
            .map_err(|why| EngineError::Invalid(vec![FieldError::new("email", why)]))?
            .into_string();
        if role == Role::Crm {
            return Err(EngineError::Invalid(vec![FieldError::new(
                "role",
                "the CRM is a machine, not a person: give it an API key (nurture apikey create --role crm)",
            )]));
        }
        let token = random_hex();
        let now = self.now();
        let new = NewUser {
            email: &email,
            role,
            setup_hash: &key_hash(&token),
            setup_expires_at: to_micros(now + SETUP_LINK),
        };
        let audit = by.did(
            AuditKind::UserCreated,
            "",
            serde_json::json!({"email": email, "role": role.as_str()}),
        );
        match self.store.create_user(&new, to_micros(now), &audit).await {
            Ok(user) => Ok(Invited { user, token }),
            Err(StoreError::Conflict(_)) => Err(EngineError::Conflict(format!(
                "{email} is a user already; `nurture user reset --email {email}` makes them a new link"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Every user, deactivated ones too, oldest first.
    pub async fn users(&self) -> EngineResult<Vec<User>> {
        Ok(self.store.users().await?)
    }

    /// A new set-password link for an active user (a forgotten password); the old password
    /// works until the link is used.
    pub async fn reset_user(&self, email: &str, by: &By) -> EngineResult<Invited> {
        let email = email.trim().to_lowercase();
        let token = random_hex();
        let now = self.now();
        let audit = by.did(AuditKind::UserReset, "", serde_json::json!({"email": email}));
        let expires = to_micros(now + SETUP_LINK);
        match self
            .store
            .reset_user(&email, &key_hash(&token), expires, to_micros(now), &audit)
            .await?
        {
            Some(user) => Ok(Invited { user, token }),
            None => Err(EngineError::Missing(format!("no active user has the e-mail {email}"))),
        }
    }

    /// Deactivates a user: they can no longer sign in, and their sessions end at once.
    pub async fn deactivate_user(&self, email: &str, by: &By) -> EngineResult<User> {
        let email = email.trim().to_lowercase();
        let audit = by.did(AuditKind::UserDeactivated, "", serde_json::json!({"email": email}));
        self.store
            .deactivate_user(&email, to_micros(self.now()), &audit)
            .await?
            .ok_or_else(|| EngineError::Missing(format!("no user has the e-mail {email}")))
    }

    /// Sets the password of the user whose link `token` is, and signs them out everywhere.
    pub async fn set_password(&self, token: &str, password: &str) -> EngineResult<User> {
        let length = password.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) || password.contains('\0') {
            return Err(EngineError::Invalid(vec![FieldError::new(
                "password",
                format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters (a few words make a good one)"),
            )]));
        }
        let owned = password.to_owned();
        let phc = tokio::task::spawn_blocking(move || hash_password(&owned))
            .await
            .map_err(|e| EngineError::Failed(e.to_string()))?
            .map_err(EngineError::Failed)?;
        self.store
            .set_password(&key_hash(token), &phc, to_micros(self.now()))
            .await?
            .ok_or_else(|| {
                EngineError::Missing("this link was used already or has expired; ask an admin for a new one".into())
            })
    }

    /// Opens a session when `password` is the active user's with this e-mail; `None` otherwise
    /// (which, is not said: an unknown e-mail takes as long as a wrong password).
    pub async fn sign_in(&self, email: &str, password: &str) -> EngineResult<Option<SignedIn>> {
        let email = email.trim().to_lowercase();
        let found = self.store.user_by_email(&email).await?;
        let (user, phc) = match found {
            Some((user, Some(phc))) if user.deactivated_at.is_none() => (Some(user), phc),
            _ => (None, decoy().to_owned()),
        };
        let attempt = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || password_matches(&attempt, &phc))
            .await
            .map_err(|e| EngineError::Failed(e.to_string()))?;
        let Some(user) = user.filter(|_| matches) else {
            return Ok(None);
        };
        let token = random_hex();
        let csrf = random_hex();
        let now = self.now();
        self.store
            .create_session(
                &key_hash(&token),
                user.id,
                &csrf,
                to_micros(now),
                to_micros(now + SESSION),
            )
            .await?;
        Ok(Some(SignedIn { user, token, csrf }))
    }

    /// The active user of the unexpired session `token`, and its CSRF token.
    pub async fn session(&self, token: &str) -> EngineResult<Option<(User, String)>> {
        Ok(self.store.session(&key_hash(token), to_micros(self.now())).await?)
    }

    /// Ends the session `token`.
    pub async fn sign_out(&self, token: &str) -> EngineResult<()> {
        Ok(self.store.end_session(&key_hash(token)).await?)
    }

    /// Ends every session of a user; how many there were.
    pub async fn sign_out_everywhere(&self, user: &User) -> EngineResult<u64> {
        Ok(self.store.end_sessions(user.id).await?)
    }
}
