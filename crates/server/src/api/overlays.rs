//! The operator's side of the playout queues (issue 4, `docs/OVERLAYS.md`):
//! `GET /overlays`, queue controls, `PUT /events/{id}/cancel`,
//! `POST /events/{id}/replay`, per-overlay status of an event, and
//! `GET /analytics/overlays`.
//!
//! Every control is checked against this node's fold first (so a refused one
//! publishes nothing), published into the log, and answered once this node
//! has folded it, with the state it produced. The WebSocket frames
//! `ANIMATION_CANCEL`, `ANIMATION_REPLAY` and `OVERLAY_CONTROL` call the same
//! functions.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use streambus_core::event::{EventClass, Status};
use streambus_core::lifecycle::transition_error;
use streambus_core::overlay::{Action, Op, SettingsPatch};
use streambus_core::{Record, consumer, time};

use super::error::ApiError;
use super::events::json_response;
use super::extract::{AppBody, AppQuery};
use crate::auth::Tenant;
use crate::overlays::publish_op;
use crate::state::AppState;
use crate::sync::OVERLAY_PREFIX;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/overlays", get(list))
        .route("/overlays/{overlay}", get(one))
        .route("/overlays/{overlay}/settings", put(put_settings))
        .route("/overlays/{overlay}/{action}", post(post_action))
        .route("/events/{id}/cancel", put(cancel_route).post(cancel_route))
        .route("/events/{id}/replay", post(replay_route))
        .route("/events/{id}/overlays", get(event_overlays))
        .route("/analytics/overlays", get(analytics))
}

/// Connections of each overlay on the other nodes of a cluster.
async fn remote_counts(state: &AppState, tenant: &str) -> HashMap<String, usize> {
    if !state.config.cluster.is_cluster() {
        return HashMap::new();
    }
    let fresh = time::now_ms() - crate::sync::PRESENCE_FRESH_MS;
    match state.store.presence(tenant, &state.node_id, fresh).await {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|(k, n)| {
                let id = k.strip_prefix(OVERLAY_PREFIX)?;
                Some((id.to_owned(), usize::try_from(n).unwrap_or(usize::MAX)))
            })
            .fold(HashMap::new(), |mut m, (k, n)| {
                *m.entry(k).or_default() += n;
                m
            }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read other nodes' overlay connections");
            HashMap::new()
        }
    }
}

/// One overlay as the API shows it.
///
/// # Errors
/// 404 for an unknown overlay.
pub async fn overlay_view(
    state: &AppState,
    tenant: &str,
    overlay: &str,
) -> Result<Value, ApiError> {
    let remote = remote_counts(state, tenant).await;
    state
        .overlays
        .view(tenant, overlay, remote.get(overlay).copied().unwrap_or(0))
        .ok_or_else(|| unknown_overlay(overlay))
}

fn unknown_overlay(overlay: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no overlay `{overlay}` (an overlay exists from its first connection or stored subscription)"
    ))
}

fn check_overlay_id(overlay: &str) -> Result<(), ApiError> {
    if consumer::is_overlay_id(overlay) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            "overlay",
            "must match [A-Za-z0-9_.:-]{1,128}",
        ))
    }
}

async fn list(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<Value> {
    let remote = remote_counts(&state, &tenant).await;
    let overlays = state
        .overlays
        .list(&tenant, |id| remote.get(id).copied().unwrap_or(0));
    Json(json!({ "overlays": overlays }))
}

async fn one(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(overlay): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(overlay_view(&state, &tenant, &overlay).await?))
}

/// Publishes `op` and waits until this node has folded it.
async fn apply(state: &AppState, tenant: &str, op: Op) -> Result<(), ApiError> {
    let appended = publish_op(state, tenant, op).await?;
    state.overlays.wait_folded(appended.record.offset()).await
}

/// Skip, pause, resume or clear one overlay's queue; answers the overlay's
/// state afterwards (and, for `clear`, how many items were cancelled).
///
/// # Errors
/// 404 for an unknown overlay, 409 for a skip when nothing plays, 400 for a
/// bad type glob.
pub async fn control(
    state: &AppState,
    tenant: &str,
    overlay: &str,
    action: Action,
    event_type: Option<String>,
) -> Result<Value, ApiError> {
    check_overlay_id(overlay)?;
    if let Some(t) = &event_type
        && !streambus_core::name::is_event_type(&t.replace('*', "x"))
    {
        return Err(ApiError::bad_field(
            "type",
            "must be an event type or a glob",
        ));
    }
    let (playing, queued_before) = state.overlays.read(tenant, |q| {
        q.get(overlay)
            .map(|o| (o.playing.is_some(), o.queue.len()))
            .ok_or_else(|| unknown_overlay(overlay))
    })?;
    if action == Action::Skip && !playing {
        return Err(ApiError::Conflict(format!(
            "nothing is playing on overlay `{overlay}`"
        )));
    }
    apply(
        state,
        tenant,
        Op::Control {
            overlay: overlay.to_owned(),
            action,
            event_type,
        },
    )
    .await?;
    let mut view = overlay_view(state, tenant, overlay).await?;
    if action == Action::Clear {
        let left = view["queue"].as_array().map_or(0, Vec::len);
        view = json!({"cleared": queued_before.saturating_sub(left), "overlay": view});
    }
    Ok(view)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClearBody {
    #[serde(default, alias = "event_type", alias = "eventType")]
    r#type: Option<String>,
}

async fn post_action(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path((overlay, action)): Path<(String, String)>,
    AppBody(body): AppBody,
) -> Result<Json<Value>, ApiError> {
    let Some(action) = Action::parse(&action) else {
        return Err(ApiError::NotFound(format!(
            "no overlay action `{action}`; use skip, pause, resume or clear"
        )));
    };
    let clear: ClearBody = optional_body(&body)?;
    if clear.r#type.is_some() && action != Action::Clear {
        return Err(ApiError::bad_field("type", "only `clear` takes a type"));
    }
    Ok(Json(
        control(&state, &tenant, &overlay, action, clear.r#type).await?,
    ))
}

/// A JSON object body that may be empty.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let detail = format!("invalid body: {e}");
        ApiError::BadRequest {
            field: detail
                .split('`')
                .nth(1)
                .filter(|_| detail.contains("unknown field"))
                .map(str::to_owned),
            detail,
        }
    })
}

async fn put_settings(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(overlay): Path<String>,
    AppBody(body): AppBody,
) -> Result<Json<Value>, ApiError> {
    check_overlay_id(&overlay)?;
    let settings: SettingsPatch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest {
            field: None,
            detail: format!(
                "settings must be an object of min_gap_ms, max_wait_ms, grace_ms, hold_while_hidden: {e}"
            ),
        }
    })?;
    apply(
        &state,
        &tenant,
        Op::Settings {
            overlay: overlay.clone(),
            settings,
        },
    )
    .await?;
    Ok(Json(overlay_view(&state, &tenant, &overlay).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    #[serde(default, alias = "targetOverlay", alias = "overlay")]
    target_overlay: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TargetQuery {
    #[serde(default)]
    overlay: Option<String>,
}

fn target(query: TargetQuery, body: &[u8]) -> Result<Option<String>, ApiError> {
    let body: TargetBody = optional_body(body)?;
    let t = body.target_overlay.or(query.overlay);
    if let Some(t) = &t {
        check_overlay_id(t)?;
    }
    Ok(t)
}

async fn cancel_route(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<TargetQuery>,
    AppBody(body): AppBody,
) -> Result<Json<Value>, ApiError> {
    let target = target(query, &body)?;
    Ok(Json(cancel(&state, &tenant, &id, target).await?))
}

async fn replay_route(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<TargetQuery>,
    AppBody(body): AppBody,
) -> Result<Json<Value>, ApiError> {
    let target = target(query, &body)?;
    Ok(Json(replay(&state, &tenant, &id, target).await?))
}

/// The stored event, once this node's queues have seen it.
async fn stored_event(state: &AppState, tenant: &str, id: &str) -> Result<Record, ApiError> {
    let record = state
        .store
        .get(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event `{id}`")))?;
    state.overlays.wait_folded(record.offset()).await?;
    Ok(Record::clone(&record))
}

/// Where the event stands on each overlay that has it.
fn on_overlays(state: &AppState, tenant: &str, id: &str) -> Vec<(String, u32, Status)> {
    state.overlays.read(tenant, |q| {
        q.overlays()
            .filter_map(|o| o.play_of(id).map(|(p, s)| (o.id.clone(), p, s)))
            .collect()
    })
}

/// The answer to a cancel or replay: the event's status (from the queues,
/// else `own`, the event's own) and its rows.
fn outcome(state: &AppState, tenant: &str, id: &str, own: Option<Status>) -> Value {
    let overlays: Vec<Value> = on_overlays(state, tenant, id)
        .into_iter()
        .map(|(o, play, s)| json!({"overlay_id": o, "play": play, "status": s.as_str()}))
        .collect();
    let status = state.overlays.read(tenant, |q| q.event_status(id)).or(own);
    json!({
        "success": true,
        "event_id": id,
        "status": status.map(Status::as_str),
        "overlays": overlays,
    })
}

/// Does `tenant` have overlay `overlay`?
fn check_overlay_exists(state: &AppState, tenant: &str, overlay: &str) -> Result<(), ApiError> {
    if state.overlays.read(tenant, |q| q.get(overlay).is_some()) {
        Ok(())
    } else {
        Err(unknown_overlay(overlay))
    }
}

/// Cancels an event on `target` or on every overlay that has it queued or
/// playing. An event with a lifecycle that no overlay has (a tracked event,
/// or an animated one no overlay wanted) has its own status set.
///
/// # Errors
/// 404 for an unknown event or a target overlay that does not have it; 409
/// when it is not cancelable or its status cannot become `cancelled`.
pub async fn cancel(
    state: &AppState,
    tenant: &str,
    id: &str,
    target: Option<String>,
) -> Result<Value, ApiError> {
    if let Some(t) = &target {
        check_overlay_exists(state, tenant, t)?;
    }
    // A scheduled event not yet due is withdrawn before it is ever sent.
    if let Some(held) = crate::schedule::cancel(state, tenant, id).await? {
        return Ok(
            json!({"success": true, "event_id": id, "status": "cancelled",
            "scheduled": true, "overlays": [], "event": crate::schedule::held_json(&held)}),
        );
    }
    let record = stored_event(state, tenant, id).await?;
    let e = &record.event;
    if e.status.is_none() {
        return Err(ApiError::Conflict(format!(
            "event `{id}` has no lifecycle (only animated and tracked events can be cancelled)"
        )));
    }
    if e.cancelable == Some(false) {
        return Err(ApiError::Conflict(format!(
            "event `{id}` is not cancelable"
        )));
    }
    let places = on_overlays(state, tenant, id);
    let live = |s: Status| !s.is_terminal();
    match &target {
        Some(t) => match places.iter().find(|(o, _, _)| o == t) {
            None => {
                return Err(ApiError::NotFound(format!(
                    "event `{id}` is not on overlay `{t}`"
                )));
            }
            Some((_, _, s)) if !live(*s) => {
                return Err(ApiError::Conflict(transition_error(*s, Status::Cancelled)));
            }
            Some(_) => {}
        },
        None if places.iter().any(|(_, _, s)| live(*s)) => {}
        None if places.is_empty() || e.class != EventClass::Animated => {
            // No queue holds it: the event's own lifecycle changes.
            let changed = state
                .store
                .set_event_status(tenant, id, Status::Cancelled, time::now_ms())
                .await?;
            return Ok(outcome(state, tenant, id, changed.event.status));
        }
        None => {
            let s = state
                .overlays
                .read(tenant, |q| q.event_status(id))
                .unwrap_or(Status::Completed);
            return Err(ApiError::Conflict(transition_error(s, Status::Cancelled)));
        }
    }
    apply(
        state,
        tenant,
        Op::Cancel {
            event_id: id.to_owned(),
            overlay: target,
        },
    )
    .await?;
    Ok(outcome(state, tenant, id, e.status))
}

/// Queues a finished event again on `target`, or on every overlay that
/// played it (or, when none has, every overlay whose subscription wants it).
///
/// # Errors
/// 404 for an unknown event or overlay; 409 when it is not animated, not
/// replayable, or still queued or playing where it would be replayed.
pub async fn replay(
    state: &AppState,
    tenant: &str,
    id: &str,
    target: Option<String>,
) -> Result<Value, ApiError> {
    let record = stored_event(state, tenant, id).await?;
    let e = &record.event;
    if e.class != EventClass::Animated {
        return Err(ApiError::Conflict(format!(
            "event `{id}` is not animated; only animated events are replayed"
        )));
    }
    if e.replayable == Some(false) {
        return Err(ApiError::Conflict(format!(
            "event `{id}` is not replayable"
        )));
    }
    let places = on_overlays(state, tenant, id);
    let targets: Vec<String> = match &target {
        Some(t) => {
            check_overlay_exists(state, tenant, t)?;
            if let Some((_, _, s)) = places.iter().find(|(o, _, _)| o == t)
                && !s.is_terminal()
            {
                return Err(ApiError::Conflict(transition_error(*s, Status::Pending)));
            }
            vec![t.clone()]
        }
        None if places.is_empty() => state.overlays.read(tenant, |q| {
            q.overlays()
                .filter(|o| o.filter.matches(e))
                .map(|o| o.id.clone())
                .collect()
        }),
        None => {
            let done: Vec<String> = places
                .iter()
                .filter(|(_, _, s)| s.is_terminal())
                .map(|(o, _, _)| o.clone())
                .collect();
            if done.is_empty() {
                let s = places[0].2;
                return Err(ApiError::Conflict(transition_error(s, Status::Pending)));
            }
            done
        }
    };
    if targets.is_empty() {
        return Err(ApiError::Conflict(format!(
            "no overlay to replay `{id}` on: none has played it and none subscribes to it"
        )));
    }
    // Sent as it was first published: pending, not yet started.
    let mut event = e.clone();
    streambus_core::lifecycle::apply_status(&mut event, Status::Pending, time::now_ms());
    // One replay per target, so overlays that still play it are left alone.
    for t in targets {
        apply(
            state,
            tenant,
            Op::Replay {
                event: Box::new(event.clone()),
                overlay: Some(t),
            },
        )
        .await?;
    }
    Ok(outcome(state, tenant, id, e.status))
}

async fn event_overlays(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rows = state.store.animation_status_by_event(&tenant, &id).await?;
    if rows.is_empty() && state.store.get(&tenant, &id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no event `{id}`")));
    }
    let body = json!({"event_id": id, "overlays": rows});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

async fn analytics(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<Value> {
    let overlays: Vec<Value> = state.overlays.read(&tenant, |q| {
        q.overlays()
            .map(|o| json!({"overlay_id": o.id, "plays": o.counts}))
            .collect()
    });
    Json(json!({"overlays": overlays, "note": "test events (metadata.test) are not counted"}))
}
