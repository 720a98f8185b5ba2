//! `GET|POST /keys`, `DELETE /keys/{id}` (issue 5): service API keys, admin
//! only. The secret is shown once, in the answer to `POST`; only its SHA-256
//! is stored, and a request presents it as a bearer token like a JWT.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use streambus_core::auth::Role;
use streambus_core::keys::{self, ApiKey};
use streambus_core::{time, wire};

use super::error::ApiError;
use super::extract::{AppBody, json_body};
use crate::auth::Tenant;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list).post(create))
        .route("/keys/{id}", delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    role: Role,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let new: NewKey =
        serde_json::from_value(json_body(&body)?).map_err(|e| ApiError::BadRequest {
            field: None,
            detail: format!("a key is {{name, role, publish?, subscribe?}}: {e}"),
        })?;
    if new.name.is_empty() || new.name.len() > 200 {
        return Err(ApiError::bad_field("name", "must be 1 to 200 bytes"));
    }
    for (field, globs) in [("publish", &new.publish), ("subscribe", &new.subscribe)] {
        if let Some(bad) = globs.iter().find(|g| !wire::is_stream_pattern(g)) {
            return Err(ApiError::bad_field(
                field,
                format!("`{bad}` is not a stream name or glob"),
            ));
        }
    }
    let key = ApiKey {
        id: keys::new_key_id(),
        tenant: tenant.clone(),
        name: new.name,
        role: new.role,
        publish: new.publish,
        subscribe: new.subscribe,
        created_ms: time::now_ms(),
        revoked_ms: None,
        last_used_ms: None,
    };
    let secret = keys::new_key_secret();
    state
        .store
        .put_api_key(&key, &keys::key_hash(&secret))
        .await?;
    let body = json!({"key": key, "secret": secret,
        "note": "the secret is shown once; store it now"});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Value>, ApiError> {
    let keys = state.store.list_api_keys(&tenant).await?;
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if state
        .store
        .revoke_api_key(&tenant, &id, time::now_ms())
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "no active key `{id}` (unknown, or already revoked)"
        )))
    }
}
