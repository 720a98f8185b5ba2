//! `[ingest]` settings: signed webhook sources and pollers (docs/INGEST.md),
//! validated at load with the rest of [`crate::config::Config`].

use serde::Deserialize;

use crate::config::ConfigError;

/// Shortest webhook secret accepted, bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// Shortest poll interval accepted, ms.
pub const MIN_INTERVAL_MS: u64 = 100;

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

/// One `[[ingest.pollers]]`.
#[derive(Debug, Clone, Deserialize)]
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
            if !is_name(&p.name) || !seen.insert(&p.name) {
                return bad(format!(
                    "ingest.pollers: name `{}` must be unique and match [a-z0-9._-]{{1,64}}",
                    p.name
                ));
            }
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return bad(format!(
                    "ingest.pollers `{}`: url must be http:// or https://",
                    p.name
                ));
            }
            if p.interval_ms < MIN_INTERVAL_MS || p.timeout_ms == 0 {
                return bad(format!(
                    "ingest.pollers `{}`: interval_ms must be at least {MIN_INTERVAL_MS} and \
                     timeout_ms positive",
                    p.name
                ));
            }
            if !streambus_core::name::is_tenant(&p.tenant)
                || !streambus_core::name::is_stream_name(&p.stream)
                || !streambus_core::name::is_event_type(&p.event_type)
                || !is_pointer(&p.pointer)
            {
                return bad(format!(
                    "ingest.pollers `{}`: tenant, stream and type must be valid names and \
                     pointer a JSON pointer",
                    p.name
                ));
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
}
