//! What a firing derives: the event (as the JSON a producer would send, so
//! the publish path and the event-type registry treat it like any other)
//! and, for rules with a [`StateTarget`](super::StateTarget), the merge
//! patch of a state document.

use serde_json::{Map, Value, json};

use super::{Detect, Firing, Rule, RuleDef, SOURCE_PREFIX, depth, derived_id, lookup};
use crate::event::{Event, EventClass};
use crate::name;
use crate::template::render;
use crate::validate::{ValidationError, is_event_field};

/// Event fields a rule's `emit.fields` may not set: the rule sets them.
const RESERVED: &[&str] = &[
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
    "timestamp",
    "time",
];

/// One derived event.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// Its deterministic id.
    pub id: String,
    /// The event as JSON input (with `id`), for the publish path.
    pub event: Value,
    /// The state write that goes with it.
    pub state: Option<StateWrite>,
}

/// A merge patch of one state document.
#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite {
    /// The state stream.
    pub stream: String,
    /// The document's key.
    pub key: String,
    /// The JSON merge patch.
    pub patch: Value,
}

fn has_placeholder(s: &str) -> bool {
    s.contains("{{")
}

/// Checks the `emit` and `state` parts of a definition.
pub(super) fn check_emit(def: &RuleDef) -> Result<(), ValidationError> {
    let emit = &def.emit;
    if let Some(t) = emit.event_type.as_deref().filter(|t| !has_placeholder(t))
        && !name::is_event_type(t)
    {
        return Err(ValidationError::new(
            "emit.type",
            "must match [A-Za-z0-9_.:-]{1,100}",
        ));
    }
    if let Some(s) = emit.stream.as_deref().filter(|s| !has_placeholder(s))
        && !name::is_stream_name(s)
    {
        return Err(ValidationError::new(
            "emit.stream",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }
    if let Some(c) = &emit.class
        && EventClass::parse(c).is_none()
    {
        return Err(ValidationError::new(
            "emit.class",
            "must be animated, data, alert or system",
        ));
    }
    if let Some(k) = emit
        .fields
        .keys()
        .find(|k| !is_event_field(k) || RESERVED.contains(&k.as_str()))
    {
        return Err(ValidationError::new(
            format!("emit.fields.{k}"),
            "is not an event field a rule may set",
        ));
    }
    if let Some(target) = &def.state
        && !name::is_stream_name(&target.stream)
    {
        return Err(ValidationError::new(
            "state.stream",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }
    if def.state.as_ref().is_some_and(|t| t.key.is_empty()) {
        return Err(ValidationError::new("state.key", "must not be empty"));
    }
    Ok(())
}

/// The detector's own type, class, message and data.
fn defaults(
    rule: &Rule,
    cause: &Event,
    vars: &Map<String, Value>,
) -> (String, EventClass, String, Value) {
    let own = || Value::Object(vars.clone());
    match &rule.def.detect {
        Detect::HighScore { subject, .. } => (
            "high_score".into(),
            EventClass::Animated,
            if subject.is_some() {
                "New high score: {{subject}} with {{value}}".into()
            } else {
                "New high score: {{value}}".into()
            },
            own(),
        ),
        Detect::WinStreak { .. } => (
            "win_streak".into(),
            EventClass::Animated,
            "{{subject}} has won {{streak}} in a row".into(),
            own(),
        ),
        Detect::Threshold { .. } => (
            "threshold.crossed".into(),
            EventClass::Data,
            "{{field}} crossed {{threshold}} ({{value}})".into(),
            own(),
        ),
        Detect::ValueChange { .. } => (
            "value.changed".into(),
            EventClass::Data,
            "{{field}} changed to {{value}}".into(),
            own(),
        ),
        Detect::Links { .. } => (
            "link.detected".into(),
            EventClass::Data,
            "{{link.platform}} link: {{link.url}}".into(),
            vars.get("link").cloned().unwrap_or(Value::Null),
        ),
        Detect::Map {} => (
            String::new(),
            cause.class,
            cause.message.clone(),
            cause.data.clone(),
        ),
    }
}

pub(super) fn derive(rule: &Rule, cause: &Event, doc: &Value, firing: &Firing) -> Derived {
    let def = &rule.def;
    let mut ctx = firing.vars.clone();
    ctx.insert("event".into(), doc.clone());
    ctx.insert("rule".into(), json!(def.id));
    let ctx = Value::Object(ctx);
    let get = |name: &str| lookup(&ctx, name);
    let text = |t: &str| match render(&json!(t), &get) {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let (kind_type, kind_class, kind_message, mut data) = defaults(rule, cause, &firing.vars);
    if let (Some(extra), Value::Object(d)) = (&def.emit.data, &mut data) {
        if let Value::Object(e) = render(extra, &get) {
            d.extend(e);
        }
    } else if let Some(extra) = &def.emit.data {
        data = render(extra, &get);
    }
    let class = def
        .emit
        .class
        .as_deref()
        .and_then(EventClass::parse)
        .unwrap_or(kind_class);
    let id = derived_id(&def.id, &cause.id, firing.index);
    let mut metadata = serde_json::to_value(&cause.metadata).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut metadata {
        m.insert("rule".into(), json!(def.id));
        m.insert("rule_depth".into(), json!(depth(cause) + 1));
        m.entry("correlation_id").or_insert_with(|| json!(cause.id));
    }
    let mut event = Map::new();
    event.insert("id".into(), json!(id));
    event.insert(
        "stream_id".into(),
        json!(
            def.emit
                .stream
                .as_deref()
                .map_or_else(|| cause.stream_id.clone(), text)
        ),
    );
    event.insert(
        "type".into(),
        json!(def.emit.event_type.as_deref().map_or(kind_type, text)),
    );
    event.insert("class".into(), json!(class.as_str()));
    event.insert("source".into(), json!(format!("{SOURCE_PREFIX}{}", def.id)));
    event.insert(
        "message".into(),
        json!(text(def.emit.message.as_deref().unwrap_or(&kind_message))),
    );
    event.insert("data".into(), data.clone());
    event.insert("metadata".into(), metadata);
    if let Value::Object(fields) = render(&Value::Object(def.emit.fields.clone()), &get) {
        event.extend(fields);
    }
    let state = def.state.as_ref().map(|target| {
        let patch = match (&target.doc, &def.detect) {
            (Some(doc), _) => render(doc, &get),
            (None, Detect::Links { .. }) => {
                let mut d = data.clone();
                if let Value::Object(m) = &mut d {
                    m.remove("key");
                    m.insert("live".into(), json!(true));
                }
                d
            }
            (None, _) => data.clone(),
        };
        StateWrite {
            stream: target.stream.clone(),
            key: text(&target.key),
            patch,
        }
    });
    Derived {
        id,
        event: Value::Object(event),
        state,
    }
}
