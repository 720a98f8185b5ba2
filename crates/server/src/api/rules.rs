//! `GET|POST /rules`, `GET|PUT|DELETE /rules/{id}` and
//! `POST /rules/{id}/test` (SPEC §2 "Rule", §3.2; docs/RULES.md).
//!
//! Definitions live in the `rules` catalog of the caller's tenant; this
//! node's engine ([`crate::rules`]) takes a change in before the answer,
//! other nodes within [`crate::rules::REFRESH_INTERVAL`]. A new or changed detector
//! applies to events appended after the change (`since`, set here).
//! Rules from the configuration are listed but cannot be changed here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use streambus_core::name;
use streambus_core::rule::{Derived, Rule};
use streambus_core::store::Catalog;
use streambus_core::validate::{PublishContext, ValidationError};

use super::error::ApiError;
use super::extract::{AppBody, json_body};
use super::types::created_at;
use crate::auth::Tenant;
use crate::publish::prepare;
use crate::rules::Origin;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rules", get(list_rules).post(create_rule))
        .route(
            "/rules/{id}",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .route("/rules/{id}/test", post(test_rule))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if name::is_name(id) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            "id",
            "must match [a-z0-9][a-z0-9._-]{0,63}",
        ))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no rule `{id}`"))
}

async fn list_rules(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<Value> {
    Json(json!({ "data": state.rules.list(&tenant) }))
}

async fn get_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .rules
        .view(&tenant, &id)
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

/// `POST /rules`: creates the rule named by `id` in the body (201); 409
/// when it exists.
async fn create_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let v = json_body(&body)?;
    let id = Rule::from_json(v.clone())?.def.id;
    if state.rules.origin(&tenant, &id).is_some() {
        return Err(ApiError::Conflict(format!(
            "rule `{id}` exists; PUT /rules/{id} replaces it"
        )));
    }
    store_rule(&state, &tenant, v).await
}

/// `PUT /rules/{id}`: creates (201) or replaces (200) the rule.
async fn put_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let mut v = json_body(&body)?;
    match v.get("id") {
        None => {
            if let Value::Object(m) = &mut v {
                m.insert("id".into(), json!(id));
            }
        }
        Some(given) if given.as_str() == Some(id.as_str()) => {}
        Some(_) => return Err(ValidationError::new("id", "differs from the path").into()),
    }
    store_rule(&state, &tenant, v).await
}

/// Checks and stores a definition, keeping `since` when the detector is
/// unchanged, and installs it on this node.
async fn store_rule(state: &AppState, tenant: &str, mut v: Value) -> Result<Response, ApiError> {
    if let Value::Object(m) = &mut v {
        // `since` is the server's: set below.
        m.remove("since");
    }
    let mut rule = Rule::from_json(v)?;
    let id = rule.def.id.clone();
    if state.rules.origin(tenant, &id) == Some(Origin::Config) {
        return Err(ApiError::Conflict(format!(
            "rule `{id}` comes from the configuration and cannot be changed over the API"
        )));
    }
    let previous = state
        .store
        .get_entry(Catalog::Rules, tenant, &id)
        .await?
        .and_then(|p| Rule::from_json(p).ok());
    rule.def.since = match previous {
        Some(p) if p.def.detect == rule.def.detect && p.def.when == rule.def.when => p.def.since,
        _ => state.log.head().await?,
    };
    let body = serde_json::to_value(&rule.def).map_err(|e| ApiError::Internal(e.into()))?;
    let created = state
        .store
        .put_entry(Catalog::Rules, tenant, &id, &body)
        .await?;
    state.rules.reload_now().await;
    let view = state.rules.view(tenant, &id).unwrap_or(body);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(created_at(status, &view, &format!("/api/v1/rules/{id}")))
}

async fn delete_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.rules.origin(&tenant, &id) == Some(Origin::Config) {
        return Err(ApiError::Conflict(format!(
            "rule `{id}` comes from the configuration and cannot be deleted over the API"
        )));
    }
    if !state
        .store
        .delete_entry(Catalog::Rules, &tenant, &id)
        .await?
    {
        return Err(not_found(&id));
    }
    state.rules.reload_now().await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /rules/{id}/test` with a sample event: what the rule would derive
/// from it now (`{"matched", "derived": [event…], "state": [write…]}`).
/// Nothing is published or remembered.
async fn test_rule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    AppBody(body): AppBody,
) -> Result<Json<Value>, ApiError> {
    let sample = prepare(
        &state,
        &tenant,
        json_body(&body)?,
        &PublishContext::default(),
    )?;
    let (matched, derived) = state
        .rules
        .test(&tenant, &id, &sample.event)
        .ok_or_else(|| not_found(&id))?;
    let writes: Vec<Value> = derived
        .iter()
        .filter_map(|d: &Derived| d.state.as_ref())
        .map(|w| json!({"stream": w.stream, "key": w.key, "patch": w.patch}))
        .collect();
    let events: Vec<&Value> = derived.iter().map(|d| &d.event).collect();
    Ok(Json(
        json!({"matched": matched, "derived": events, "state": writes}),
    ))
}
