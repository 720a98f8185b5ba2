//! Extractors whose rejections are problem documents, and request helpers.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Query parameters; a bad one is a 400 problem.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| AppQuery(v))
            .map_err(|e: QueryRejection| {
                let detail = e.body_text();
                ApiError::BadRequest {
                    field: unknown_field(&detail),
                    detail,
                }
            })
    }
}

/// The parameter named by serde's "unknown field `x`" message, if any.
fn unknown_field(detail: &str) -> Option<String> {
    let rest = &detail[detail.find("unknown field `")? + "unknown field `".len()..];
    Some(rest[..rest.find('`')?].to_owned())
}

/// The raw body; over the size limit it is a 413 problem.
pub struct AppBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(AppBody)
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge("request body exceeds limits.max_body_bytes".into())
                } else {
                    ApiError::BadRequest {
                        field: None,
                        detail: e.body_text(),
                    }
                }
            })
    }
}

/// The correlation id from `X-Correlation-Id` or `X-Request-Id`.
pub fn correlation_id(headers: &HeaderMap) -> Option<String> {
    ["x-correlation-id", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
}

/// Parses a JSON body into a value; a syntax error is a 400 problem.
pub fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            field: None,
            detail: "request body is empty".into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        field: None,
        detail: format!("body is not valid JSON: {e}"),
    })
}
