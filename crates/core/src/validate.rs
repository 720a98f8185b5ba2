//! Turns producer input into events (SPEC §2), naming the offending field on error.
//!
//! Input is a JSON object. Besides the canonical fields it accepts the seeds'
//! spellings: `payload` for `data` (seed 000), `duration` for `duration_ms`,
//! `event_type` for `type`, and top-level `priority`/`tags` as shortcuts for the
//! metadata keys. Unknown fields are rejected so that typos do not pass silently.

use serde_json::{Map, Value};

use crate::event::{Event, EventClass, Metadata, Priority, Status};
use crate::name;
use crate::time::{now_ms, parse_time_ms, rfc3339_ms};

/// Default limit on one event's JSON size (SPEC: 64 KiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;
/// Default limit on one request body (SPEC: 1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default number of events one batch may hold.
pub const DEFAULT_MAX_BATCH: usize = 1000;
/// Longest accepted `message`, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Most tags on one event, and the longest tag.
pub const MAX_TAGS: usize = 32;
const MAX_TAG_LEN: usize = 64;
/// Default play time of an animated event without `duration_ms`.
pub const DEFAULT_ANIMATION_MS: u64 = 5000;

/// Size limits applied to input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One event's JSON, in bytes.
    pub max_event_bytes: usize,
    /// One request body, in bytes.
    pub max_body_bytes: usize,
    /// Events in one batch.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// Why input was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The offending field (`""` for the whole event).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
    /// Set when the event was too large (maps to 413 rather than 422).
    pub too_large: bool,
}

impl ValidationError {
    /// A validation error on `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            too_large: false,
        }
    }

    /// The event exceeds the size limit.
    pub fn too_large(len: usize, max: usize) -> Self {
        Self {
            field: String::new(),
            reason: format!("event is {len} bytes, the limit is {max}"),
            too_large: true,
        }
    }
}

/// A validated event ready to append, and whether its id came from the producer
/// (only those need an idempotency check).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event, offset 0.
    pub event: Event,
    /// True when the producer supplied `id`.
    pub supplied_id: bool,
}

/// What the server knows about a publish beyond its body.
#[derive(Debug, Clone, Default)]
pub struct PublishContext<'a> {
    /// Stream used when the body names none (path parameter, broadcast target).
    pub stream: Option<&'a str>,
    /// `source` used when the body names none.
    pub source: Option<&'a str>,
    /// Correlation id from the request header, copied into metadata when absent.
    pub correlation_id: Option<&'a str>,
}

const FIELDS: &[&str] = &[
    "id",
    "offset",
    "stream_id",
    "stream",
    "type",
    "event_type",
    "class",
    "source",
    "message",
    "data",
    "payload",
    "metadata",
    "priority",
    "tags",
    "timestamp",
    "time",
    "level",
    "severity",
    "scheduled_at",
    "duration_ms",
    "duration",
    "cancelable",
    "replayable",
    "persistent",
    "internal",
];

/// Is `key` a field an event given as JSON may have (any accepted spelling)?
pub fn is_event_field(key: &str) -> bool {
    FIELDS.contains(&key)
}

/// Checks an event's encoded size against the limit.
///
/// # Errors
/// A `too_large` error when `len` exceeds `limits.max_event_bytes`.
pub fn check_size(len: usize, limits: &Limits) -> Result<(), ValidationError> {
    if len > limits.max_event_bytes {
        return Err(ValidationError::too_large(len, limits.max_event_bytes));
    }
    Ok(())
}

/// Validates one event given as JSON.
///
/// # Errors
/// The first offending field, with the reason.
pub fn event_from_json(
    input: Value,
    ctx: &PublishContext<'_>,
) -> Result<NewEvent, ValidationError> {
    let Value::Object(mut obj) = input else {
        return Err(ValidationError::new("", "an event must be a JSON object"));
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ValidationError::new(k.clone(), "unknown field"));
    }

    let supplied_id = obj.contains_key("id");
    let id = match take_str(&mut obj, "id")? {
        Some(id) if name::is_event_id(&id) => id,
        Some(_) => {
            return Err(ValidationError::new(
                "id",
                "must match [A-Za-z0-9_.:-]{1,128}",
            ));
        }
        None => new_event_id(),
    };

    let stream_id = match take_str_alias(&mut obj, "stream_id", "stream")? {
        Some(s) if !s.is_empty() => s,
        _ => ctx.stream.unwrap_or(crate::DEFAULT_TENANT).to_owned(),
    };
    if !name::is_stream_name(&stream_id) {
        return Err(ValidationError::new(
            "stream_id",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }

    let event_type = take_str_alias(&mut obj, "type", "event_type")?
        .ok_or_else(|| ValidationError::new("type", "is required"))?;
    if !name::is_event_type(&event_type) {
        return Err(ValidationError::new(
            "type",
            "must match [A-Za-z0-9_.:-]{1,100}",
        ));
    }

    let class = match take_str(&mut obj, "class")? {
        Some(c) => EventClass::parse(&c).ok_or_else(|| {
            ValidationError::new("class", "must be one of animated, data, alert, system")
        })?,
        None => EventClass::Data,
    };

    let source =
        take_str(&mut obj, "source")?.unwrap_or_else(|| ctx.source.unwrap_or("api").to_owned());
    if source.len() > name::MAX_SOURCE_LEN {
        return Err(ValidationError::new("source", "is longer than 200 bytes"));
    }

    let message = take_str(&mut obj, "message")?.unwrap_or_default();
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(ValidationError::new("message", "is longer than 8192 bytes"));
    }

    let data = match (obj.remove("data"), obj.remove("payload")) {
        (Some(_), Some(_)) => {
            return Err(ValidationError::new(
                "payload",
                "give either data or payload",
            ));
        }
        (Some(v), None) | (None, Some(v)) => v,
        (None, None) => Value::Object(Map::new()),
    };

    let mut metadata = match obj.remove("metadata") {
        None | Some(Value::Null) => Metadata::default(),
        Some(Value::Object(m)) => metadata_from(m)?,
        Some(_) => return Err(ValidationError::new("metadata", "must be an object")),
    };
    if let Some(p) = take_str(&mut obj, "priority")? {
        metadata.priority = parse_priority("priority", &p)?;
    }
    if let Some(tags) = obj.remove("tags") {
        metadata.tags = parse_tags("tags", tags)?;
    }
    if metadata.correlation_id.is_none() {
        metadata.correlation_id = ctx.correlation_id.map(str::to_owned);
    }

    let time_ms = event_time(&mut obj)?;

    let level = take_str(&mut obj, "level")?;
    let severity = take_str(&mut obj, "severity")?;
    let level = match (class, level) {
        (EventClass::Alert, None) => Some("info".to_owned()),
        (EventClass::Alert, Some(l)) if ["info", "warning", "error"].contains(&l.as_str()) => {
            Some(l)
        }
        (EventClass::Alert, Some(_)) => {
            return Err(ValidationError::new(
                "level",
                "must be one of info, warning, error",
            ));
        }
        (_, Some(_)) => {
            return Err(ValidationError::new(
                "level",
                "applies to alert events only",
            ));
        }
        (_, None) => None,
    };
    let severity = match (class, severity) {
        (EventClass::System, None) => Some("info".to_owned()),
        (EventClass::System, Some(s))
            if ["debug", "info", "warn", "error"].contains(&s.as_str()) =>
        {
            Some(s)
        }
        (EventClass::System, Some(_)) => {
            return Err(ValidationError::new(
                "severity",
                "must be one of debug, info, warn, error",
            ));
        }
        (_, Some(_)) => {
            return Err(ValidationError::new(
                "severity",
                "applies to system events only",
            ));
        }
        (_, None) => None,
    };

    let scheduled_at = match obj.remove("scheduled_at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(rfc3339_ms(parse_instant("scheduled_at", &v)?)),
    };
    let duration_ms = match (obj.remove("duration_ms"), obj.remove("duration")) {
        (Some(_), Some(_)) => {
            return Err(ValidationError::new(
                "duration",
                "give either duration_ms or duration",
            ));
        }
        (Some(v), None) => Some(parse_duration("duration_ms", &v)?),
        (None, Some(v)) => Some(parse_duration("duration", &v)?),
        (None, None) => None,
    };
    let cancelable = take_bool(&mut obj, "cancelable")?;
    let replayable = take_bool(&mut obj, "replayable")?;
    take_bool(&mut obj, "persistent")?;
    take_bool(&mut obj, "internal")?;
    // A stored offset (e.g. from `tail --json`) is replaced by the log's own.
    obj.remove("offset");

    let tracked = class == EventClass::Animated || event_type.ends_with(":requested");
    let event = Event {
        id,
        offset: 0,
        stream_id,
        event_type,
        class,
        source,
        message,
        data,
        metadata,
        timestamp: time_ms.div_euclid(1000),
        time: rfc3339_ms(time_ms),
        level,
        severity,
        status: tracked.then_some(Status::Pending),
        scheduled_at,
        started_at: None,
        completed_at: None,
        duration_ms: if class == EventClass::Animated {
            Some(duration_ms.unwrap_or(DEFAULT_ANIMATION_MS))
        } else {
            duration_ms
        },
        cancelable: if tracked {
            Some(cancelable.unwrap_or(true))
        } else {
            cancelable
        },
        replayable: if tracked {
            Some(replayable.unwrap_or(true))
        } else {
            replayable
        },
        derived_from: None,
    };
    Ok(NewEvent { event, supplied_id })
}

/// A new server-made id: `evt_` + UUIDv7 (time-sortable).
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

fn metadata_from(mut m: Map<String, Value>) -> Result<Metadata, ValidationError> {
    let priority = match m.remove("priority") {
        None | Some(Value::Null) => Priority::Normal,
        Some(Value::String(s)) => parse_priority("metadata.priority", &s)?,
        Some(_) => {
            return Err(ValidationError::new(
                "metadata.priority",
                "must be a string",
            ));
        }
    };
    let tags = match m.remove("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_tags("metadata.tags", v)?,
    };
    let correlation_id = match m.remove("correlation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 200 => Some(s),
        Some(_) => {
            return Err(ValidationError::new(
                "metadata.correlation_id",
                "must be a string of at most 200 bytes",
            ));
        }
    };
    Ok(Metadata {
        priority,
        tags,
        correlation_id,
        extra: m,
    })
}

fn parse_priority(field: &str, s: &str) -> Result<Priority, ValidationError> {
    Priority::parse(s)
        .ok_or_else(|| ValidationError::new(field, "must be one of low, normal, high, critical"))
}

fn parse_tags(field: &str, v: Value) -> Result<Vec<String>, ValidationError> {
    let Value::Array(items) = v else {
        return Err(ValidationError::new(field, "must be an array of strings"));
    };
    if items.len() > MAX_TAGS {
        return Err(ValidationError::new(field, "has more than 32 tags"));
    }
    items
        .into_iter()
        .map(|t| match t {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_TAG_LEN => Ok(s),
            _ => Err(ValidationError::new(
                field,
                "each tag must be a string of 1 to 64 bytes",
            )),
        })
        .collect()
}

fn event_time(obj: &mut Map<String, Value>) -> Result<i64, ValidationError> {
    if let Some(v) = obj.remove("time").filter(|v| !v.is_null()) {
        obj.remove("timestamp");
        return parse_instant("time", &v);
    }
    match obj.remove("timestamp") {
        None | Some(Value::Null) => Ok(now_ms()),
        Some(v) => parse_instant("timestamp", &v),
    }
}

/// An instant given as Unix seconds (number) or RFC 3339 (string).
fn parse_instant(field: &str, v: &Value) -> Result<i64, ValidationError> {
    let ms = match v {
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0) as i64),
        Value::String(s) => parse_time_ms(s),
        _ => None,
    };
    ms.filter(|ms| (0..=253_402_300_799_000).contains(ms))
        .ok_or_else(|| ValidationError::new(field, "must be Unix seconds or an RFC 3339 time"))
}

fn parse_duration(field: &str, v: &Value) -> Result<u64, ValidationError> {
    v.as_u64()
        .filter(|d| *d <= 3_600_000)
        .ok_or_else(|| ValidationError::new(field, "must be milliseconds from 0 to 3600000"))
}

fn take_str(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ValidationError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::new(key, "must be a string")),
    }
}

fn take_str_alias(
    obj: &mut Map<String, Value>,
    key: &str,
    alias: &str,
) -> Result<Option<String>, ValidationError> {
    match (take_str(obj, key)?, take_str(obj, alias)?) {
        (Some(_), Some(_)) => Err(ValidationError::new(
            alias,
            format!("give either {key} or {alias}"),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

fn take_bool(obj: &mut Map<String, Value>, key: &str) -> Result<Option<bool>, ValidationError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ValidationError::new(key, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> NewEvent {
        event_from_json(v, &PublishContext::default()).expect("valid")
    }

    fn bad(v: Value) -> String {
        event_from_json(v, &PublishContext::default())
            .expect_err("invalid")
            .field
    }

    #[test]
    fn minimal_event_gets_defaults() {
        let e = ok(json!({"type": "user_action"})).event;
        assert!(e.id.starts_with("evt_"));
        assert_eq!(e.stream_id, "default");
        assert_eq!(e.class, EventClass::Data);
        assert_eq!(e.data, json!({}));
        assert_eq!(e.status, None);
        assert!(e.time.ends_with('Z'));
        assert_eq!(e.timestamp, e.time_ms() / 1000);
    }

    #[test]
    fn animated_event_is_tracked_with_defaults() {
        let n = ok(
            json!({"type": "high_score", "class": "animated", "id": "k-1",
            "payload": {"score": 1}, "duration": 3000, "priority": "high"}),
        );
        assert!(n.supplied_id);
        let e = n.event;
        assert_eq!(e.id, "k-1");
        assert_eq!(e.status, Some(Status::Pending));
        assert_eq!(e.duration_ms, Some(3000));
        assert_eq!(e.cancelable, Some(true));
        assert_eq!(e.metadata.priority, Priority::High);
        assert_eq!(e.data, json!({"score": 1}));
    }

    #[test]
    fn requested_type_is_tracked() {
        let e = ok(json!({"type": "campaign:send:v1:requested"})).event;
        assert_eq!(e.status, Some(Status::Pending));
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({}), "type"),
            (json!({"type": "a b"}), "type"),
            (json!({"type": "t", "stream_id": "Bad"}), "stream_id"),
            (json!({"type": "t", "class": "loud"}), "class"),
            (json!({"type": "t", "id": "has space"}), "id"),
            (json!({"type": "t", "bogus": 1}), "bogus"),
            (
                json!({"type": "t", "metadata": {"priority": "urgent"}}),
                "metadata.priority",
            ),
            (json!({"type": "t", "tags": "x"}), "tags"),
            (json!({"type": "t", "level": "info"}), "level"),
            (
                json!({"type": "t", "class": "alert", "level": "panic"}),
                "level",
            ),
            (json!({"type": "t", "timestamp": "soon"}), "timestamp"),
            (json!({"type": "t", "duration_ms": -1}), "duration_ms"),
            (json!({"type": "t", "message": 5}), "message"),
            (json!({"type": "t", "cancelable": "yes"}), "cancelable"),
            (json!({"type": "t", "data": {}, "payload": {}}), "payload"),
        ];
        for (input, field) in cases {
            assert_eq!(bad(input.clone()), field, "{input}");
        }
        assert_eq!(bad(json!([1])), "");
    }

    #[test]
    fn context_fills_stream_source_and_correlation() {
        let ctx = PublishContext {
            stream: Some("scores"),
            source: Some("web"),
            correlation_id: Some("c-1"),
        };
        let e = event_from_json(json!({"type": "t"}), &ctx).unwrap().event;
        assert_eq!(e.stream_id, "scores");
        assert_eq!(e.source, "web");
        assert_eq!(e.metadata.correlation_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn size_limit() {
        let l = Limits::default();
        assert!(check_size(10, &l).is_ok());
        assert!(check_size(l.max_event_bytes + 1, &l).unwrap_err().too_large);
    }
}
