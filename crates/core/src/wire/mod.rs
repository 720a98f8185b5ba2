//! The WebSocket protocol (SPEC §3.3): JSON text frames with a `type` field,
//! names as in seed 000. Shared by the server, `streambus tail` and `bench`.
//!
//! Client frames are parsed by hand from a JSON value so that the type is
//! matched case-insensitively (seed 001 sends `"subscribe"`) and every error
//! names its field. All error and close codes live here.
//!
//! - this module: client frames ([`ClientMessage`], [`Subscribe`]), errors
//!   and codes;
//! - `filter`: the filter fields ([`take_filter`]) shared by `SUBSCRIBE`
//!   and stored overlay subscriptions;
//! - `server`: server frames ([`ServerMessage`], [`event_broadcast_frame`]).

mod filter;
mod server;

use serde_json::{Map, Value};

use crate::filter::Filter;
use crate::overlay::{Action, Report};
use crate::state::StateChange;

pub(crate) use filter::take;
pub use filter::{is_stream_pattern, offset_value, take_filter};
pub use server::{ServerMessage, event_broadcast_frame};

/// `ERROR` frame codes.
pub mod codes {
    /// The frame is not JSON or not an object with a string `type`.
    pub const BAD_FRAME: &str = "bad_frame";
    /// The `type` is not a known message.
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    /// A field has a bad value; the message names it.
    pub const INVALID: &str = "invalid";
    /// The frame or event is larger than allowed.
    pub const TOO_LARGE: &str = "too_large";
    /// Storage or the broker is unreachable; retry later.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Something failed inside the server.
    pub const INTERNAL: &str = "internal";
    /// The event or overlay named does not exist (or does not have it).
    pub const NOT_FOUND: &str = "not_found";
    /// The request conflicts with the current state (a refused transition).
    pub const CONFLICT: &str = "conflict";
    /// No credentials yet, or credentials that do not verify.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The credentials do not allow this frame.
    pub const FORBIDDEN: &str = "forbidden";
    /// Over a publish rate; the message says when to retry.
    pub const RATE_LIMITED: &str = "rate_limited";
}

/// WebSocket close codes for terminal cases.
pub mod close {
    /// The server is shutting down (RFC 6455 "going away").
    pub const GOING_AWAY: u16 = 1001;
    /// A frame was larger than the server accepts (RFC 6455 "message too big").
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The consumer fell behind retention: events it needs are gone.
    pub const BEHIND_RETENTION: u16 = 4008;
    /// The connection's token expired and no `AUTH` frame renewed it.
    pub const TOKEN_EXPIRED: u16 = 4001;
}

/// A client → server message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Start (or replace) the connection's subscription.
    Subscribe(Box<Subscribe>),
    /// Stop receiving events.
    Unsubscribe,
    /// Publish one event; answered by `ACK` after commit.
    Publish {
        /// The event, validated by the server.
        event: Value,
        /// Echoed in the `ACK` or `ERROR`.
        reference: Option<String>,
    },
    /// Keep-alive; answered by `PONG`.
    Ping {
        /// Echoed in the `PONG`.
        reference: Option<String>,
    },
    /// Credentials as a first frame.
    Auth {
        /// The bearer token.
        token: String,
    },
    /// An overlay's status report on the item it plays.
    Report {
        /// The event.
        event_id: String,
        /// Which play (0 when not given).
        play: u32,
        /// What happened.
        status: Report,
        /// The overlay named in the frame, if any (must be the connection's).
        overlay: Option<String>,
        /// Why, for `ANIMATION_FAILED`.
        reason: Option<String>,
        /// Echoed in an `ERROR`.
        reference: Option<String>,
    },
    /// An operator's cancel or replay of an event.
    Animation {
        /// Replay (true) or cancel (false).
        replay: bool,
        /// The event.
        event_id: String,
        /// Only on this overlay.
        target_overlay: Option<String>,
        /// Echoed in `CONTROL_OK` or `ERROR`.
        reference: Option<String>,
    },
    /// An operator's action on one overlay's queue.
    OverlayControl {
        /// The overlay.
        overlay: String,
        /// What to do.
        action: Action,
        /// For `clear`: only types matching this glob.
        event_type: Option<String>,
        /// Echoed in `CONTROL_OK` or `ERROR`.
        reference: Option<String>,
    },
    /// The overlay's page was shown or hidden.
    Visibility {
        /// Visible now?
        visible: bool,
    },
    /// `STATE_SET` (a put) or `STATE_PATCH` (a JSON merge patch) of one
    /// state key; answered by `STATE_OK` (SPEC §2 "State").
    State {
        /// The stream (a valid stream name).
        stream: String,
        /// The key (`[A-Za-z0-9_.:-]{1,128}`).
        key: String,
        /// `Put` for `STATE_SET`, `Patch` for `STATE_PATCH`.
        change: StateChange,
        /// Write only at this version (`ifVersion`; 0: only when absent).
        if_version: Option<u64>,
        /// Echoed in `STATE_OK` or `ERROR`.
        reference: Option<String>,
    },
}

/// A `SUBSCRIBE` request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscribe {
    /// The overlay identity, when the client is an overlay.
    pub overlay_id: Option<String>,
    /// What the client wants.
    pub filter: Filter,
    /// True when the frame gave any filter field; an overlay that gives none
    /// gets its stored subscription (`PUT /subscriptions/{overlay_id}`).
    pub filter_given: bool,
    /// Resume after this offset.
    pub since: Option<u64>,
    /// Start with the last N matching events.
    pub rewind: Option<usize>,
    /// Also receive overlay queue updates (`ANIMATION_*`, `OVERLAY_STATE`).
    pub overlay_updates: bool,
    /// Send the current state of the subscribed streams first
    /// (`STATE_SNAPSHOT` frames), then only the changes after it.
    pub snapshot: bool,
}

/// Most events a `rewind` may ask for.
pub const MAX_REWIND: usize = 1000;

/// A refused client frame: code, message and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// One of [`codes`].
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// The offending field, when there is one.
    pub field: Option<String>,
}

impl WireError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            code: codes::INVALID,
            message: format!("{field}: {}", message.into()),
            field: Some(field.into()),
        }
    }
}

/// Known messages of the protocol this server does not handle yet.
impl ClientMessage {
    /// Parses a text frame.
    ///
    /// # Errors
    /// A [`WireError`] naming what is wrong; the connection stays usable.
    pub fn parse(text: &str) -> Result<Self, WireError> {
        let value: Value = serde_json::from_str(text).map_err(|e| WireError {
            code: codes::BAD_FRAME,
            message: format!("frame is not valid JSON: {e}"),
            field: None,
        })?;
        let Value::Object(mut obj) = value else {
            return Err(WireError {
                code: codes::BAD_FRAME,
                message: "frame must be a JSON object with a string `type`".into(),
                field: None,
            });
        };
        let kind = match obj.remove("type") {
            Some(Value::String(s)) => s.to_ascii_uppercase(),
            _ => {
                return Err(WireError {
                    code: codes::BAD_FRAME,
                    message: "frame must have a string `type`".into(),
                    field: Some("type".into()),
                });
            }
        };
        let reference = take_ref(&mut obj)?;
        match kind.as_str() {
            "SUBSCRIBE" => Ok(Self::Subscribe(Box::new(parse_subscribe(obj)?))),
            "UNSUBSCRIBE" => Ok(Self::Unsubscribe),
            "PUBLISH" => match obj.remove("event") {
                Some(event) => Ok(Self::Publish { event, reference }),
                None => Err(WireError::invalid("event", "is required")),
            },
            "PING" => Ok(Self::Ping { reference }),
            "AUTH" => match obj.remove("token") {
                Some(Value::String(token)) => Ok(Self::Auth { token }),
                _ => Err(WireError::invalid("token", "must be a string")),
            },
            "ANIMATION_STARTED"
            | "ANIMATION_ENDED"
            | "ANIMATION_CANCELLED"
            | "ANIMATION_FAILED" => {
                let status = match kind.as_str() {
                    "ANIMATION_STARTED" => Report::Started,
                    "ANIMATION_ENDED" => Report::Ended,
                    "ANIMATION_CANCELLED" => Report::Cancelled,
                    _ => Report::Failed,
                };
                Ok(Self::Report {
                    event_id: take_event_id(&mut obj)?,
                    play: take_play(&mut obj)?,
                    status,
                    overlay: take_overlay(&mut obj, &["overlay", "overlayId"])?,
                    reason: take_string(&mut obj, "reason")?,
                    reference,
                })
            }
            "ANIMATION_CANCEL" | "ANIMATION_REPLAY" => Ok(Self::Animation {
                replay: kind == "ANIMATION_REPLAY",
                event_id: take_event_id(&mut obj)?,
                target_overlay: take_overlay(&mut obj, &["targetOverlay", "target_overlay"])?,
                reference,
            }),
            "OVERLAY_CONTROL" => {
                let overlay = take_overlay(&mut obj, &["overlay", "overlayId"])?
                    .ok_or_else(|| WireError::invalid("overlay", "is required"))?;
                let action = take_string(&mut obj, "action")?
                    .and_then(|a| Action::parse(&a))
                    .ok_or_else(|| {
                        WireError::invalid("action", "must be skip, pause, resume or clear")
                    })?;
                let event_type = match take(&mut obj, &["eventType", "event_type", "type_glob"]) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(t),
                    Some(_) => return Err(WireError::invalid("eventType", "must be a string")),
                };
                Ok(Self::OverlayControl {
                    overlay,
                    action,
                    event_type,
                    reference,
                })
            }
            "OVERLAY_VISIBILITY" => match obj.remove("visible") {
                Some(Value::Bool(visible)) => Ok(Self::Visibility { visible }),
                _ => Err(WireError::invalid("visible", "must be true or false")),
            },
            "STATE_SET" | "STATE_PATCH" => parse_state(&kind, obj, reference),
            _ => Err(WireError {
                code: codes::UNKNOWN_TYPE,
                message: format!("unknown message type `{kind}`"),
                field: Some("type".into()),
            }),
        }
    }
}

fn take_ref(obj: &mut Map<String, Value>) -> Result<Option<String>, WireError> {
    match obj.remove("ref") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 128 => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(WireError::invalid(
            "ref",
            "must be a string of at most 128 bytes",
        )),
    }
}

fn take_event_id(obj: &mut Map<String, Value>) -> Result<String, WireError> {
    match take(obj, &["eventId", "event_id"]) {
        Some(Value::String(s)) if crate::name::is_event_id(&s) => Ok(s),
        _ => Err(WireError::invalid(
            "eventId",
            "is required and must match [A-Za-z0-9_.:-]{1,128}",
        )),
    }
}

fn take_overlay(obj: &mut Map<String, Value>, names: &[&str]) -> Result<Option<String>, WireError> {
    match take(obj, names) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if crate::name::is_event_id(&s) => Ok(Some(s)),
        Some(_) => Err(WireError::invalid(
            names[0],
            "must match [A-Za-z0-9_.:-]{1,128}",
        )),
    }
}

fn take_play(obj: &mut Map<String, Value>) -> Result<u32, WireError> {
    match obj.remove("play") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| WireError::invalid("play", "must be a non-negative integer")),
    }
}

fn take_string(obj: &mut Map<String, Value>, name: &str) -> Result<Option<String>, WireError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 1000 => Ok(Some(s)),
        Some(_) => Err(WireError::invalid(
            name,
            "must be a string of at most 1000 bytes",
        )),
    }
}

/// `STATE_SET {stream, key, value, ifVersion?}` and
/// `STATE_PATCH {stream, key, patch, ifVersion?}`.
fn parse_state(
    kind: &str,
    mut obj: Map<String, Value>,
    reference: Option<String>,
) -> Result<ClientMessage, WireError> {
    let stream = match take(&mut obj, &["stream", "stream_id", "streamId"]) {
        Some(Value::String(s)) if crate::name::is_stream_name(&s) => s,
        _ => {
            return Err(WireError::invalid(
                "stream",
                "is required and must match [a-z0-9][a-z0-9._-]{0,127}",
            ));
        }
    };
    let key = match obj.remove("key") {
        Some(Value::String(k)) if crate::state::is_key(&k) => k,
        _ => {
            return Err(WireError::invalid(
                "key",
                format!("is required and must match {}", crate::state::KEY_RULE),
            ));
        }
    };
    let change = if kind == "STATE_SET" {
        StateChange::Put(
            obj.remove("value")
                .ok_or_else(|| WireError::invalid("value", "is required"))?,
        )
    } else {
        StateChange::Patch(
            obj.remove("patch")
                .ok_or_else(|| WireError::invalid("patch", "is required"))?,
        )
    };
    let if_version = match take(&mut obj, &["ifVersion", "if_version"]) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            WireError::invalid("ifVersion", "must be a version (a non-negative integer)")
        })?),
    };
    if let Some(k) = obj.keys().next() {
        return Err(WireError::invalid(k, "unknown field"));
    }
    Ok(ClientMessage::State {
        stream,
        key,
        change,
        if_version,
        reference,
    })
}

fn parse_subscribe(mut obj: Map<String, Value>) -> Result<Subscribe, WireError> {
    let overlay_id = match take(&mut obj, &["overlayId", "overlay_id", "overlay"]) {
        None => None,
        Some(Value::String(s)) if crate::name::is_event_id(&s) => Some(s),
        Some(_) => {
            return Err(WireError::invalid(
                "overlayId",
                "must match [A-Za-z0-9_.:-]{1,128}",
            ));
        }
    };
    let filter = take_filter(&mut obj)?;
    let since = match take(&mut obj, &["since"]) {
        None => None,
        Some(v) => Some(offset_value(&v).ok_or_else(|| {
            WireError::invalid("since", "must be an offset (a non-negative integer)")
        })?),
    };
    let rewind = match take(&mut obj, &["rewind"]) {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n as usize <= MAX_REWIND)
                .ok_or_else(|| {
                    WireError::invalid(
                        "rewind",
                        format!("must be an integer from 0 to {MAX_REWIND}"),
                    )
                })? as usize,
        ),
    };
    let overlay_updates = match take(&mut obj, &["overlayUpdates", "overlay_updates"]) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(WireError::invalid(
                "overlayUpdates",
                "must be true or false",
            ));
        }
    };
    let snapshot = match take(&mut obj, &["snapshot"]) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(WireError::invalid("snapshot", "must be true or false")),
    };
    obj.remove("id");
    if let Some(k) = obj.keys().next() {
        return Err(WireError::invalid(k, "unknown field"));
    }
    let filter_given = filter.is_some();
    let mut filter = filter.unwrap_or_default();
    filter.hide_system = overlay_id.is_some();
    Ok(Subscribe {
        overlay_id,
        filter,
        filter_given,
        since,
        rewind,
        overlay_updates,
        snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_shapes() {
        let m =
            ClientMessage::parse(r#"{"type":"subscribe","teams":["team_1","team_2"]}"#).unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!("{m:?}")
        };
        assert_eq!(s.filter.fields[0].path, "data.team");
        let m = ClientMessage::parse(
            r#"{"type":"SUBSCRIBE","overlayId":"main","eventTypes":["high_*"],"since":"41","rewind":5}"#,
        )
        .unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!()
        };
        assert_eq!(s.overlay_id.as_deref(), Some("main"));
        assert_eq!(s.since, Some(41));
        assert_eq!(s.rewind, Some(5));
        assert!(s.filter.hide_system);
        assert!(s.filter_given);
        let m =
            ClientMessage::parse(r#"{"type":"SUBSCRIBE","overlayId":"main","since":3}"#).unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!()
        };
        assert!(
            !s.filter_given,
            "an overlay without filter fields uses its stored one"
        );
        assert!(s.filter.hide_system);
        assert!(
            matches!(ClientMessage::parse(r#"{"type":"ping","ref":7}"#), Ok(ClientMessage::Ping { reference: Some(r) }) if r == "7")
        );
    }

    #[test]
    fn bad_frames_name_the_problem() {
        let cases = [
            ("nope", codes::BAD_FRAME),
            ("[]", codes::BAD_FRAME),
            (r#"{"x":1}"#, codes::BAD_FRAME),
            (r#"{"type":"DANCE"}"#, codes::UNKNOWN_TYPE),
            (r#"{"type":"PUBLISH"}"#, codes::INVALID),
            (
                r#"{"type":"SUBSCRIBE","streams":["Bad Name"]}"#,
                codes::INVALID,
            ),
            (r#"{"type":"SUBSCRIBE","classes":["loud"]}"#, codes::INVALID),
            (r#"{"type":"SUBSCRIBE","since":-1}"#, codes::INVALID),
            (r#"{"type":"SUBSCRIBE","rewind":100000}"#, codes::INVALID),
            (
                r#"{"type":"SUBSCRIBE","filter":{"team":"x"}}"#,
                codes::INVALID,
            ),
            (r#"{"type":"SUBSCRIBE","bogus":1}"#, codes::INVALID),
            (r#"{"type":"SUBSCRIBE","snapshot":"yes"}"#, codes::INVALID),
            (
                r#"{"type":"STATE_SET","key":"k","value":1}"#,
                codes::INVALID,
            ),
            (
                r#"{"type":"STATE_SET","stream":"Bad","key":"k","value":1}"#,
                codes::INVALID,
            ),
            (
                r#"{"type":"STATE_SET","stream":"s","key":"a b","value":1}"#,
                codes::INVALID,
            ),
            (
                r#"{"type":"STATE_SET","stream":"s","key":"k"}"#,
                codes::INVALID,
            ),
            (
                r#"{"type":"STATE_PATCH","stream":"s","key":"k","value":{}}"#,
                codes::INVALID,
            ),
            (
                r#"{"type":"STATE_PATCH","stream":"s","key":"k","patch":{},"ifVersion":-1}"#,
                codes::INVALID,
            ),
        ];
        for (text, code) in cases {
            assert_eq!(ClientMessage::parse(text).unwrap_err().code, code, "{text}");
        }
    }

    #[test]
    fn parses_state_frames() {
        let m = ClientMessage::parse(
            r#"{"type":"state_patch","stream":"board","key":"team:red","patch":{"score":2},"ifVersion":3,"ref":"r1"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::State {
                stream: "board".into(),
                key: "team:red".into(),
                change: StateChange::Patch(serde_json::json!({"score": 2})),
                if_version: Some(3),
                reference: Some("r1".into()),
            }
        );
        let m = ClientMessage::parse(r#"{"type":"STATE_SET","stream":"b","key":"k","value":null}"#)
            .unwrap();
        assert!(matches!(
            m,
            ClientMessage::State {
                change: StateChange::Put(Value::Null),
                if_version: None,
                ..
            }
        ));
        let m = ClientMessage::parse(r#"{"type":"SUBSCRIBE","streams":["b"],"snapshot":true}"#)
            .unwrap();
        assert!(matches!(m, ClientMessage::Subscribe(s) if s.snapshot));
    }

    #[test]
    fn server_messages_round_trip() {
        let m = ServerMessage::Ack {
            id: "e".into(),
            offset: 3,
            duplicate: false,
            scheduled: false,
            reference: Some("r".into()),
        };
        let text = m.to_text();
        assert!(text.starts_with(r#"{"type":"ACK""#), "{text}");
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), m);
        let frame = event_broadcast_frame(br#"{"id":"x"}"#);
        assert_eq!(frame, br#"{"type":"EVENT_BROADCAST","event":{"id":"x"}}"#);
    }
}
