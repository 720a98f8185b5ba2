//! Pretty `tail` output: one readable, optionally coloured line per event, every
//! field passed through [`sanitize`].

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;
use streambus_core::{Event, EventClass};

use crate::cmd::client::sanitize;

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";

/// One readable line: time (UTC), offset, stream, class, type, message, data.
pub(super) fn format_pretty(e: &Event, color: bool) -> String {
    let paint = |code: &str, text: &str| -> String {
        if color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    };
    // `2022-01-19T13:20:00.123Z` → `13:20:00.123`.
    let time = match e.time.get(11..23) {
        Some(t) if e.time.as_bytes().get(10) == Some(&b'T') => Cow::Borrowed(t),
        _ => sanitize(&e.time),
    };
    let class_color = match e.class {
        EventClass::Animated => "\x1b[35m",
        EventClass::Data => "\x1b[32m",
        EventClass::Alert => match e.level.as_deref() {
            Some("error") => "\x1b[31m",
            _ => "\x1b[33m",
        },
        EventClass::System => "\x1b[34m",
    };
    let mut line = String::with_capacity(128);
    let _ = write!(
        line,
        "{} {} {} {} {}",
        paint(DIM, &time),
        paint(DIM, &format!("#{}", e.offset)),
        paint("\x1b[36m", &sanitize(&e.stream_id)),
        paint(class_color, &format!("{:<8}", e.class.as_str())),
        paint(BOLD, &sanitize(&e.event_type)),
    );
    if let Some(level) = e.level.as_deref().or(e.severity.as_deref()) {
        let _ = write!(line, " [{}]", sanitize(level));
    }
    if !e.message.is_empty() {
        let _ = write!(line, "  {}", sanitize(&e.message));
    }
    let empty = match &e.data {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    if !empty {
        let data = e.data.to_string();
        let _ = write!(line, "  {}", paint(DIM, &sanitize(&data)));
    }
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(message: &str) -> Event {
        serde_json::from_value(json!({
            "offset": 42, "id": "evt_1", "stream_id": "scores", "type": "goal", "class": "animated",
            "source": "game", "message": message, "data": {"team": "a"},
            "metadata": {"priority": "normal"}, "timestamp": 1642598400,
            "time": "2022-01-19T13:20:00.123Z"
        }))
        .unwrap()
    }

    #[test]
    fn pretty_line_is_readable() {
        let line = format_pretty(&event("Goal!"), false);
        assert_eq!(
            line,
            r#"13:20:00.123 #42 scores animated goal  Goal!  {"team":"a"}"#
        );
        let coloured = format_pretty(&event("Goal!"), true);
        assert!(coloured.contains("\x1b[35manimated"), "{coloured:?}");
    }

    #[test]
    fn hostile_text_prints_as_one_safe_line() {
        let line = format_pretty(
            &event("\x1b[2J\x1b[31mred\nforged line\r\u{9b}31m\u{202e}txt"),
            false,
        );
        assert!(
            !line.contains('\x1b') && !line.contains('\n') && !line.contains('\r'),
            "{line:?}"
        );
        assert!(
            !line.contains('\u{9b}') && !line.contains('\u{202e}'),
            "{line:?}"
        );
        assert!(
            line.contains(r"\u{1b}[2J\u{1b}[31mred\nforged line\r\u{9b}31m\u{202e}txt"),
            "{line}"
        );
        // Data is JSON-escaped already, but DEL and C1 pass through serde_json.
        let mut e = event("");
        e.data = json!({"x": "a\u{7f}\u{85}b"});
        let line = format_pretty(&e, false);
        assert!(line.ends_with(r#"{"x":"a\u{7f}\u{85}b"}"#), "{line}");
    }
}
