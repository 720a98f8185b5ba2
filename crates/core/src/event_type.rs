//! The event-type registry entry (SPEC §2 "Event type"; issue 4 point 5): a
//! JSON Schema for `data` and defaults for class, priority, duration,
//! cancelable and replayable.
//!
//! [`EventTypeDef`] is what is stored and served; [`CompiledType`] is a
//! definition with its schema compiled once, which the publish path uses to
//! fill the defaults a producer left out ([`CompiledType::apply_defaults`],
//! before [`crate::validate::event_from_json`], so it still sees exactly what
//! the producer gave) and to check `data` ([`CompiledType::check_data`]).
//!
//! Schemas are compiled by the `jsonschema` crate without its default
//! features: no network and no file access, so a `$ref` to a remote document
//! is refused when the type is registered rather than fetched at publish time.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{EventClass, Priority};
use crate::name;
use crate::validate::ValidationError;

/// Longest accepted `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1000;
/// Longest schema error kept in a problem's `detail`, in bytes.
const MAX_ERROR_BYTES: usize = 500;

/// A registered event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventTypeDef {
    /// The event type it applies to (`[A-Za-z0-9_.:-]{1,100}`, exact match).
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema that every event's `data` must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Class when the producer gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<EventClass>,
    /// Priority when the producer gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Play time when the producer gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `cancelable` when the producer gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelable: Option<bool>,
    /// `replayable` when the producer gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayable: Option<bool>,
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "schema",
    "class",
    "priority",
    "duration_ms",
    "cancelable",
    "replayable",
];

impl EventTypeDef {
    /// Validates a definition given as JSON, including that `schema` is a
    /// valid JSON Schema.
    ///
    /// # Errors
    /// The first offending field (`schema` for an invalid schema).
    pub fn from_json(input: Value) -> Result<Self, ValidationError> {
        let Value::Object(mut obj) = input else {
            return Err(ValidationError::new(
                "",
                "an event type must be a JSON object",
            ));
        };
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(ValidationError::new(k.clone(), "unknown field"));
        }
        let name = match obj.remove("name") {
            Some(Value::String(s)) if name::is_event_type(&s) => s,
            Some(Value::String(_)) => {
                return Err(ValidationError::new(
                    "name",
                    "must match [A-Za-z0-9_.:-]{1,100}",
                ));
            }
            None | Some(Value::Null) => return Err(ValidationError::new("name", "is required")),
            Some(_) => return Err(ValidationError::new("name", "must be a string")),
        };
        let description = match obj.remove("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= MAX_DESCRIPTION_BYTES => Some(s),
            Some(_) => {
                return Err(ValidationError::new(
                    "description",
                    "must be a string of at most 1000 bytes",
                ));
            }
        };
        let schema = match obj.remove("schema") {
            None | Some(Value::Null) => None,
            Some(s) => {
                compile_schema(&s)?;
                Some(s)
            }
        };
        let class = match obj.remove("class") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(EventClass::parse(&c).ok_or_else(|| {
                ValidationError::new("class", "must be one of animated, data, alert, system")
            })?),
            Some(_) => return Err(ValidationError::new("class", "must be a string")),
        };
        let priority = match obj.remove("priority") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(Priority::parse(&p).ok_or_else(|| {
                ValidationError::new("priority", "must be one of low, normal, high, critical")
            })?),
            Some(_) => return Err(ValidationError::new("priority", "must be a string")),
        };
        let duration_ms = match obj.remove("duration_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|d| *d <= 3_600_000).ok_or_else(|| {
                ValidationError::new("duration_ms", "must be milliseconds from 0 to 3600000")
            })?),
        };
        let flag = |obj: &mut Map<String, Value>, key: &str| match obj.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ValidationError::new(key, "must be true or false")),
        };
        let cancelable = flag(&mut obj, "cancelable")?;
        let replayable = flag(&mut obj, "replayable")?;
        Ok(Self {
            name,
            description,
            schema,
            class,
            priority,
            duration_ms,
            cancelable,
            replayable,
        })
    }
}

/// Compiles a JSON Schema (draft from `$schema`, else 2020-12), checking it
/// against its meta-schema.
///
/// # Errors
/// A `schema` error saying why it is not a valid JSON Schema.
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, ValidationError> {
    if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
        return Err(ValidationError::new(
            "schema",
            "is not a valid JSON Schema: must be an object or a boolean",
        ));
    }
    jsonschema::validator_for(schema).map_err(|e| {
        let at = e.schema_path().as_str();
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" (at {at})")
        };
        ValidationError::new(
            "schema",
            format!(
                "is not a valid JSON Schema: {}{at}",
                truncate(e.to_string())
            ),
        )
    })
}

/// A definition with its schema compiled: built once per registration and
/// shared by every publish of the type.
#[derive(Debug)]
pub struct CompiledType {
    /// The definition.
    pub def: EventTypeDef,
    /// The compiled `schema`, if it has one.
    validator: Option<jsonschema::Validator>,
}

impl CompiledType {
    /// Compiles `def`'s schema.
    ///
    /// # Errors
    /// A `schema` error when the stored schema is not valid (it was checked
    /// when registered, so only a newer, stricter compiler would refuse it).
    pub fn new(def: EventTypeDef) -> Result<Self, ValidationError> {
        let validator = def.schema.as_ref().map(compile_schema).transpose()?;
        Ok(Self { def, validator })
    }

    /// Fills into a producer's event object the defaults of this type for
    /// what the producer left out (a field that is absent or `null`, under
    /// any of its accepted spellings). Leaves anything that is not an object
    /// alone: validation reports it.
    pub fn apply_defaults(&self, event: &mut Map<String, Value>) {
        let d = &self.def;
        let absent =
            |obj: &Map<String, Value>, keys: &[&str]| keys.iter().all(|k| is_absent(obj.get(*k)));
        if let Some(c) = d.class
            && absent(event, &["class"])
        {
            event.insert("class".into(), c.as_str().into());
        }
        if let Some(p) = d.priority {
            let in_metadata = match event.get("metadata") {
                Some(Value::Object(m)) => !is_absent(m.get("priority")),
                _ => false,
            };
            if !in_metadata && absent(event, &["priority"]) {
                event.insert("priority".into(), p.as_str().into());
            }
        }
        if let Some(ms) = d.duration_ms
            && absent(event, &["duration_ms", "duration"])
        {
            event.insert("duration_ms".into(), ms.into());
        }
        if let Some(b) = d.cancelable
            && absent(event, &["cancelable"])
        {
            event.insert("cancelable".into(), b.into());
        }
        if let Some(b) = d.replayable
            && absent(event, &["replayable"])
        {
            event.insert("replayable".into(), b.into());
        }
    }

    /// Checks `data` against the schema.
    ///
    /// # Errors
    /// The first failure: the field is `data` followed by the JSON pointer
    /// of the failing location (`data/score`), the reason is the schema's
    /// message.
    pub fn check_data(&self, data: &Value) -> Result<(), ValidationError> {
        let Some(v) = &self.validator else {
            return Ok(());
        };
        v.validate(data).map_err(|e| {
            let field = format!("data{}", e.instance_path().as_str());
            ValidationError::new(field, truncate(e.to_string()))
        })
    }
}

fn is_absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// `s` cut to [`MAX_ERROR_BYTES`] on a character boundary (schema messages
/// quote the offending value, which may be large).
fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> EventTypeDef {
        EventTypeDef::from_json(v).expect("valid definition")
    }

    #[test]
    fn parses_a_full_definition_and_round_trips() {
        let d = def(json!({"name": "high_score", "description": "x",
            "schema": {"type": "object", "required": ["score"]},
            "class": "animated", "priority": "high", "duration_ms": 3000,
            "cancelable": false, "replayable": true}));
        assert_eq!(d.class, Some(EventClass::Animated));
        assert_eq!(d.priority, Some(Priority::High));
        let back: EventTypeDef = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        let minimal = serde_json::to_value(def(json!({"name": "t"}))).unwrap();
        assert_eq!(minimal, json!({"name": "t"}));
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let cases = [
            (json!({}), "name"),
            (json!({"name": "a b"}), "name"),
            (json!({"name": "t", "bogus": 1}), "bogus"),
            (json!({"name": "t", "class": "loud"}), "class"),
            (json!({"name": "t", "priority": "urgent"}), "priority"),
            (json!({"name": "t", "duration_ms": -5}), "duration_ms"),
            (json!({"name": "t", "cancelable": "no"}), "cancelable"),
            (json!({"name": "t", "schema": {"type": "strin"}}), "schema"),
            (json!({"name": "t", "schema": {"type": 5}}), "schema"),
            (json!({"name": "t", "schema": {"minimum": "ten"}}), "schema"),
            (json!({"name": "t", "schema": "object"}), "schema"),
            (
                json!({"name": "t", "schema": {"$ref": "https://example.com/s.json"}}),
                "schema",
            ),
        ];
        for (input, field) in cases {
            let e = EventTypeDef::from_json(input.clone()).expect_err("invalid");
            assert_eq!(e.field, field, "{input}: {e}");
        }
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let t = CompiledType::new(def(json!({"name": "t", "class": "animated",
            "priority": "high", "duration_ms": 3000, "cancelable": false, "replayable": false})))
        .unwrap();
        let mut given = json!({"type": "t"}).as_object().unwrap().clone();
        t.apply_defaults(&mut given);
        assert_eq!(
            Value::Object(given),
            json!({"type": "t", "class": "animated", "priority": "high",
                "duration_ms": 3000, "cancelable": false, "replayable": false})
        );
        let mut own = json!({"type": "t", "class": "data", "metadata": {"priority": "low"},
            "duration": 10, "cancelable": true, "replayable": null})
        .as_object()
        .unwrap()
        .clone();
        t.apply_defaults(&mut own);
        assert_eq!(
            Value::Object(own),
            json!({"type": "t", "class": "data", "metadata": {"priority": "low"},
                "duration": 10, "cancelable": true, "replayable": false})
        );
    }

    #[test]
    fn data_errors_point_at_the_failing_location() {
        let t = CompiledType::new(def(json!({"name": "t", "schema": {
            "type": "object", "required": ["player"],
            "properties": {"score": {"type": "integer", "maximum": 100},
                           "tags": {"type": "array", "items": {"type": "string"}}}}})))
        .unwrap();
        assert!(t.check_data(&json!({"player": "a", "score": 5})).is_ok());
        let cases = [
            (json!({"player": "a", "score": 500}), "data/score"),
            (json!({"player": "a", "tags": ["x", 7]}), "data/tags/1"),
            (json!({"score": 1}), "data"),
            (json!([1]), "data"),
        ];
        for (data, field) in cases {
            let e = t.check_data(&data).expect_err("invalid data");
            assert_eq!(e.field, field, "{data}: {e}");
            assert!(!e.reason.is_empty());
        }
        let e = t
            .check_data(&json!({"player": "a", "score": 500}))
            .unwrap_err();
        assert!(e.reason.contains("100"), "{}", e.reason);
        let none = CompiledType::new(def(json!({"name": "t"}))).unwrap();
        assert!(none.check_data(&json!("anything")).is_ok());
    }
}
