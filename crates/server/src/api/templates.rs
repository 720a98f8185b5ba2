//! `GET|POST /event-templates`, `GET|DELETE /event-templates/{name}` and
//! `POST /event-templates/{name}/fire` (SPEC §2 "Template", §3.2; issue 4
//! point 5).
//!
//! Firing substitutes the parameters ([`Template::fire`]), lays the request's
//! other fields over the result (`stream_id`, `id`, …) and publishes through
//! the one publish path, so event types, their defaults and schemas apply
//! exactly as to any other event.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Map, Value, json};
use streambus_core::name;
use streambus_core::template::Template;
use streambus_core::validate::{PublishContext, ValidationError};

use super::error::ApiError;
use super::events::json_response;
use super::events::published_response;
use super::extract::{AppBody, correlation_id, json_body};
use super::types::created_at;
use crate::auth::{Identity, Tenant};
use crate::publish::{publish_one_or_hold, validate_item};
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/event-templates", get(list_templates).post(put_template))
        .route(
            "/event-templates/{name}",
            get(get_template).delete(delete_template),
        )
        .route("/event-templates/{name}/fire", post(fire_template))
}

fn check_name(n: &str) -> Result<(), ApiError> {
    if name::is_event_id(n) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            "name",
            "must match [A-Za-z0-9_.:-]{1,128}",
        ))
    }
}

fn to_json(t: &Template) -> Result<Value, ApiError> {
    serde_json::to_value(t).map_err(|e| ApiError::Internal(e.into()))
}

async fn list_templates(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Response, ApiError> {
    let all = state.store.list_templates(&tenant).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "data": all }).to_string(),
    ))
}

/// Creates (201) or replaces (200) the template named in the body.
async fn put_template(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let template = Template::from_json(json_body(&body)?)?;
    let created = state.store.put_template(&tenant, &template).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/event-templates/{}", template.name);
    Ok(created_at(status, &to_json(&template)?, &location))
}

async fn get_template(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(template_name): Path<String>,
) -> Result<Response, ApiError> {
    check_name(&template_name)?;
    let template = find(&state, &tenant, &template_name).await?;
    Ok(json_response(
        StatusCode::OK,
        to_json(&template)?.to_string(),
    ))
}

async fn delete_template(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(template_name): Path<String>,
) -> Result<Response, ApiError> {
    check_name(&template_name)?;
    if state.store.delete_template(&tenant, &template_name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&template_name))
    }
}

/// `{"params": {...}, <event fields>...}` → 201 with the stored event (200
/// when its `id` was already stored).
async fn fire_template(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    Path(template_name): Path<String>,
    headers: HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    check_name(&template_name)?;
    // An empty body fires with no parameters.
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        json_body(&body)?
    };
    let template = find(&state, &tenant, &template_name).await?;
    let Value::Object(mut overrides) = request else {
        return Err(ValidationError::new("", "the body must be a JSON object").into());
    };
    let params = match overrides.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(ValidationError::new("params", "must be an object").into()),
    };
    let event = template.fire(&params, overrides)?;
    let correlation = correlation_id(&headers);
    let source = format!("template:{template_name}");
    let ctx = PublishContext {
        correlation_id: correlation.as_deref(),
        source: Some(&source),
        ..Default::default()
    };
    let len = event.to_string().len();
    let new = validate_item(&state, &who, event, len, &ctx)?;
    let published = publish_one_or_hold(&state, &tenant, new).await?;
    Ok(published_response(&published))
}

async fn find(state: &AppState, tenant: &str, template_name: &str) -> Result<Template, ApiError> {
    state
        .store
        .get_template(tenant, template_name)
        .await?
        .ok_or_else(|| not_found(template_name))
}

fn not_found(template_name: &str) -> ApiError {
    ApiError::NotFound(format!("no event template named `{template_name}`"))
}
