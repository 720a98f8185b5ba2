//! The HTTP surface: every route module exposes `router()`, merged here.
//!
//! The API is served under `/api/v1` and, as aliases, at the seeds' own
//! `/api/...` paths (SPEC §3.2). The seed 004 stream API is additionally
//! served under `/api/v1/broadcast-demo` (that seed's second service). The
//! browser pages (`/admin`, `/overlay`, `/sdk.js`, `/assets/…`) sit at the
//! root ([`pages`]).

pub mod audit;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod ingest;
pub mod keys;
pub mod overlays;
pub mod pages;
pub mod requests;
pub mod rules;
pub mod sse;
pub mod state;
pub mod streams;
pub mod subscriptions;
pub mod templates;
pub mod tenants;
pub mod types;
pub mod webhooks;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use error::ApiError;

/// The whole application.
pub fn router(state: AppState) -> Router {
    let seed004 = streams::router().merge(sse::router());
    let api = Router::new()
        .merge(events::router())
        .merge(types::router())
        .merge(templates::router())
        .merge(subscriptions::router())
        .merge(overlays::router())
        .merge(keys::router())
        .merge(audit::router())
        .merge(tenants::router())
        .merge(state::router())
        .merge(requests::router())
        .merge(rules::router())
        .merge(ingest::router())
        .merge(webhooks::router())
        .nest("/events", seed004.clone())
        .nest("/broadcast-demo", seed004)
        .route("/ws", get(ws::upgrade));
    let cors = CorsLayer::new()
        .allow_origin(cors_origins(&state))
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            axum::http::HeaderName::from_static("streambus-recovered"),
            axum::http::HeaderName::from_static("streambus-unchanged"),
            axum::http::header::ETAG,
            axum::http::header::RETRY_AFTER,
        ]);
    Router::new()
        .nest("/api/v1", api.clone())
        .nest("/api", api)
        .merge(health::router())
        .merge(pages::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware,
        ))
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(cors)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Which origins may call the API from a browser (`server.cors_origins`).
pub fn cors_origins(state: &AppState) -> AllowOrigin {
    let origins = &state.config.server.cors_origins;
    if origins.iter().any(|o| o == "*") || (origins.is_empty() && state.verifier.is_none()) {
        return AllowOrigin::any();
    }
    AllowOrigin::list(
        origins
            .iter()
            .filter_map(|o| axum::http::HeaderValue::from_str(o).ok()),
    )
}

/// True when any origin may call the API (the seed 004 SSE headers are then
/// sent as the seed shows them).
pub fn any_origin(state: &AppState) -> bool {
    let origins = &state.config.server.cors_origins;
    origins.iter().any(|o| o == "*") || (origins.is_empty() && state.verifier.is_none())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
