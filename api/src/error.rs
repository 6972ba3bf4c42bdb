//! The one error type of the API and its JSON shape:
//! `{"error": {"code": "…", "message": "…", "details": [...]}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nurture_engine::engine::EngineError;
use nurture_engine::lead::FieldError;
use serde_json::{json, Value};

/// Every error answer: `{"error": {"code": "…", "message": "…", "details": [...]}}`.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// `malformed`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `idempotency_key_reused`,
    /// `idempotency_in_flight`, `confirmation_required`, `too_large`, `validation_failed`,
    /// `rate_limited`, `unavailable`, `bad_gateway` or `internal`.
    pub code: String,
    pub message: String,
    /// For `validation_failed`: each field and what is wrong with it. For
    /// `confirmation_required`: each campaign (`enrolling.<id>`) and how many leads it would enroll.
    pub details: Vec<FieldError>,
}

/// Seconds a client is asked to wait when the database is unreachable.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not well-formed JSON, or a query parameter is malformed.
    #[error("{0}")]
    Malformed(String),
    /// 401: no API key, or an unknown one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the key's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: a conflicting write, or an idempotency key in use.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 409: a deploy that would enroll many leads at once waits for `?confirm=true`; the
    /// details say how many, per campaign.
    #[error("{message}")]
    Unconfirmed { message: String, details: Vec<FieldError> },
    /// 413: the body or the batch is too large; nothing was stored.
    #[error("{0}")]
    TooLarge(String),
    /// 422: well-formed but invalid, with every field's problem.
    #[error("{message}")]
    Invalid { message: String, details: Vec<FieldError> },
    /// 429: this key sent more requests than its rate limit allows; retry after that many seconds.
    #[error("too many requests for this API key; retry after {0} s")]
    TooManyRequests(u64),
    /// 429: this address sent more to a public endpoint than its rate limit allows.
    #[error("too many requests from this address; retry after {0} s")]
    TooManyFromAddress(u64),
    /// 502: a server nurture relies on (the mail server) failed; the request may be retried.
    #[error("{0}")]
    BadGateway(String),
    /// 503: the database did not answer; retry after that many seconds.
    #[error("the database is unreachable; retry after {0} s (with the same Idempotency-Key for a write)")]
    Unavailable(u64),
    /// 500: logged, never explained to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(details: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            message: nurture_engine::lead::summary(&details),
            details,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } | ApiError::Unconfirmed { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) | ApiError::TooManyFromAddress(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body: `{"error": …}`.
    pub fn body(&self) -> Value {
        json!(ErrorBody { error: self.detail() })
    }

    /// The error itself, also used for per-item errors inside bulk answers.
    pub fn detail(&self) -> ErrorDetail {
        let (code, details) = match self {
            ApiError::Malformed(_) => ("malformed", Vec::new()),
            ApiError::Unauthorized(_) => ("unauthorized", Vec::new()),
            ApiError::Forbidden(_) => ("forbidden", Vec::new()),
            ApiError::NotFound(_) => ("not_found", Vec::new()),
            ApiError::MethodNotAllowed(_) => ("method_not_allowed", Vec::new()),
            ApiError::Conflict { code, .. } => (*code, Vec::new()),
            ApiError::Unconfirmed { details, .. } => ("confirmation_required", details.clone()),
            ApiError::TooLarge(_) => ("too_large", Vec::new()),
            ApiError::Invalid { details, .. } => ("validation_failed", details.clone()),
            ApiError::TooManyRequests(_) | ApiError::TooManyFromAddress(_) => ("rate_limited", Vec::new()),
            ApiError::Unavailable(_) => ("unavailable", Vec::new()),
            ApiError::BadGateway(_) => ("bad_gateway", Vec::new()),
            ApiError::Internal(_) => ("internal", Vec::new()),
        };
        ErrorDetail {
            code: code.to_owned(),
            message: nurture_engine::lead::without_nul(self.to_string()),
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "Request failed.");
        }
        if let ApiError::Unavailable(_) = &self {
            tracing::warn!("Request refused: the database is unreachable.");
        }
        if let ApiError::TooManyRequests(seconds)
        | ApiError::TooManyFromAddress(seconds)
        | ApiError::Unavailable(seconds) = &self
        {
            let retry = [(axum::http::header::RETRY_AFTER, seconds.to_string())];
            return (self.status(), retry, Json(self.body())).into_response();
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(details) => ApiError::invalid(details),
            EngineError::NotFound => ApiError::NotFound("no such lead".into()),
            EngineError::Missing(message) => ApiError::NotFound(message),
            // A race lost on every retry is a conflict the client may retry too.
            EngineError::Conflict(message) | EngineError::Raced(message) => ApiError::Conflict {
                code: "conflict",
                message,
            },
            EngineError::Forbidden(message) => ApiError::Forbidden(message),
            EngineError::Store(nurture_engine::store::StoreError::Unavailable(_)) => {
                ApiError::Unavailable(UNAVAILABLE_RETRY_AFTER)
            }
            EngineError::Store(store) => ApiError::Internal(store.to_string()),
            EngineError::Failed(message) => ApiError::Internal(message),
            EngineError::Upstream(message) => ApiError::BadGateway(message),
        }
    }
}

impl From<nurture_engine::store::StoreError> for ApiError {
    fn from(e: nurture_engine::store::StoreError) -> Self {
        ApiError::from(EngineError::from(e))
    }
}

/// Error answers are documented once for every operation, from what it takes (a key, a body,
/// a path), by `crate::openapi`.
impl aide::OperationOutput for ApiError {
    type Inner = Self;
}
