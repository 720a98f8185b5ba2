//! The seed 004 stream API (SPEC §3.1): broadcast to one or every stream, list
//! streams with client counts, and start/stop/pause/resume, with the seed's
//! `{"success": …, "message" | "data": …, "timestamp": …}` envelopes.
//! Served under `/api/v1/events` and, as the seed's second service,
//! `/api/v1/broadcast-demo`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Value, json};
use streambus_core::store::{StreamInfo, StreamState};
use streambus_core::validate::PublishContext;
use streambus_core::{name, time};

use super::error::ApiError;
use super::extract::{AppBody, correlation_id, json_body};
use crate::auth::{Identity, Tenant};
use crate::publish::{ItemResult, publish_batch, validate_item};
use crate::state::AppState;

/// Routes of this module, relative to the seed's prefix.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/broadcast", post(broadcast))
        .route("/streams", get(list_streams))
        .route("/stream/{stream_id}/{action}", post(control))
}

fn envelope(message: String, data: Option<Value>) -> Response {
    let mut body = json!({"success": true, "message": message, "timestamp": time::now_ms() / 1000});
    if let Some(d) = data {
        body["data"] = d;
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn broadcast(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    headers: axum::http::HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let value = json_body(&body)?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::BadRequest {
            field: None,
            detail: "body must be a JSON object".into(),
        });
    };
    let target = match obj.remove("stream_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::bad_field("stream_id", "must be a string")),
    };
    let streams = match &target {
        Some(s) => vec![s.clone()],
        None => {
            if obj.contains_key("id") {
                return Err(ApiError::bad_field(
                    "id",
                    "cannot be given when broadcasting to every stream",
                ));
            }
            known_streams(&state, &tenant).await?
        }
    };
    let correlation = correlation_id(&headers);
    let items = streams
        .iter()
        .map(|s| {
            let ctx = PublishContext {
                stream: Some(s),
                source: Some("broadcast"),
                correlation_id: correlation.as_deref(),
            };
            let v = Value::Object(obj.clone());
            let len = body.len();
            validate_item(&state, &who, v, len, &ctx)
        })
        .collect::<Vec<_>>();
    // One shared body: the first refusal is every item's refusal.
    if let Some(Err(_)) = items.first() {
        return Err(items
            .into_iter()
            .find_map(Result::err)
            .expect("first item is an error"));
    }
    let results = publish_batch(&state, &tenant, items).await?;
    let events: Vec<Value> = results
        .iter()
        .filter_map(|r| match r {
            ItemResult::Stored(a) => {
                Some(json!({"id": a.record.event.id, "offset": a.record.offset(),
                "stream_id": a.record.event.stream_id, "duplicate": a.duplicate}))
            }
            ItemResult::Rejected(_) => None,
        })
        .collect();
    let message = match &target {
        Some(s) => format!("Event broadcasted to stream: {s}"),
        None => format!("Event broadcasted to all streams ({})", events.len()),
    };
    Ok(envelope(message, Some(json!({"events": events}))))
}

/// Streams stored, with a generator, or with clients.
async fn known_streams(state: &AppState, tenant: &str) -> Result<Vec<String>, ApiError> {
    let stored = state.store.list_streams(tenant).await?;
    let clients = state.client_counts(tenant).await;
    Ok(stream_names(state, tenant, &stored, &clients))
}

/// The union of stored streams, streams with a generator and streams with
/// clients (`default` when there is none), sorted.
fn stream_names(
    state: &AppState,
    tenant: &str,
    stored: &[StreamInfo],
    clients: &std::collections::HashMap<String, usize>,
) -> Vec<String> {
    // Internal streams (`_overlays`) are not the operator's to start or stop.
    let mut names: Vec<String> = stored
        .iter()
        .filter(|s| !s.name.starts_with('_'))
        .map(|s| s.name.clone())
        .collect();
    names.extend(state.generators.streams(tenant));
    names.extend(clients.keys().filter(|s| name::is_stream_name(s)).cloned());
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push("default".to_owned());
    }
    names
}

async fn list_streams(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Response, ApiError> {
    let stored = state.store.list_streams(&tenant).await?;
    let clients = state.client_counts(&tenant).await;
    let mut data = BTreeMap::new();
    for name in stream_names(&state, &tenant, &stored, &clients) {
        let info = stored.iter().find(|s| s.name == name);
        let st = info.map_or(StreamState::Active, |s| s.state);
        data.insert(
            name.clone(),
            json!({
                "clients": clients.get(&name).copied().unwrap_or(0),
                "active": st != StreamState::Stopped,
                "state": st.as_str(),
                "generator": state.generators.state(&tenant, &name),
                "last_offset": info.map_or(0, |s| s.last_offset),
                "events": info.map_or(0, |s| s.events),
            }),
        );
    }
    let mut body = json!({"success": true, "data": data, "timestamp": time::now_ms() / 1000});
    body["subscribers_all_streams"] = json!(clients.get("*").copied().unwrap_or(0));
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

async fn control(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path((stream, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !name::is_stream_name(&stream) {
        return Err(ApiError::bad_field(
            "stream_id",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }
    let t = &tenant;
    let message = match action.as_str() {
        "start" => {
            state
                .store
                .set_stream_state(t, &stream, StreamState::Active, 0)
                .await?;
            state.hub.resume(t, &stream);
            state.generators.start(&state, t, &stream);
            format!("Stream '{stream}' started")
        }
        "stop" => {
            state.generators.stop(t, &stream);
            state
                .store
                .set_stream_state(t, &stream, StreamState::Stopped, 0)
                .await?;
            state.hub.resume(t, &stream);
            format!("Stream '{stream}' stopped and removed")
        }
        "pause" => {
            let stored_last = state
                .store
                .list_streams(t)
                .await?
                .into_iter()
                .find(|s| s.name == stream)
                .map_or(0, |s| s.last_offset);
            // Store first, then hold: a sync pass in between then agrees.
            let held_after = state.hub.hold_point(t, &stream, stored_last);
            state
                .store
                .set_stream_state(t, &stream, StreamState::Paused, held_after)
                .await?;
            state.hub.hold(t, &stream, held_after);
            state.generators.set_paused(t, &stream, true);
            format!("Stream '{stream}' paused")
        }
        "resume" => {
            state
                .store
                .set_stream_state(t, &stream, StreamState::Active, 0)
                .await?;
            state.hub.resume(t, &stream);
            state.generators.set_paused(t, &stream, false);
            format!("Stream '{stream}' resumed")
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "unknown action `{other}`; use start, stop, pause or resume"
            )));
        }
    };
    Ok(envelope(message, None))
}
