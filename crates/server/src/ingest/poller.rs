//! Pollers (docs/INGEST.md "Pollers"): one task per poller (from
//! `[[ingest.pollers]]` or `POST /pollers`; [`super::registry`] keeps the
//! set) GETs its URL every `interval_ms`, extracts a value by JSON pointer
//! and publishes `{type, stream, data: {value, previous}}` with
//! `source: "poller:<name>"` only when the value differs from the last one
//! published. The last value is seeded from history at start, so a restart
//! does not emit an unchanged value again.
//!
//! Every node of a cluster runs every poller, so a change is seen by each.
//! It is stored once because the event id is deterministic: a hash of the
//! stream, type, new value and the id of the poller's newest stored event
//! (re-read from history when a change is seen), so each node names the same
//! change alike and the log keeps the first (SPEC §2 idempotency), while a
//! value that comes back later (a → b → a) still makes a new event.
//!
//! Failures (connection refused, non-2xx, bad JSON, missing pointer, a
//! failed publish) back off exponentially: `interval × 2^n`, at most
//! [`MAX_BACKOFF`]. Health is kept in [`Poller`] for `GET /pollers`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use streambus_core::store::EventQuery;
use streambus_core::time::{now_ms, rfc3339_ms};
use streambus_core::validate::PublishContext;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::PollerConfig;
use crate::state::AppState;

/// The longest wait between polls after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where a poller is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `[[ingest.pollers]]` in the configuration file; not changed over the API.
    Config,
    /// Created over the API and kept in the store's poller catalog.
    Api,
}

impl Origin {
    /// `config` or `api`, as `GET /pollers` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// One poller: its settings and health.
pub struct Poller {
    /// The settings.
    pub config: PollerConfig,
    /// Where the settings come from.
    pub origin: Origin,
    /// Health, written by the task, read by `GET /pollers`; held briefly.
    health: Mutex<Health>,
}

/// The poller's newest stored event: what a change is compared with and
/// what the next event's id is derived from.
#[derive(Debug, Clone)]
struct Last {
    id: String,
    value: Value,
}

/// What `GET /pollers` reports about one poller.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// `ok` (or not yet polled), `failing`, or `pending` (stored, not yet
    /// running on this node).
    pub state: &'static str,
    /// RFC 3339 time of the last successful poll.
    pub last_success_at: Option<String>,
    /// The last failure's description.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The last value published (or seeded from history).
    pub last_value: Option<Value>,
    /// Events this poller published since it started.
    pub emitted: u64,
    /// The wait before the next poll, ms: `interval_ms`, longer while
    /// failing (the back-off).
    pub backoff_ms: u64,
    /// RFC 3339 time of the next poll.
    pub next_poll_at: Option<String>,
}

impl Poller {
    /// A poller that has not polled yet.
    pub fn new(config: PollerConfig, origin: Origin) -> Self {
        let backoff_ms = config.interval_ms;
        Self {
            config,
            origin,
            health: Mutex::new(Health {
                state: "ok",
                backoff_ms,
                ..Health::default()
            }),
        }
    }

    /// The `GET /pollers` entry.
    pub fn report(&self) -> Value {
        Self::report_of(&self.config, self.origin, &self.health())
    }

    /// The `GET /pollers` entry of a stored poller that is not running on
    /// this node yet (cluster mode, until the next catalog pass).
    pub fn pending_report(config: &PollerConfig) -> Value {
        let health = Health {
            state: "pending",
            backoff_ms: config.interval_ms,
            ..Health::default()
        };
        Self::report_of(config, Origin::Api, &health)
    }

    fn report_of(c: &PollerConfig, origin: Origin, h: &Health) -> Value {
        json!({
            "name": c.name, "tenant": c.tenant, "origin": origin.as_str(), "url": c.url,
            "interval_ms": c.interval_ms, "timeout_ms": c.timeout_ms, "stream": c.stream,
            "type": c.event_type, "pointer": c.pointer,
            "state": h.state, "last_success_at": h.last_success_at, "last_error": h.last_error,
            "consecutive_failures": h.consecutive_failures, "backoff_ms": h.backoff_ms,
            "next_poll_at": h.next_poll_at, "last_value": h.last_value, "emitted": h.emitted,
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health
            .lock()
            .expect("poller health lock is never poisoned")
    }

    fn source(&self) -> String {
        format!("poller:{}", self.config.name)
    }

    /// The wait before the next poll after `failures` consecutive failures.
    pub fn delay(interval_ms: u64, failures: u32) -> Duration {
        let factor = 1u64 << failures.min(16);
        Duration::from_millis(interval_ms.saturating_mul(factor))
            .min(MAX_BACKOFF.max(Duration::from_millis(interval_ms)))
    }

    /// The id of the event for a change to `value` after `previous` (the
    /// poller's newest stored event): the same on every node, new for a
    /// value that comes back after another.
    fn event_id(&self, previous: Option<&Last>, value: &Value) -> String {
        let c = &self.config;
        let key = format!(
            "{}\n{}\n{}\n{value}",
            c.stream,
            c.event_type,
            previous.map_or("", |l| l.id.as_str())
        );
        let hash = streambus_core::name::fnv1a(key.as_bytes());
        format!("poll:{}:{hash:016x}", c.name)
    }

    /// Polls until `cancel` (a child of `state.shutdown`, cancelled alone
    /// when the poller is replaced or deleted).
    pub async fn run(self: Arc<Self>, state: AppState, cancel: CancellationToken) {
        let c = &self.config;
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_millis(c.timeout_ms))
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                warn!(poller = %c.name, tenant = %c.tenant, error = %e, "cannot build the poller's HTTP client");
                return;
            }
        };
        let seeded = tokio::select! {
            _ = cancel.cancelled() => return,
            s = self.seed(&state) => s,
        };
        let mut last = seeded.unwrap_or_else(|e| {
            // The first change re-reads history, so this is not fatal.
            warn!(poller = %c.name, tenant = %c.tenant, error = %e, "cannot read the last polled value");
            None
        });
        self.health().last_value = last.as_ref().map(|l| l.value.clone());
        info!(poller = %c.name, tenant = %c.tenant, origin = self.origin.as_str(), url = %c.url, "poller started");
        loop {
            // A slow partner must not hold up shutdown or a replacement.
            let result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.poll_once(&state, &client, &mut last) => r,
            };
            let delay = {
                let mut h = self.health();
                match result {
                    Ok(()) => {
                        h.state = "ok";
                        h.consecutive_failures = 0;
                        h.last_success_at = Some(rfc3339_ms(now_ms()));
                    }
                    Err(e) => {
                        debug!(poller = %c.name, tenant = %c.tenant, error = %e, "poll failed");
                        h.state = "failing";
                        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                        h.last_error = Some(e);
                    }
                }
                let delay = Self::delay(c.interval_ms, h.consecutive_failures);
                let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                h.backoff_ms = ms;
                h.next_poll_at = Some(rfc3339_ms(
                    now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)),
                ));
                delay
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        info!(poller = %c.name, tenant = %c.tenant, "poller stopped");
    }

    /// This poller's newest event in history, if any.
    async fn seed(&self, state: &AppState) -> Result<Option<Last>, String> {
        let c = &self.config;
        let query = EventQuery {
            streams: Some(vec![c.stream.clone()]),
            event_type: Some(c.event_type.clone()),
            source: Some(self.source()),
            descending: true,
            limit: 1,
            ..EventQuery::default()
        };
        let page = state.store.query(&c.tenant, &query).await.map_err(|e| {
            format!(
                "cannot read the last polled value: {}",
                crate::error_chain(&e)
            )
        })?;
        Ok(page.records.first().map(|r| Last {
            id: r.event.id.clone(),
            value: r.event.data.get("value").cloned().unwrap_or(Value::Null),
        }))
    }

    /// One poll: fetch, extract, and publish when the value changed.
    async fn poll_once(
        &self,
        state: &AppState,
        client: &reqwest::Client,
        last: &mut Option<Last>,
    ) -> Result<(), String> {
        let c = &self.config;
        let res = client
            .get(&c.url)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", crate::error_chain(&e)))?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let body = res
            .bytes()
            .await
            .map_err(|e| format!("reading the body failed: {}", crate::error_chain(&e)))?;
        if body.len() > state.limits.max_body_bytes {
            return Err(format!("body over {} bytes", state.limits.max_body_bytes));
        }
        let body: Value =
            serde_json::from_slice(&body).map_err(|e| format!("body is not JSON: {e}"))?;
        let value = if c.pointer.is_empty() {
            body
        } else {
            body.pointer(&c.pointer)
                .cloned()
                .ok_or_else(|| format!("nothing at pointer `{}`", c.pointer))?
        };
        if last.as_ref().is_some_and(|l| l.value == value) {
            return Ok(());
        }
        // Another node (or this poller before a restart or replacement) may
        // have stored the change already: compare with the newest stored
        // event, and chain the id from it.
        *last = self.seed(state).await?;
        self.health().last_value = last.as_ref().map(|l| l.value.clone());
        if last.as_ref().is_some_and(|l| l.value == value) {
            return Ok(());
        }
        let id = self.event_id(last.as_ref(), &value);
        let input = json!({
            "id": id,
            "type": c.event_type,
            "stream_id": c.stream,
            "source": self.source(),
            "data": {"value": value, "previous": last.as_ref().map(|l| &l.value)},
        });
        let ctx = PublishContext::default();
        let event = crate::publish::prepare(state, &c.tenant, input, &ctx)
            .map_err(|e| format!("event refused: {}: {}", e.field, e.reason))?;
        let appended = crate::publish::publish_one(state, &c.tenant, event)
            .await
            .map_err(|e| format!("publish failed: {e}"))?;
        *last = Some(Last {
            id: appended.record.event.id.clone(),
            value: value.clone(),
        });
        let mut h = self.health();
        h.last_value = Some(value);
        if !appended.duplicate {
            h.emitted += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(Poller::delay(100, 0), Duration::from_millis(100));
        assert_eq!(Poller::delay(100, 3), Duration::from_millis(800));
        assert_eq!(Poller::delay(5000, 10), MAX_BACKOFF);
        assert_eq!(Poller::delay(5000, 40), MAX_BACKOFF);
        // An interval above the cap is kept as it is.
        assert_eq!(Poller::delay(90_000, 2), Duration::from_secs(90));
    }

    #[test]
    fn event_ids_name_a_change_alike_on_every_node() {
        let config: PollerConfig =
            toml::from_str("name = \"p\"\nurl = \"http://h/\"\ntype = \"t\"").unwrap();
        let (a, b) = (
            Poller::new(config.clone(), Origin::Api),
            Poller::new(config, Origin::Api),
        );
        let last = |id: &str, v: Value| Last {
            id: id.into(),
            value: v,
        };
        let first = a.event_id(None, &json!(1));
        assert_eq!(first, b.event_id(None, &json!(1)));
        assert!(first.starts_with("poll:p:"), "{first}");
        assert!(streambus_core::name::is_event_id(&first));
        let after = |prev: &str| a.event_id(Some(&last(prev, json!(2))), &json!(1));
        // The same value again after another change is a new event.
        assert_ne!(after(&first), first);
        assert_ne!(after("x"), after("y"));
        assert_eq!(
            after("x"),
            b.event_id(Some(&last("x", json!(2))), &json!(1))
        );
    }
}
