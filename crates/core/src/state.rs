//! Live keyed state (SPEC §2 "State", issue 6 point 2): JSON documents per
//! (tenant, stream, key) with a version, changed by put, JSON merge patch
//! (RFC 7396) and delete, each real change announced by a `state.changed`
//! event on the same stream.
//!
//! Pure, like [`crate::lifecycle`]: the merge patch ([`merge_patch`]), its
//! inverse ([`diff`]), the equality writes are judged by ([`same`]), and the
//! compare-and-set decision ([`plan_write`]) every backend runs inside its
//! write transaction — so SQLite and PostgreSQL differ only in their SQL.
//!
//! # Shape of the data
//! - A value is any JSON, but **object members whose value is `null` are
//!   dropped** on every write (a put stores `merge_patch(null, value)`):
//!   RFC 7396 §1 cannot express them, and dropping them is what makes every
//!   version exactly reachable from the one before by its announced patch.
//!   (Nulls inside arrays, and a top-level `null`, are kept.)
//! - Versions start at 1 and grow by one per real change, across deletes: a
//!   delete leaves a tombstone holding the version, so a key deleted and
//!   created again never reuses a version — nor the deterministic id of its
//!   `state.changed` event ([`event_id`]).
//! - A write whose result equals the stored value (by [`same`]) stores
//!   nothing, keeps the version and announces nothing.
//!
//! # Announcing
//! The store writes the row first, unannounced; the server then publishes
//! the change's event and marks the row announced
//! ([`EventStore::state_announced`](crate::store::EventStore::state_announced)).
//! While a key's last change is unannounced — its publish failed, or its
//! server stopped in between, or another node is still publishing it — a
//! write of that key writes nothing and answers
//! [`StateOutcome::Unannounced`] with that change: the writer publishes it,
//! marks it and writes again. So a change whose publish failed is announced
//! by the next write of its key (a retry of the same write included, even
//! one that changes nothing), and version N+1 is only ever written after
//! version N's event is in the log: every key's `state.changed` events are
//! in version order, also when several nodes write it. The event id is
//! deterministic ([`event_id`]), so publishing a change twice stores and
//! delivers it once.

use serde_json::{Map, Number, Value, json};
use sha2::{Digest, Sha256};

use crate::event::{Event, EventClass};
use crate::store::StoreError;

/// The `type` of the events announcing changes.
pub const CHANGED_TYPE: &str = "state.changed";

/// The `source` of those events.
pub const SOURCE: &str = "state";

/// The rule keys follow (that of producer-supplied event ids).
pub const KEY_RULE: &str = "[A-Za-z0-9_.:-]{1,128}";

/// Is `key` a valid state key ([`KEY_RULE`])?
pub fn is_key(key: &str) -> bool {
    crate::name::is_event_id(key)
}

/// One live document.
#[derive(Debug, Clone, PartialEq)]
pub struct StateDoc {
    /// Its key within the stream.
    pub key: String,
    /// 1 for the first version, one more per real change.
    pub version: u64,
    /// The value.
    pub value: Value,
    /// When this version was written, ms since the epoch.
    pub updated_ms: i64,
}

/// What a write does to a document.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    /// Replace the value (object members holding `null` are dropped).
    Put(Value),
    /// Apply a JSON merge patch (RFC 7396); a missing document is patched
    /// as `null`, so a patch creates it.
    Patch(Value),
    /// Remove the document.
    Delete,
}

/// One compare-and-set write.
#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite {
    /// The change.
    pub change: StateChange,
    /// Write only when the document is at this version (`If-Match`); 0
    /// means "only when there is no document". `None`: unconditionally.
    pub expected_version: Option<u64>,
    /// Refuse a resulting value whose JSON encoding is longer (0: no
    /// limit), so patches cannot grow a document (and each event carrying
    /// it) without bound.
    pub max_value_bytes: usize,
}

impl StateWrite {
    /// An unconditional write without a size limit.
    pub fn new(change: StateChange) -> Self {
        Self {
            change,
            expected_version: None,
            max_value_bytes: 0,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub enum StateOutcome {
    /// The result equals the stored value: nothing was written, the version
    /// is kept, nothing is announced.
    Unchanged(StateDoc),
    /// A new version was written.
    Changed {
        /// The document now stored.
        doc: StateDoc,
        /// The merge patch from the previous value to this one (the whole
        /// value when the document is new).
        patch: Value,
    },
    /// The document was removed; `version` is that of the removal.
    Deleted {
        /// The removal's version (one more than the removed document's).
        version: u64,
        /// When, ms since the epoch.
        at_ms: i64,
    },
    /// A delete found no document: nothing was written.
    Absent,
    /// Nothing was written (and nothing compared): the key's last change
    /// was never announced. Publish it, mark it announced, write again.
    Unannounced(StateNotice),
}

impl StateOutcome {
    /// The change this outcome made, as its event announces it; `None`
    /// when it made none.
    pub fn notice(&self, key: &str) -> Option<StateNotice> {
        match self {
            Self::Changed { doc, patch } => Some(StateNotice {
                key: doc.key.clone(),
                version: doc.version,
                patch: patch.clone(),
                value: Some(doc.value.clone()),
                at_ms: doc.updated_ms,
            }),
            Self::Deleted { version, at_ms } => Some(StateNotice {
                key: key.to_owned(),
                version: *version,
                patch: Value::Null,
                value: None,
                at_ms: *at_ms,
            }),
            Self::Unchanged(_) | Self::Absent | Self::Unannounced(_) => None,
        }
    }
}

/// One change as its `state.changed` event announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct StateNotice {
    /// The key.
    pub key: String,
    /// The version the change made.
    pub version: u64,
    /// The merge patch from the previous version (`null` for a delete).
    pub patch: Value,
    /// The value now; `None` when the change was a delete.
    pub value: Option<Value>,
    /// When it was written, ms since the epoch.
    pub at_ms: i64,
}

/// A stored row as a backend reads and writes it, tombstones included.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    /// The version of the last change (a delete's too).
    pub version: u64,
    /// The value; `None` for a tombstone (the document was deleted).
    pub value: Option<Value>,
    /// The patch the last change applied (`null` for a delete), kept to
    /// announce it again.
    pub patch: Value,
    /// When the last change was written, ms.
    pub updated_ms: i64,
    /// True once the last change's event was published.
    pub announced: bool,
}

impl StateRow {
    /// The live document, `None` for a tombstone.
    pub fn doc(&self, key: &str) -> Option<StateDoc> {
        self.value.as_ref().map(|value| StateDoc {
            key: key.to_owned(),
            version: self.version,
            value: value.clone(),
            updated_ms: self.updated_ms,
        })
    }

    /// The row's last change, as announced.
    pub fn notice(&self, key: &str) -> StateNotice {
        StateNotice {
            key: key.to_owned(),
            version: self.version,
            patch: self.patch.clone(),
            value: self.value.clone(),
            at_ms: self.updated_ms,
        }
    }
}

/// What a backend does for a write: store `row` (when `Some`) and answer
/// `outcome`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatePlan {
    /// The row to store, or `None` to store nothing.
    pub row: Option<StateRow>,
    /// The answer.
    pub outcome: StateOutcome,
}

/// Decides a compare-and-set write of `key` against the `stored` row (read
/// in the same transaction), at `now_ms`.
///
/// A stored row whose last change is unannounced comes first: the answer is
/// then [`StateOutcome::Unannounced`], before any other check.
///
/// # Errors
/// `Conflict` when `expected_version` is given and differs from the
/// document's (0 when there is none, or only a tombstone); `TooLarge` when
/// the result is over `max_value_bytes`. Nothing is to be stored then.
pub fn plan_write(
    key: &str,
    stored: Option<&StateRow>,
    write: &StateWrite,
    now_ms: i64,
) -> Result<StatePlan, StoreError> {
    let keep = |outcome| StatePlan { row: None, outcome };
    if let Some(owed) = stored.filter(|r| !r.announced && r.version > 0) {
        return Ok(keep(StateOutcome::Unannounced(owed.notice(key))));
    }
    let live = stored.and_then(|r| r.value.as_ref().map(|v| (r.version, v)));
    let current = live.map_or(0, |(v, _)| v);
    if let Some(expected) = write.expected_version
        && expected != current
    {
        return Err(StoreError::Conflict(if current == 0 {
            format!("state key `{key}` does not exist (expected version {expected})")
        } else {
            format!("state key `{key}` is at version {current}, not {expected}")
        }));
    }
    let next = stored.map_or(0, |r| r.version) + 1;
    let value = match &write.change {
        StateChange::Delete => {
            if live.is_none() {
                return Ok(keep(StateOutcome::Absent));
            }
            let row = StateRow {
                version: next,
                value: None,
                patch: Value::Null,
                updated_ms: now_ms,
                announced: false,
            };
            return Ok(StatePlan {
                row: Some(row),
                outcome: StateOutcome::Deleted {
                    version: next,
                    at_ms: now_ms,
                },
            });
        }
        StateChange::Put(value) => normalize(value),
        StateChange::Patch(patch) => {
            let mut value = live.map_or(Value::Null, |(_, v)| v.clone());
            merge_patch(&mut value, patch);
            value
        }
    };
    let value = without_nul(value);
    if write.max_value_bytes > 0 {
        let len = encoded_len(&value);
        if len > write.max_value_bytes {
            return Err(StoreError::TooLarge(format!(
                "the value of state key `{key}` would be {len} bytes, over the limit of {}",
                write.max_value_bytes
            )));
        }
    }
    if let Some((_, old)) = live
        && same(old, &value)
    {
        let doc = stored
            .and_then(|r| r.doc(key))
            .expect("a live row has a doc");
        return Ok(keep(StateOutcome::Unchanged(doc)));
    }
    let patch = match live {
        Some((_, old)) => diff(old, &value),
        None => value.clone(),
    };
    let row = StateRow {
        version: next,
        value: Some(value),
        patch: patch.clone(),
        updated_ms: now_ms,
        announced: false,
    };
    let doc = row.doc(key).expect("a written value is live");
    Ok(StatePlan {
        row: Some(row),
        outcome: StateOutcome::Changed { doc, patch },
    })
}

/// Applies the JSON merge patch `patch` to `target` (RFC 7396 §2).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(obj) = target else {
        unreachable!("made an object above")
    };
    for (name, value) in members {
        if value.is_null() {
            obj.remove(name);
        } else {
            merge_patch(obj.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

/// `value` with every U+0000 in its strings and member names replaced by
/// U+FFFD. PostgreSQL's JSONB cannot hold U+0000 (the event log does the
/// same, `streambus-store`'s `clean_body`); doing it here, before the
/// comparison, keeps both stores storing — and comparing — the same value.
pub fn without_nul(value: Value) -> Value {
    const NUL: char = '\u{0}';
    match value {
        Value::String(s) if s.contains(NUL) => Value::String(s.replace(NUL, "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(k, v)| {
                    let k = if k.contains(NUL) {
                        k.replace(NUL, "\u{FFFD}")
                    } else {
                        k
                    };
                    (k, without_nul(v))
                })
                .collect(),
        ),
        other => other,
    }
}

/// `value` as a put stores it: object members holding `null` dropped
/// (`merge_patch(null, value)`).
pub fn normalize(value: &Value) -> Value {
    let mut out = Value::Null;
    merge_patch(&mut out, value);
    out
}

/// The merge patch that turns `old` into `new`: `merge_patch(old, diff(old,
/// new))` equals `new` whenever `new` has no object member holding `null`
/// (what [`normalize`] and [`merge_patch`] produce). Members equal by
/// [`same`] are left out; equal values give `{}` when both are objects.
pub fn diff(old: &Value, new: &Value) -> Value {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return new.clone();
    };
    let mut patch = Map::new();
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(name.clone(), Value::Null);
    }
    for (name, value) in new {
        match old.get(name) {
            Some(before) if same(before, value) => {}
            Some(before) => {
                patch.insert(name.clone(), diff(before, value));
            }
            None => {
                patch.insert(name.clone(), value.clone());
            }
        }
    }
    Value::Object(patch)
}

/// JSON equality as a reader sees it: member order does not matter, and
/// numbers compare by value (`1.0` equals `1`, `1e2` equals `100`), since
/// a store may normalise their spelling (PostgreSQL's JSONB does).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|other| same(v, other)))
        }
        _ => a == b,
    }
}

fn same_number(a: &Number, b: &Number) -> bool {
    // Equal integers share one representation in serde_json; only an
    // integer against a float needs the float comparison.
    a == b || ((a.is_f64() || b.is_f64()) && a.as_f64() == b.as_f64())
}

/// The length of `value`'s JSON encoding.
pub fn encoded_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// The deterministic id of the event announcing `version` of `key` in
/// `stream`: `state:<stream>:<key>:<version>`, or, when that is longer than
/// an event id may be, `state:<hash>:<version>` with the first 128 bits of
/// the SHA-256 of `<stream>:<key>` in hex. Streams have no `:`, so the
/// first form is unambiguous.
pub fn event_id(stream: &str, key: &str, version: u64) -> String {
    let id = format!("state:{stream}:{key}:{version}");
    if id.len() <= crate::name::MAX_ID_LEN {
        return id;
    }
    let digest = Sha256::digest(format!("{stream}:{key}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("state:{hex}:{version}")
}

impl StateNotice {
    /// The event's `data`: `{"key", "version", "patch", "value"}`, plus
    /// `"deleted": true` (with `patch` and `value` null) for a delete.
    pub fn data(&self) -> Value {
        let mut data = json!({
            "key": self.key,
            "version": self.version,
            "patch": self.patch,
            "value": self.value.clone().unwrap_or(Value::Null),
        });
        if self.value.is_none() {
            data["deleted"] = Value::Bool(true);
        }
        data
    }

    /// The `state.changed` event announcing this change on `stream` (class
    /// `data`, source `state`, id [`event_id`], time of the write).
    pub fn event(&self, stream: &str) -> Event {
        let id = event_id(stream, &self.key, self.version);
        Event {
            source: SOURCE.to_owned(),
            data: self.data(),
            ..Event::made(
                id,
                stream,
                CHANGED_TYPE.to_owned(),
                EventClass::Data,
                self.at_ms,
            )
        }
    }
}

/// The key and version a `state.changed` event announces; `None` for any
/// other event (or one whose `data` lacks them).
pub fn announced_version(event: &Event) -> Option<(&str, u64)> {
    if event.event_type != CHANGED_TYPE {
        return None;
    }
    let key = event.data.get("key")?.as_str()?;
    let version = event.data.get("version")?.as_u64()?;
    Some((key, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON")
    }

    fn patched(target: &str, patch: &str) -> Value {
        let mut t = v(target);
        merge_patch(&mut t, &v(patch));
        t
    }

    /// RFC 7396 Appendix A, every example.
    #[test]
    fn merge_patch_follows_the_rfc_appendix() {
        let cases = [
            (r#"{"a":"b"}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (r#"{"a":"b"}"#, r#"{"b":"c"}"#, r#"{"a":"b","b":"c"}"#),
            (r#"{"a":"b"}"#, r#"{"a":null}"#, r#"{}"#),
            (r#"{"a":"b","b":"c"}"#, r#"{"a":null}"#, r#"{"b":"c"}"#),
            (r#"{"a":["b"]}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (r#"{"a":"c"}"#, r#"{"a":["b"]}"#, r#"{"a":["b"]}"#),
            (
                r#"{"a":{"b":"c"}}"#,
                r#"{"a":{"b":"d","c":null}}"#,
                r#"{"a":{"b":"d"}}"#,
            ),
            (r#"{"a":[{"b":"c"}]}"#, r#"{"a":[1]}"#, r#"{"a":[1]}"#),
            (r#"["a","b"]"#, r#"["c","d"]"#, r#"["c","d"]"#),
            (r#"{"a":"b"}"#, r#"["c"]"#, r#"["c"]"#),
            (r#"{"a":"foo"}"#, "null", "null"),
            (r#"{"a":"foo"}"#, r#""bar""#, r#""bar""#),
            (r#"{"e":null}"#, r#"{"a":1}"#, r#"{"e":null,"a":1}"#),
            (r#"[1,2]"#, r#"{"a":"b","c":null}"#, r#"{"a":"b"}"#),
            (
                r#"{}"#,
                r#"{"a":{"bb":{"ccc":null}}}"#,
                r#"{"a":{"bb":{}}}"#,
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(patched(target, patch), v(want), "{target} + {patch}");
        }
    }

    /// The worked example of RFC 7396 §3.
    #[test]
    fn merge_patch_follows_the_rfc_example() {
        let target = r#"{"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},
            "tags":["example","sample"],"content":"This will be unchanged"}"#;
        let patch = r#"{"title":"Hello!","phoneNumber":"+01-123-456-7890",
            "author":{"familyName":null},"tags":["example"]}"#;
        let want = r#"{"title":"Hello!","author":{"givenName":"John"},"tags":["example"],
            "content":"This will be unchanged","phoneNumber":"+01-123-456-7890"}"#;
        assert_eq!(patched(target, patch), v(want));
    }

    #[test]
    fn diff_is_the_patch_that_gets_there() {
        let pairs = [
            (r#"{"a":1,"b":2}"#, r#"{"a":1,"b":3}"#, r#"{"b":3}"#),
            (r#"{"a":1,"b":2}"#, r#"{"a":1}"#, r#"{"b":null}"#),
            (
                r#"{"a":{"x":1,"y":2}}"#,
                r#"{"a":{"x":1,"y":5,"z":[null]}}"#,
                r#"{"a":{"y":5,"z":[null]}}"#,
            ),
            (r#"{"a":{"x":1}}"#, r#"{"a":7}"#, r#"{"a":7}"#),
            (r#"{"a":7}"#, r#"{"a":{"x":1}}"#, r#"{"a":{"x":1}}"#),
            (r#"{"a":[1,2]}"#, r#"{"a":[1,2,3]}"#, r#"{"a":[1,2,3]}"#),
            (r#"[1]"#, r#"{"a":1}"#, r#"{"a":1}"#),
            (r#"{"a":1}"#, r#"[1]"#, r#"[1]"#),
            (r#"{"a":1}"#, "null", "null"),
            ("null", r#"{"a":1}"#, r#"{"a":1}"#),
            ("3", "4", "4"),
            (r#"{"a":1}"#, r#"{"a":1.0}"#, r#"{}"#),
            (
                r#"{"a":{"b":{"c":1}}}"#,
                r#"{"a":{"b":{}}}"#,
                r#"{"a":{"b":{"c":null}}}"#,
            ),
        ];
        for (old, new, want) in pairs {
            let d = diff(&v(old), &v(new));
            assert_eq!(d, v(want), "diff({old}, {new})");
            let mut reached = v(old);
            merge_patch(&mut reached, &d);
            assert!(
                same(&reached, &v(new)),
                "{old} + {d} gave {reached}, not {new}"
            );
        }
    }

    #[test]
    fn same_ignores_order_and_number_spelling() {
        assert!(same(
            &v(r#"{"a":1,"b":[1.0,"x"]}"#),
            &v(r#"{"b":[1,"x"],"a":1e0}"#)
        ));
        assert!(same(&v("100"), &v("1e2")));
        assert!(!same(&v("1"), &v("2")));
        assert!(!same(&v(r#"{"a":1}"#), &v(r#"{"a":1,"b":null}"#)));
        assert!(!same(&v("[1,2]"), &v("[2,1]")));
        assert!(!same(&v("0"), &v("false")));
    }

    #[test]
    fn put_drops_null_members_only() {
        assert_eq!(
            normalize(&v(r#"{"a":null,"b":{"c":null,"d":1},"e":[null]}"#)),
            v(r#"{"b":{"d":1},"e":[null]}"#)
        );
        assert_eq!(normalize(&v("null")), v("null"));
        assert_eq!(normalize(&v("[null]")), v("[null]"));
    }

    fn row(version: u64, value: Option<&str>, announced: bool) -> StateRow {
        StateRow {
            version,
            value: value.map(v),
            patch: Value::Null,
            updated_ms: 5,
            announced,
        }
    }

    fn plan(
        stored: Option<&StateRow>,
        change: StateChange,
        expected: Option<u64>,
    ) -> Result<StatePlan, StoreError> {
        let write = StateWrite {
            change,
            expected_version: expected,
            max_value_bytes: 0,
        };
        plan_write("k", stored, &write, 9)
    }

    #[test]
    fn a_new_key_starts_at_version_one_with_the_value_as_patch() {
        let p = plan(None, StateChange::Patch(v(r#"{"a":1,"b":null}"#)), None).unwrap();
        let stored = p.row.clone().expect("written");
        assert_eq!((stored.version, &stored.value), (1, &Some(v(r#"{"a":1}"#))));
        assert!(!stored.announced, "stored unannounced");
        let StateOutcome::Changed { doc, patch } = &p.outcome else {
            panic!("{:?}", p.outcome)
        };
        assert_eq!((doc.version, doc.updated_ms), (1, 9));
        assert_eq!(patch, &v(r#"{"a":1}"#));
        let notice = p.outcome.notice("k").expect("announced");
        assert_eq!(
            notice,
            stored.notice("k"),
            "the row keeps what is announced"
        );
        assert_eq!(
            notice.data(),
            json!({"key":"k","version":1,"patch":{"a":1},"value":{"a":1}})
        );
    }

    #[test]
    fn a_write_that_changes_nothing_keeps_the_version() {
        let stored = row(4, Some(r#"{"a":1,"b":[2]}"#), true);
        for change in [
            StateChange::Put(v(r#"{"b":[2.0],"a":1,"c":null}"#)),
            StateChange::Patch(v(r#"{"a":1,"zz":null}"#)),
            StateChange::Patch(v("{}")),
        ] {
            let p = plan(Some(&stored), change.clone(), None).unwrap();
            assert_eq!(p.row, None, "{change:?}");
            assert!(matches!(&p.outcome, StateOutcome::Unchanged(d) if d.version == 4));
            assert_eq!(p.outcome.notice("k"), None);
        }
    }

    #[test]
    fn a_change_bumps_the_version_and_carries_the_diff() {
        let stored = row(4, Some(r#"{"a":1,"b":2}"#), true);
        let p = plan(
            Some(&stored),
            StateChange::Put(v(r#"{"a":1,"c":3}"#)),
            Some(4),
        )
        .unwrap();
        assert_eq!(p.row.as_ref().map(|r| r.version), Some(5));
        let StateOutcome::Changed { patch, .. } = &p.outcome else {
            panic!("{:?}", p.outcome)
        };
        assert_eq!(patch, &v(r#"{"b":null,"c":3}"#));
        assert_eq!(
            p.row.unwrap().patch,
            v(r#"{"b":null,"c":3}"#),
            "kept to announce again"
        );
    }

    #[test]
    fn expected_version_is_compared_with_the_live_document() {
        let stored = row(4, Some("{}"), true);
        let put = || StateChange::Put(v(r#"{"x":1}"#));
        let conflict = |r: Result<StatePlan, StoreError>| matches!(r, Err(StoreError::Conflict(_)));
        assert!(conflict(plan(Some(&stored), put(), Some(3))));
        assert!(conflict(plan(Some(&stored), put(), Some(0))));
        assert!(conflict(plan(None, put(), Some(1))));
        assert!(plan(None, put(), Some(0)).is_ok(), "0: create only");
        let tomb = row(6, None, true);
        assert!(conflict(plan(Some(&tomb), put(), Some(6))));
        let p = plan(Some(&tomb), put(), Some(0)).unwrap();
        assert_eq!(
            p.row.map(|r| r.version),
            Some(7),
            "versions go on after a delete"
        );
    }

    #[test]
    fn delete_leaves_a_tombstone_with_the_next_version() {
        let stored = row(2, Some(r#"{"a":1}"#), true);
        let p = plan(Some(&stored), StateChange::Delete, None).unwrap();
        assert_eq!(
            p.outcome,
            StateOutcome::Deleted {
                version: 3,
                at_ms: 9
            }
        );
        let tomb = p.row.clone().expect("tombstone");
        assert_eq!((tomb.version, &tomb.value), (3, &None));
        assert_eq!(p.outcome.notice("k"), Some(tomb.notice("k")));
        assert_eq!(
            tomb.notice("k").data(),
            json!({"key":"k","version":3,"patch":null,"value":null,"deleted":true})
        );
        let announced = StateRow {
            announced: true,
            ..tomb
        };
        let again = plan(Some(&announced), StateChange::Delete, None).unwrap();
        assert_eq!((again.row, again.outcome), (None, StateOutcome::Absent));
        let none = plan(None, StateChange::Delete, None).unwrap();
        assert_eq!(none.outcome, StateOutcome::Absent);
    }

    #[test]
    fn an_unannounced_change_blocks_every_write_until_marked() {
        let mut stored = row(3, Some(r#"{"a":1}"#), false);
        stored.patch = v(r#"{"a":1}"#);
        for (change, expected) in [
            (StateChange::Put(v(r#"{"a":1}"#)), None),
            (StateChange::Patch(v(r#"{"a":2}"#)), None),
            (StateChange::Patch(v(r#"{"a":2}"#)), Some(1)),
            (StateChange::Delete, None),
        ] {
            let p = plan(Some(&stored), change.clone(), expected).unwrap();
            assert_eq!(p.row, None, "{change:?} writes nothing");
            let StateOutcome::Unannounced(owed) = p.outcome else {
                panic!("{change:?}: {:?}", p.outcome)
            };
            assert_eq!(
                (owed.version, &owed.patch, owed.at_ms),
                (3, &v(r#"{"a":1}"#), 5)
            );
        }
        let tomb = row(4, None, false);
        let p = plan(Some(&tomb), StateChange::Delete, None).unwrap();
        assert!(matches!(p.outcome, StateOutcome::Unannounced(n) if n.value.is_none()));
        stored.announced = true;
        let quiet = plan(Some(&stored), StateChange::Patch(v("{}")), None).unwrap();
        assert!(matches!(quiet.outcome, StateOutcome::Unchanged(_)));
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        let p = plan(None, StateChange::Put(json!({"a\u{0}": ["x\u{0}y"]})), None).unwrap();
        assert_eq!(
            p.row.unwrap().value,
            Some(json!({"a\u{FFFD}": ["x\u{FFFD}y"]}))
        );
    }

    #[test]
    fn a_value_over_the_limit_is_refused() {
        let stored = row(1, Some(r#"{"a":"xxxx"}"#), true);
        let write = StateWrite {
            change: StateChange::Patch(v(r#"{"b":"yyyyyyyyyy"}"#)),
            expected_version: None,
            max_value_bytes: 20,
        };
        assert!(matches!(
            plan_write("k", Some(&stored), &write, 1),
            Err(StoreError::TooLarge(_))
        ));
    }

    #[test]
    fn event_ids_are_deterministic_and_short_enough() {
        assert_eq!(event_id("scores", "team:red", 7), "state:scores:team:red:7");
        let (s, k) = ("s".repeat(128), "k".repeat(128));
        let long = event_id(&s, &k, 12);
        assert!(
            long.len() <= crate::name::MAX_ID_LEN && crate::name::is_event_id(&long),
            "{long}"
        );
        assert!(
            long.starts_with("state:") && long.ends_with(":12"),
            "{long}"
        );
        assert_eq!(long, event_id(&s, &k, 12));
        assert_ne!(long, event_id(&s, &k[1..], 12));
    }

    #[test]
    fn the_event_announces_key_and_version() {
        let n = StateNotice {
            key: "k".into(),
            version: 2,
            patch: v(r#"{"a":2}"#),
            value: Some(v(r#"{"a":2}"#)),
            at_ms: 1_642_598_400_123,
        };
        let e = n.event("scores");
        assert_eq!(
            (e.id.as_str(), e.stream_id.as_str()),
            ("state:scores:k:2", "scores")
        );
        assert_eq!(
            (e.event_type.as_str(), e.class, e.timestamp),
            (CHANGED_TYPE, EventClass::Data, 1_642_598_400)
        );
        assert_eq!(e.time, "2022-01-19T13:20:00.123Z");
        assert_eq!(announced_version(&e), Some(("k", 2)));
    }
}
