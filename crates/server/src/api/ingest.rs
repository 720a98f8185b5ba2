//! Inbound integrations (issue 6 point 1, SPEC §3.2, docs/INGEST.md):
//!
//! - `POST /ingest/webhook/{source}`: a partner's signed delivery, mapped to
//!   events and published in the source's tenant. Authenticated by its
//!   signature, not a bearer token (`auth::requirement` makes it public).
//! - `GET /pollers`, `GET /pollers/{name}`: the pollers of the caller's
//!   tenant (from the file and the API) and their health (operators,
//!   `Need::Control`).
//! - `POST /pollers`, `PUT|DELETE /pollers/{name}`: the caller's tenant's
//!   API pollers (administrators, `Need::Administer`); see
//!   [`crate::ingest::registry`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};
use streambus_core::validate::{self, PublishContext};
use streambus_core::{DEFAULT_TENANT, ValidationError};

use super::error::ApiError;
use super::extract::{AppBody, json_body};
use super::types::created_at;
use crate::auth::Tenant;
use crate::ingest::Ingest;
use crate::ingest::config::{PollerConfig, SourceConfig};
use crate::ingest::mapping::{self, SIGNATURE_KEY_LEN};
use crate::ingest::registry::PollerError;
use crate::ingest::signature::{self, Signed};
use crate::publish::{ItemResult, publish_batch};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ingest/webhook/{source}", post(receive_webhook))
        .route("/pollers", get(list_pollers).post(create_poller))
        .route(
            "/pollers/{name}",
            get(get_poller).put(put_poller).delete(delete_poller),
        )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

const ALREADY_RECEIVED: &str = "delivery already received";

/// `POST /ingest/webhook/{source}` → `202 {accepted, events: [{id, offset}],
/// duplicates}`; `409` for a delivery whose events are all stored already.
async fn receive_webhook(
    State(state): State<AppState>,
    ingest: Option<Extension<Arc<Ingest>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let source = state
        .config
        .ingest
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no webhook source `{name}`")))?;
    let now = streambus_core::time::now_ms() / 1000;
    let signed = Signed {
        signature: (
            &source.signature_header,
            header(&headers, &source.signature_header),
        ),
        timestamp: (
            &source.timestamp_header,
            header(&headers, &source.timestamp_header),
        ),
    };
    let sig = signature::verify(
        source.secret.as_bytes(),
        signed,
        &body,
        now,
        source.tolerance_secs,
    )
    .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    if ingest.as_ref().is_some_and(|i| i.seen(&sig)) {
        return Err(ApiError::Conflict(ALREADY_RECEIVED.into()));
    }
    if source.tenant != DEFAULT_TENANT && state.store.get_tenant(&source.tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "the tenant `{}` of source `{name}` does not exist",
            source.tenant
        )));
    }
    let input: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        field: None,
        detail: format!("the body is not JSON: {e}"),
    })?;
    let delivery = header(&headers, &source.delivery_header)
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(&sig[..SIGNATURE_KEY_LEN.min(sig.len())]);
    let items = mapping::map_body(source, &input, delivery)?;
    if items.len() > state.limits.max_batch {
        return Err(ApiError::TooLarge(format!(
            "the delivery maps to {} events; at most {} per delivery",
            items.len(),
            state.limits.max_batch
        )));
    }
    // All or nothing: a delivery is one thing the partner sent, so a bad
    // item refuses it whole and the partner's retry can succeed whole.
    let ctx = PublishContext::default();
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        let len = serde_json::to_vec(&item.event).map_or(0, |v| v.len());
        let checked = validate::check_size(len, &state.limits)
            .and_then(|()| crate::publish::prepare(&state, &source.tenant, item.event, &ctx));
        events.push(Ok(checked.map_err(|e| named(source, &item.at, e))?));
    }
    let results = publish_batch(&state, &source.tenant, events).await?;
    let (mut stored, mut duplicates) = (Vec::with_capacity(results.len()), 0usize);
    for r in results {
        match r {
            ItemResult::Stored(a) => {
                duplicates += usize::from(a.duplicate);
                stored.push(
                    json!({"id": a.record.event.id, "offset": a.record.event.offset,
                                   "duplicate": a.duplicate}),
                );
            }
            ItemResult::Rejected(e) => return Err(e),
        }
    }
    if let Some(Extension(i)) = &ingest {
        let until = now.saturating_add(i64::try_from(source.tolerance_secs).unwrap_or(i64::MAX));
        i.remember(sig, until, now);
    }
    if !stored.is_empty() && duplicates == stored.len() {
        return Err(ApiError::Conflict(ALREADY_RECEIVED.into()));
    }
    tracing::debug!(source = %name, events = stored.len(), duplicates, "webhook received");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "accepted": stored.len() - duplicates,
            "events": stored,
            "duplicates": duplicates,
        })),
    ))
}

/// A validation error about a mapped event, naming the source's pointer
/// that produced the field (`/kind` rather than `type`) and the item.
fn named(source: &SourceConfig, at: &str, e: ValidationError) -> ApiError {
    if e.too_large {
        return e.into();
    }
    let item = if at.is_empty() { "the body" } else { at };
    let (field, reason) = match mapping::pointer_of(source, &e.field) {
        Some(p) => (
            p.to_owned(),
            format!("{} (mapped to `{}` from {item})", e.reason, e.field),
        ),
        None => (
            e.field.clone(),
            format!("{} (in the event mapped from {item})", e.reason),
        ),
    };
    ApiError::Validation(ValidationError::new(field, reason))
}

/// The ingest state `serve()` adds to the router.
fn running(ingest: Option<Extension<Arc<Ingest>>>) -> Result<Arc<Ingest>, ApiError> {
    ingest
        .map(|Extension(i)| i)
        .ok_or_else(|| ApiError::Internal("the router was built without the ingest state".into()))
}

fn location(name: &str) -> String {
    format!("/api/v1/pollers/{name}")
}

/// `GET /pollers`: `{"data": [...]}`, the caller's tenant's pollers, each
/// with its `origin` (`config` or `api`) and health.
async fn list_pollers(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ingest: Option<Extension<Arc<Ingest>>>,
) -> Result<Json<Value>, ApiError> {
    let data = running(ingest)?.pollers.list(&state, &tenant).await?;
    Ok(Json(json!({ "data": data })))
}

/// `GET /pollers/{name}`: one poller and its health.
async fn get_poller(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ingest: Option<Extension<Arc<Ingest>>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let report = running(ingest)?
        .pollers
        .find(&state, &tenant, &name)
        .await?;
    Ok(Json(report))
}

/// `POST /pollers` → `201` with the poller; `409` when the name is taken.
async fn create_poller(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ingest: Option<Extension<Arc<Ingest>>>,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let ingest = running(ingest)?;
    let config =
        PollerConfig::from_api(json_body(&body)?, &tenant, None).map_err(PollerError::from)?;
    let name = config.name.clone();
    let report = ingest.pollers.create(&state, config).await?;
    Ok(created_at(StatusCode::CREATED, &report, &location(&name)))
}

/// `PUT /pollers/{name}` → `201` when created, `200` when replaced (the old
/// task is stopped first); `409` for a poller of the configuration file.
async fn put_poller(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ingest: Option<Extension<Arc<Ingest>>>,
    Path(name): Path<String>,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let ingest = running(ingest)?;
    let config = PollerConfig::from_api(json_body(&body)?, &tenant, Some(&name))
        .map_err(PollerError::from)?;
    let (report, created) = ingest.pollers.put(&state, config).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(created_at(status, &report, &location(&name)))
}

/// `DELETE /pollers/{name}` → `204` once the poller has stopped; `409` for
/// a poller of the configuration file.
async fn delete_poller(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ingest: Option<Extension<Arc<Ingest>>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    running(ingest)?
        .pollers
        .delete(&state, &tenant, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
