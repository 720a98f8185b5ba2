//! `[ingest]` settings: signed webhook sources and pollers (docs/INGEST.md),
//! validated at load with the rest of [`crate::config::Config`].
//!
//! A poller created over the API (`POST /pollers`) has the same settings as a
//! `[[ingest.pollers]]` table, is stored as their JSON and passes the same
//! [`PollerConfig::validate`]; [`PollerConfig::from_api`] adds the checks a
//! JSON body needs (types, unknown and missing fields, the caller's tenant).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ConfigError;

/// Shortest webhook secret accepted, bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// Shortest poll interval accepted, ms.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest poller URL accepted, bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// `[ingest]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Inbound webhook sources, `POST /ingest/webhook/{name}`.
    pub sources: Vec<SourceConfig>,
    /// Pollers: GET a URL periodically, publish when a value changes.
    pub pollers: Vec<PollerConfig>,
}

/// One `[[ingest.sources]]`: a partner that posts signed webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The `{source}` of the route, `[a-z0-9._-]`.
    pub name: String,
    /// The shared HMAC secret, at least [`MIN_SECRET_BYTES`].
    pub secret: String,
    /// The tenant the events are published in.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Header holding `sha256=<hex>`.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// Header holding the Unix-seconds timestamp that was signed.
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    /// Header holding the partner's delivery id (optional in requests).
    #[serde(default = "default_delivery_header")]
    pub delivery_header: String,
    /// Largest accepted difference between the timestamp and now, seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// Stream of the events unless `stream_pointer` names one.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// JSON pointer to an array of items; "" means the body is one item.
    #[serde(default)]
    pub events: String,
    /// The event type: a JSON pointer into the item when it starts with
    /// `/`, else a literal type.
    #[serde(default = "default_type_pointer", rename = "type")]
    pub event_type: String,
    /// JSON pointer to the stream name in the item; "" uses `stream`.
    #[serde(default)]
    pub stream_pointer: String,
    /// JSON pointer to `data` in the item; "" means the whole item.
    #[serde(default)]
    pub data: String,
    /// JSON pointer to the message in the item; "" for none.
    #[serde(default)]
    pub message: String,
    /// JSON pointer to the item's own id; "" to use the delivery id (or the
    /// signature) and the item's index.
    #[serde(default)]
    pub id: String,
}

/// One `[[ingest.pollers]]`, or the stored JSON of a poller created over the
/// API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PollerConfig {
    /// Unique name, `[a-z0-9._-]`; events carry `source: "poller:<name>"`.
    pub name: String,
    /// The tenant the events are published in.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// `http://` URL to GET (https needs a TLS-enabled build).
    pub url: String,
    /// Period between polls, ms (at least [`MIN_INTERVAL_MS`]).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Stream of the events.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Type of the events.
    #[serde(rename = "type")]
    pub event_type: String,
    /// JSON pointer to the watched value; "" for the whole body.
    #[serde(default)]
    pub pointer: String,
    /// Time limit of one request, ms.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_tenant() -> String {
    streambus_core::DEFAULT_TENANT.to_owned()
}
fn default_signature_header() -> String {
    "x-streambus-signature".into()
}
fn default_timestamp_header() -> String {
    "x-streambus-timestamp".into()
}
fn default_delivery_header() -> String {
    "x-streambus-delivery".into()
}
fn default_tolerance() -> u64 {
    300
}
fn default_stream() -> String {
    "default".into()
}
fn default_type_pointer() -> String {
    "/type".into()
}
fn default_interval() -> u64 {
    5000
}
fn default_timeout() -> u64 {
    3000
}

/// Is `s` a valid source or poller name?
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

fn is_pointer(s: &str) -> bool {
    s.is_empty() || s.starts_with('/')
}

/// Why a poller's settings are refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PollerInvalid {
    /// The offending field as it is spelled in TOML and JSON (`type`, not
    /// `event_type`); `""` for the whole body.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl PollerInvalid {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Every poller field: its name, whether it is required, and whether it is
/// a number of milliseconds (else a string).
const POLLER_FIELDS: [(&str, bool, bool); 8] = [
    ("name", true, false),
    ("tenant", false, false),
    ("url", true, false),
    ("interval_ms", false, true),
    ("stream", false, false),
    ("type", true, false),
    ("pointer", false, false),
    ("timeout_ms", false, true),
];

impl PollerConfig {
    /// Checks one poller's name, URL, intervals, names and pointer (the
    /// uniqueness of names is the caller's).
    ///
    /// # Errors
    /// The first bad field.
    pub fn validate(&self) -> Result<(), PollerInvalid> {
        let bad = |field: &str, reason: String| Err(PollerInvalid::new(field, reason));
        if !is_name(&self.name) {
            return bad("name", "must match [a-z0-9._-]{1,64}".into());
        }
        if let Err(reason) = check_url(&self.url) {
            return bad("url", reason);
        }
        if self.interval_ms < MIN_INTERVAL_MS {
            return bad("interval_ms", format!("must be at least {MIN_INTERVAL_MS}"));
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms", "must be positive".into());
        }
        if !streambus_core::name::is_tenant(&self.tenant) {
            return bad("tenant", "must be a valid tenant name".into());
        }
        if !streambus_core::name::is_stream_name(&self.stream) {
            return bad("stream", "must be a valid stream name".into());
        }
        if !streambus_core::name::is_event_type(&self.event_type) {
            return bad("type", "must be a valid event type".into());
        }
        if !is_pointer(&self.pointer) {
            return bad(
                "pointer",
                "must be a JSON pointer (\"\" or starting with /)".into(),
            );
        }
        Ok(())
    }

    /// A poller of `tenant` from an API body. `path_name`, the `{name}` of
    /// `PUT /pollers/{name}`, is used when the body has none and must match
    /// the body's otherwise; `tenant` may be left out of the body or must be
    /// the caller's.
    ///
    /// # Errors
    /// The first bad field: unknown, missing, of the wrong JSON type, or
    /// refused by [`Self::validate`].
    pub fn from_api(
        body: Value,
        tenant: &str,
        path_name: Option<&str>,
    ) -> Result<Self, PollerInvalid> {
        let Value::Object(mut obj) = body else {
            return Err(PollerInvalid::new("", "the body must be a JSON object"));
        };
        if let Some(name) = path_name {
            match obj.get("name") {
                None => {
                    obj.insert("name".into(), Value::from(name));
                }
                Some(n) if n.as_str() == Some(name) => {}
                Some(_) => {
                    return Err(PollerInvalid::new(
                        "name",
                        format!("must be `{name}`, the name in the path (or left out)"),
                    ));
                }
            }
        }
        if let Some(key) = obj
            .keys()
            .find(|k| !POLLER_FIELDS.iter().any(|(f, ..)| f == k))
        {
            let known: Vec<&str> = POLLER_FIELDS.iter().map(|(f, ..)| *f).collect();
            return Err(PollerInvalid::new(
                key,
                format!("unknown field; the fields are {}", known.join(", ")),
            ));
        }
        for (field, required, millis) in POLLER_FIELDS {
            let reason = match obj.get(field) {
                None if required => "is required",
                Some(v) if millis && !v.is_u64() => "must be a whole number of milliseconds",
                Some(v) if !millis && !v.is_string() => "must be a string",
                _ => continue,
            };
            return Err(PollerInvalid::new(field, reason));
        }
        if obj
            .get("tenant")
            .is_some_and(|t| t.as_str() != Some(tenant))
        {
            let reason = format!("must be `{tenant}`, the caller's tenant (or left out)");
            return Err(PollerInvalid::new("tenant", reason));
        }
        obj.insert("tenant".into(), Value::from(tenant));
        // Every field's type was checked above, so this only fails on a
        // case the table misses; it is still a refusal, not a panic.
        let config: Self = serde_json::from_value(Value::Object(obj))
            .map_err(|e| PollerInvalid::new("", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

/// `Err(reason)` unless `url` is an absolute `http://` or `https://` URL
/// with a host.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be http:// or https://".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(())
}

impl IngestConfig {
    /// Checks names, secrets, pointers, URLs and intervals.
    ///
    /// # Errors
    /// The first bad value, naming the source or poller.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Invalid {
                origin: "configuration".into(),
                message,
            })
        };
        let mut seen = std::collections::HashSet::new();
        for s in &self.sources {
            if !is_name(&s.name) || !seen.insert(&s.name) {
                return bad(format!(
                    "ingest.sources: name `{}` must be unique and match [a-z0-9._-]{{1,64}}",
                    s.name
                ));
            }
            if s.secret.len() < MIN_SECRET_BYTES {
                return bad(format!(
                    "ingest.sources `{}`: secret must be at least {MIN_SECRET_BYTES} bytes",
                    s.name
                ));
            }
            if !streambus_core::name::is_tenant(&s.tenant)
                || !streambus_core::name::is_stream_name(&s.stream)
            {
                return bad(format!(
                    "ingest.sources `{}`: tenant and stream must be valid names",
                    s.name
                ));
            }
            let headers = [&s.signature_header, &s.timestamp_header, &s.delivery_header];
            if headers
                .iter()
                .any(|h| axum::http::HeaderName::from_bytes(h.as_bytes()).is_err())
            {
                return bad(format!(
                    "ingest.sources `{}`: header names must be valid HTTP header names",
                    s.name
                ));
            }
            let pointers = [&s.events, &s.stream_pointer, &s.data, &s.message, &s.id];
            if !pointers.iter().all(|p| is_pointer(p)) {
                return bad(format!(
                    "ingest.sources `{}`: events, stream_pointer, data, message and id must be \
                     JSON pointers (\"\" or starting with /)",
                    s.name
                ));
            }
            if !s.event_type.starts_with('/') && !streambus_core::name::is_event_type(&s.event_type)
            {
                return bad(format!(
                    "ingest.sources `{}`: type must be a JSON pointer or a valid event type",
                    s.name
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.pollers {
            if !seen.insert(&p.name) {
                return bad(format!("ingest.pollers: name `{}` must be unique", p.name));
            }
            if let Err(e) = p.validate() {
                return bad(format!("ingest.pollers `{}`: {e}", p.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, secret: &str) -> SourceConfig {
        toml::from_str(&format!("name = \"{name}\"\nsecret = \"{secret}\"")).unwrap()
    }

    #[test]
    fn defaults_and_refusals() {
        let s = source("shop", "0123456789abcdef");
        assert_eq!(s.signature_header, "x-streambus-signature");
        assert_eq!(s.event_type, "/type");
        assert_eq!(s.tolerance_secs, 300);
        let ok = IngestConfig {
            sources: vec![s.clone()],
            pollers: vec![],
        };
        assert!(ok.validate().is_ok());
        let cases = [
            vec![source("shop", "short")],
            vec![source("Shop", "0123456789abcdef")],
            vec![s.clone(), s.clone()],
        ];
        for sources in cases {
            let c = IngestConfig {
                sources,
                pollers: vec![],
            };
            assert!(c.validate().is_err(), "{c:?}");
        }
        let poller = |url: &str, interval: u64| -> PollerConfig {
            toml::from_str(&format!(
                "name = \"p\"\nurl = \"{url}\"\ninterval_ms = {interval}\ntype = \"t\""
            ))
            .unwrap()
        };
        let c = |p| IngestConfig {
            sources: vec![],
            pollers: vec![p],
        };
        assert!(c(poller("http://127.0.0.1:1/x", 100)).validate().is_ok());
        assert!(c(poller("ftp://x", 100)).validate().is_err());
        assert!(c(poller("http://x", 99)).validate().is_err());
    }

    #[test]
    fn api_bodies_are_refused_naming_the_field() {
        let ok = serde_json::json!({"name": "p", "url": "http://h/x", "type": "t"});
        let p = PollerConfig::from_api(ok.clone(), "acme", Some("p")).unwrap();
        assert_eq!(
            (p.tenant.as_str(), p.interval_ms, p.stream.as_str()),
            ("acme", 5000, "default")
        );
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            b
        };
        let cases = [
            (with("name", "P".into()), "name"),
            (with("url", "http//h".into()), "url"),
            (with("interval_ms", 99.into()), "interval_ms"),
            (with("interval_ms", 1.5.into()), "interval_ms"),
            (with("pointer", "x".into()), "pointer"),
            (with("tenant", "other".into()), "tenant"),
            (with("extra", 1.into()), "extra"),
            (serde_json::json!({"name": "p", "type": "t"}), "url"),
            (serde_json::json!(1), ""),
        ];
        for (body, field) in cases {
            let e = PollerConfig::from_api(body.clone(), "acme", None).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
        }
        let e = PollerConfig::from_api(ok, "acme", Some("q")).unwrap_err();
        assert_eq!(e.field, "name");
    }
}
