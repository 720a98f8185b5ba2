//! `/healthz` (the process answers) and `/readyz` (storage and log answer;
//! 503 + `Retry-After` naming the engine that does not).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::error::RETRY_AFTER_SECS;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Which engine sits behind each seam, so a failed check names it.
fn engines(state: &AppState) -> serde_json::Value {
    if state.config.cluster.is_cluster() {
        json!({"store": "postgresql", "log": "nats-jetstream"})
    } else {
        json!({"store": "sqlite", "log": "in-process"})
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.ping().await;
    let log = state.log.ping().await;
    let check = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = store.is_ok() && log.is_ok() && !state.shutdown.is_cancelled();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {"store": check(store.is_ok()), "log": check(log.is_ok())},
        "engines": engines(&state),
        "shutting_down": state.shutdown.is_cancelled(),
    });
    let mut res = axum::Json(body).into_response();
    if !ready {
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    res
}
