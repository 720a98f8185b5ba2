//! `GET|POST /tenants`, `GET|DELETE /tenants/{name}` (issue 5 point 3):
//! tenants, managed by the admins of the system tenant `default`. Every
//! stored row carries its tenant and every query is scoped by the caller's,
//! so a tenant's admins see and change only their own events, types,
//! templates, overlays, keys and audit log.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use streambus_core::keys::check_tenant_name;
use streambus_core::store::Catalog;
use streambus_core::{DEFAULT_TENANT, time};

use super::error::ApiError;
use super::extract::{AppBody, json_body};
use crate::auth::Tenant;
use crate::ingest::Ingest;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list).post(create))
        .route("/tenants/{name}", get(one).delete(remove))
}

/// Only the system tenant's admins manage tenants (the route layer has
/// already required an admin).
fn system(tenant: &str) -> Result<(), ApiError> {
    if tenant == DEFAULT_TENANT {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only admins of the `{DEFAULT_TENANT}` tenant manage tenants"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    limits: Option<Value>,
}

async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    system(&tenant)?;
    let new: NewTenant =
        serde_json::from_value(json_body(&body)?).map_err(|e| ApiError::BadRequest {
            field: None,
            detail: format!("a tenant is {{name, display_name?, limits?}}: {e}"),
        })?;
    check_tenant_name(&new.name).map_err(|e| ApiError::bad_field("name", e))?;
    if new.name == DEFAULT_TENANT {
        return Err(ApiError::Conflict(format!(
            "`{DEFAULT_TENANT}` always exists"
        )));
    }
    let display = new.display_name.unwrap_or_else(|| new.name.clone());
    let limits = new.limits.unwrap_or(Value::Null);
    // Checked (and applied on this node) before it is stored.
    state
        .limiter
        .set_tenant(&new.name, &limits)
        .map_err(|e| ApiError::bad_field("limits", e))?;
    let created = state
        .store
        .put_tenant(&new.name, &display, &limits, time::now_ms())
        .await?;
    let stored = state.store.get_tenant(&new.name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(stored))).into_response())
}

async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Value>, ApiError> {
    system(&tenant)?;
    Ok(Json(
        json!({ "tenants": state.store.list_tenants().await? }),
    ))
}

async fn one(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    system(&tenant)?;
    match state.store.get_tenant(&name).await? {
        Some(t) => Ok(Json(json!(t))),
        None => Err(ApiError::NotFound(format!("no tenant `{name}`"))),
    }
}

async fn remove(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    ingest: Option<Extension<Arc<Ingest>>>,
) -> Result<StatusCode, ApiError> {
    system(&tenant)?;
    if !state.store.delete_tenant(&name).await? {
        return Err(ApiError::NotFound(format!("no tenant `{name}`")));
    }
    // What runs unattended goes with it, so a tenant made again later under
    // the same name starts without the old one's rules, webhooks and pollers.
    for (catalog, key) in [
        (Catalog::Rules, "id"),
        (Catalog::Webhooks, "id"),
        (Catalog::Pollers, "name"),
    ] {
        for entry in state.store.list_entries(catalog, &name).await? {
            if let Some(k) = entry.get(key).and_then(Value::as_str) {
                state.store.delete_entry(catalog, &name, k).await?;
            }
        }
    }
    state.rules.reload_now().await;
    if let Some(Extension(ingest)) = ingest
        && let Err(e) = ingest.pollers.resync(&state).await
    {
        // The catalog is clear; a cluster's periodic pass stops them.
        tracing::warn!(tenant = %name, error = %e, "pollers of a deleted tenant not stopped yet");
    }
    Ok(StatusCode::NO_CONTENT)
}
