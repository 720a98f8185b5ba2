//! Validated names (SPEC §2): streams `[a-z0-9][a-z0-9._-]{0,127}`, event types
//! `[A-Za-z0-9_.:-]{1,100}`, producer ids and tenants.

/// Maximum length of a stream name.
pub const MAX_STREAM_LEN: usize = 128;
/// Maximum length of an event type.
pub const MAX_TYPE_LEN: usize = 100;
/// Maximum length of a producer-supplied event id.
pub const MAX_ID_LEN: usize = 128;
/// Maximum length of a `source`.
pub const MAX_SOURCE_LEN: usize = 200;

/// FNV-1a (64-bit): a stable hash every node computes alike, for ids too
/// long to keep whole and for advisory-lock keys.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Is `s` a valid stream name?
pub fn is_stream_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_STREAM_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Maximum length of the name of a rule, webhook or other configured thing.
pub const MAX_NAME_LEN: usize = 64;

/// Is `s` a valid name of a rule, webhook or other configured thing:
/// `[a-z0-9][a-z0-9._-]{0,63}`, a stream name of at most [`MAX_NAME_LEN`]?
pub fn is_name(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && is_stream_name(s)
}

/// Is `s` a valid event type?
pub fn is_event_type(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TYPE_LEN && s.bytes().all(is_type_byte)
}

/// Is `s` a valid producer-supplied event id (the idempotency key)?
pub fn is_event_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(is_type_byte)
}

/// Is `s` a valid tenant name (same rule as streams, at most 64 bytes)?
pub fn is_tenant(s: &str) -> bool {
    s.len() <= 64 && is_stream_name(s)
}

fn is_type_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        for ok in ["default", "user-activity", "match-1.finals_a", "0"] {
            assert!(is_stream_name(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", "Default", "-x", ".x", "a b", "ä", long.as_str()] {
            assert!(!is_stream_name(bad), "{bad}");
        }
    }

    #[test]
    fn event_types() {
        for ok in ["high_score", "campaign:send:v1:requested", "a.b-c", "X"] {
            assert!(is_event_type(ok), "{ok}");
        }
        let long = "a".repeat(101);
        for bad in ["", "a b", "a/b", "<script>", long.as_str()] {
            assert!(!is_event_type(bad), "{bad}");
        }
    }
}
