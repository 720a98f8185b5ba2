//! A rule's definition as stored, shown and accepted (`POST /rules`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::links;

fn yes() -> bool {
    true
}

fn any() -> Value {
    Value::Object(Map::new())
}

/// A rule as stored and shown (`GET /rules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Its name, `[a-z0-9][a-z0-9._-]{0,63}`.
    pub id: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A disabled rule derives nothing (it keeps its memory up to date, so
    /// enabling it again needs no history).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Which events it looks at: a filter in the `SUBSCRIBE` spelling.
    #[serde(default = "any")]
    pub when: Value,
    /// What it detects.
    pub detect: Detect,
    /// What the derived event looks like.
    #[serde(default)]
    pub emit: Emit,
    /// A state document each firing merges into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateTarget>,
    /// The log offset it was created at; it applies to later events only.
    #[serde(default)]
    pub since: u64,
}

/// The detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Detect {
    /// A new maximum of `field` within the scope's values.
    HighScore {
        /// The number compared.
        field: String,
        /// Paths whose values make the scope (e.g. tournament, division).
        #[serde(default)]
        scope: Vec<String>,
        /// Who scored, for the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// The first score of a scope fires only from this value on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
    },
    /// `length` consecutive wins by the same subject, reset on a loss.
    /// Either `winner` (and optionally `loser`) name the subjects of a match
    /// result, or `subject` plus `outcome` compared with `win`.
    WinStreak {
        /// Consecutive wins that fire.
        length: u32,
        /// Path of the winner of a match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        winner: Option<String>,
        /// Path of the loser of a match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loser: Option<String>,
        /// Path of the subject of a result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// Path of the result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<String>,
        /// The result that counts as a win.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        win: Option<Value>,
        /// Paths whose values make the scope.
        #[serde(default)]
        scope: Vec<String>,
        /// Fire again at every further multiple of `length`.
        #[serde(default)]
        repeat: bool,
    },
    /// `field` crossing `above` upwards (or `below` downwards); it fires
    /// again only after coming back past the threshold by `hysteresis`.
    Threshold {
        /// The number watched.
        field: String,
        /// Fires when the value rises to or above this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        /// Fires when the value falls to or below this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        /// How far back the value must go to re-arm.
        #[serde(default)]
        hysteresis: f64,
        /// Path of a key watched separately (e.g. a match id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// `field` taking a value different from the last one seen.
    ValueChange {
        /// The value watched.
        field: String,
        /// Path of a key watched separately.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Fire for the first value too.
        #[serde(default)]
        initial: bool,
    },
    /// Stream links in a text field, one firing per distinct link.
    Links {
        /// The text searched.
        #[serde(default = "message_path")]
        field: String,
        /// Who posted it, for `seen_by`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<String>,
        /// Only these platforms; empty for all.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        platforms: Vec<links::Platform>,
    },
    /// Every matching event, mapped through `emit`.
    Map {},
}

fn message_path() -> String {
    "message".to_owned()
}

/// The shape of a derived event. String values are templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emit {
    /// Its type (each detector has a default; `map` needs one).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Its stream; by default the cause's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Its class (`animated` for scores and streaks by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Its message template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fields merged over the detector's own `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Other event fields (`priority`, `duration_ms`, `tags`, …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

/// Where a firing is also recorded as live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateTarget {
    /// The state stream.
    pub stream: String,
    /// The key template (`{{link.key}}`, `{{subject}}`).
    pub key: String,
    /// The merge-patch template; by default the derived event's `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<Value>,
}
