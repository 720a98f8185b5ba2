//! `POST /events` (one, an array, or NDJSON), `GET /events` and
//! `GET /events/history` (filters, time range, cursor pagination),
//! `GET /events/{id}` (SPEC §3.2), and the held scheduled events (SPEC §4):
//! `GET /events/scheduled`, `GET|DELETE /events/scheduled/{id}`.
//!
//! A publish whose `scheduled_at` lies ahead is held, not appended
//! ([`crate::schedule`]): it answers `202 Accepted` (per item in a batch)
//! with the event as [`held_json`] shows it — no offset yet, `"scheduled":
//! true` — and `GET /events/{id}` shows it so until it is released.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::value::RawValue;
use streambus_core::store::EventQuery;
use streambus_core::validate::PublishContext;
use streambus_core::{EventClass, name, time};

use super::error::ApiError;
use super::extract::{AppBody, AppQuery, correlation_id, json_body};
use crate::auth::{Identity, Tenant};
use crate::publish::{Published, publish_one_or_hold, publish_or_hold, stored_json, validate_item};
use crate::schedule::{self, held_json};
use crate::state::AppState;

/// Default and largest page for history queries.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events).post(publish_events))
        .route("/events/history", get(list_events))
        // Static segments win over `{id}` (so an event whose id is
        // `scheduled` is read from the history query, not from here).
        .route("/events/scheduled", get(list_scheduled))
        .route(
            "/events/scheduled/{id}",
            get(get_scheduled).delete(cancel_scheduled),
        )
        .route("/events/{id}", get(get_event))
}

/// A JSON response from bytes already encoded.
pub fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut res = (status, body.into()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The answer to a single publish: 201 with the stored event (200 for a
/// repeated id), or 202 with the held event; `Location` names it.
pub fn published_response(published: &Published) -> Response {
    let (status, id, body) = match published {
        Published::Stored(a) => (
            if a.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            a.record.event.id.as_str(),
            stored_json(a).to_vec(),
        ),
        Published::Held(e) => (
            StatusCode::ACCEPTED,
            e.id.as_str(),
            held_json(e).to_string().into_bytes(),
        ),
    };
    let mut res = json_response(status, body);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/events/{id}")) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

enum BodyKind {
    One,
    Array,
    Ndjson,
}

fn body_kind(headers: &HeaderMap, body: &[u8]) -> Result<BodyKind, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/x-ndjson") || ctype.starts_with("application/jsonl") {
        return Ok(BodyKind::Ndjson);
    }
    if !(ctype.is_empty()
        || ctype.starts_with("application/json")
        || ctype.starts_with("text/plain"))
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "content type `{ctype}` is not accepted; send application/json or application/x-ndjson"
        )));
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Ok(BodyKind::Array),
        Some(b'{') => Ok(BodyKind::One),
        None => Err(ApiError::BadRequest {
            field: None,
            detail: "request body is empty".into(),
        }),
        Some(_) => Err(ApiError::BadRequest {
            field: None,
            detail: "body must be a JSON object, a JSON array, or NDJSON".into(),
        }),
    }
}

async fn publish_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let correlation = correlation_id(&headers);
    let ctx = PublishContext {
        correlation_id: correlation.as_deref(),
        ..Default::default()
    };
    let items: Vec<(Result<serde_json::Value, ApiError>, usize)> = match body_kind(&headers, &body)?
    {
        BodyKind::One => {
            let value = json_body(&body)?;
            let event = validate_item(&state, &who, value, body.len(), &ctx)?;
            let published = publish_one_or_hold(&state, &tenant, event).await?;
            return Ok(published_response(&published));
        }
        BodyKind::Array => {
            let raw: Vec<&RawValue> =
                serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
                    field: None,
                    detail: format!("body is not a valid JSON array: {e}"),
                })?;
            raw.into_iter()
                .map(|r| {
                    (
                        serde_json::from_str(r.get()).map_err(|e| bad_json(&e)),
                        r.get().len(),
                    )
                })
                .collect()
        }
        BodyKind::Ndjson => body
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| {
                (
                    serde_json::from_slice(line).map_err(|e| bad_json(&e)),
                    line.len(),
                )
            })
            .collect(),
    };
    if items.len() > state.limits.max_batch {
        return Err(ApiError::TooLarge(format!(
            "batch holds {} events, the limit is {}",
            items.len(),
            state.limits.max_batch
        )));
    }
    let validated = items
        .into_iter()
        .map(|(value, len)| value.and_then(|v| validate_item(&state, &who, v, len, &ctx)))
        .collect();
    let results = publish_or_hold(&state, &tenant, validated).await?;
    let mut out = Vec::with_capacity(results.len() * 256);
    out.extend_from_slice(b"{\"results\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match r {
            Ok(Published::Stored(a)) => {
                let status = if a.duplicate { 200 } else { 201 };
                out.extend_from_slice(format!("{{\"status\":{status},\"event\":").as_bytes());
                out.extend_from_slice(stored_json(a));
                out.push(b'}');
            }
            Ok(Published::Held(e)) => {
                let item = serde_json::json!({"status": 202, "event": held_json(e)});
                out.extend_from_slice(item.to_string().as_bytes());
            }
            Err(e) => {
                let item =
                    serde_json::json!({"status": e.status().as_u16(), "problem": e.problem()});
                out.extend_from_slice(item.to_string().as_bytes());
            }
        }
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, out))
}

fn bad_json(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest {
        field: None,
        detail: format!("item is not valid JSON: {e}"),
    }
}

/// Query parameters of `GET /events` (seed 001 names accepted too).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    stream_id: Option<String>,
    stream: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(rename = "event_type")]
    event_type_alias: Option<String>,
    class: Option<String>,
    source: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    order: Option<String>,
}

impl ListParams {
    fn into_query(self) -> Result<EventQuery, ApiError> {
        let stream = self.stream_id.or(self.stream).filter(|s| !s.is_empty());
        if stream.as_deref().is_some_and(|s| !name::is_stream_name(s)) {
            return Err(ApiError::bad_field(
                "stream_id",
                "must match [a-z0-9][a-z0-9._-]{0,127}",
            ));
        }
        let event_type = self
            .event_type
            .or(self.event_type_alias)
            .filter(|s| !s.is_empty());
        if event_type
            .as_deref()
            .is_some_and(|t| !name::is_event_type(t))
        {
            return Err(ApiError::bad_field(
                "type",
                "must match [A-Za-z0-9_.:-]{1,100}",
            ));
        }
        let class = match self.class.as_deref() {
            None | Some("") => None,
            Some(c) => Some(EventClass::parse(c).ok_or_else(|| {
                ApiError::bad_field("class", "must be one of animated, data, alert, system")
            })?),
        };
        let time = |field: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
            match v.as_deref() {
                None | Some("") => Ok(None),
                Some(s) => time::parse_time_ms(s).map(Some).ok_or_else(|| {
                    ApiError::bad_field(field, "must be Unix seconds or an RFC 3339 time")
                }),
            }
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_PAGE,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_PAGE).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_field("limit", format!("must be an integer from 1 to {MAX_PAGE}"))
                })?,
        };
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(c.parse::<u64>().map_err(|_| {
                ApiError::bad_field("cursor", "is not a cursor this server issued")
            })?),
        };
        let descending = match self.order.as_deref() {
            None | Some("") | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(ApiError::bad_field("order", "must be asc or desc")),
        };
        Ok(EventQuery {
            streams: stream.map(|s| vec![s]),
            event_type,
            class,
            source: self.source.filter(|s| !s.is_empty()),
            start_ms: time("start_time", self.start_time)?,
            end_ms: time("end_time", self.end_time)?,
            cursor,
            descending,
            limit,
        })
    }
}

async fn list_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Response, ApiError> {
    let query = params.into_query()?;
    let page = state.log.read(&tenant, &query).await?;
    let mut out = Vec::with_capacity(page.records.len() * 300 + 64);
    out.extend_from_slice(b"{\"data\":[");
    for (i, r) in page.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&r.json);
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match page.next_cursor {
        Some(c) => out.extend_from_slice(format!("\"{c}\"").as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Ok(json_response(StatusCode::OK, out))
}

async fn get_event(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    if let Some(r) = state.store.get(&tenant, &id).await? {
        return Ok(json_response(StatusCode::OK, r.json.clone()));
    }
    // Not in the log (yet): it may be held until its `scheduled_at`.
    match state.store.get_scheduled(&tenant, &id).await? {
        Some(e) => Ok(json_response(StatusCode::OK, held_json(&e).to_string())),
        None => Err(ApiError::NotFound(format!("no event with id `{id}`"))),
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if name::is_event_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            "id",
            "must match [A-Za-z0-9_.:-]{1,128}",
        ))
    }
}

/// Query parameters of `GET /events/scheduled`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScheduledParams {
    limit: Option<String>,
}

/// `GET /events/scheduled`: the held events, soonest due first, as
/// `{"data": [...]}`.
async fn list_scheduled(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppQuery(params): AppQuery<ScheduledParams>,
) -> Result<Response, ApiError> {
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::bad_field("limit", format!("must be an integer from 1 to {MAX_PAGE}"))
            })?,
    };
    let held = state.store.list_scheduled(&tenant, limit).await?;
    let data: Vec<serde_json::Value> = held.iter().map(held_json).collect();
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({ "data": data }).to_string(),
    ))
}

/// `GET /events/scheduled/{id}`: one held event.
async fn get_scheduled(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    match state.store.get_scheduled(&tenant, &id).await? {
        Some(e) => Ok(json_response(StatusCode::OK, held_json(&e).to_string())),
        None => Err(not_held(&id)),
    }
}

/// `DELETE /events/scheduled/{id}`: withdraws a held event (204); it will
/// never be delivered.
async fn cancel_scheduled(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    match schedule::cancel(&state, &tenant, &id).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(not_held(&id)),
    }
}

fn not_held(id: &str) -> ApiError {
    ApiError::NotFound(format!("no scheduled event `{id}` is held"))
}
