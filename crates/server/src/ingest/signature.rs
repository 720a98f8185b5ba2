//! The webhook signature scheme (docs/INGEST.md):
//!
//! ```text
//! x-streambus-timestamp: <unix seconds>
//! x-streambus-signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<raw body>")>
//! ```
//!
//! The timestamp is signed with the body, so an old delivery cannot be
//! re-dated; the tolerance window bounds how long a captured one could be
//! replayed, and the replay checks refuse it within the window.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused (each is a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is absent.
    #[error("missing `{0}` header")]
    Missing(String),
    /// A header is not in the expected form.
    #[error("malformed `{header}` header: {expected}")]
    Malformed {
        /// Which header.
        header: String,
        /// What it should look like.
        expected: &'static str,
    },
    /// The HMAC does not match.
    #[error(
        "signature does not match: expected sha256=HMAC-SHA256(secret, \"<timestamp>.<body>\") in hex"
    )]
    Mismatch,
    /// The timestamp lies outside the tolerance window.
    #[error(
        "stale timestamp: {timestamp} is {age} s away from the server's clock; the tolerance is {tolerance} s"
    )]
    Stale {
        /// The signed timestamp.
        timestamp: i64,
        /// Its distance from now, seconds.
        age: i64,
        /// The window.
        tolerance: u64,
    },
}

/// The hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    to_hex(&mac(secret, timestamp, body).finalize().into_bytes())
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A delivery's signing headers, as received.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The signature header's name and value.
    pub signature: (&'a str, Option<&'a str>),
    /// The timestamp header's name and value.
    pub timestamp: (&'a str, Option<&'a str>),
}

/// Checks a delivery: the headers' form, the HMAC (in constant time), then
/// the timestamp against `now` ± `tolerance`. Returns the signature's hex
/// (the replay key).
///
/// # Errors
/// Each refusal, with a detail for the partner's developer.
pub fn verify(
    secret: &[u8],
    signed: Signed<'_>,
    body: &[u8],
    now: i64,
    tolerance: u64,
) -> Result<String, SignatureError> {
    let (ts_name, ts) = signed.timestamp;
    let (sig_name, sig) = signed.signature;
    let ts = ts.ok_or_else(|| SignatureError::Missing(ts_name.to_owned()))?;
    let sig = sig.ok_or_else(|| SignatureError::Missing(sig_name.to_owned()))?;
    let timestamp: i64 = ts.trim().parse().map_err(|_| SignatureError::Malformed {
        header: ts_name.to_owned(),
        expected: "Unix seconds, e.g. 1700000000",
    })?;
    let hex = sig.trim().strip_prefix("sha256=").unwrap_or("");
    let bytes =
        from_hex(hex)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| SignatureError::Malformed {
                header: sig_name.to_owned(),
                expected: "sha256=<64 hex digits>",
            })?;
    mac(secret, ts.trim(), body)
        .verify_slice(&bytes)
        .map_err(|_| SignatureError::Mismatch)?;
    let age = (now - timestamp).abs();
    if u64::try_from(age).unwrap_or(u64::MAX) > tolerance {
        return Err(SignatureError::Stale {
            timestamp,
            age,
            tolerance,
        });
    }
    Ok(hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    fn check(sig: Option<&str>, ts: Option<&str>, now: i64) -> Result<String, SignatureError> {
        let signed = Signed {
            signature: ("x-sig", sig),
            timestamp: ("x-ts", ts),
        };
        verify(SECRET, signed, b"{\"a\":1}", now, 300)
    }

    #[test]
    fn known_vector() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        let want = sign(SECRET, "1700000000", b"{\"a\":1}");
        assert_eq!(
            want,
            "9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
        let good = format!("sha256={want}");
        assert_eq!(
            check(Some(&good), Some("1700000000"), 1_700_000_100),
            Ok(want.clone())
        );
    }

    #[test]
    fn refusals() {
        let good = format!("sha256={}", sign(SECRET, "1700000000", b"{\"a\":1}"));
        let now = 1_700_000_000;
        assert_eq!(
            check(None, Some("1700000000"), now),
            Err(SignatureError::Missing("x-sig".into()))
        );
        assert_eq!(
            check(Some(&good), None, now),
            Err(SignatureError::Missing("x-ts".into()))
        );
        assert!(matches!(
            check(Some("md5=00"), Some("1700000000"), now),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            check(Some(&good), Some("yesterday"), now),
            Err(SignatureError::Malformed { .. })
        ));
        assert_eq!(
            check(Some(&good), Some("1700000001"), now),
            Err(SignatureError::Mismatch)
        );
        let stale = check(Some(&good), Some("1700000000"), now + 301).unwrap_err();
        assert!(stale.to_string().contains("stale"), "{stale}");
        assert!(check(Some(&good), Some("1700000000"), now - 300).is_ok());
    }
}
