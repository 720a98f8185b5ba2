//! Tracked requests (SPEC §6, seed 003; issue 6 point 5; docs/REQUESTS.md):
//! `GET /requests`, `GET /requests/{id}` and the handler's reports over
//! REST, `POST /requests/{id}/{report}`.
//!
//! A report sent here is the event `<prefix>:<report>` published in the
//! request's stream through the one publish path (event types, schemas,
//! permission and publish rate apply), with `metadata.correlation_id` and
//! `data.request_id` naming the request. A handler may equally publish such
//! events itself with `POST /events`; the tables ([`crate::requests`])
//! understand both. Reading the tables needs operator rights (checked by
//! `auth::requirement`); a report needs publish rights on the request's
//! stream, checked here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use streambus_core::auth::Action;
use streambus_core::filter::Glob;
use streambus_core::name;
use streambus_core::request::{self, REQUEST_ID_FIELD, State as RequestState, Step};
use streambus_core::validate::{PublishContext, ValidationError, check_size};

use super::error::ApiError;
use super::events::json_response;
use super::extract::{AppBody, AppQuery, json_body};
use crate::auth::{Identity, Tenant};
use crate::publish::{publish_one, stored_json, validate_item};
use crate::requests::{ListFilter, RequestError};
use crate::state::AppState;

/// Default and largest page of `GET /requests`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/requests", get(list_requests))
        .route("/requests/{id}", get(get_request))
        .route("/requests/{id}/{report}", post(report_request))
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotFound(_) => Self::NotFound(e.to_string()),
            RequestError::Finished { .. } => Self::Conflict(e.to_string()),
            RequestError::Behind(_) => Self::Unavailable(Box::new(e)),
            RequestError::Store(s) => s.into(),
        }
    }
}

/// Query parameters of `GET /requests`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListParams {
    state: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    stream: Option<String>,
    limit: Option<String>,
    /// The credential of `?token=` clients; read by the auth middleware.
    #[allow(dead_code)]
    token: Option<String>,
}

impl ListParams {
    fn into_filter(self) -> Result<ListFilter, ApiError> {
        let state = match self.state.as_deref() {
            None | Some("") => None,
            Some(s) => Some(RequestState::parse(s).ok_or_else(|| {
                ApiError::bad_field(
                    "state",
                    "must be one of requested, running, succeeded, failed",
                )
            })?),
        };
        let stream = self.stream.filter(|s| !s.is_empty());
        if stream.as_deref().is_some_and(|s| !name::is_stream_name(s)) {
            return Err(ApiError::bad_field(
                "stream",
                "must match [a-z0-9][a-z0-9._-]{0,127}",
            ));
        }
        let event_type = self.event_type.filter(|t| !t.is_empty());
        let glob = |t: &str| {
            t.len() <= name::MAX_TYPE_LEN
                && t.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'_' | b'.' | b':' | b'-' | b'*' | b'?')
                })
        };
        if event_type.as_deref().is_some_and(|t| !glob(t)) {
            return Err(ApiError::bad_field(
                "type",
                "must be an event type or a glob of one (`*`, `?`)",
            ));
        }
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_field(
                        "limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        Ok(ListFilter {
            state,
            event_type: event_type.map(Glob::new),
            stream,
            limit,
        })
    }
}

/// `{"data": [request…]}`, newest first.
async fn list_requests(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Response, ApiError> {
    let filter = params.into_filter()?;
    state.requests.wait_live().await?;
    let data = state.requests.list(&tenant, &filter);
    Ok(json_response(
        StatusCode::OK,
        json!({ "data": data }).to_string(),
    ))
}

async fn get_request(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let r = state.requests.find(&state, &tenant, &id).await?;
    Ok(json_response(StatusCode::OK, r.view().to_string()))
}

/// The body (optional) is the report's `data`. `201` with
/// `{"event": <stored report>, "request": <request after it>}`.
async fn report_request(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    Path((id, report)): Path<(String, String)>,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let step = Step::parse_report(&report).ok_or_else(|| {
        ValidationError::new(
            "report",
            "must be one of started, progress, heartbeat, success, failed",
        )
    })?;
    check_id(&id)?;
    check_size(body.len(), &state.limits)?;
    let mut data = report_data(&body)?;
    request::check_report_data(&id, &data)?;
    let r = state.requests.find(&state, &tenant, &id).await?;
    who.principal.check(Action::Publish(&r.stream))?;
    if r.state.is_terminal() {
        return Err(RequestError::Finished {
            id,
            state: r.state.as_str(),
        }
        .into());
    }
    data.insert(REQUEST_ID_FIELD.to_owned(), Value::String(id.clone()));
    let event = json!({
        "type": request::step_type(&r.prefix, step),
        "stream_id": r.stream,
        "data": data,
        "metadata": {"correlation_id": id},
    });
    let ctx = PublishContext::default();
    let len = event.to_string().len();
    let new = validate_item(&state, &who, event, len, &ctx)?;
    let appended = publish_one(&state, &tenant, new).await?;
    // Read-your-writes: answer with the request as this report left it.
    state.requests.wait_folded(appended.record.offset()).await?;
    let after = state
        .requests
        .get(&tenant, &id)
        .map_or(Value::Null, |r| r.view());
    // The stored event's JSON is spliced in as it is, not parsed again.
    let mut body = b"{\"event\":".to_vec();
    body.extend_from_slice(stored_json(&appended));
    body.extend_from_slice(b",\"request\":");
    body.extend_from_slice(after.to_string().as_bytes());
    body.push(b'}');
    Ok(json_response(StatusCode::CREATED, body))
}

/// `400` naming `id` unless it could be an event id.
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

/// The report's `data`: an empty body is `{}`, anything else must be a JSON
/// object.
fn report_data(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match json_body(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(ValidationError::new("data", "the body must be a JSON object").into()),
    }
}
