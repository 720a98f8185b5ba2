//! The one API error type, rendered as RFC 9457 `application/problem+json`.
//!
//! Every 4xx names what was wrong (and the field, for validation); 5xx log the
//! cause chain and send a generic detail. `Unavailable` is 503 + `Retry-After`.
//! Problems also carry `"success": false`, so clients of the seed 004 envelope
//! (`{"success": …}`) read failures the same way.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use streambus_core::ValidationError;
use streambus_core::log::LogError;
use streambus_core::store::StoreError;
use streambus_core::wire::WireError;
use tracing::error;

use crate::subscription::SubError;

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input failed validation (422), or was too large (413).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The request is malformed (400).
    #[error("{detail}")]
    BadRequest {
        /// The offending field, if any.
        field: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// No credentials, or credentials that do not verify (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials do not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there (404).
    #[error("{0}")]
    NotFound(String),
    /// Wrong method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the stored state, e.g. a lifecycle
    /// transition that is not allowed (409).
    #[error("{0}")]
    Conflict(String),
    /// An `If-Match` (or `ifVersion`) precondition does not hold (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Over a rate or connection limit (429, with `Retry-After`).
    #[error("{detail}")]
    TooManyRequests {
        /// Which limit.
        detail: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Body or batch too large (413).
    #[error("{0}")]
    TooLarge(String),
    /// Unsupported content type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Storage or broker unreachable (503).
    #[error("service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A bug or an unexpected failure (500).
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad_field(field: &str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            field: Some(field.to_owned()),
            detail: detail.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(v) if v.too_large => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::Validation(v) if v.too_large => "too-large",
            Self::Validation(_) => "validation",
            Self::BadRequest { .. } => "bad-request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed(_) => "precondition-failed",
            Self::TooLarge(_) => "too-large",
            Self::TooManyRequests { .. } => "rate-limited",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The problem document.
    pub fn problem(&self) -> serde_json::Value {
        let status = self.status();
        let (detail, field) = match self {
            Self::Validation(v) if v.field.is_empty() => (v.reason.clone(), None),
            Self::Validation(v) => (format!("{}: {}", v.field, v.reason), Some(v.field.clone())),
            Self::BadRequest { field, detail } => (detail.clone(), field.clone()),
            Self::Unavailable(_) => (
                "storage or broker is unreachable; retry shortly".into(),
                None,
            ),
            Self::Internal(_) => ("the server failed to handle the request".into(), None),
            other => (other.to_string(), None),
        };
        let mut p = json!({
            "type": format!("urn:streambus:problem:{}", self.slug()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "success": false,
        });
        if let Some(field) = field {
            p["field"] = json!(field);
        }
        p
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            error!(error = ?self, "request failed");
        }
        let status = self.status();
        let body = self.problem().to_string();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::TooManyRequests { retry_after, .. } = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("not found".into()),
            StoreError::Conflict(detail) => Self::Conflict(detail),
            StoreError::TooLarge(detail) => Self::TooLarge(detail),
            StoreError::Unavailable(_) | StoreError::Closed => Self::Unavailable(Box::new(e)),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<WireError> for ApiError {
    /// A refused filter (stored overlay subscriptions share the `SUBSCRIBE`
    /// parser) is a validation error naming its field.
    fn from(e: WireError) -> Self {
        match e.field {
            Some(field) => {
                let prefix = format!("{field}: ");
                let reason = e
                    .message
                    .strip_prefix(&prefix)
                    .unwrap_or(&e.message)
                    .to_owned();
                Self::Validation(ValidationError::new(field, reason))
            }
            None => Self::Validation(ValidationError::new("", e.message)),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Store(s) => s.into(),
            LogError::Unavailable(_) | LogError::Closed => Self::Unavailable(Box::new(e)),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<SubError> for ApiError {
    fn from(e: SubError) -> Self {
        match e {
            SubError::Log(l) => l.into(),
            SubError::Store(s) => s.into(),
            SubError::Closed => Self::Unavailable(Box::new(SubError::Closed)),
            SubError::BehindRetention { .. } => Self::bad_field("since", e.to_string()),
        }
    }
}

impl From<crate::ingest::registry::PollerError> for ApiError {
    fn from(e: crate::ingest::registry::PollerError) -> Self {
        use crate::ingest::registry::PollerError;
        match e {
            PollerError::Invalid(i) => ValidationError::new(i.field, i.reason).into(),
            PollerError::Exists(_) | PollerError::Configured(_) | PollerError::TooMany => {
                Self::Conflict(e.to_string())
            }
            PollerError::NotFound(_) => Self::NotFound(e.to_string()),
            PollerError::Store(s) => s.into(),
        }
    }
}

impl From<streambus_core::auth::Denied> for ApiError {
    fn from(e: streambus_core::auth::Denied) -> Self {
        Self::Forbidden(e.to_string())
    }
}
