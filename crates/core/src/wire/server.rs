//! Server → client frames.

use serde::{Deserialize, Serialize};

use super::WireError;
use crate::event::Event;

/// A server → client message other than the hot-path `EVENT_BROADCAST`,
/// which the hub builds once per event from the stored bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerMessage {
    /// An event (parsed form, for clients).
    EventBroadcast {
        /// The event.
        event: Box<Event>,
    },
    /// The subscription is live.
    Subscribed {
        /// The log's head when the subscription went live.
        offset: u64,
        /// False when retention had already dropped events after `since`.
        recovered: bool,
        /// With `recovered: false`, the earliest offset still available.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        earliest_offset: Option<u64>,
    },
    /// The subscription ended.
    Unsubscribed {},
    /// A publish is durable.
    Ack {
        /// Event id.
        id: String,
        /// Event offset.
        offset: u64,
        /// True when the id was already stored and nothing new was delivered.
        #[serde(default)]
        duplicate: bool,
        /// True when the event is held until its `scheduled_at`; its offset
        /// (0 here) is assigned when it is delivered.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        scheduled: bool,
        /// The client's `ref`, echoed.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// A frame was refused; the connection stays open.
    Error {
        /// One of [`codes`](super::codes).
        code: String,
        /// What is wrong.
        message: String,
        /// The offending field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// The client's `ref`, echoed.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// A control (`ANIMATION_CANCEL`, `ANIMATION_REPLAY`, `OVERLAY_CONTROL`)
    /// was applied.
    ControlOk {
        /// `cancel`, `replay`, `skip`, `pause`, `resume` or `clear`.
        action: String,
        /// The event, for cancel and replay.
        #[serde(default, rename = "eventId", skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The overlay, for queue actions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlay: Option<String>,
        /// The client's `ref`, echoed.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// An `AUTH` frame was accepted.
    Authenticated {
        /// Who the token stands for.
        subject: String,
        /// Its role.
        role: String,
        /// When it expires, Unix seconds (the connection closes then with
        /// 4001 unless another `AUTH` renews it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<u64>,
    },
    /// A `STATE_SET` or `STATE_PATCH` was applied.
    StateOk {
        /// The stream.
        stream: String,
        /// The key.
        key: String,
        /// The document's version now.
        version: u64,
        /// False when the write changed nothing (and announced nothing).
        changed: bool,
        /// The client's `ref`, echoed.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// The state of one stream when a `SUBSCRIBE` with `snapshot: true`
    /// went live; sent before any event. Changes up to these versions are
    /// not delivered again.
    StateSnapshot {
        /// The stream.
        stream: String,
        /// The log head the subscription started at.
        offset: u64,
        /// Key → `{"value", "version"}`.
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// Answer to `PING`.
    Pong {
        /// Server time, Unix ms.
        timestamp: i64,
        /// The client's `ref`, echoed.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

impl ServerMessage {
    /// The JSON text of this message.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }

    /// An `ERROR` from a [`WireError`].
    pub fn from_wire_error(e: WireError, reference: Option<String>) -> Self {
        Self::Error {
            code: e.code.into(),
            message: e.message,
            field: e.field,
            reference,
        }
    }
}

/// The `EVENT_BROADCAST` frame for an event's canonical JSON.
pub fn event_broadcast_frame(event_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(event_json.len() + 40);
    out.extend_from_slice(b"{\"type\":\"EVENT_BROADCAST\",\"event\":");
    out.extend_from_slice(event_json);
    out.push(b'}');
    out
}
