//! Consumer filters (SPEC §2): streams and types as globs, classes, tags (any
//! of), minimum priority, and equality/in-list matches on `data.*` or
//! `metadata.*` fields (seed 001's `teams` filter is `data.team in [...]`).

use serde_json::Value;

use crate::event::{Event, EventClass, Priority};

/// A glob over names: `*` matches any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A glob from its pattern text.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the pattern has no wildcard, so it names exactly one thing.
    pub fn is_literal(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    /// Does `name` match?
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative wildcard match with single-star backtracking: linear in practice.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// One field condition: the value at `path` equals one of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMatch {
    /// Dotted path starting with `data.` or `metadata.`, e.g. `data.team`.
    pub path: String,
    /// Accepted values (any of).
    pub values: Vec<Value>,
}

impl FieldMatch {
    fn matches(&self, event: &Event) -> bool {
        let mut parts = self.path.split('.');
        let root = match parts.next() {
            Some("data") => &event.data,
            Some("metadata") => {
                let Some(key) = parts.next() else {
                    return false;
                };
                let v = match key {
                    "priority" => return self.has(&Value::from(event.metadata.priority.as_str())),
                    "correlation_id" => {
                        return event
                            .metadata
                            .correlation_id
                            .as_ref()
                            .is_some_and(|c| self.has(&Value::from(c.as_str())));
                    }
                    "tags" => {
                        return event
                            .metadata
                            .tags
                            .iter()
                            .any(|t| self.has(&Value::from(t.as_str())));
                    }
                    other => event.metadata.extra.get(other),
                };
                let Some(mut cur) = v else { return false };
                for part in parts {
                    match cur.get(part) {
                        Some(next) => cur = next,
                        None => return false,
                    }
                }
                return self.has(cur);
            }
            _ => return false,
        };
        let mut cur = root;
        for part in parts {
            match cur.get(part) {
                Some(next) => cur = next,
                None => return false,
            }
        }
        self.has(cur)
    }

    fn has(&self, v: &Value) -> bool {
        self.values
            .iter()
            .any(|want| want == v || numbers_equal(want, v))
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// What a consumer wants. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// Stream names or globs.
    pub streams: Vec<Glob>,
    /// Event types or globs.
    pub types: Vec<Glob>,
    /// Classes; empty means every class but `system` for overlays.
    pub classes: Vec<EventClass>,
    /// Any of these tags.
    pub tags: Vec<String>,
    /// Only events at least this urgent.
    pub min_priority: Option<Priority>,
    /// All of these field conditions.
    pub fields: Vec<FieldMatch>,
    /// When set, `system` events pass only if asked for by class (overlays).
    pub hide_system: bool,
}

impl Filter {
    /// Does `event` pass?
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_stream(&event.stream_id)
            && (self.types.is_empty() || self.types.iter().any(|g| g.matches(&event.event_type)))
            && self.matches_class(event.class)
            && (self.tags.is_empty() || event.metadata.tags.iter().any(|t| self.tags.contains(t)))
            && self
                .min_priority
                .is_none_or(|p| event.metadata.priority >= p)
            && self.fields.iter().all(|f| f.matches(event))
    }

    /// Does a stream name pass the stream part of the filter? Internal
    /// streams (`_overlays`, names no producer can use) never do: they carry
    /// the server's own bookkeeping, which clients see through their own
    /// frames and routes.
    pub fn matches_stream(&self, stream: &str) -> bool {
        if stream.starts_with('_') {
            return false;
        }
        self.streams.is_empty() || self.streams.iter().any(|g| g.matches(stream))
    }

    fn matches_class(&self, class: EventClass) -> bool {
        if self.classes.is_empty() {
            !(self.hide_system && class == EventClass::System)
        } else {
            self.classes.contains(&class)
        }
    }

    /// The exact stream names when every stream pattern is literal, so a store
    /// can narrow its scan; `None` means "any stream may match".
    pub fn literal_streams(&self) -> Option<Vec<String>> {
        if self.streams.is_empty() || !self.streams.iter().all(Glob::is_literal) {
            return None;
        }
        Some(self.streams.iter().map(|g| g.as_str().to_owned()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{PublishContext, event_from_json};
    use serde_json::json;

    fn event(v: Value) -> Event {
        event_from_json(v, &PublishContext::default())
            .unwrap()
            .event
    }

    #[test]
    fn globs() {
        let cases = [
            ("match-*", "match-12", true),
            ("match-*", "match-", true),
            ("match-*", "matc", false),
            ("*score*", "high_score_v2", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(Glob::new(p).matches(s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn filter_cases() {
        let e = event(
            json!({"type": "goal", "stream_id": "match-1", "class": "animated",
            "data": {"team": "team_1", "score": {"home": 2}},
            "metadata": {"priority": "high", "tags": ["finals"], "tournament_id": 7}}),
        );
        let f = |f: Filter| f.matches(&e);
        assert!(f(Filter::default()));
        assert!(f(Filter {
            streams: vec![Glob::new("match-*")],
            ..Default::default()
        }));
        assert!(!f(Filter {
            streams: vec![Glob::new("other")],
            ..Default::default()
        }));
        assert!(f(Filter {
            types: vec![Glob::new("go*")],
            ..Default::default()
        }));
        assert!(!f(Filter {
            classes: vec![EventClass::Data],
            ..Default::default()
        }));
        assert!(f(Filter {
            tags: vec!["x".into(), "finals".into()],
            ..Default::default()
        }));
        assert!(!f(Filter {
            tags: vec!["x".into()],
            ..Default::default()
        }));
        assert!(f(Filter {
            min_priority: Some(Priority::High),
            ..Default::default()
        }));
        assert!(!f(Filter {
            min_priority: Some(Priority::Critical),
            ..Default::default()
        }));
        let field = |path: &str, values: Vec<Value>| Filter {
            fields: vec![FieldMatch {
                path: path.into(),
                values,
            }],
            ..Default::default()
        };
        assert!(f(field(
            "data.team",
            vec![json!("team_2"), json!("team_1")]
        )));
        assert!(!f(field("data.team", vec![json!("team_2")])));
        assert!(f(field("data.score.home", vec![json!(2.0)])));
        assert!(f(field("metadata.tournament_id", vec![json!(7)])));
        assert!(f(field("metadata.priority", vec![json!("high")])));
        assert!(!f(field("nowhere.x", vec![json!(1)])));
    }

    #[test]
    fn system_hidden_from_overlays_unless_asked() {
        let e = event(json!({"type": "conn", "class": "system"}));
        let overlay = Filter {
            hide_system: true,
            ..Default::default()
        };
        assert!(!overlay.matches(&e));
        let asked = Filter {
            hide_system: true,
            classes: vec![EventClass::System],
            ..Default::default()
        };
        assert!(asked.matches(&e));
        assert!(Filter::default().matches(&e));
    }
}
