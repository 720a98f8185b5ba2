//! `GET|PUT|DELETE /subscriptions/{overlay_id}` (SPEC §2 "Consumer", §3.2;
//! seed 000's `event_subscriptions`; issue 4 point 4): an overlay's filter,
//! stored server-side. A WebSocket `SUBSCRIBE` with that `overlayId` and no
//! filter fields uses it (`api::ws`).
//!
//! The body holds the filter fields of `SUBSCRIBE` — `streams`,
//! `eventTypes`, `classes`, `tags`, `minPriority`, `filter` (and `teams`) —
//! parsed by the same code, so both accept exactly the same. It is stored in
//! its canonical form ([`consumer::filter_to_json`]), which `GET` and `PUT`
//! return with the `overlayId`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use streambus_core::consumer;

use super::error::ApiError;
use super::events::json_response;
use super::extract::{AppBody, json_body};
use crate::auth::Tenant;
use crate::overlays::publish_op;
use crate::state::AppState;
use streambus_core::overlay::Op;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/subscriptions/{overlay_id}",
        get(get_subscription)
            .put(put_subscription)
            .delete(delete_subscription),
    )
}

fn check_overlay(id: &str) -> Result<(), ApiError> {
    if consumer::is_overlay_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            "overlay_id",
            "must match [A-Za-z0-9_.:-]{1,128}",
        ))
    }
}

/// The response body: the stored filter with the overlay's id.
fn with_id(overlay_id: &str, mut filter: Value) -> Response {
    if let Value::Object(m) = &mut filter {
        m.insert("overlayId".into(), overlay_id.into());
    }
    json_response(StatusCode::OK, filter.to_string())
}

async fn get_subscription(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(overlay_id): Path<String>,
) -> Result<Response, ApiError> {
    check_overlay(&overlay_id)?;
    match state.store.get_subscription(&tenant, &overlay_id).await? {
        Some(filter) => Ok(with_id(&overlay_id, filter)),
        None => Err(not_found(&overlay_id)),
    }
}

/// Stores (creating or replacing) the overlay's filter → 200.
async fn put_subscription(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(overlay_id): Path<String>,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    check_overlay(&overlay_id)?;
    let mut given = json_body(&body)?;
    if let Value::Object(m) = &mut given {
        // Echoing the id back (as `GET` returns it) is allowed if it agrees.
        match m.remove("overlayId") {
            None => {}
            Some(Value::String(id)) if id == overlay_id => {}
            Some(_) => {
                return Err(streambus_core::ValidationError::new(
                    "overlayId",
                    "must be the overlay id of the path",
                )
                .into());
            }
        }
    }
    let filter = consumer::filter_from_json(given)?;
    let canonical = consumer::filter_to_json(&filter);
    state
        .store
        .put_subscription(&tenant, &overlay_id, &canonical)
        .await?;
    subscription_changed(&state, &tenant, &overlay_id, canonical.clone()).await?;
    Ok(with_id(&overlay_id, canonical))
}

async fn delete_subscription(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(overlay_id): Path<String>,
) -> Result<Response, ApiError> {
    check_overlay(&overlay_id)?;
    if state
        .store
        .delete_subscription(&tenant, &overlay_id)
        .await?
    {
        subscription_changed(&state, &tenant, &overlay_id, serde_json::json!({})).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&overlay_id))
    }
}

/// Tells the overlay's queue which animated events it gets from now on.
async fn subscription_changed(
    state: &AppState,
    tenant: &str,
    overlay_id: &str,
    filter: Value,
) -> Result<(), ApiError> {
    let op = Op::Subscription {
        overlay: overlay_id.to_owned(),
        filter,
    };
    publish_op(state, tenant, op).await.map(drop)
}

fn not_found(overlay_id: &str) -> ApiError {
    ApiError::NotFound(format!("no stored subscription for overlay `{overlay_id}`"))
}
