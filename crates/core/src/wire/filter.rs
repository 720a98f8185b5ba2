//! The filter part of a `SUBSCRIBE` frame, shared with the stored overlay
//! subscriptions (`PUT /subscriptions/{overlay_id}`), and small value parsers.

use serde_json::{Map, Value};

use super::WireError;
use crate::event::{EventClass, Priority};
use crate::filter::{FieldMatch, Filter, Glob};

/// Removes the first of `keys` present in `obj`; `null` counts as absent.
pub(crate) fn take(obj: &mut Map<String, Value>, keys: &[&str]) -> Option<Value> {
    keys.iter()
        .find_map(|k| obj.remove(*k))
        .filter(|v| !v.is_null())
}

/// Takes the filter fields of a `SUBSCRIBE` out of `obj` — `streams`,
/// `eventTypes`, `classes`, `tags`, `minPriority`, `filter` and seed 001's
/// `teams`, with their accepted spellings — and builds the filter they
/// describe (`hide_system` unset). `None` when `obj` holds none of them.
/// Shared by `SUBSCRIBE` and the stored overlay subscriptions
/// (`PUT /subscriptions/{overlay_id}`), so both accept exactly the same.
///
/// # Errors
/// The first offending field.
pub fn take_filter(obj: &mut Map<String, Value>) -> Result<Option<Filter>, WireError> {
    let streams = take(obj, &["streams", "stream", "stream_id"]);
    let types = take(obj, &["eventTypes", "event_types", "types"]);
    let classes = take(obj, &["classes"]);
    let tags = take(obj, &["tags"]);
    let min_priority = take(obj, &["minPriority", "min_priority"]);
    let fields = take(obj, &["filter"]);
    let teams = take(obj, &["teams"]);
    let given = [
        &streams,
        &types,
        &classes,
        &tags,
        &min_priority,
        &fields,
        &teams,
    ]
    .iter()
    .any(|v| v.is_some());
    if !given {
        return Ok(None);
    }
    let streams = strings("streams", streams)?;
    let types = strings("eventTypes", types)?;
    let classes = strings("classes", classes)?
        .iter()
        .map(|c| {
            EventClass::parse(c)
                .ok_or_else(|| WireError::invalid("classes", format!("unknown class `{c}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tags = strings("tags", tags)?;
    let min_priority = match min_priority {
        None => None,
        Some(Value::String(p)) => Some(Priority::parse(&p).ok_or_else(|| {
            WireError::invalid("minPriority", "must be one of low, normal, high, critical")
        })?),
        Some(_) => return Err(WireError::invalid("minPriority", "must be a string")),
    };
    let mut fields = match fields {
        None => Vec::new(),
        Some(v) => field_matches(v)?,
    };
    let teams = strings("teams", teams)?;
    if !teams.is_empty() {
        fields.push(FieldMatch {
            path: "data.team".into(),
            values: teams.into_iter().map(Value::from).collect(),
        });
    }
    for s in &streams {
        if !is_stream_pattern(s) {
            return Err(WireError::invalid(
                "streams",
                format!("`{s}` is not a stream name or glob"),
            ));
        }
    }
    Ok(Some(Filter {
        streams: streams.into_iter().map(Glob::new).collect(),
        types: types.into_iter().map(Glob::new).collect(),
        classes,
        tags,
        min_priority,
        fields,
        hide_system: false,
    }))
}

/// Is `s` a stream name, or a glob that could match one?
pub fn is_stream_pattern(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= crate::name::MAX_STREAM_LEN
        && s.bytes().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'.' | b'_' | b'-' | b'*' | b'?')
        })
}

/// An offset given as a number or a numeric string.
pub fn offset_value(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn strings(field: &str, v: Option<Value>) -> Result<Vec<String>, WireError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) if items.len() <= 100 => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() && s.len() <= 128 => Ok(s),
                _ => Err(WireError::invalid(
                    field,
                    "must hold strings of 1 to 128 bytes",
                )),
            })
            .collect(),
        Some(_) => Err(WireError::invalid(
            field,
            "must be a string or an array of at most 100 strings",
        )),
    }
}

/// `{"data.team": ["a","b"], "metadata.tournament_id": 7}` → field matches.
fn field_matches(v: Value) -> Result<Vec<FieldMatch>, WireError> {
    let Value::Object(map) = v else {
        return Err(WireError::invalid(
            "filter",
            "must be an object of field paths to values",
        ));
    };
    map.into_iter()
        .map(|(path, want)| {
            if !(path.starts_with("data.") || path.starts_with("metadata.")) || path.ends_with('.')
            {
                return Err(WireError::invalid(
                    "filter",
                    format!("`{path}` must start with `data.` or `metadata.`"),
                ));
            }
            let values = match want {
                Value::Array(vs) => vs,
                v => vec![v],
            };
            Ok(FieldMatch { path, values })
        })
        .collect()
}
