//! Outgoing webhooks (issue 6 point 4, SPEC §3.2, docs/WEBHOOKS.md):
//!
//! - `GET|POST /webhooks`, `GET|PUT|DELETE /webhooks/{id}`: definitions in
//!   the caller's tenant ([`crate::webhooks::definition`]); the secret is
//!   never shown again. `POST` creates (409 when the id exists), `PUT`
//!   creates or replaces (what was already delivered stays delivered, and
//!   only events after the first creation are delivered). `DELETE` removes
//!   the webhook and its delivery log; its pending deliveries stop.
//! - `GET /webhooks/{id}/deliveries?state=&limit=`: the delivery log,
//!   newest event first; `GET /webhooks/{id}/deliveries/{delivery}`.
//! - `POST /webhooks/{id}/deliveries/{delivery}/redeliver`: back to pending
//!   with a fresh series of attempts, due now (202).
//!
//! Reads and redelivering need `Need::Control`, other writes
//! `Need::Administer` (`auth::requirement`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use streambus_core::store::{Catalog, Delivery, DeliveryState};
use streambus_core::time::{now_ms, rfc3339_ms};

use super::error::ApiError;
use super::events::json_response;
use super::extract::{AppBody, AppQuery, json_body};
use super::types::created_at;
use crate::auth::Tenant;
use crate::state::AppState;
use crate::webhooks::Webhooks;
use crate::webhooks::definition::{Webhook, WebhookInput, is_webhook_id};

/// Deliveries listed when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 50;
/// Most deliveries one listing returns.
pub const MAX_LIMIT: usize = 1000;

/// The engine's handle, when it runs (it always does under `serve`).
type Engine = Option<Extension<Arc<Webhooks>>>;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/webhooks/{id}",
            get(get_webhook).put(put_webhook).delete(delete_webhook),
        )
        .route("/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/webhooks/{id}/deliveries/{delivery}", get(get_delivery))
        .route(
            "/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(redeliver),
        )
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook `{id}`"))
}

/// The stored webhook `id` of the tenant (404 when none, or `id` could
/// not name one).
async fn find(state: &AppState, tenant: &str, id: &str) -> Result<Webhook, ApiError> {
    if !is_webhook_id(id) {
        return Err(not_found(id));
    }
    let body = state
        .store
        .get_entry(Catalog::Webhooks, tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Webhook::from_stored(&body).map_err(|e| ApiError::Internal(Box::new(e)))
}

fn no_delivery(id: &str, delivery: &str) -> ApiError {
    ApiError::NotFound(format!("webhook `{id}` has no delivery `{delivery}`"))
}

fn location(id: &str) -> String {
    format!("/api/v1/webhooks/{id}")
}

fn changed(engine: &Engine) {
    if let Some(Extension(w)) = engine {
        w.changed();
    }
}

/// `GET /webhooks` → `{"data": [...]}`, by id.
async fn list_webhooks(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Response, ApiError> {
    let mut data = Vec::new();
    for body in state.store.list_entries(Catalog::Webhooks, &tenant).await? {
        match Webhook::from_stored(&body) {
            Ok(h) => data.push(h.to_public()),
            Err(e) => tracing::warn!(%tenant, error = %e, "webhook not listed"),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({ "data": data }).to_string(),
    ))
}

/// `POST /webhooks` → 201 with the webhook; 409 when the id exists.
async fn create_webhook(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    engine: Engine,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let input = WebhookInput::from_json(json_body(&body)?, None)?;
    if state
        .store
        .get_entry(Catalog::Webhooks, &tenant, &input.id)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "webhook `{}` exists; PUT /webhooks/{} replaces it",
            input.id, input.id
        )));
    }
    let head = state.log.head().await?;
    let hook = Webhook::create(
        input,
        state.config.webhooks.max_attempts,
        head,
        &rfc3339_ms(now_ms()),
    );
    store(&state, &tenant, &hook).await?;
    changed(&engine);
    Ok(created_at(
        StatusCode::CREATED,
        &hook.to_public(),
        &location(&hook.id),
    ))
}

/// `PUT /webhooks/{id}` → 201 (created) or 200 (replaced).
async fn put_webhook(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    engine: Engine,
    Path(id): Path<String>,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let input = WebhookInput::from_json(json_body(&body)?, Some(&id))?;
    let attempts = state.config.webhooks.max_attempts;
    let now = rfc3339_ms(now_ms());
    let (hook, status) = match state
        .store
        .get_entry(Catalog::Webhooks, &tenant, &input.id)
        .await?
    {
        Some(old) => {
            let old = Webhook::from_stored(&old).map_err(|e| ApiError::Internal(Box::new(e)))?;
            (old.replace(input, attempts, &now), StatusCode::OK)
        }
        None => {
            let head = state.log.head().await?;
            (
                Webhook::create(input, attempts, head, &now),
                StatusCode::CREATED,
            )
        }
    };
    store(&state, &tenant, &hook).await?;
    changed(&engine);
    Ok(created_at(status, &hook.to_public(), &location(&hook.id)))
}

async fn store(state: &AppState, tenant: &str, hook: &Webhook) -> Result<(), ApiError> {
    state
        .store
        .put_entry(Catalog::Webhooks, tenant, &hook.id, &hook.to_stored())
        .await?;
    Ok(())
}

/// `GET /webhooks/{id}`.
async fn get_webhook(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let hook = find(&state, &tenant, &id).await?;
    Ok(json_response(StatusCode::OK, hook.to_public().to_string()))
}

/// `DELETE /webhooks/{id}` → 204; its deliveries stop and its log goes.
async fn delete_webhook(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    engine: Engine,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !is_webhook_id(&id)
        || !state
            .store
            .delete_entry(Catalog::Webhooks, &tenant, &id)
            .await?
    {
        return Err(not_found(&id));
    }
    // After the definition: an attempt that starts now finds no webhook and
    // removes what a node may still add (see `webhooks::worker`).
    let removed = state.store.delete_deliveries(&tenant, &id).await?;
    tracing::info!(%tenant, webhook = %id, removed, "webhook deleted");
    changed(&engine);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Query of `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    state: Option<String>,
    /// 1..=[`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    limit: Option<usize>,
}

/// A delivery as the API shows it, with the webhook's attempt limit.
fn delivery_json(d: &Delivery, max_attempts: u32) -> Value {
    let pending = d.state == DeliveryState::Pending;
    json!({
        "id": d.id,
        "webhook": d.webhook,
        "event_id": d.event_id,
        "event_offset": d.event_offset,
        "state": d.state,
        "attempts": d.attempts,
        "max_attempts": max_attempts,
        "next_attempt_at": pending.then(|| rfc3339_ms(d.next_attempt_ms)),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": rfc3339_ms(d.created_ms),
        "updated_at": rfc3339_ms(d.updated_ms),
    })
}

/// `GET /webhooks/{id}/deliveries` → `{"data": [...]}`, newest event first.
async fn list_deliveries(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<DeliveryQuery>,
) -> Result<Response, ApiError> {
    let only =
        match q.state.as_deref() {
            None | Some("") => None,
            Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
                ApiError::bad_field("state", "must be pending, delivered or dead")
            })?),
        };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            format!("must be from 1 to {MAX_LIMIT}"),
        ));
    }
    let hook = find(&state, &tenant, &id).await?;
    let data: Vec<Value> = state
        .store
        .list_deliveries(&tenant, &id, only, limit)
        .await?
        .iter()
        .map(|d| delivery_json(d, hook.max_attempts))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({ "data": data }).to_string(),
    ))
}

/// The delivery `delivery` of webhook `id` (404 when either is unknown).
async fn find_delivery(
    state: &AppState,
    tenant: &str,
    id: &str,
    delivery: &str,
) -> Result<(Webhook, Delivery), ApiError> {
    let hook = find(state, tenant, id).await?;
    match state.store.get_delivery(tenant, delivery).await? {
        Some(d) if d.webhook == hook.id => Ok((hook, d)),
        _ => Err(no_delivery(id, delivery)),
    }
}

/// `GET /webhooks/{id}/deliveries/{delivery}`.
async fn get_delivery(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (hook, d) = find_delivery(&state, &tenant, &id, &delivery).await?;
    Ok(json_response(
        StatusCode::OK,
        delivery_json(&d, hook.max_attempts).to_string(),
    ))
}

/// `POST /webhooks/{id}/deliveries/{delivery}/redeliver` → 202 with the
/// delivery, pending and due now.
async fn redeliver(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    engine: Engine,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (hook, _) = find_delivery(&state, &tenant, &id, &delivery).await?;
    let d = state
        .store
        .redeliver(&tenant, &delivery, now_ms())
        .await?
        .ok_or_else(|| no_delivery(&id, &delivery))?;
    if let Some(Extension(w)) = &engine {
        w.wake();
    }
    tracing::info!(%tenant, webhook = %id, delivery = %d.id, "redelivery requested");
    Ok(json_response(
        StatusCode::ACCEPTED,
        delivery_json(&d, hook.max_attempts).to_string(),
    ))
}
