//! `GET /api/v1/ws` — the WebSocket protocol (SPEC §3.3, names of seed 000).
//!
//! One task per connection drives three sources with `select!`: frames from
//! the client, publishes awaiting commit (answered with `ACK` in order), and
//! the subscription's next batch, which is written with many frames per
//! flush. A bad frame gets `ERROR` and the connection stays open; close codes
//! are for terminal cases only ([`streambus_core::wire::close`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{FuturesOrdered, SplitSink};
use futures_util::{SinkExt, StreamExt};
use streambus_core::validate::{PublishContext, check_size};
use streambus_core::wire::{ClientMessage, ServerMessage, Subscribe, close, codes};
use streambus_core::{DEFAULT_TENANT, Filter, consumer, time};
use tracing::{debug, instrument};

use super::error::ApiError;
use crate::publish::{prepare, publish_one};
use crate::state::AppState;
use crate::subscription::{StartAt, SubError, Subscription};

type Sink = SplitSink<WebSocket, Message>;
type Reply = Pin<Box<dyn Future<Output = ServerMessage> + Send>>;

/// Upgrades the request to a WebSocket connection.
pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = state.config.limits.max_frame_bytes;
    let tasks = state.tasks.clone();
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(state.config.delivery.ws_read_buffer)
        .on_upgrade(move |socket| tasks.track_future(connection(state, socket)))
}

#[instrument(skip_all)]
async fn connection(state: AppState, socket: WebSocket) {
    let (mut sink, mut frames) = socket.split();
    let mut sub: Option<Subscription> = None;
    let mut inflight: FuturesOrdered<Reply> = FuturesOrdered::new();
    let heartbeat = Duration::from_secs(state.config.server.heartbeat_secs);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let max_inflight = state.config.limits.max_inflight_publishes;
    let batch = state.config.delivery.write_batch;
    let max_frame = state.config.limits.max_frame_bytes;
    // One registration with the shutdown token for the connection's life,
    // not one per loop turn (that would take the token's lock per event).
    let shutdown = state.shutdown.clone().cancelled_owned();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                close_with(&mut sink, close::GOING_AWAY, "server shutting down").await;
                break;
            }
            frame = frames.next(), if inflight.len() < max_inflight => match frame {
                Some(Ok(Message::Text(text))) => {
                    let outcome = handle_text(&state, &text, &mut sub, &mut inflight).await;
                    if let Some(reply) = outcome && send(&mut sink, reply).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let reply = error(codes::BAD_FRAME, "binary frames are not accepted; send JSON text", None);
                    if send(&mut sink, reply).await.is_err() { break; }
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    debug!(error = %e, "websocket read failed");
                    let text = e.to_string();
                    if text.contains("too long") || text.contains("Space limit") {
                        let reason = format!("frame exceeds limits.max_frame_bytes ({max_frame} bytes)");
                        close_with(&mut sink, close::MESSAGE_TOO_BIG, &reason).await;
                        drain(&mut frames).await;
                    }
                    break;
                }
            },
            Some(reply) = inflight.next(), if !inflight.is_empty() => {
                if send(&mut sink, reply).await.is_err() { break; }
            }
            next = next_batch(&mut sub, batch) => match next {
                Ok(deliveries) => {
                    let mut failed = false;
                    for d in &deliveries {
                        if sink.feed(Message::Text(d.ws_frame())).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed || sink.flush().await.is_err() { break; }
                }
                Err(SubError::BehindRetention { earliest }) => {
                    let reason = format!("fell behind retention; earliest offset {earliest}");
                    close_with(&mut sink, close::BEHIND_RETENTION, &reason).await;
                    break;
                }
                Err(SubError::Closed) => {
                    close_with(&mut sink, close::GOING_AWAY, "server shutting down").await;
                    break;
                }
                Err(e) => {
                    sub = None;
                    let reply = error(codes::UNAVAILABLE, &format!("subscription ended: {e}; subscribe again"), None);
                    if send(&mut sink, reply).await.is_err() { break; }
                }
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() { break; }
            }
        }
    }
    debug!("websocket closed");
}

async fn next_batch(
    sub: &mut Option<Subscription>,
    max: usize,
) -> Result<Vec<std::sync::Arc<crate::hub::Delivery>>, SubError> {
    match sub {
        Some(s) => s.next_batch(max).await,
        None => std::future::pending().await,
    }
}

/// Handles one text frame; returns an immediate reply, if any.
async fn handle_text(
    state: &AppState,
    text: &str,
    sub: &mut Option<Subscription>,
    inflight: &mut FuturesOrdered<Reply>,
) -> Option<ServerMessage> {
    let msg = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => return Some(ServerMessage::from_wire_error(e, None)),
    };
    match msg {
        ClientMessage::Subscribe(req) => {
            // Replace any current subscription; the old one stops at once.
            *sub = None;
            match subscribe(state, *req).await {
                Ok((s, reply)) => {
                    *sub = Some(s);
                    Some(reply)
                }
                Err(reply) => Some(reply),
            }
        }
        ClientMessage::Unsubscribe => {
            *sub = None;
            Some(ServerMessage::Unsubscribed {})
        }
        ClientMessage::Publish { event, reference } => {
            if let Err(e) = check_size(text.len(), &state.limits) {
                return Some(error(codes::TOO_LARGE, &e.to_string(), reference));
            }
            let ctx = PublishContext {
                source: Some("websocket"),
                ..Default::default()
            };
            // The shared publish path: event-type defaults and schemas apply.
            let event = match prepare(state, DEFAULT_TENANT, event, &ctx) {
                Ok(e) => e,
                Err(e) => {
                    return Some(ServerMessage::Error {
                        code: codes::INVALID.into(),
                        message: e.to_string(),
                        field: Some(
                            format!("event.{}", e.field)
                                .trim_end_matches('.')
                                .to_owned(),
                        ),
                        reference,
                    });
                }
            };
            let state = state.clone();
            inflight.push_back(Box::pin(async move {
                match publish_one(&state, DEFAULT_TENANT, event).await {
                    Ok(a) => ServerMessage::Ack {
                        id: a.record.event.id.clone(),
                        offset: a.record.offset(),
                        duplicate: a.duplicate,
                        reference,
                    },
                    Err(e) => api_error(&e, reference),
                }
            }));
            None
        }
        ClientMessage::Ping { reference } => Some(ServerMessage::Pong {
            timestamp: time::now_ms(),
            reference,
        }),
        // Credentials are accepted and ignored until authentication is configured.
        ClientMessage::Auth { .. } => None,
        ClientMessage::Unsupported(kind) => Some(error(
            codes::UNSUPPORTED,
            &format!("`{kind}` is not available on this server yet"),
            None,
        )),
    }
}

async fn subscribe(
    state: &AppState,
    req: Subscribe,
) -> Result<(Subscription, ServerMessage), ServerMessage> {
    let at = StartAt {
        since: req.since,
        rewind: req.rewind,
    };
    let mut filter = req.filter;
    if let Some(overlay) = &req.overlay_id
        && !req.filter_given
    {
        // An overlay that names no filter gets its stored subscription.
        filter = stored_filter(state, overlay)
            .await
            .map_err(|e| api_error(&e, None))?;
    }
    match Subscription::start(state, DEFAULT_TENANT, filter, at).await {
        Ok((s, started)) => Ok((
            s,
            ServerMessage::Subscribed {
                offset: started.head,
                recovered: started.recovered,
                earliest_offset: started.earliest,
            },
        )),
        Err(e) => Err(api_error(&ApiError::from(e), None)),
    }
}

/// An overlay's stored subscription (`PUT /subscriptions/{overlay_id}`), or
/// everything when it has none; `system` events hidden as for any overlay.
async fn stored_filter(state: &AppState, overlay: &str) -> Result<Filter, ApiError> {
    let mut filter = match state
        .store
        .get_subscription(DEFAULT_TENANT, overlay)
        .await?
    {
        Some(stored) => consumer::filter_from_json(stored).map_err(|e| {
            ApiError::Internal(format!("stored subscription of `{overlay}`: {e}").into())
        })?,
        None => Filter::default(),
    };
    filter.hide_system = true;
    Ok(filter)
}

fn api_error(e: &ApiError, reference: Option<String>) -> ServerMessage {
    let code = if e.status().is_server_error() {
        codes::UNAVAILABLE
    } else {
        codes::INVALID
    };
    let problem = e.problem();
    ServerMessage::Error {
        code: code.into(),
        message: problem["detail"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned(),
        field: problem["field"].as_str().map(str::to_owned),
        reference,
    }
}

fn error(code: &str, message: &str, reference: Option<String>) -> ServerMessage {
    ServerMessage::Error {
        code: code.into(),
        message: message.into(),
        field: None,
        reference,
    }
}

async fn send(sink: &mut Sink, msg: ServerMessage) -> Result<(), axum::Error> {
    sink.send(Message::Text(Utf8Bytes::from(msg.to_text())))
        .await
}

/// Reads and discards what the client still sends, briefly, so that closing
/// the socket does not reset the connection before the close frame is read.
async fn drain(frames: &mut futures_util::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = frames.next().await {}
    })
    .await;
}

async fn close_with(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
