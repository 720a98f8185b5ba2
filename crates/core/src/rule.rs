//! Rules (SPEC §2 "Rule"; issue 6 point 3): detectors that turn matching
//! events into new ones — a new high score within a scope, a win streak, a
//! threshold crossed (with hysteresis), a value changed, stream links found
//! in text, or a plain template mapping.
//!
//! A rule is a pure fold: [`Rule::apply`] takes the rule's [`Memory`] and
//! one event and says what fires. Every node folds the same log in the same
//! order, so every node derives the same events with the same ids
//! ([`derived_id`]: the rule, the cause and the output's index), and the
//! log stores each once. A rule applies only to events after the offset it
//! was created at (`since`), so replaying history derives exactly what was
//! derived the first time.
//!
//! Field paths are dotted paths into the event's canonical JSON
//! (`data.score`, `metadata.tournament_id`, `message`); templates use
//! `{{path}}` placeholders over the firing's context (`event.…`, `value`,
//! `previous`, `subject`, `scope`, `streak`, `link.…`; see docs/RULES.md).

mod def;
pub mod links;
mod output;

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::consumer::filter_from_json;
use crate::event::Event;
use crate::filter::Filter;
use crate::name;
use crate::validate::ValidationError;

pub use def::{Detect, Emit, RuleDef, StateTarget};
pub use output::{Derived, StateWrite};

/// `source` of every derived event: `rule:<id>`.
pub const SOURCE_PREFIX: &str = "rule:";
/// Deepest chain of rules deriving from derived events.
pub const MAX_DEPTH: u64 = 3;

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// As defined.
    pub def: RuleDef,
    filter: Filter,
}

/// What a rule remembers between events; starts empty.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    numbers: HashMap<String, f64>,
    counts: HashMap<String, u64>,
    values: HashMap<String, Value>,
    /// First time a link key was seen (`first_seen`).
    first: HashMap<String, String>,
}

/// One firing: the context its templates see.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// Position among the firings for the same cause.
    pub index: usize,
    /// `value`, `previous`, `subject`, … (without `event`).
    pub vars: Map<String, Value>,
}

fn invalid(field: &str, msg: impl Into<String>) -> ValidationError {
    ValidationError::new(field, msg)
}

/// A serde error as a validation error naming the field under `prefix`.
fn serde_error(prefix: &str, e: &serde_json::Error) -> ValidationError {
    let text = e.to_string();
    let name = if text.starts_with("unknown variant") {
        Some("kind")
    } else if text.starts_with("unknown field") || text.starts_with("missing field") {
        text.split('`').nth(1)
    } else {
        None
    };
    let field = match (prefix, name) {
        ("", Some(n)) => n.to_owned(),
        ("", None) => "rule".to_owned(),
        (p, Some(n)) => format!("{p}.{n}"),
        (p, None) => p.to_owned(),
    };
    invalid(&field, text)
}

fn check_path(field: &str, path: &str) -> Result<(), ValidationError> {
    if path.is_empty() || path.split('.').any(str::is_empty) || path.len() > 200 {
        return Err(invalid(field, "must be a dotted path such as `data.score`"));
    }
    Ok(())
}

impl Rule {
    /// Checks a definition given as JSON.
    ///
    /// # Errors
    /// The offending field.
    pub fn from_json(v: Value) -> Result<Self, ValidationError> {
        // The parts first, so an error names its place (`detect.field`).
        if let Value::Object(obj) = &v {
            if let Some(d) = obj.get("detect") {
                Detect::deserialize(d).map_err(|e| serde_error("detect", &e))?;
            }
            if let Some(d) = obj.get("emit") {
                Emit::deserialize(d).map_err(|e| serde_error("emit", &e))?;
            }
            if let Some(d) = obj.get("state") {
                StateTarget::deserialize(d).map_err(|e| serde_error("state", &e))?;
            }
        }
        let def = RuleDef::deserialize(&v).map_err(|e| serde_error("", &e))?;
        Self::compile(def)
    }

    /// Checks a definition.
    ///
    /// # Errors
    /// The offending field.
    pub fn compile(def: RuleDef) -> Result<Self, ValidationError> {
        if !name::is_name(&def.id) {
            return Err(invalid("id", "must match [a-z0-9][a-z0-9._-]{0,63}"));
        }
        let filter = filter_from_json(def.when.clone())
            .map_err(|e| invalid(&format!("when.{}", e.field.unwrap_or_default()), e.message))?;
        match &def.detect {
            Detect::HighScore {
                field,
                scope,
                subject,
                ..
            } => {
                check_path("detect.field", field)?;
                scope
                    .iter()
                    .try_for_each(|p| check_path("detect.scope", p))?;
                subject
                    .iter()
                    .try_for_each(|p| check_path("detect.subject", p))?;
            }
            Detect::WinStreak {
                length,
                winner,
                loser,
                subject,
                outcome,
                scope,
                ..
            } => {
                if *length == 0 {
                    return Err(invalid("detect.length", "must be at least 1"));
                }
                match (winner, subject, outcome) {
                    (Some(w), None, None) => check_path("detect.winner", w)?,
                    (None, Some(s), Some(o)) if loser.is_none() => {
                        check_path("detect.subject", s)?;
                        check_path("detect.outcome", o)?;
                    }
                    _ => {
                        return Err(invalid(
                            "detect",
                            "give `winner` (and optionally `loser`), or `subject` and `outcome`",
                        ));
                    }
                }
                loser
                    .iter()
                    .try_for_each(|p| check_path("detect.loser", p))?;
                scope
                    .iter()
                    .try_for_each(|p| check_path("detect.scope", p))?;
            }
            Detect::Threshold {
                field,
                above,
                below,
                hysteresis,
                key,
            } => {
                check_path("detect.field", field)?;
                key.iter().try_for_each(|p| check_path("detect.key", p))?;
                if above.is_some() == below.is_some() {
                    return Err(invalid("detect", "give exactly one of `above` and `below`"));
                }
                if !(hysteresis.is_finite() && *hysteresis >= 0.0) {
                    return Err(invalid("detect.hysteresis", "must be a number ≥ 0"));
                }
            }
            Detect::ValueChange { field, key, .. } => {
                check_path("detect.field", field)?;
                key.iter().try_for_each(|p| check_path("detect.key", p))?;
            }
            Detect::Links { field, author, .. } => {
                check_path("detect.field", field)?;
                author
                    .iter()
                    .try_for_each(|p| check_path("detect.author", p))?;
            }
            Detect::Map {} => {
                if def.emit.event_type.is_none() {
                    return Err(invalid("emit.type", "is required for a `map` rule"));
                }
            }
        }
        output::check_emit(&def)?;
        Ok(Self { def, filter })
    }

    /// Does the rule look at `event` at `offset`? Never at its own output,
    /// nor deeper than [`MAX_DEPTH`] derivations. A disabled rule still
    /// looks (its memory stays what every node and every replay computes);
    /// the engine derives nothing from it.
    pub fn wants(&self, event: &Event, offset: u64) -> bool {
        offset > self.def.since
            && self.filter.matches(event)
            && event.source.strip_prefix(SOURCE_PREFIX) != Some(self.def.id.as_str())
            && depth(event) < MAX_DEPTH
    }

    /// Folds one event (its canonical JSON `doc`) into `mem`; returns what
    /// fires.
    pub fn apply(&self, mem: &mut Memory, doc: &Value) -> Vec<Firing> {
        let num = |path: &str| lookup(doc, path).and_then(as_number);
        let key_of = |paths: &[String]| -> String {
            paths
                .iter()
                .map(|p| lookup(doc, p).map_or_else(|| "null".to_owned(), Value::to_string))
                .collect::<Vec<_>>()
                .join("\u{1f}")
        };
        let scope_vars = |paths: &[String]| -> Value {
            Value::Object(
                paths
                    .iter()
                    .map(|p| (p.clone(), lookup(doc, p).cloned().unwrap_or(Value::Null)))
                    .collect(),
            )
        };
        let mut out = Vec::new();
        let mut fire = |vars: Map<String, Value>| {
            out.push(Firing {
                index: out.len(),
                vars,
            });
        };
        match &self.def.detect {
            Detect::HighScore {
                field,
                scope,
                subject,
                min,
            } => {
                let Some(v) = num(field) else { return out };
                let key = key_of(scope);
                let best = mem.numbers.get(&key).copied();
                let new = best.is_none_or(|b| v > b) && min.is_none_or(|m| v >= m);
                if best.is_none_or(|b| v > b) {
                    mem.numbers.insert(key, v);
                }
                if new {
                    fire(vars([
                        ("value", number(v)),
                        ("previous", best.map_or(Value::Null, number)),
                        ("subject", path_value(doc, subject.as_deref())),
                        ("scope", scope_vars(scope)),
                        ("field", json!(field)),
                    ]));
                }
            }
            Detect::WinStreak {
                length,
                winner,
                loser,
                subject,
                outcome,
                win,
                scope,
                repeat,
            } => {
                let scope_key = key_of(scope);
                let (won, lost) = match winner {
                    Some(w) => (
                        lookup(doc, w).cloned(),
                        loser.as_deref().and_then(|l| lookup(doc, l).cloned()),
                    ),
                    None => {
                        let s = subject.as_deref().and_then(|p| lookup(doc, p)).cloned();
                        let o = outcome.as_deref().and_then(|p| lookup(doc, p));
                        let is_win = o.is_some_and(|o| o == win.as_ref().unwrap_or(&json!("win")));
                        if is_win { (s, None) } else { (None, s) }
                    }
                };
                if let Some(l) = lost.filter(|l| !l.is_null()) {
                    mem.counts.remove(&format!("{scope_key}\u{1e}{l}"));
                }
                if let Some(w) = won.filter(|w| !w.is_null()) {
                    let n = mem
                        .counts
                        .entry(format!("{scope_key}\u{1e}{w}"))
                        .or_default();
                    *n += 1;
                    let len = u64::from(*length);
                    if *n == len || (*repeat && n.is_multiple_of(len)) {
                        fire(vars([
                            ("subject", w),
                            ("streak", json!(*n)),
                            ("scope", scope_vars(scope)),
                        ]));
                    }
                }
            }
            Detect::Threshold {
                field,
                above,
                below,
                hysteresis,
                key,
            } => {
                let Some(v) = num(field) else { return out };
                let k = key_of(key.as_slice());
                let disarmed = mem.counts.contains_key(&k);
                let (crossed, rearm, threshold, direction) = match (above, below) {
                    (Some(a), _) => (v >= *a, v <= a - hysteresis, *a, "up"),
                    (None, Some(b)) => (v <= *b, v >= b + hysteresis, *b, "down"),
                    (None, None) => return out,
                };
                if !disarmed && crossed {
                    mem.counts.insert(k, 1);
                    fire(vars([
                        ("value", number(v)),
                        ("threshold", number(threshold)),
                        ("direction", json!(direction)),
                        ("key", path_value(doc, key.as_deref())),
                        ("field", json!(field)),
                    ]));
                } else if disarmed && rearm && !crossed {
                    mem.counts.remove(&k);
                }
            }
            Detect::ValueChange {
                field,
                key,
                initial,
            } => {
                let Some(v) = lookup(doc, field) else {
                    return out;
                };
                let k = key_of(key.as_slice());
                let previous = mem.values.insert(k, v.clone());
                let changed = match &previous {
                    Some(p) => !crate::state::same(p, v),
                    None => *initial,
                };
                if changed {
                    fire(vars([
                        ("value", v.clone()),
                        ("previous", previous.unwrap_or(Value::Null)),
                        ("key", path_value(doc, key.as_deref())),
                        ("field", json!(field)),
                    ]));
                }
            }
            Detect::Links {
                field,
                author,
                platforms,
            } => {
                let Some(text) = lookup(doc, field).and_then(Value::as_str) else {
                    return out;
                };
                let at = lookup(doc, "time").cloned().unwrap_or(Value::Null);
                for link in links::find(text) {
                    if !platforms.is_empty() && !platforms.contains(&link.platform) {
                        continue;
                    }
                    let key = link.key();
                    let n = mem.counts.entry(key.clone()).or_default();
                    *n += 1;
                    let mentions = *n;
                    let first = mem
                        .first
                        .entry(key.clone())
                        .or_insert_with(|| at.as_str().unwrap_or_default().to_owned())
                        .clone();
                    let mut l = serde_json::to_value(&link).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut l {
                        m.insert("key".into(), json!(key));
                        m.insert("mentions".into(), json!(mentions));
                        m.insert("first_seen".into(), json!(first));
                        m.insert("last_seen".into(), at.clone());
                        m.insert("seen_by".into(), path_value(doc, author.as_deref()));
                    }
                    fire(vars([("link", l)]));
                }
            }
            Detect::Map {} => fire(Map::new()),
        }
        out
    }

    /// The event (and state write) one firing derives from `cause`.
    pub fn derive(&self, cause: &Event, doc: &Value, firing: &Firing) -> Derived {
        output::derive(self, cause, doc, firing)
    }
}

/// How many derivations deep `event` is (0 for a producer's event).
pub fn depth(event: &Event) -> u64 {
    event
        .metadata
        .extra
        .get("rule_depth")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The id of the `index`th event `rule` derives from the event `cause`:
/// `drv_` and 32 hex digits, the same on every node and every replay.
pub fn derived_id(rule: &str, cause: &str, index: usize) -> String {
    let key = format!("{rule}\u{0}{cause}\u{0}{index}");
    let salted = format!("derived\u{0}{key}");
    format!(
        "drv_{:016x}{:016x}",
        name::fnv1a(key.as_bytes()),
        name::fnv1a(salted.as_bytes())
    )
}

/// The value at a dotted path (`data.score`, `data.list.0`).
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(a) => a.get(part.parse::<usize>().ok()?),
        _ => None,
    })
}

fn path_value(doc: &Value, path: Option<&str>) -> Value {
    path.and_then(|p| lookup(doc, p))
        .cloned()
        .unwrap_or(Value::Null)
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A number as JSON, integral ones without a fraction (`9100`, not `9100.0`).
fn number(v: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && v.abs() < EXACT {
        #[allow(clippy::cast_possible_truncation)]
        return json!(v as i64);
    }
    json!(v)
}

fn vars<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests;
