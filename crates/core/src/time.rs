//! Clock helpers: events carry Unix seconds (`timestamp`) and RFC 3339 with
//! milliseconds (`time`), both derived from one millisecond instant.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Formats a millisecond instant as RFC 3339 in UTC with exactly three fraction
/// digits, e.g. `2022-01-19T13:20:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            millis
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// Parses RFC 3339 into milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .ok()?
        .to_offset(UtcOffset::UTC);
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Parses a time given either as RFC 3339 or as Unix seconds (integer or
/// fractional), as query parameters and producers supply it.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then_some((secs * 1000.0) as i64);
    }
    parse_rfc3339_ms(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_round_trips() {
        let s = rfc3339_ms(1_642_598_400_123);
        assert_eq!(s, "2022-01-19T13:20:00.123Z");
        assert_eq!(parse_rfc3339_ms(&s), Some(1_642_598_400_123));
    }

    #[test]
    fn parses_seconds_and_rfc3339() {
        assert_eq!(parse_time_ms("1642598400"), Some(1_642_598_400_000));
        assert_eq!(
            parse_time_ms("2022-01-19T13:20:00Z"),
            Some(1_642_598_400_000)
        );
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
