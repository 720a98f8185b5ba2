//! `GET /events/stream/{stream_id}` — Server-Sent Events (SPEC §3.1).
//!
//! Frames are `id: <offset>` + `data: <event json>` with no `event:` line, so
//! a browser `EventSource.onmessage` receives every event. `Last-Event-ID`
//! (what `EventSource` sends on reconnect) or `?since=` resumes with no gap and
//! no duplicate; `?rewind=N` starts with the last N. Whether the resume was
//! complete is said in the `streambus-recovered` header and a first comment.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use std::pin::Pin;
use streambus_core::filter::Glob;
use streambus_core::wire::{MAX_REWIND, offset_value};
use streambus_core::{EventClass, Filter, name};

use tokio_util::sync::WaitForCancellationFutureOwned;

use super::error::ApiError;
use super::extract::AppQuery;
use crate::auth::{Identity, Tenant};
use crate::limits::ConnectionGuard;
use crate::state::AppState;
use crate::subscription::{StartAt, Subscription};

/// Milliseconds a browser waits before reconnecting (the SSE `retry:` field).
const RETRY_MS: u64 = 2000;

/// Routes of this module, relative to the seed's prefix.
pub fn router() -> Router<AppState> {
    Router::new().route("/stream/{stream_id}", get(stream_events))
}

/// Query parameters.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SseParams {
    since: Option<String>,
    rewind: Option<String>,
    types: Option<String>,
    classes: Option<String>,
    /// Accepted for `EventSource` URLs carrying credentials (used once auth exists).
    token: Option<String>,
}

fn csv(s: &Option<String>) -> impl Iterator<Item = &str> {
    s.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
}

async fn stream_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(who): Extension<Identity>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    AppQuery(params): AppQuery<SseParams>,
) -> Result<Response, ApiError> {
    if !name::is_stream_name(&stream) {
        return Err(ApiError::bad_field(
            "stream_id",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }
    // `token` was read by the authentication layer.
    let _ = &params.token;
    let guard = state.limiter.connect(&who)?;
    let mut filter = Filter {
        streams: vec![Glob::new(stream.clone())],
        ..Default::default()
    };
    for t in csv(&params.types) {
        if !t
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.:-*?".contains(&c))
        {
            return Err(ApiError::bad_field(
                "types",
                format!("`{t}` is not a type or glob"),
            ));
        }
        filter.types.push(Glob::new(t));
    }
    for c in csv(&params.classes) {
        filter.classes.push(
            EventClass::parse(c)
                .ok_or_else(|| ApiError::bad_field("classes", format!("unknown class `{c}`")))?,
        );
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let since = match (
        last_event_id,
        params.since.as_deref().filter(|s| !s.is_empty()),
    ) {
        (Some(id), _) => Some(offset_value(&serde_json::Value::from(id)).ok_or_else(|| {
            ApiError::bad_field("Last-Event-ID", "must be an offset this server sent")
        })?),
        (None, Some(s)) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_field("since", "must be an offset (a non-negative integer)")
        })?),
        (None, None) => None,
    };
    let rewind = match params.rewind.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(r) => Some(
            r.parse::<usize>()
                .ok()
                .filter(|n| *n <= MAX_REWIND)
                .ok_or_else(|| {
                    ApiError::bad_field(
                        "rewind",
                        format!("must be an integer from 0 to {MAX_REWIND}"),
                    )
                })?,
        ),
    };
    let (sub, started) =
        Subscription::start(&state, &tenant, filter, StartAt { since, rewind }).await?;

    let first = Bytes::from(format!(
        ": recovered={} offset={}{}\nretry: {RETRY_MS}\n\n",
        started.recovered,
        started.head,
        started
            .earliest
            .map(|e| format!(" earliest={e}"))
            .unwrap_or_default()
    ));
    let heartbeat = Duration::from_secs(state.config.server.heartbeat_secs);
    let live = Live {
        sub,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat),
        shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
        batch: state.config.delivery.write_batch,
        done: false,
        _counted: guard,
    };
    let body = futures_util::stream::once(async move { Ok::<_, Infallible>(first) })
        .chain(futures_util::stream::unfold(live, Live::next_chunk));

    let mut res = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    // The seed's permissive headers, when any origin may call (the CORS
    // layer answers for the configured origins otherwise).
    if super::any_origin(&state) {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Cache-Control, Last-Event-ID"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("streambus-recovered"),
        );
    }
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(
        "streambus-recovered",
        HeaderValue::from_static(if started.recovered { "true" } else { "false" }),
    );
    Ok(res)
}

struct Live {
    sub: Subscription,
    heartbeat: tokio::time::Interval,
    /// Registered with the shutdown token once per stream, not per chunk.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    batch: usize,
    done: bool,
    /// Keeps the connection counted against its key's and address's limit.
    _counted: ConnectionGuard,
}

impl Live {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if self.done {
            return None;
        }
        tokio::select! {
            biased;
            _ = &mut self.shutdown => None,
            batch = self.sub.next_batch(self.batch) => match batch {
                Ok(ds) if ds.len() == 1 => Some((Ok(ds[0].sse_frame()), self)),
                Ok(ds) => {
                    let mut buf = Vec::with_capacity(ds.iter().map(|d| d.record.json.len() + 32).sum());
                    for d in &ds {
                        buf.extend_from_slice(&d.sse_frame());
                    }
                    Some((Ok(Bytes::from(buf)), self))
                }
                Err(e) => {
                    self.done = true;
                    Some((Ok(Bytes::from(format!(": closed: {e}\n\n"))), self))
                }
            },
            _ = self.heartbeat.tick() => Some((Ok(Bytes::from_static(b": heartbeat\n\n")), self)),
        }
    }
}
