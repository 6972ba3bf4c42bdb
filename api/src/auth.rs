//! API keys: `Authorization: Bearer <key>`, looked up by hash; roles decide what a key may do.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use nurture_engine::access::{key_hash, ApiKey, Role};
use nurture_engine::tag::Actor;

use crate::error::ApiError;
use crate::AppState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiKey);

impl Caller {
    /// Allows the request when the caller's role is one of `roles`; admins may do everything.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.0.role == Role::Admin || roles.contains(&self.0.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(if allowed.is_empty() {
                format!(
                    "the {} role may not do this; it needs an admin key",
                    self.0.role.as_str()
                )
            } else {
                format!(
                    "the {} role may not do this; it needs {} (or admin)",
                    self.0.role.as_str(),
                    allowed.join(" or ")
                )
            }))
        }
    }

    /// Changes made through the API are recorded with the key's name.
    pub fn actor(&self) -> Actor {
        Actor::User(self.0.name.clone())
    }

    /// Who the audit trail records for a change made with this key.
    pub fn by(&self) -> nurture_engine::audit::By {
        nurture_engine::audit::By::api(&self.0.name)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing API key: send Authorization: Bearer <key>",
            ))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized(
                "malformed Authorization header: send Authorization: Bearer <key>",
            ))?;
        let hash = key_hash(key);
        let found = match state.keys.get(&hash) {
            Some(known) => Some(known),
            None => {
                let found = state.engine.api_key(&hash).await?;
                if let Some(known) = &found {
                    state.keys.insert(hash.clone(), known.clone());
                }
                found
            }
        };
        let caller = found.map(Caller).ok_or(ApiError::Unauthorized("unknown API key"))?;
        if let Some(limiter) = &state.limiter {
            allowance(limiter, &hash).map_err(ApiError::TooManyRequests)?;
        }
        Ok(caller)
    }
}

/// Takes a request from `key`'s allowance, or says in how many whole seconds (at least one)
/// the next is allowed.
pub(crate) fn allowance(limiter: &governor::DefaultKeyedRateLimiter<String>, key: &String) -> Result<(), u64> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        wait.as_secs_f64().ceil().max(1.0) as u64
    })
}

/// The key is documented by each route's roles (`crate::openapi::Doc::allow`).
impl aide::OperationInput for Caller {}
