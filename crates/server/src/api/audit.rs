//! `GET /audit` (issue 5 point 6): the tenant's audit log, newest first,
//! with filters and cursor pagination; admin only.

use axum::extract::State;
use axum::{Json, Router, routing::get};
use serde::Deserialize;
use serde_json::{Value, json};
use streambus_core::audit::AuditQuery;
use streambus_core::time::parse_time_ms;

use super::error::ApiError;
use super::extract::AppQuery;
use crate::auth::Tenant;
use crate::state::AppState;

/// Default and largest page.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<u64>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppQuery(p): AppQuery<Params>,
) -> Result<Json<Value>, ApiError> {
    let time = |field: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        v.map(|s| {
            parse_time_ms(&s)
                .ok_or_else(|| ApiError::bad_field(field, "must be RFC 3339 or Unix seconds"))
        })
        .transpose()
    };
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_field(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let query = AuditQuery {
        actor: p.actor,
        action: p.action,
        since_ms: time("since", p.since)?,
        until_ms: time("until", p.until)?,
        cursor: p.cursor,
        limit,
    };
    let (entries, next) = state.store.query_audit(&tenant, &query).await?;
    Ok(Json(json!({"data": entries, "next_cursor": next})))
}
