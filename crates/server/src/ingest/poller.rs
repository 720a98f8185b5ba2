//! Pollers (docs/INGEST.md "Pollers"): one task per `[[ingest.pollers]]`
//! GETs its URL every `interval_ms`, extracts a value by JSON pointer and
//! publishes `{type, stream, data: {value, previous}}` with
//! `source: "poller:<name>"` only when the value differs from the last one
//! it published. The last value is seeded from history at start, so a
//! restart does not emit an unchanged value again.
//!
//! Failures (connection refused, non-2xx, bad JSON, missing pointer, a
//! failed publish) back off exponentially: `interval × 2^n`, at most
//! [`MAX_BACKOFF`]. Health is kept in [`Poller`] for `GET /pollers`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use streambus_core::store::EventQuery;
use streambus_core::validate::PublishContext;
use tracing::{debug, info, warn};

use super::config::PollerConfig;
use crate::state::AppState;

/// The longest wait between polls after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One poller: its settings and health.
pub struct Poller {
    /// The settings.
    pub config: PollerConfig,
    /// Health, written by the task, read by `GET /pollers`; held briefly.
    health: Mutex<Health>,
}

/// What `GET /pollers` reports about one poller.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// `ok` (or not yet polled) or `failing`.
    pub state: &'static str,
    /// RFC 3339 time of the last successful poll.
    pub last_success_at: Option<String>,
    /// The last failure's description.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The last value published (or seeded from history).
    pub last_value: Option<Value>,
    /// Events this poller published since the server started.
    pub emitted: u64,
}

impl Poller {
    /// A poller that has not polled yet.
    pub fn new(config: PollerConfig) -> Self {
        Self {
            config,
            health: Mutex::new(Health {
                state: "ok",
                ..Health::default()
            }),
        }
    }

    /// The `GET /pollers` entry.
    pub fn report(&self) -> Value {
        let h = self.health().clone();
        let c = &self.config;
        json!({
            "name": c.name, "tenant": c.tenant, "url": c.url, "interval_ms": c.interval_ms,
            "stream": c.stream, "type": c.event_type, "pointer": c.pointer,
            "state": h.state, "last_success_at": h.last_success_at, "last_error": h.last_error,
            "consecutive_failures": h.consecutive_failures, "last_value": h.last_value,
            "emitted": h.emitted,
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

    /// Polls until `state.shutdown`.
    pub async fn run(self: Arc<Self>, state: AppState) {
        let c = &self.config;
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_millis(c.timeout_ms))
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                warn!(poller = %c.name, error = %e, "cannot build the poller's HTTP client");
                return;
            }
        };
        let mut last = self.seed(&state).await;
        self.health().last_value = last.clone();
        info!(poller = %c.name, url = %c.url, "poller started");
        loop {
            // A slow partner must not hold up shutdown for `timeout_ms`.
            let result = tokio::select! {
                _ = state.shutdown.cancelled() => break,
                r = self.poll_once(&state, &client, &mut last) => r,
            };
            let failures = {
                let mut h = self.health();
                match result {
                    Ok(()) => {
                        h.state = "ok";
                        h.consecutive_failures = 0;
                        h.last_success_at = Some(streambus_core::time::rfc3339_ms(
                            streambus_core::time::now_ms(),
                        ));
                    }
                    Err(e) => {
                        debug!(poller = %c.name, error = %e, "poll failed");
                        h.state = "failing";
                        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                        h.last_error = Some(e);
                    }
                }
                h.consecutive_failures
            };
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Self::delay(c.interval_ms, failures)) => {}
            }
        }
    }

    /// The value of this poller's newest event in history, if any.
    async fn seed(&self, state: &AppState) -> Option<Value> {
        let c = &self.config;
        let query = EventQuery {
            streams: Some(vec![c.stream.clone()]),
            event_type: Some(c.event_type.clone()),
            source: Some(self.source()),
            descending: true,
            limit: 1,
            ..EventQuery::default()
        };
        match state.store.query(&c.tenant, &query).await {
            Ok(page) => page
                .records
                .first()
                .and_then(|r| r.event.data.get("value").cloned()),
            Err(e) => {
                warn!(poller = %c.name, error = %e, "cannot read the last polled value");
                None
            }
        }
    }

    /// One poll: fetch, extract, and publish when the value changed.
    async fn poll_once(
        &self,
        state: &AppState,
        client: &reqwest::Client,
        last: &mut Option<Value>,
    ) -> Result<(), String> {
        let c = &self.config;
        let res = client
            .get(&c.url)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", chain(&e)))?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let body = res
            .bytes()
            .await
            .map_err(|e| format!("reading the body failed: {}", chain(&e)))?;
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
        if last.as_ref() == Some(&value) {
            return Ok(());
        }
        let source = self.source();
        let input = json!({
            "type": c.event_type,
            "stream_id": c.stream,
            "source": source,
            "data": {"value": value, "previous": last.clone()},
        });
        let ctx = PublishContext::default();
        let event = crate::publish::prepare(state, &c.tenant, input, &ctx)
            .map_err(|e| format!("event refused: {}: {}", e.field, e.reason))?;
        crate::publish::publish_one(state, &c.tenant, event)
            .await
            .map_err(|e| format!("publish failed: {e}"))?;
        *last = Some(value.clone());
        let mut h = self.health();
        h.last_value = Some(value);
        h.emitted += 1;
        Ok(())
    }
}

/// An error with its causes, for `last_error`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Starts every configured poller on `state.tasks`; returns them for
/// `GET /pollers`.
pub fn spawn_all(state: &AppState) -> Vec<Arc<Poller>> {
    state
        .config
        .ingest
        .pollers
        .iter()
        .map(|c| {
            let poller = Arc::new(Poller::new(c.clone()));
            state.tasks.spawn(Arc::clone(&poller).run(state.clone()));
            poller
        })
        .collect()
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
}
