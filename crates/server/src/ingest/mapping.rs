//! A webhook body to event inputs, by the source's JSON pointers
//! (docs/INGEST.md "Mapping"). Pure: the route validates and publishes what
//! this returns.
//!
//! Every event gets a deterministic id, so a replayed delivery maps to ids
//! already stored and stores nothing new (the durable replay protection):
//! `wh:<source>:<item id>` when the source's `id` pointer finds one, else
//! `wh:<source>:<delivery id or signature prefix>:<item index>`; ids that
//! would be invalid or longer than 128 bytes are hashed (FNV-1a).

use serde_json::{Map, Value, json};
use streambus_core::ValidationError;
use streambus_core::name::{MAX_ID_LEN, is_event_id};

use super::config::SourceConfig;
use streambus_core::name::fnv1a;

/// Hex digits of the signature used as the delivery key when the partner
/// sends no delivery id.
pub const SIGNATURE_KEY_LEN: usize = 32;

/// One mapped item: its pointer location (for messages) and event input.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Where the item sits in the body (`""` or `/items/2`).
    pub at: String,
    /// The event input for `publish::prepare`.
    pub event: Value,
}

fn missing(pointer: &str, at: &str, what: &str) -> ValidationError {
    ValidationError::new(
        pointer,
        format!("{what} not found at `{pointer}` in item `{at}`"),
    )
}

/// The id of item `index`, whose own id (if the source names one) is
/// `item_id`, in a delivery keyed `delivery`.
pub fn event_id(source: &str, delivery: &str, index: usize, item_id: Option<&str>) -> String {
    let id = match item_id {
        Some(item) => format!("wh:{source}:{item}"),
        None => format!("wh:{source}:{delivery}:{index}"),
    };
    if id.len() <= MAX_ID_LEN && is_event_id(&id) {
        id
    } else {
        format!("wh:{source}:{:016x}", fnv1a(id.as_bytes()))
    }
}

/// Maps `body` with `source`'s pointers.
///
/// # Errors
/// A pointer that finds nothing or the wrong kind of value; `field` is the
/// pointer, the reason names the item.
pub fn map_body(
    source: &SourceConfig,
    body: &Value,
    delivery: &str,
) -> Result<Vec<Mapped>, ValidationError> {
    let items: Vec<(String, &Value)> = if source.events.is_empty() {
        vec![(String::new(), body)]
    } else {
        let list = body
            .pointer(&source.events)
            .ok_or_else(|| missing(&source.events, "", "the events array"))?;
        let list = list.as_array().ok_or_else(|| {
            ValidationError::new(source.events.as_str(), "must point to an array of items")
        })?;
        list.iter()
            .enumerate()
            .map(|(i, v)| (format!("{}/{i}", source.events), v))
            .collect()
    };
    let text =
        |pointer: &str, at: &str, item: &Value, what: &str| -> Result<String, ValidationError> {
            match item.pointer(pointer) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                Some(_) => Err(ValidationError::new(
                    pointer,
                    format!("{what} at `{pointer}` in item `{at}` must be a string"),
                )),
                None => Err(missing(pointer, at, what)),
            }
        };
    items
        .into_iter()
        .enumerate()
        .map(|(index, (at, item))| {
            let event_type = if source.event_type.starts_with('/') {
                text(&source.event_type, &at, item, "the type")?
            } else {
                source.event_type.clone()
            };
            let stream = if source.stream_pointer.is_empty() {
                source.stream.clone()
            } else {
                text(&source.stream_pointer, &at, item, "the stream")?
            };
            let data = if source.data.is_empty() {
                item.clone()
            } else {
                item.pointer(&source.data)
                    .cloned()
                    .ok_or_else(|| missing(&source.data, &at, "data"))?
            };
            let item_id = if source.id.is_empty() {
                None
            } else {
                Some(text(&source.id, &at, item, "the id")?)
            };
            let mut event = Map::new();
            event.insert(
                "id".into(),
                json!(event_id(&source.name, delivery, index, item_id.as_deref())),
            );
            event.insert("type".into(), json!(event_type));
            event.insert("stream_id".into(), json!(stream));
            event.insert("source".into(), json!(format!("webhook:{}", source.name)));
            event.insert("data".into(), data);
            if !source.message.is_empty() {
                event.insert(
                    "message".into(),
                    json!(text(&source.message, &at, item, "the message")?),
                );
            }
            Ok(Mapped {
                at,
                event: Value::Object(event),
            })
        })
        .collect()
}

/// Which pointer of `source` produced an event's `field`, for problems
/// about mapped values (`type` → `/kind`); `None` for a literal or a field
/// the source does not map.
pub fn pointer_of<'a>(source: &'a SourceConfig, field: &str) -> Option<&'a str> {
    let p = match field {
        "type" if source.event_type.starts_with('/') => &source.event_type,
        "stream_id" => &source.stream_pointer,
        "data" => &source.data,
        "message" => &source.message,
        _ => return None,
    };
    (!p.is_empty()).then_some(p.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(extra: &str) -> SourceConfig {
        toml::from_str(&format!(
            "name = \"shop\"\nsecret = \"0123456789abcdef\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn single_item_defaults() {
        let m = map_body(&source(""), &json!({"type": "order.paid", "n": 1}), "d1").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].event,
            json!({"id": "wh:shop:d1:0", "type": "order.paid", "stream_id": "default",
                   "source": "webhook:shop", "data": {"type": "order.paid", "n": 1}})
        );
    }

    #[test]
    fn array_with_pointers() {
        let s = source(
            "events = \"/items\"\ntype = \"/kind\"\nstream_pointer = \"/where\"\n\
             data = \"/payload\"\nmessage = \"/text\"\nid = \"/uid\"",
        );
        let body = json!({"items": [
            {"kind": "a", "where": "s1", "payload": {"x": 1}, "text": "hi", "uid": 7},
            {"kind": "b", "where": "s2", "payload": [2], "text": "yo", "uid": "u-8"},
        ]});
        let m = map_body(&s, &body, "ignored").unwrap();
        assert_eq!(m[0].at, "/items/0");
        assert_eq!(m[0].event["id"], "wh:shop:7");
        assert_eq!(m[1].event["id"], "wh:shop:u-8");
        assert_eq!(m[1].event["stream_id"], "s2");
        assert_eq!(m[1].event["data"], json!([2]));
        assert_eq!(m[1].event["message"], "yo");
    }

    #[test]
    fn missing_pointer_is_named() {
        let s = source("events = \"/items\"\ntype = \"/kind\"");
        let e = map_body(&s, &json!({"items": [{"kind": "a"}, {}]}), "d").unwrap_err();
        assert_eq!(e.field, "/kind");
        assert!(e.reason.contains("/items/1"), "{}", e.reason);
        let e = map_body(&s, &json!({"other": []}), "d").unwrap_err();
        assert_eq!(e.field, "/items");
        let e = map_body(&s, &json!({"items": {}}), "d").unwrap_err();
        assert_eq!(e.field, "/items");
    }

    #[test]
    fn literal_type_and_long_ids_hashed() {
        let s = source("type = \"ping\"");
        let m = map_body(&s, &json!({}), &"x".repeat(200)).unwrap();
        assert_eq!(m[0].event["type"], "ping");
        let id = m[0].event["id"].as_str().unwrap();
        assert!(id.starts_with("wh:shop:") && id.len() < 40, "{id}");
        assert_eq!(
            event_id("shop", "has space", 0, None).len(),
            "wh:shop:".len() + 16
        );
    }
}
