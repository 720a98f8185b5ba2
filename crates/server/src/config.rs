//! Configuration: the embedded `config.default.toml`, then a TOML file, then
//! `STREAMBUS_<SECTION>__<KEY>` environment variables; the CLI applies flags
//! last. Validated once, at load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The defaults, with a comment on every setting.
pub const DEFAULT_TOML: &str = include_str!("../../../config.default.toml");

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file or variable is not valid TOML or has a bad value.
    #[error("invalid configuration in {origin}: {message}")]
    Invalid {
        /// Where the bad value came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and process settings.
    pub server: ServerConfig,
    /// Embedded storage.
    pub storage: StorageConfig,
    /// Input limits.
    pub limits: LimitsConfig,
    /// Fan-out tuning.
    pub delivery: DeliveryConfig,
    /// History retention.
    pub retention: RetentionConfig,
    /// Scale-out engines.
    pub cluster: ClusterConfig,
    /// Playout defaults of every overlay queue.
    pub overlays: streambus_core::overlay::Settings,
    /// Who may connect (SPEC §5).
    pub auth: AuthConfig,
    /// Log output.
    pub log: LogConfig,
    /// Signed inbound webhooks and pollers (docs/INGEST.md).
    #[serde(default)]
    pub ingest: crate::ingest::config::IngestConfig,
    /// Outgoing webhooks' delivery settings (docs/WEBHOOKS.md).
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhooksConfig,
    /// Tracked requests (docs/REQUESTS.md).
    #[serde(default)]
    pub requests: crate::requests::RequestsConfig,
    /// Rules defined in the configuration, `[[rules]]` (docs/RULES.md),
    /// in the `default` tenant.
    #[serde(default)]
    pub rules: Vec<serde_json::Value>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Run the demo streams.
    pub demo: bool,
    /// Milliseconds between steps of the demo tournament and chat.
    pub demo_interval_ms: u64,
    /// Heartbeat period, seconds.
    pub heartbeat_secs: u64,
    /// Shutdown drain time, seconds.
    pub shutdown_grace_secs: u64,
    /// Origins browsers may call the API from (`*` for any); empty: any
    /// without authentication, the page's own origin only with it.
    pub cors_origins: Vec<String>,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `normal` or `full`.
    pub synchronous: Synchronous,
    /// Events per group commit.
    pub batch_max: usize,
}

/// SQLite durability level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives a process crash.
    Normal,
    /// Survives power loss.
    Full,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// One event, bytes.
    pub max_event_bytes: usize,
    /// One body, bytes.
    pub max_body_bytes: usize,
    /// Events per batch.
    pub max_batch: usize,
    /// One WebSocket frame, bytes.
    pub max_frame_bytes: usize,
    /// Unacknowledged WebSocket publishes per connection.
    pub max_inflight_publishes: usize,
    /// Events per second one key may publish; 0 for no limit.
    pub publish_rate_per_key: u32,
    /// Events a key may publish at once above its rate.
    pub publish_burst_per_key: u32,
    /// Events per second one client address may publish; 0 for no limit.
    pub publish_rate_per_ip: u32,
    /// Events an address may publish at once above its rate.
    pub publish_burst_per_ip: u32,
    /// Open WebSocket and SSE connections per key; 0 for no limit.
    pub max_connections_per_key: usize,
    /// Open WebSocket and SSE connections per client address; 0 for no limit.
    pub max_connections_per_ip: usize,
}

/// `[delivery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Live events kept per tenant for connections.
    pub hub_capacity: usize,
    /// Events per socket write.
    pub write_batch: usize,
    /// Events per catch-up read.
    pub catchup_page: usize,
    /// WebSocket read buffer per connection, bytes.
    pub ws_read_buffer: usize,
}

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Events kept per stream (0: unlimited).
    pub max_events_per_stream: u64,
    /// Age limit in seconds (0: unlimited).
    pub max_age_secs: u64,
    /// Seconds between passes.
    pub interval_secs: u64,
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// PostgreSQL URL; with `nats_url`, selects cluster mode.
    #[serde(default)]
    pub postgres_url: Option<String>,
    /// NATS URL; with `postgres_url`, selects cluster mode.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// JetStream stream name shared by the cluster.
    pub stream: String,
    /// Subject prefix shared by the cluster.
    pub subject_prefix: String,
    /// JetStream de-duplication window, seconds.
    pub duplicate_window_secs: u64,
    /// PostgreSQL connections per node.
    pub postgres_max_connections: u32,
    /// PostgreSQL schema ("" for the default search path).
    pub postgres_schema: String,
}

/// Which engines a configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One node: SQLite under the data directory, in-process fan-out.
    Embedded,
    /// Several nodes: PostgreSQL and NATS JetStream.
    Cluster {
        /// PostgreSQL URL.
        postgres_url: String,
        /// NATS URL.
        nats_url: String,
    },
}

impl ClusterConfig {
    /// True when these settings select cluster mode.
    pub fn is_cluster(&self) -> bool {
        matches!(self.mode(), Ok(Mode::Cluster { .. }))
    }

    /// The mode these settings select.
    ///
    /// # Errors
    /// Only one of the two engines is given: such nodes would not share a
    /// log or a history, so the configuration is refused.
    pub fn mode(&self) -> Result<Mode, ConfigError> {
        let set = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        };
        match (set(&self.postgres_url), set(&self.nats_url)) {
            (None, None) => Ok(Mode::Embedded),
            (Some(postgres_url), Some(nats_url)) => Ok(Mode::Cluster { postgres_url, nats_url }),
            (Some(_), None) => Err(ConfigError::Invalid {
                origin: "cluster".into(),
                message: "cluster.postgres_url is set without cluster.nats_url: nodes would not share a live log; give both (cluster) or neither (embedded)".into(),
            }),
            (None, Some(_)) => Err(ConfigError::Invalid {
                origin: "cluster".into(),
                message: "cluster.nats_url is set without cluster.postgres_url: each node would keep its own history; give both (cluster) or neither (embedded)".into(),
            }),
        }
    }
}

/// `[auth]`: the keys tokens are verified with. With none, the server
/// checks no credentials and, unless `allow_insecure`, only listens on
/// loopback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret (at least 32 bytes); empty for none.
    pub hs256_secret: String,
    /// Ed25519 public key (PEM file) verifying EdDSA tokens; empty for none.
    pub ed25519_public_key_file: PathBuf,
    /// Ed25519 private key (PEM file) `streambus token` signs with; the
    /// server does not read it.
    pub ed25519_private_key_file: PathBuf,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, seconds.
    pub leeway_secs: u64,
    /// Listen on a non-loopback address without authentication.
    pub allow_insecure: bool,
}

impl AuthConfig {
    /// True when tokens are checked.
    pub fn enabled(&self) -> bool {
        !self.hs256_secret.is_empty() || !self.ed25519_public_key_file.as_os_str().is_empty()
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Loads defaults, then `file`, then the environment.
    ///
    /// # Errors
    /// An unreadable file, invalid TOML, an unknown key or a bad value.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (for tests).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut merged = parse(DEFAULT_TOML, "the built-in defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            merge(&mut merged, parse(&text, &path.display().to_string())?);
        }
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("STREAMBUS_") else {
                continue;
            };
            let Some((section, field)) = rest.split_once("__") else {
                continue;
            };
            let (section, field) = (section.to_ascii_lowercase(), field.to_ascii_lowercase());
            let parsed = parse(&format!("v = {value}"), &key)
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            let mut patch = toml::Table::new();
            let mut inner = toml::Table::new();
            inner.insert(field, parsed);
            patch.insert(section, toml::Value::Table(inner));
            merge(&mut merged, patch);
        }
        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: "configuration".into(),
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    ///
    /// # Errors
    /// The first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |message: &str| {
            Err(ConfigError::Invalid {
                origin: "configuration".into(),
                message: message.into(),
            })
        };
        let l = &self.limits;
        if l.max_event_bytes == 0 || l.max_body_bytes < l.max_event_bytes {
            return bad(
                "limits.max_body_bytes must be at least limits.max_event_bytes, which must be positive",
            );
        }
        if l.max_batch == 0 || l.max_inflight_publishes == 0 || l.max_frame_bytes == 0 {
            return bad(
                "limits.max_batch, max_inflight_publishes and max_frame_bytes must be positive",
            );
        }
        let d = &self.delivery;
        if d.hub_capacity < 16
            || d.write_batch == 0
            || d.catchup_page == 0
            || d.ws_read_buffer < 256
        {
            return bad(
                "delivery.hub_capacity must be at least 16, ws_read_buffer at least 256; write_batch and catchup_page positive",
            );
        }
        self.cluster.mode()?;
        self.ingest.validate()?;
        let mut rule_ids = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let rule = streambus_core::rule::Rule::from_json(r.clone()).map_err(|e| {
                ConfigError::Invalid {
                    origin: "configuration".into(),
                    message: format!("rules[{i}].{}: {}", e.field, e.reason),
                }
            })?;
            if !rule_ids.insert(rule.def.id) {
                return bad("rules: two rules have the same id");
            }
        }
        if self.cluster.stream.is_empty() || self.cluster.subject_prefix.is_empty() {
            return bad("cluster.stream and cluster.subject_prefix must not be empty");
        }
        if self.storage.batch_max == 0 || self.server.heartbeat_secs == 0 {
            return bad("storage.batch_max and server.heartbeat_secs must be positive");
        }
        for o in &self.server.cors_origins {
            if o != "*" && axum::http::HeaderValue::from_str(o).is_err() {
                return bad("server.cors_origins must hold origins such as https://admin.example");
            }
        }
        let a = &self.auth;
        if !a.hs256_secret.is_empty() && a.hs256_secret.len() < 32 {
            return bad("auth.hs256_secret must be at least 32 bytes");
        }
        if !a.enabled() && !a.allow_insecure && !self.server.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                origin: "configuration".into(),
                message: format!(
                    "refusing to listen on {} without authentication: configure [auth] \
                     (auth.hs256_secret or auth.ed25519_public_key_file), listen on loopback, \
                     or pass --allow-insecure",
                    self.server.listen
                ),
            });
        }
        Ok(())
    }

    /// Input limits in the form validation uses.
    pub fn input_limits(&self) -> streambus_core::Limits {
        streambus_core::Limits {
            max_event_bytes: self.limits.max_event_bytes,
            max_body_bytes: self.limits.max_body_bytes,
            max_batch: self.limits.max_batch,
        }
    }
}

fn parse(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Invalid {
            origin: origin.into(),
            message: e.to_string(),
        })
}

/// Deep-merges `over` into `base`: tables merge, other values replace.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let c = Config::load_with_env(None, []).unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.limits.max_event_bytes, 64 * 1024);
        assert_eq!(c.storage.synchronous, Synchronous::Normal);
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:9000\"\ndemo = true\n",
        )
        .unwrap();
        let env = [
            (
                "STREAMBUS_SERVER__LISTEN".to_owned(),
                "127.0.0.1:9100".to_owned(),
            ),
            ("STREAMBUS_LIMITS__MAX_BATCH".to_owned(), "10".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = Config::load_with_env(Some(&path), env).unwrap();
        assert_eq!(c.server.listen.port(), 9100);
        assert!(c.server.demo);
        assert_eq!(c.limits.max_batch, 10);
    }

    #[test]
    fn cluster_needs_both_engines() {
        let c = Config::load_with_env(None, []).unwrap();
        assert_eq!(c.cluster.mode().unwrap(), Mode::Embedded);
        let both = [
            (
                "STREAMBUS_CLUSTER__POSTGRES_URL".to_owned(),
                "postgres://db/x".to_owned(),
            ),
            (
                "STREAMBUS_CLUSTER__NATS_URL".to_owned(),
                "nats://n:4222".to_owned(),
            ),
        ];
        let c = Config::load_with_env(None, both.clone()).unwrap();
        assert!(matches!(c.cluster.mode().unwrap(), Mode::Cluster { .. }));
        for one in both {
            let err = Config::load_with_env(None, [one]).unwrap_err().to_string();
            assert!(err.contains("give both"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let env = [("STREAMBUS_LIMITS__MAX_BATCH".to_owned(), "0".to_owned())];
        assert!(Config::load_with_env(None, env).is_err());
        let env = [("STREAMBUS_SERVER__BOGUS".to_owned(), "1".to_owned())];
        assert!(Config::load_with_env(None, env).is_err());
        let env = [(
            "STREAMBUS_STORAGE__SYNCHRONOUS".to_owned(),
            "sometimes".to_owned(),
        )];
        assert!(Config::load_with_env(None, env).is_err());
    }
}
