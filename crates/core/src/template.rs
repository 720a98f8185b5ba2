//! Event templates (SPEC §2 "Template"; issue 4 point 5): a named partial
//! event whose string values may hold `{{param}}` placeholders, fired with
//! parameters.
//!
//! Substitution rules ([`Template::fire`]):
//! - a string that is exactly one placeholder (`"{{score}}"`, spaces inside the
//!   braces allowed) becomes the parameter's JSON value, so numbers stay
//!   numbers and objects stay objects;
//! - a placeholder inside a longer string is replaced by the value as text
//!   (a string as is, `null` as nothing, anything else as its JSON);
//! - only values are substituted, never object keys; `{{` not followed by a
//!   parameter name and `}}` is left as written.
//!
//! Parameters are declared in `params` (`{"name": {"default"?, "required"?}}`);
//! a placeholder that is not declared is a required parameter. The fired
//! object then goes through the ordinary publish path, so event types and
//! their schemas apply to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::name;
use crate::validate::{ValidationError, is_event_field};

/// Longest accepted parameter name, in bytes.
pub const MAX_PARAM_NAME: usize = 64;
/// Most parameters one template declares.
pub const MAX_PARAMS: usize = 64;

/// How one parameter is filled when a fire does not give it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Used when the fire gives no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A fire without this parameter is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// A stored template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Its name (`[A-Za-z0-9_.:-]{1,128}`).
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The partial event, with placeholders.
    pub event: Map<String, Value>,
    /// Declared parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
}

const FIELDS: &[&str] = &["name", "description", "event", "params"];

impl Template {
    /// Validates a template given as JSON: a name, an `event` object whose
    /// keys are event fields, and well-formed `params`.
    ///
    /// # Errors
    /// The first offending field (`event.<key>`, `params.<name>`).
    pub fn from_json(input: Value) -> Result<Self, ValidationError> {
        let Value::Object(mut obj) = input else {
            return Err(ValidationError::new("", "a template must be a JSON object"));
        };
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(ValidationError::new(k.clone(), "unknown field"));
        }
        let name = match obj.remove("name") {
            Some(Value::String(s)) if name::is_event_id(&s) => s,
            None | Some(Value::Null) => return Err(ValidationError::new("name", "is required")),
            Some(_) => {
                return Err(ValidationError::new(
                    "name",
                    "must match [A-Za-z0-9_.:-]{1,128}",
                ));
            }
        };
        let description = match obj.remove("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= crate::event_type::MAX_DESCRIPTION_BYTES => {
                Some(s)
            }
            Some(_) => {
                return Err(ValidationError::new(
                    "description",
                    "must be a string of at most 1000 bytes",
                ));
            }
        };
        let event = match obj.remove("event") {
            Some(Value::Object(e)) => e,
            None | Some(Value::Null) => return Err(ValidationError::new("event", "is required")),
            Some(_) => return Err(ValidationError::new("event", "must be an object")),
        };
        if let Some(k) = event.keys().find(|k| !is_event_field(k)) {
            return Err(ValidationError::new(
                format!("event.{k}"),
                "is not an event field",
            ));
        }
        let params = match obj.remove("params") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(p)) => parse_params(p)?,
            Some(_) => return Err(ValidationError::new("params", "must be an object")),
        };
        Ok(Self {
            name,
            description,
            event,
            params,
        })
    }

    /// Every placeholder name the event uses, sorted, each once.
    pub fn placeholders(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.event.values() {
            collect(v, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    /// The event this template makes with `params`, with `overrides` (other
    /// top-level event fields, e.g. `stream_id` or `id`) replacing the
    /// template's own after substitution.
    ///
    /// # Errors
    /// `params.<name>` for a missing required parameter or one the template
    /// does not know.
    pub fn fire(
        &self,
        params: &Map<String, Value>,
        overrides: Map<String, Value>,
    ) -> Result<Value, ValidationError> {
        let used = self.placeholders();
        if let Some(k) = params
            .keys()
            .find(|k| !self.params.contains_key(*k) && !used.contains(k))
        {
            return Err(ValidationError::new(
                format!("params.{k}"),
                "is not a parameter of this template",
            ));
        }
        let mut values = Map::new();
        for name in used.iter().chain(self.params.keys()) {
            if values.contains_key(name) {
                continue;
            }
            let spec = self.params.get(name);
            let value = match (params.get(name), spec.and_then(|s| s.default.as_ref())) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => d.clone(),
                // Undeclared placeholders are required.
                (None, None) if spec.is_none_or(|s| s.required) => {
                    return Err(ValidationError::new(
                        format!("params.{name}"),
                        "is required",
                    ));
                }
                (None, None) => Value::Null,
            };
            values.insert(name.clone(), value);
        }
        let mut event: Map<String, Value> = self
            .event
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, &values)))
            .collect();
        event.extend(overrides);
        Ok(Value::Object(event))
    }
}

fn parse_params(p: Map<String, Value>) -> Result<BTreeMap<String, ParamSpec>, ValidationError> {
    if p.len() > MAX_PARAMS {
        return Err(ValidationError::new(
            "params",
            format!("declares more than {MAX_PARAMS} parameters"),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, spec) in p {
        let field = format!("params.{name}");
        if !is_param_name(&name) {
            return Err(ValidationError::new(
                field,
                "a parameter name must match [A-Za-z0-9_.-]{1,64}",
            ));
        }
        let spec = match spec {
            Value::Null => ParamSpec::default(),
            Value::Object(mut m) => {
                let default = m.remove("default").filter(|v| !v.is_null());
                let required = match m.remove("required") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => b,
                    Some(_) => {
                        return Err(ValidationError::new(
                            format!("{field}.required"),
                            "must be true or false",
                        ));
                    }
                };
                if let Some(k) = m.keys().next() {
                    return Err(ValidationError::new(
                        format!("{field}.{k}"),
                        "unknown field",
                    ));
                }
                if required && default.is_some() {
                    return Err(ValidationError::new(
                        field,
                        "a required parameter cannot have a default",
                    ));
                }
                ParamSpec { default, required }
            }
            _ => {
                return Err(ValidationError::new(
                    field,
                    "must be an object with `default` and/or `required`",
                ));
            }
        };
        out.insert(name, spec);
    }
    Ok(out)
}

fn is_param_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PARAM_NAME
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// One piece of a string: literal text or a placeholder's name.
enum Piece<'a> {
    Text(&'a str),
    Param(&'a str),
}

/// Splits `s` into text and placeholders.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        let inner = after[..close].trim();
        if is_param_name(inner) {
            if open > 0 {
                out.push(Piece::Text(&rest[..open]));
            }
            out.push(Piece::Param(inner));
            rest = &after[close + 2..];
        } else {
            // Not a placeholder: keep `{{` as text and look further on.
            out.push(Piece::Text(&rest[..open + 2]));
            rest = after;
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            for p in pieces(s) {
                if let Piece::Param(name) = p {
                    out.push(name.to_owned());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect(i, out)),
        _ => {}
    }
}

fn substitute(v: &Value, values: &Map<String, Value>) -> Value {
    render(v, &|name| values.get(name))
}

/// Substitutes the `{{name}}` placeholders of `v` (by the rules above) with
/// what `lookup` finds for each name; a name it does not find is `null`.
pub fn render<'a>(v: &Value, lookup: &dyn Fn(&str) -> Option<&'a Value>) -> Value {
    match v {
        Value::String(s) => {
            let parts = pieces(s);
            if let [Piece::Param(name)] = parts.as_slice() {
                return lookup(name).cloned().unwrap_or(Value::Null);
            }
            if !parts.iter().any(|p| matches!(p, Piece::Param(_))) {
                return v.clone();
            }
            let mut text = String::with_capacity(s.len());
            for p in parts {
                match p {
                    Piece::Text(t) => text.push_str(t),
                    Piece::Param(name) => match lookup(name) {
                        Some(Value::String(x)) => text.push_str(x),
                        None | Some(Value::Null) => {}
                        Some(other) => text.push_str(&other.to_string()),
                    },
                }
            }
            Value::String(text)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| render(i, lookup)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| (k.clone(), render(i, lookup)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Template {
        Template::from_json(json!({
            "name": "high-score",
            "event": {"type": "high_score", "class": "animated",
                "message": "{{player}} scored {{ score }} points{{suffix}}",
                "data": {"player": "{{player}}", "score": "{{score}}", "list": ["{{score}}", "x"],
                         "literal": "{{ not a param }} and {{", "{{key}}": 1}},
            "params": {"player": {"required": true}, "score": {"default": 0},
                       "suffix": {}, "spare": {"default": "s"}}
        }))
        .expect("valid template")
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn substitutes_values_and_text() {
        let t = template();
        assert_eq!(t.placeholders(), ["player", "score", "suffix"]);
        let e = t
            .fire(&params(json!({"player": "ana", "score": 9100})), Map::new())
            .unwrap();
        assert_eq!(e["message"], "ana scored 9100 points");
        assert_eq!(
            e["data"]["score"], 9100,
            "a whole placeholder keeps the type"
        );
        assert_eq!(e["data"]["player"], "ana");
        assert_eq!(e["data"]["list"], json!([9100, "x"]));
        assert_eq!(e["data"]["literal"], "{{ not a param }} and {{");
        assert_eq!(e["data"]["{{key}}"], 1, "keys are not substituted");
        let e = t
            .fire(
                &params(json!({"player": {"n": 1}, "suffix": "!"})),
                params(json!({"stream_id": "s", "id": "k"})),
            )
            .unwrap();
        assert_eq!(e["data"]["score"], 0, "default");
        assert_eq!(e["message"], r#"{"n":1} scored 0 points!"#);
        assert_eq!(
            (e["stream_id"].clone(), e["id"].clone()),
            (json!("s"), json!("k"))
        );
    }

    #[test]
    fn missing_and_unknown_parameters_are_named() {
        let t = template();
        let e = t.fire(&Map::new(), Map::new()).unwrap_err();
        assert_eq!(e.field, "params.player");
        let e = t
            .fire(&params(json!({"player": "a", "typo": 1})), Map::new())
            .unwrap_err();
        assert_eq!(e.field, "params.typo");
        let undeclared =
            Template::from_json(json!({"name": "u", "event": {"type": "t", "message": "{{who}}"}}))
                .unwrap();
        assert_eq!(
            undeclared.fire(&Map::new(), Map::new()).unwrap_err().field,
            "params.who"
        );
    }

    #[test]
    fn bad_templates_name_the_field() {
        let cases = [
            (json!({"event": {"type": "t"}}), "name"),
            (json!({"name": "a b", "event": {}}), "name"),
            (json!({"name": "n"}), "event"),
            (json!({"name": "n", "event": []}), "event"),
            (json!({"name": "n", "event": {"bogus": 1}}), "event.bogus"),
            (json!({"name": "n", "event": {}, "params": []}), "params"),
            (
                json!({"name": "n", "event": {}, "params": {"a b": {}}}),
                "params.a b",
            ),
            (
                json!({"name": "n", "event": {}, "params": {"p": 1}}),
                "params.p",
            ),
            (
                json!({"name": "n", "event": {}, "params": {"p": {"required": 1}}}),
                "params.p.required",
            ),
            (
                json!({"name": "n", "event": {}, "params": {"p": {"x": 1}}}),
                "params.p.x",
            ),
            (
                json!({"name": "n", "event": {}, "params": {"p": {"required": true, "default": 1}}}),
                "params.p",
            ),
            (json!({"name": "n", "event": {}, "extra": 1}), "extra"),
        ];
        for (input, field) in cases {
            let e = Template::from_json(input.clone()).expect_err("invalid");
            assert_eq!(e.field, field, "{input}: {e}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let t = template();
        let back: Template = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
