//! Live keyed state (SPEC §2 "State", §3.2; issue 6 point 2):
//! `GET /state/{stream}`, `GET|PUT|PATCH|DELETE /state/{stream}/{key}`.
//!
//! Documents are JSON values per (tenant, stream, key) with a version;
//! `PUT` replaces, `PATCH` applies a JSON merge patch (RFC 7396), `DELETE`
//! removes. `If-Match: "<version>"` makes a write compare-and-set (`412`
//! when it does not hold), `If-None-Match: *` makes it create-only. Each
//! real change emits a `state.changed` event on the same stream; a write
//! that changes nothing answers `200` with the same version and
//! `streambus-unchanged: true`, and emits nothing.
//!
//! - this module: the routes;
//! - `write`: the write path shared with the WebSocket (store, then event);
//! - `ws`: `STATE_SET`/`STATE_PATCH` frames and `SUBSCRIBE` snapshots.
//!
//! Reading needs read access to the stream (checked by `auth::requirement`);
//! writing is publishing to it (its event), checked here per stream, with
//! the publish rate limit.

pub mod write;
pub mod ws;

pub use write::write_state;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{Map, Value, json};
use streambus_core::auth::Action;
use streambus_core::state::{self, StateChange, StateDoc, StateOutcome, StateWrite};
use streambus_core::validate::check_size;
use streambus_core::{name, time};

use super::error::ApiError;
use super::events::json_response;
use super::extract::{AppBody, json_body};
use crate::auth::{Identity, Tenant};
use crate::state::AppState;

/// Response header set on a write that changed nothing.
pub const UNCHANGED_HEADER: &str = "streambus-unchanged";

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/state/{stream}", get(list_state))
        .route(
            "/state/{stream}/{key}",
            get(get_state)
                .put(put_state)
                .patch(patch_state)
                .delete(delete_state),
        )
}

/// `400` naming `stream` or `key` when either is not a valid name.
pub fn check_names(stream: &str, key: Option<&str>) -> Result<(), ApiError> {
    if !name::is_stream_name(stream) {
        return Err(ApiError::bad_field(
            "stream",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }
    match key {
        Some(k) if !state::is_key(k) => Err(ApiError::bad_field(
            "key",
            format!("must match {}", state::KEY_RULE),
        )),
        _ => Ok(()),
    }
}

/// A document as `GET /state/{stream}/{key}` shows it.
fn doc_json(stream: &str, doc: &StateDoc) -> Value {
    json!({
        "stream": stream,
        "key": doc.key,
        "value": doc.value,
        "version": doc.version,
        "updated_at": time::rfc3339_ms(doc.updated_ms),
    })
}

/// `200` with the document and its `ETag`.
fn doc_response(stream: &str, doc: &StateDoc, unchanged: bool) -> Response {
    let mut res = json_response(StatusCode::OK, doc_json(stream, doc).to_string());
    let headers = res.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", doc.version)) {
        headers.insert(header::ETAG, tag);
    }
    if unchanged {
        headers.insert(UNCHANGED_HEADER, HeaderValue::from_static("true"));
    }
    res
}

fn not_found(stream: &str, key: &str) -> ApiError {
    ApiError::NotFound(format!("no state key `{key}` in stream `{stream}`"))
}

/// `{"stream", "data": {key: {"value", "version", "updated_at"}}, "offset"}`:
/// the stream's state, and the log head read just before it — a client
/// that then resumes from `offset` misses no change (those it already has
/// come again with a version it holds).
async fn list_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(stream): Path<String>,
) -> Result<Response, ApiError> {
    check_names(&stream, None)?;
    let offset = state.log.head().await?;
    let docs = state.store.state_list(&tenant, &stream).await?;
    let data: Map<String, Value> = docs
        .into_iter()
        .map(|d| {
            let entry = json!({
                "value": d.value,
                "version": d.version,
                "updated_at": time::rfc3339_ms(d.updated_ms),
            });
            (d.key, entry)
        })
        .collect();
    let body = json!({"stream": stream, "data": data, "offset": offset});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

async fn get_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path((stream, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_names(&stream, Some(&key))?;
    match state.store.state_get(&tenant, &stream, &key).await? {
        Some(doc) => Ok(doc_response(&stream, &doc, false)),
        None => Err(not_found(&stream, &key)),
    }
}

/// `PUT`: the body is the new value.
async fn put_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    Path((stream, key)): Path<(String, String)>,
    headers: HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let allowed: &[&str] = &["application/json"];
    let value = body_value(&state, &who, &stream, &key, &headers, allowed, &body)?;
    write_one(
        &state,
        &tenant,
        &who,
        &stream,
        &key,
        &headers,
        StateChange::Put(value),
    )
    .await
}

/// `PATCH`: the body is a JSON merge patch (RFC 7396).
async fn patch_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    Path((stream, key)): Path<(String, String)>,
    headers: HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let allowed: &[&str] = &["application/merge-patch+json", "application/json"];
    let patch = body_value(&state, &who, &stream, &key, &headers, allowed, &body)?;
    write_one(
        &state,
        &tenant,
        &who,
        &stream,
        &key,
        &headers,
        StateChange::Patch(patch),
    )
    .await
}

async fn delete_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    Path((stream, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_names(&stream, Some(&key))?;
    who.principal.check(Action::Publish(&stream))?;
    write_one(
        &state,
        &tenant,
        &who,
        &stream,
        &key,
        &headers,
        StateChange::Delete,
    )
    .await
}

/// Checks names, permission, content type and size, and parses the body.
fn body_value(
    state: &AppState,
    who: &Identity,
    stream: &str,
    key: &str,
    headers: &HeaderMap,
    allowed: &[&str],
    body: &[u8],
) -> Result<Value, ApiError> {
    check_names(stream, Some(key))?;
    who.principal.check(Action::Publish(stream))?;
    check_content_type(headers, allowed)?;
    check_size(body.len(), &state.limits)?;
    json_body(body)
}

/// `415` unless the content type is missing or one of `allowed`.
fn check_content_type(headers: &HeaderMap, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(given) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = given
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if allowed.contains(&essence.as_str()) {
        return Ok(());
    }
    let hint = if essence == "application/json-patch+json" {
        " (JSON Patch, RFC 6902, is not supported: send a JSON merge patch, RFC 7396)"
    } else {
        ""
    };
    Err(ApiError::UnsupportedMediaType(format!(
        "content type `{essence}` is not accepted here{hint}; send {}",
        allowed.join(" or ")
    )))
}

/// The version an `If-Match: "<version>"` (or `If-None-Match: *`: 0,
/// "only when absent") requires.
///
/// # Errors
/// `400` for any other form.
pub fn precondition(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let text = v.to_str().unwrap_or("").trim();
        let tag = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        return tag.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_field(
                "If-Match",
                "must be one version as an entity tag, e.g. `If-Match: \"3\"`",
            )
        });
    }
    match headers.get(header::IF_NONE_MATCH) {
        None => Ok(None),
        Some(v) if v.as_bytes() == b"*" => Ok(Some(0)),
        Some(_) => Err(ApiError::bad_field(
            "If-None-Match",
            "only `If-None-Match: *` (create only) is understood on writes",
        )),
    }
}

/// Runs one write for a REST request and renders its outcome.
async fn write_one(
    state: &AppState,
    tenant: &str,
    who: &Identity,
    stream: &str,
    key: &str,
    headers: &HeaderMap,
    change: StateChange,
) -> Result<Response, ApiError> {
    let write = StateWrite {
        change,
        expected_version: precondition(headers)?,
        max_value_bytes: state.limits.max_event_bytes,
    };
    state.limiter.publish(who)?;
    match write_state(state, tenant, stream, key, &write).await? {
        StateOutcome::Changed { doc, .. } => Ok(doc_response(stream, &doc, false)),
        StateOutcome::Unchanged(doc) => Ok(doc_response(stream, &doc, true)),
        StateOutcome::Deleted { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        StateOutcome::Absent => Err(not_found(stream, key)),
        StateOutcome::Unannounced(_) => Err(ApiError::Internal(
            "the write path returned an unannounced change".into(),
        )),
    }
}
