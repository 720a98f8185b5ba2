//! `GET /api/v1/ws` — the WebSocket protocol (SPEC §3.3, names of seed 000).
//!
//! One task per connection drives its sources with `select!`: frames from
//! the client, replies awaiting the log (publishes answered with `ACK`,
//! controls with `CONTROL_OK`, in order), the subscription's next batch
//! (written with many frames per flush), and — for an overlay — its playout
//! queue's frames, or — with `overlayUpdates` — the queues' updates. An
//! overlay gets animated events from its queue only (`docs/OVERLAYS.md`).
//! A bad frame gets `ERROR` and the connection stays open; close codes are
//! for terminal cases only ([`streambus_core::wire::close`]). Live state
//! (`STATE_SET`, `STATE_PATCH`, `SUBSCRIBE` with `snapshot`) is handled in
//! [`super::state::ws`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{FuturesOrdered, SplitSink};
use futures_util::{SinkExt, StreamExt};
use streambus_core::overlay::{Op, Report};
use streambus_core::validate::{PublishContext, check_size};
use streambus_core::wire::{ClientMessage, ServerMessage, Subscribe, close, codes};
use streambus_core::{DEFAULT_TENANT, EventClass, Filter, consumer, time};
use tokio::sync::broadcast;
use tracing::{debug, instrument};

use super::error::ApiError;
use super::overlays;
use super::state::ws as state_ws;
use crate::auth::{self, Identity};
use crate::overlays::{Attachment, publish_op};
use crate::publish::{Published, prepare, publish_one_or_hold};
use crate::state::AppState;
use crate::subscription::{StartAt, SubError, Subscription};
use axum::Extension;
use axum::extract::ConnectInfo;
use std::net::SocketAddr;
use streambus_core::auth::{Action, Principal};

type Sink = SplitSink<WebSocket, Message>;
/// A frame's answer that waits on the log; `None` when there is nothing to say.
type Reply = Pin<Box<dyn Future<Output = Option<ServerMessage>> + Send>>;

/// What a connection has asked for.
#[derive(Default)]
struct Conn {
    /// The ordinary subscription.
    sub: Option<Subscription>,
    /// Set when the connection is an overlay: its queue's frames.
    overlay: Option<Attachment>,
    /// Set when the connection asked for queue updates.
    updates: Option<broadcast::Receiver<Utf8Bytes>>,
    /// Who it is; `None` until an `AUTH` frame when the request had no token.
    who: Option<Identity>,
    /// The client's address, for the audit log.
    peer: Option<SocketAddr>,
    /// With a state snapshot: the state versions the client holds, so
    /// changes it already has are not delivered again.
    versions: Option<state_ws::Versions>,
    /// Frames to send right after the reply to the current frame, before
    /// any event (a subscription's `STATE_SNAPSHOT`s).
    outbox: Vec<ServerMessage>,
}

impl Conn {
    /// Drops the subscription, the queue and the updates; keeps who it is.
    fn reset(&mut self) {
        *self = Self {
            who: self.who.take(),
            peer: self.peer,
            ..Self::default()
        };
    }

    /// Who to record a control frame under, and from where.
    fn audit_as(&self) -> (Option<Identity>, Option<SocketAddr>) {
        (self.who.clone(), self.peer)
    }

    /// The tenant it acts in.
    fn tenant(&self) -> &str {
        self.who
            .as_ref()
            .map_or(DEFAULT_TENANT, |w| w.principal.tenant.as_str())
    }

    /// Checks `action` for this connection.
    fn allow(&self, action: Action<'_>) -> Result<&Principal, ServerMessage> {
        let who = self.who.as_ref().ok_or_else(unidentified)?;
        who.principal
            .check(action)
            .map_err(|e| error(codes::FORBIDDEN, &e.to_string(), None))?;
        Ok(&who.principal)
    }
}

fn unidentified() -> ServerMessage {
    error(
        codes::UNAUTHORIZED,
        "send an AUTH frame with a token first (or connect with ?token=)",
        None,
    )
}

/// Sleeps until the connection's token expires (forever without one).
/// The timer that closes the connection when its token expires: made once
/// per identity (not per loop turn), and only when there is an expiry.
struct Expiry {
    at: Option<u64>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Expiry {
    fn new() -> Self {
        Self {
            at: None,
            timer: None,
        }
    }

    /// Follows the connection's identity (an `AUTH` frame may renew it).
    fn follow(&mut self, who: &Option<Identity>) {
        let at = who.as_ref().and_then(|w| w.expires);
        if at == self.at {
            return;
        }
        self.at = at;
        self.timer = at.map(|exp| {
            let now = u64::try_from(time::now_ms() / 1000).unwrap_or(0);
            Box::pin(tokio::time::sleep(Duration::from_secs(
                exp.saturating_sub(now),
            )))
        });
    }

    async fn expired(&mut self) {
        match &mut self.timer {
            Some(t) => t.as_mut().await,
            None => std::future::pending().await,
        }
    }
}

/// Upgrades the request to a WebSocket connection.
/// Without a token on the request (header or `?token=`), a server with
/// authentication accepts only `AUTH` and `PING` until an `AUTH` frame
/// identifies the connection.
pub async fn upgrade(
    State(state): State<AppState>,
    who: Option<Extension<Identity>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = state.config.limits.max_frame_bytes;
    let tasks = state.tasks.clone();
    let who = who.map(|Extension(w)| w);
    let peer = peer.map(|Extension(ConnectInfo(a))| a);
    // Counted while open, when the request identified itself.
    let guard = match who.as_ref().map(|w| state.limiter.connect(w)).transpose() {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(state.config.delivery.ws_read_buffer)
        .on_upgrade(move |socket| {
            tasks.track_future(async move {
                connection(state, socket, who, peer).await;
                drop(guard);
            })
        })
}

#[instrument(skip_all)]
async fn connection(
    state: AppState,
    socket: WebSocket,
    who: Option<Identity>,
    peer: Option<SocketAddr>,
) {
    let (mut sink, mut frames) = socket.split();
    let mut conn = Conn {
        who,
        peer,
        ..Conn::default()
    };
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
    let mut expiry = Expiry::new();
    expiry.follow(&conn.who);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                close_with(&mut sink, close::GOING_AWAY, "server shutting down").await;
                break;
            }
            _ = expiry.expired() => {
                close_with(&mut sink, close::TOKEN_EXPIRED, "token expired; send AUTH with a fresh token before it expires").await;
                break;
            }
            frame = frames.next(), if inflight.len() < max_inflight => match frame {
                Some(Ok(Message::Text(text))) => {
                    // Boxed: its future is large (subscribing, controls) and
                    // would otherwise sit in every idle connection's state.
                    let outcome = Box::pin(handle_text(&state, &text, &mut conn, &mut inflight)).await;
                    expiry.follow(&conn.who);
                    if let Some(reply) = outcome && send(&mut sink, reply).await.is_err() {
                        break;
                    }
                    let mut failed = false;
                    for extra in std::mem::take(&mut conn.outbox) {
                        if send(&mut sink, extra).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed { break; }
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
                if let Some(reply) = reply && send(&mut sink, reply).await.is_err() { break; }
            }
            frame = overlay_frame(&mut conn.overlay) => {
                if sink.send(Message::Text(frame)).await.is_err() { break; }
            }
            update = queue_update(&mut conn.updates) => {
                if sink.send(Message::Text(update)).await.is_err() { break; }
            }
            next = next_batch(&mut conn.sub, batch) => match next {
                Ok(deliveries) => {
                    let mut failed = false;
                    // An overlay gets animated events from its queue only.
                    let queued = conn.overlay.is_some();
                    for d in &deliveries {
                        if queued && d.record.event.class == EventClass::Animated {
                            continue;
                        }
                        if let Some(v) = &mut conn.versions && !v.admit(&d.record.event) {
                            continue;
                        }
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
                    conn.sub = None;
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

async fn overlay_frame(overlay: &mut Option<Attachment>) -> Utf8Bytes {
    match overlay {
        Some(a) => a.next().await,
        None => std::future::pending().await,
    }
}

async fn queue_update(updates: &mut Option<broadcast::Receiver<Utf8Bytes>>) -> Utf8Bytes {
    let Some(rx) = updates else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(frame) => return frame,
            // Each update carries a whole overlay's state: later ones repair.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                *updates = None;
                return std::future::pending().await;
            }
        }
    }
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
    conn: &mut Conn,
    inflight: &mut FuturesOrdered<Reply>,
) -> Option<ServerMessage> {
    let tenant = conn.tenant().to_owned();
    let msg = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => return Some(ServerMessage::from_wire_error(e, None)),
    };
    if conn.who.is_none() && !matches!(msg, ClientMessage::Auth { .. } | ClientMessage::Ping { .. })
    {
        return Some(unidentified());
    }
    if let Err(reply) = permitted(conn, &msg) {
        return Some(reply);
    }
    match msg {
        ClientMessage::Subscribe(req) => {
            // Replace any current subscription; the old one stops at once.
            conn.reset();
            match subscribe(state, *req, conn).await {
                Ok(reply) | Err(reply) => Some(reply),
            }
        }
        ClientMessage::Unsubscribe => {
            conn.reset();
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
            let event = match prepare(state, &tenant, event, &ctx) {
                Ok(e) => match conn.allow(Action::Publish(&e.event.stream_id)) {
                    Ok(_) => {
                        let rate = conn.who.as_ref().map(|w| state.limiter.publish(w));
                        if let Some(Err(limited)) = rate {
                            return Some(api_error(&limited, reference));
                        }
                        Ok(e)
                    }
                    Err(reply) => return Some(with_ref(reply, reference)),
                },
                Err(e) => Err(e),
            };
            let event = match event {
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
                Some(match publish_one_or_hold(&state, &tenant, event).await {
                    Ok(Published::Stored(a)) => ServerMessage::Ack {
                        id: a.record.event.id.clone(),
                        offset: a.record.offset(),
                        duplicate: a.duplicate,
                        scheduled: false,
                        reference,
                    },
                    // Held until its `scheduled_at`: it gets its offset then.
                    Ok(Published::Held(e)) => ServerMessage::Ack {
                        id: e.id,
                        offset: 0,
                        duplicate: false,
                        scheduled: true,
                        reference,
                    },
                    Err(e) => api_error(&e, reference),
                })
            }));
            None
        }
        ClientMessage::Report {
            event_id,
            play,
            status,
            overlay,
            reason,
            reference,
        } => {
            let own = match own_overlay(conn, overlay.as_deref()) {
                Ok(o) => o,
                Err(msg) => return Some(error(codes::INVALID, &msg, reference)),
            };
            // The dispatch already made the item active; a start report
            // changes nothing and is not stored.
            if status == Report::Started {
                return None;
            }
            let op = Op::Report {
                overlay: own,
                event_id,
                play,
                status,
                reason,
            };
            push_op(state, tenant, inflight, op, reference);
            None
        }
        ClientMessage::Visibility { visible } => {
            let own = match own_overlay(conn, None) {
                Ok(o) => o,
                Err(msg) => return Some(error(codes::INVALID, &msg, None)),
            };
            push_op(
                state,
                tenant,
                inflight,
                Op::Visibility {
                    overlay: own,
                    visible,
                },
                None,
            );
            None
        }
        ClientMessage::Animation {
            replay,
            event_id,
            target_overlay,
            reference,
        } => {
            let state = state.clone();
            let audit = conn.audit_as();
            inflight.push_back(Box::pin(async move {
                let done = if replay {
                    overlays::replay(&state, &tenant, &event_id, target_overlay).await
                } else {
                    overlays::cancel(&state, &tenant, &event_id, target_overlay).await
                };
                let action = if replay {
                    "event.replay"
                } else {
                    "event.cancel"
                };
                audit_frame(&state, audit, action, &event_id, &done).await;
                Some(match done {
                    Ok(_) => ServerMessage::ControlOk {
                        action: if replay { "replay" } else { "cancel" }.into(),
                        event_id: Some(event_id),
                        overlay: None,
                        reference,
                    },
                    Err(e) => api_error(&e, reference),
                })
            }));
            None
        }
        ClientMessage::OverlayControl {
            overlay,
            action,
            event_type,
            reference,
        } => {
            let state = state.clone();
            let audit = conn.audit_as();
            inflight.push_back(Box::pin(async move {
                let done = overlays::control(&state, &tenant, &overlay, action, event_type).await;
                let name = format!("overlay.{}", action.as_str());
                audit_frame(&state, audit, &name, &overlay, &done).await;
                Some(match done {
                    Ok(_) => ServerMessage::ControlOk {
                        action: action.as_str().into(),
                        event_id: None,
                        overlay: Some(overlay),
                        reference,
                    },
                    Err(e) => api_error(&e, reference),
                })
            }));
            None
        }
        ClientMessage::State {
            stream,
            key,
            change,
            if_version,
            reference,
        } => {
            if let Err(e) = check_size(text.len(), &state.limits) {
                return Some(error(codes::TOO_LARGE, &e.to_string(), reference));
            }
            // Writing state is publishing its `state.changed` event.
            if let Err(reply) = conn.allow(Action::Publish(&stream)) {
                return Some(with_ref(reply, reference));
            }
            if let Some(Err(limited)) = conn.who.as_ref().map(|w| state.limiter.publish(w)) {
                return Some(api_error(&limited, reference));
            }
            let write = state_ws::apply_frame(
                state.clone(),
                tenant,
                stream,
                key,
                change,
                if_version,
                reference,
            );
            inflight.push_back(Box::pin(async move {
                Some(match write.await {
                    Ok(ok) => ok,
                    Err((e, reference)) => api_error(&e, reference),
                })
            }));
            None
        }
        ClientMessage::Ping { reference } => Some(ServerMessage::Pong {
            timestamp: time::now_ms(),
            reference,
        }),
        // Credentials are accepted and ignored until authentication is configured.
        ClientMessage::Auth { token } => match auth::identify(state, Some(&token)).await {
            Ok(who) => {
                let who = Identity {
                    address: conn.peer.map(|a| a.ip()),
                    ..who
                };
                let reply = ServerMessage::Authenticated {
                    subject: who.principal.subject.clone(),
                    role: who.principal.role.as_str().into(),
                    expires: who.expires,
                };
                // A refresh keeps the subscription; a new identity takes
                // effect for every later frame.
                conn.who = Some(who);
                Some(reply)
            }
            Err(e) => Some(api_error(&e, None)),
        },
    }
}

/// The frame-level permission (SPEC §5): reading the subscription's
/// streams, joining an overlay's queue or reporting for it (`overlay` role),
/// queue updates and controls (admin). Publishing is checked per event.
fn permitted(conn: &Conn, msg: &ClientMessage) -> Result<(), ServerMessage> {
    let Some(who) = conn.who.as_ref() else {
        return Ok(());
    };
    let p = &who.principal;
    let forbid = |e: streambus_core::auth::Denied| error(codes::FORBIDDEN, &e.to_string(), None);
    match msg {
        ClientMessage::Subscribe(req) => {
            p.check_read_patterns(&req.filter.streams).map_err(forbid)?;
            if req.overlay_id.is_some() {
                p.check(Action::ReportStatus).map_err(forbid)?;
            }
            if req.overlay_updates {
                p.check(Action::Control).map_err(forbid)?;
            }
            Ok(())
        }
        ClientMessage::Report { .. } | ClientMessage::Visibility { .. } => {
            p.check(Action::ReportStatus).map_err(forbid)
        }
        ClientMessage::Animation { reference, .. }
        | ClientMessage::OverlayControl { reference, .. } => p
            .check(Action::Control)
            .map_err(|e| with_ref(forbid(e), reference.clone())),
        _ => Ok(()),
    }
}

/// Records a control frame's outcome in the audit log.
async fn audit_frame<T>(
    state: &AppState,
    (who, peer): (Option<Identity>, Option<SocketAddr>),
    action: &str,
    target: &str,
    done: &Result<T, ApiError>,
) {
    let Some(who) = who else { return };
    let outcome = match done {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    };
    let detail = serde_json::json!({"via": "websocket"});
    crate::audit::record(
        state,
        &who,
        action.to_owned(),
        target.to_owned(),
        peer,
        outcome,
        detail,
    )
    .await;
}

fn with_ref(mut msg: ServerMessage, r: Option<String>) -> ServerMessage {
    if let ServerMessage::Error { reference, .. } = &mut msg {
        *reference = r;
    }
    msg
}

/// The connection's overlay, checked against one named in a frame.
fn own_overlay(conn: &Conn, named: Option<&str>) -> Result<String, String> {
    let Some(own) = conn.overlay.as_ref().map(Attachment::overlay) else {
        return Err("only an overlay reports status: SUBSCRIBE with an overlayId first".into());
    };
    match named {
        Some(n) if n != own => Err(format!(
            "overlay: this connection is overlay `{own}`, not `{n}`"
        )),
        _ => Ok(own.to_owned()),
    }
}

/// Publishes a queue input; only a failure is answered.
fn push_op(
    state: &AppState,
    tenant: String,
    inflight: &mut FuturesOrdered<Reply>,
    op: Op,
    reference: Option<String>,
) {
    let state = state.clone();
    inflight.push_back(Box::pin(async move {
        publish_op(&state, &tenant, op)
            .await
            .err()
            .map(|e| api_error(&e, reference))
    }));
}

/// Starts the subscription a `SUBSCRIBE` asks for; an overlay also joins its
/// queue. Answers `SUBSCRIBED`, or the `ERROR` to send.
async fn subscribe(
    state: &AppState,
    req: Subscribe,
    conn: &mut Conn,
) -> Result<ServerMessage, ServerMessage> {
    let tenant = conn.tenant().to_owned();
    let at = StartAt {
        since: req.since,
        rewind: req.rewind,
    };
    let mut filter = req.filter;
    if let Some(overlay) = &req.overlay_id
        && !req.filter_given
    {
        // An overlay that names no filter gets its stored subscription.
        filter = stored_filter(state, &tenant, overlay)
            .await
            .map_err(|e| api_error(&e, None))?;
    }
    let queue_filter = consumer::filter_to_json(&filter);
    let snapshot_filter = req.snapshot.then(|| filter.clone());
    let (sub, started) = Subscription::start(state, &tenant, filter, at)
        .await
        .map_err(|e| api_error(&ApiError::from(e), None))?;
    // Read after the subscription went live (see `state_ws`).
    let snapshot = match snapshot_filter {
        Some(filter) => Some(
            state_ws::snapshot(state, &tenant, &filter, started.head)
                .await
                .map_err(|e| api_error(&e, None))?,
        ),
        None => None,
    };
    if let Some(overlay) = req.overlay_id {
        let op = Op::Attach {
            overlay: overlay.clone(),
            filter: Some(queue_filter),
        };
        let attached = async {
            let appended = publish_op(state, &tenant, op).await?;
            state.overlays.wait_folded(appended.record.offset()).await
        };
        attached.await.map_err(|e| api_error(&e, None))?;
        // The attachment starts with what plays now.
        conn.overlay = Some(state.overlays.attach(&tenant, &overlay));
    }
    if req.overlay_updates {
        conn.updates = Some(state.overlays.admin_updates(&tenant));
    }
    if let Some((frames, versions)) = snapshot {
        conn.outbox = frames;
        conn.versions = Some(versions);
    }
    conn.sub = Some(sub);
    Ok(ServerMessage::Subscribed {
        offset: started.head,
        recovered: started.recovered,
        earliest_offset: started.earliest,
    })
}

/// An overlay's stored subscription (`PUT /subscriptions/{overlay_id}`), or
/// everything when it has none; `system` events hidden as for any overlay.
async fn stored_filter(state: &AppState, tenant: &str, overlay: &str) -> Result<Filter, ApiError> {
    let mut filter = match state.store.get_subscription(tenant, overlay).await? {
        Some(stored) => consumer::filter_from_json(stored).map_err(|e| {
            ApiError::Internal(format!("stored subscription of `{overlay}`: {e}").into())
        })?,
        None => Filter::default(),
    };
    filter.hide_system = true;
    Ok(filter)
}

fn api_error(e: &ApiError, reference: Option<String>) -> ServerMessage {
    let code = match e.status() {
        s if s.is_server_error() => codes::UNAVAILABLE,
        axum::http::StatusCode::UNAUTHORIZED => codes::UNAUTHORIZED,
        axum::http::StatusCode::FORBIDDEN => codes::FORBIDDEN,
        axum::http::StatusCode::TOO_MANY_REQUESTS => codes::RATE_LIMITED,
        axum::http::StatusCode::NOT_FOUND => codes::NOT_FOUND,
        axum::http::StatusCode::CONFLICT | axum::http::StatusCode::PRECONDITION_FAILED => {
            codes::CONFLICT
        }
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => codes::TOO_LARGE,
        _ => codes::INVALID,
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
