//! `GET|POST /event-types`, `GET|DELETE /event-types/{name}` (SPEC §2
//! "Event type", §3.2; issue 4 point 5): the registry of event types with a
//! JSON Schema for `data` and defaults, which every publish honours
//! ([`crate::publish::prepare`]).
//!
//! The store is the source of truth; this node's compiled copy
//! ([`crate::registry`]) is updated at once, other nodes' within
//! [`REFRESH_INTERVAL`](crate::registry::REFRESH_INTERVAL).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use streambus_core::event_type::{CompiledType, EventTypeDef};
use streambus_core::name;

use super::error::ApiError;
use super::events::json_response;
use super::extract::{AppBody, json_body};
use crate::auth::Tenant;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/event-types", get(list_types).post(put_type))
        .route("/event-types/{name}", get(get_type).delete(delete_type))
}

/// A JSON response with `Location` set to `location`.
pub fn created_at(status: StatusCode, body: &serde_json::Value, location: &str) -> Response {
    let mut res = json_response(status, body.to_string());
    if let Ok(loc) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

fn check_name(n: &str) -> Result<(), ApiError> {
    if name::is_event_type(n) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            "name",
            "must match [A-Za-z0-9_.:-]{1,100}",
        ))
    }
}

async fn list_types(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Response, ApiError> {
    let defs = state.store.list_event_types(&tenant).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "data": defs }).to_string(),
    ))
}

/// Creates (201) or replaces (200) the type named in the body.
async fn put_type(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let def = EventTypeDef::from_json(json_body(&body)?)?;
    let compiled = Arc::new(CompiledType::new(def)?);
    let created = state.store.put_event_type(&tenant, &compiled.def).await?;
    let out = serde_json::to_value(&compiled.def).map_err(|e| ApiError::Internal(e.into()))?;
    let location = format!("/api/v1/event-types/{}", compiled.def.name);
    state.types.insert(&tenant, compiled);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(created_at(status, &out, &location))
}

async fn get_type(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(type_name): Path<String>,
) -> Result<Response, ApiError> {
    check_name(&type_name)?;
    match state.store.get_event_type(&tenant, &type_name).await? {
        Some(def) => Ok(json_response(
            StatusCode::OK,
            serde_json::to_string(&def).map_err(|e| ApiError::Internal(e.into()))?,
        )),
        None => Err(ApiError::NotFound(format!(
            "no event type named `{type_name}`"
        ))),
    }
}

async fn delete_type(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(type_name): Path<String>,
) -> Result<Response, ApiError> {
    check_name(&type_name)?;
    let existed = state.store.delete_event_type(&tenant, &type_name).await?;
    state.types.remove(&tenant, &type_name);
    if existed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "no event type named `{type_name}`"
        )))
    }
}
