//! Consumers' stored subscriptions (SPEC §2 "Consumer"; seed 000's
//! `event_subscriptions`; issue 4 point 4).
//!
//! An overlay's filter is stored server-side under its `overlayId`, read and
//! changed with `GET|PUT /subscriptions/{overlay_id}`, and used by a
//! `SUBSCRIBE` that names the overlay but gives no filter fields. Its JSON
//! form holds exactly the filter fields of `SUBSCRIBE`, parsed by the same
//! [`take_filter`], so both accept the same input; [`filter_to_json`] is the
//! canonical form a store keeps.

use serde_json::{Map, Value};

use crate::filter::Filter;
use crate::wire::{WireError, codes, take_filter};

/// Is `s` a valid overlay id (the rule of event ids, `[A-Za-z0-9_.:-]{1,128}`)?
pub fn is_overlay_id(s: &str) -> bool {
    crate::name::is_event_id(s)
}

/// A subscription given as JSON: an object holding only filter fields (see
/// [`take_filter`]); an empty object is the filter that passes everything.
/// `hide_system` is left unset: the connection decides it.
///
/// # Errors
/// The first offending field, or no field when `v` is not an object.
pub fn filter_from_json(v: Value) -> Result<Filter, WireError> {
    let Value::Object(mut obj) = v else {
        return Err(WireError {
            code: codes::INVALID,
            message: "a subscription must be a JSON object".into(),
            field: None,
        });
    };
    let filter = take_filter(&mut obj)?.unwrap_or_default();
    if let Some(k) = obj.keys().next() {
        return Err(WireError::invalid(k, "unknown field"));
    }
    Ok(filter)
}

/// The canonical JSON of a filter, in the `SUBSCRIBE` spelling: each list
/// field as a list (omitted when empty), `minPriority` when set, and `filter`
/// as paths to lists of values. [`filter_from_json`] reads it back to an
/// equal filter (up to the order of field conditions).
pub fn filter_to_json(f: &Filter) -> Value {
    let mut out = Map::new();
    let mut list = |key: &str, items: Vec<Value>| {
        if !items.is_empty() {
            out.insert(key.into(), Value::Array(items));
        }
    };
    list(
        "streams",
        f.streams.iter().map(|g| g.as_str().into()).collect(),
    );
    list(
        "eventTypes",
        f.types.iter().map(|g| g.as_str().into()).collect(),
    );
    list(
        "classes",
        f.classes.iter().map(|c| c.as_str().into()).collect(),
    );
    list("tags", f.tags.iter().map(|t| t.as_str().into()).collect());
    if let Some(p) = f.min_priority {
        out.insert("minPriority".into(), p.as_str().into());
    }
    if !f.fields.is_empty() {
        let mut m = Map::new();
        for fm in &f.fields {
            // Two conditions on one path (e.g. `teams` and `filter`) must both
            // hold; JSON keys are unique, so their values are intersected.
            let values = match m.remove(&fm.path) {
                Some(Value::Array(prev)) => {
                    prev.into_iter().filter(|v| fm.values.contains(v)).collect()
                }
                _ => fm.values.clone(),
            };
            m.insert(fm.path.clone(), Value::Array(values));
        }
        out.insert("filter".into(), Value::Object(m));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventClass, Priority};
    use serde_json::json;

    #[test]
    fn canonical_form_round_trips() {
        let given = json!({"stream": "scores", "types": ["high_*"], "classes": "animated",
            "tags": ["finals"], "min_priority": "high", "teams": ["a", "b"],
            "filter": {"data.team": ["b", "c"], "metadata.tournament_id": 7}});
        let f = filter_from_json(given).unwrap();
        assert_eq!(f.classes, [EventClass::Animated]);
        assert_eq!(f.min_priority, Some(Priority::High));
        assert!(!f.hide_system);
        let canonical = filter_to_json(&f);
        assert_eq!(
            canonical,
            json!({"streams": ["scores"], "eventTypes": ["high_*"], "classes": ["animated"],
                "tags": ["finals"], "minPriority": "high",
                "filter": {"data.team": ["b"], "metadata.tournament_id": [7]}})
        );
        let again = filter_from_json(canonical.clone()).unwrap();
        assert_eq!(filter_to_json(&again), canonical);
        assert_eq!(filter_to_json(&Filter::default()), json!({}));
        assert_eq!(filter_from_json(json!({})).unwrap(), Filter::default());
    }

    #[test]
    fn bad_subscriptions_name_the_field() {
        let cases = [
            (json!({"streams": ["Bad Name"]}), Some("streams")),
            (json!({"classes": ["loud"]}), Some("classes")),
            (json!({"minPriority": "urgent"}), Some("minPriority")),
            (json!({"filter": {"team": "x"}}), Some("filter")),
            (json!({"since": 3}), Some("since")),
            (json!({"overlayId": "x"}), Some("overlayId")),
            (json!([]), None),
        ];
        for (input, field) in cases {
            let e = filter_from_json(input.clone()).expect_err("invalid");
            assert_eq!(e.field.as_deref(), field, "{input}");
        }
    }
}
