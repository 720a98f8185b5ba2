//! NATS subjects of the JetStream log: `<prefix>.<tenant>.<stream>.<type>`.
//!
//! NATS splits subjects at `.` and treats `*` and `>` as wildcards, but stream
//! names, types and tenants may contain `.` (SPEC §2). Each part is therefore
//! escaped into exactly one token, injectively: otherwise stream `a` with type
//! `b.c` and stream `a.b` with type `c` would share the subject `sb.t.a.b.c`,
//! and a filter on one would read the other (SPEC §7).
//!
//! The escape is percent-encoding (`%XX`, uppercase hex, per byte) of `%`, `.`,
//! `*`, `>`, ASCII whitespace and control bytes; the empty string becomes a lone
//! `%`, which no other input produces (every other `%` is followed by two hex
//! digits).

use std::fmt::Write as _;

/// True for bytes that cannot appear raw inside one subject token.
fn must_escape(b: u8) -> bool {
    matches!(b, b'%' | b'.' | b'*' | b'>') || b <= b' ' || b == 0x7f
}

/// Escapes `part` into one NATS subject token.
pub fn escape_token(part: &str) -> String {
    if part.is_empty() {
        return "%".to_owned();
    }
    if !part.bytes().any(must_escape) {
        return part.to_owned();
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        if c.is_ascii() && must_escape(c as u8) {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{:02X}", c as u8);
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`escape_token`]; `None` when `token` is not a valid escape.
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    if !token.contains('%') {
        return Some(token.to_owned());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if !must_escape(b) || hex.bytes().any(|h| h.is_ascii_lowercase()) {
                // Only the canonical form round-trips; anything else is foreign.
                return None;
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject of an event: `<prefix>.<tenant>.<stream>.<type>`, each part one token.
pub fn event_subject(prefix: &str, tenant: &str, stream: &str, event_type: &str) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        escape_token(tenant),
        escape_token(stream),
        escape_token(event_type)
    )
}

/// The filter matching every event of one stream of a tenant.
pub fn stream_filter(prefix: &str, tenant: &str, stream: &str) -> String {
    format!(
        "{prefix}.{}.{}.*",
        escape_token(tenant),
        escape_token(stream)
    )
}

/// The filter matching everything the log publishes.
pub fn all_filter(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The parts of an event subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectParts {
    /// The tenant.
    pub tenant: String,
    /// The stream name.
    pub stream: String,
    /// The event type.
    pub event_type: String,
}

/// Splits an event subject made by [`event_subject`]; `None` when it is not one.
pub fn parse_subject(prefix: &str, subject: &str) -> Option<SubjectParts> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut tokens = rest.split('.');
    let tenant = unescape_token(tokens.next()?)?;
    let stream = unescape_token(tokens.next()?)?;
    let event_type = unescape_token(tokens.next()?)?;
    if tokens.next().is_some() {
        return None;
    }
    Some(SubjectParts {
        tenant,
        stream,
        event_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_pair_gets_different_subjects() {
        // SPEC §7: stream `a` + type `b.c` versus stream `a.b` + type `c`.
        let one = event_subject("sb", "default", "a", "b.c");
        let two = event_subject("sb", "default", "a.b", "c");
        assert_ne!(one, two);
        assert_eq!(one, "sb.default.a.b%2Ec");
        assert_eq!(two, "sb.default.a%2Eb.c");
        assert_eq!(one.split('.').count(), 4);
        assert_eq!(two.split('.').count(), 4);
        // A filter on one stream does not match the other's subject.
        assert_eq!(stream_filter("sb", "default", "a"), "sb.default.a.*");
        assert_eq!(stream_filter("sb", "default", "a.b"), "sb.default.a%2Eb.*");
    }

    #[test]
    fn escape_round_trips() {
        let cases = [
            "",
            "plain",
            "a.b.c",
            "%",
            "%2E",
            "100%.",
            "*",
            ">",
            "a b\tc\nd",
            "domain:action:v1:requested",
            "ünïcødé.x",
            "..",
            "%%",
            "\u{7f}\u{1}",
        ];
        for c in cases {
            let token = escape_token(c);
            assert!(!token.is_empty(), "{c:?}");
            assert!(
                !token.contains(['.', '*', '>', ' ', '\t', '\n']),
                "{c:?} -> {token:?}"
            );
            assert_eq!(unescape_token(&token).as_deref(), Some(c), "{c:?}");
        }
    }

    #[test]
    fn escape_is_injective_on_tricky_pairs() {
        let pairs = [("a.b", "a%2Eb"), ("", "%"), ("%", "%25"), ("%2E", ".")];
        for (x, y) in pairs {
            assert_ne!(escape_token(x), escape_token(y), "{x:?} vs {y:?}");
        }
    }

    #[test]
    fn foreign_escapes_are_refused() {
        assert_eq!(unescape_token("%2e"), None);
        assert_eq!(unescape_token("%41"), None);
        assert_eq!(unescape_token("%4"), None);
        assert_eq!(unescape_token("a%"), None);
    }

    #[test]
    fn subject_parses_back() {
        let s = event_subject("sb.prod", "t.1", "a.b", "x:y.z");
        let parts = parse_subject("sb.prod", &s).expect("parses");
        assert_eq!(parts.tenant, "t.1");
        assert_eq!(parts.stream, "a.b");
        assert_eq!(parts.event_type, "x:y.z");
        assert_eq!(parse_subject("sb", "other.t.s.e"), None);
        assert_eq!(parse_subject("sb", "sb.t.s"), None);
        assert_eq!(parse_subject("sb", "sb.t.s.e.f"), None);
    }
}
