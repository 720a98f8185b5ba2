//! The canonical event (SPEC §2) and its enumerations.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What kind of event this is; decides how overlays treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventClass {
    /// Played on overlays one at a time, with a lifecycle.
    Animated,
    /// Plain data (scores, state); the default.
    #[default]
    Data,
    /// A message with a `level`.
    Alert,
    /// Internal; never sent to overlays unless asked for by class.
    System,
}

impl EventClass {
    /// Every class, in declaration order.
    pub const ALL: [EventClass; 4] = [Self::Animated, Self::Data, Self::Alert, Self::System];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Animated => "animated",
            Self::Data => "data",
            Self::Alert => "alert",
            Self::System => "system",
        }
    }

    /// Parses the lowercase wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Delivery priority, lowest first so that `Ord` compares by urgency.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Least urgent.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Played before normal.
    High,
    /// Played first.
    Critical,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 4] = [Self::Low, Self::Normal, Self::High, Self::Critical];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Parses the lowercase wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Lifecycle state of animated and tracked events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored, not yet played.
    Pending,
    /// Playing somewhere.
    Active,
    /// Played to the end.
    Completed,
    /// Stopped or removed by an operator.
    Cancelled,
    /// Reported as failed.
    Failed,
    /// Waited too long to be played.
    Expired,
}

/// Metadata every event carries; unknown keys are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// Delivery priority.
    #[serde(default)]
    pub priority: Priority,
    /// Free tags; filters match any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Carried from the request header to delivery for tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Any other keys the producer sent (e.g. `tournament_id`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The canonical event (SPEC §2).
///
/// `offset` is 0 until the log assigns one; a zero offset is not serialised, so
/// the stored body can be written before the offset is known (see [`Record`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_` + UUIDv7, or the producer's idempotency key.
    pub id: String,
    /// Position in the bus log, strictly increasing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The stream this event belongs to.
    pub stream_id: String,
    /// Event type, e.g. `high_score`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Event class.
    pub class: EventClass,
    /// Who produced it.
    pub source: String,
    /// Human-readable text; rendered as text, never HTML.
    pub message: String,
    /// Payload.
    pub data: Value,
    /// Priority, tags, correlation id and free keys.
    pub metadata: Metadata,
    /// Unix seconds.
    pub timestamp: i64,
    /// RFC 3339 with milliseconds, UTC.
    pub time: String,
    /// Alert level (`info`, `warning`, `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// System severity (`debug`, `info`, `warn`, `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Lifecycle state (animated and tracked events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// When it should be delivered, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// When it started playing, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// How long it plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// May an operator cancel it?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelable: Option<bool>,
    /// May an operator replay it?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayable: Option<bool>,
    /// The event a rule derived this one from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Event {
    /// An event the server makes itself: `id` on `stream` of `event_type`
    /// and `class` at `at_ms`, source `streambus`, everything else empty
    /// (set what differs with struct update syntax).
    pub fn made(
        id: String,
        stream: &str,
        event_type: String,
        class: EventClass,
        at_ms: i64,
    ) -> Self {
        Self {
            id,
            offset: 0,
            stream_id: stream.to_owned(),
            event_type,
            class,
            source: "streambus".to_owned(),
            message: String::new(),
            data: Value::Null,
            metadata: Metadata::default(),
            timestamp: at_ms.div_euclid(1000),
            time: crate::time::rfc3339_ms(at_ms),
            level: None,
            severity: None,
            status: None,
            scheduled_at: None,
            started_at: None,
            completed_at: None,
            duration_ms: None,
            cancelable: None,
            replayable: None,
            derived_from: None,
        }
    }

    /// The event time in milliseconds since the epoch.
    pub fn time_ms(&self) -> i64 {
        crate::time::parse_rfc3339_ms(&self.time).unwrap_or(self.timestamp * 1000)
    }

    /// Serialises the event without its offset: the body a store keeps.
    pub fn to_body(&self) -> String {
        if self.offset == 0 {
            // A zero offset is not serialised: no copy needed.
            return serde_json::to_string(self).expect("an Event always serialises");
        }
        let mut e = self.clone();
        e.offset = 0;
        serde_json::to_string(&e).expect("an Event always serialises")
    }
}

/// A committed event: the parsed event plus its canonical JSON, made once and
/// shared by every connection that delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The tenant owning it.
    pub tenant: String,
    /// The event, with its offset.
    pub event: Event,
    /// The canonical JSON of `event`, offset included.
    pub json: Bytes,
}

impl Record {
    /// Builds a record from a stored body (JSON without offset) and its offset,
    /// without re-serialising: the offset is spliced in front of the body.
    ///
    /// # Errors
    /// Fails when the body is not a JSON object holding an event.
    pub fn from_body(tenant: &str, offset: u64, body: &str) -> Result<Self, serde_json::Error> {
        let mut event: Event = serde_json::from_str(body)?;
        event.offset = offset;
        let json = splice_offset(offset, body);
        Ok(Self {
            tenant: tenant.to_owned(),
            event,
            json,
        })
    }

    /// Builds a record from an event that already carries its offset and the
    /// body it was stored with (from [`Event::to_body`]), without re-serialising.
    pub fn with_body(tenant: &str, event: Event, body: &str) -> Self {
        let json = splice_offset(event.offset, body);
        Self {
            tenant: tenant.to_owned(),
            event,
            json,
        }
    }

    /// Builds a record from an event that already carries its offset.
    pub fn from_event(tenant: &str, event: Event) -> Self {
        let json = Bytes::from(serde_json::to_vec(&event).expect("an Event always serialises"));
        Self {
            tenant: tenant.to_owned(),
            event,
            json,
        }
    }

    /// The offset.
    pub fn offset(&self) -> u64 {
        self.event.offset
    }
}

/// `{"offset":N,` + the body without its opening brace.
fn splice_offset(offset: u64, body: &str) -> Bytes {
    let rest = body.strip_prefix('{').unwrap_or(body);
    let mut out = Vec::with_capacity(body.len() + 24);
    out.extend_from_slice(b"{\"offset\":");
    out.extend_from_slice(offset.to_string().as_bytes());
    if rest.starts_with('}') {
        out.extend_from_slice(rest.as_bytes());
    } else {
        out.push(b',');
        out.extend_from_slice(rest.as_bytes());
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Event {
        Event {
            id: "evt_1".into(),
            offset: 0,
            stream_id: "default".into(),
            event_type: "high_score".into(),
            class: EventClass::Animated,
            source: "game".into(),
            message: "New high score!".into(),
            data: serde_json::json!({"player": "ana", "score": 9100}),
            metadata: Metadata::default(),
            timestamp: 1_642_598_400,
            time: "2022-01-19T13:20:00.123Z".into(),
            level: None,
            severity: None,
            status: Some(Status::Pending),
            scheduled_at: None,
            started_at: None,
            completed_at: None,
            duration_ms: Some(5000),
            cancelable: Some(true),
            replayable: Some(true),
            derived_from: None,
        }
    }

    #[test]
    fn body_has_no_offset_and_record_splices_it() {
        let body = sample().to_body();
        assert!(!body.contains("\"offset\""));
        let rec = Record::from_body("default", 42, &body).unwrap();
        assert_eq!(rec.event.offset, 42);
        let v: Value = serde_json::from_slice(&rec.json).unwrap();
        assert_eq!(v["offset"], 42);
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["metadata"]["priority"], "normal");
    }

    #[test]
    fn priority_orders_by_urgency() {
        assert!(Priority::Critical > Priority::High);
        assert!(Priority::High > Priority::Normal);
        assert!(Priority::Normal > Priority::Low);
    }
}
