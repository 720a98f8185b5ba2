//! Outgoing webhooks (issue 6 point 4, SPEC §3.2, docs/WEBHOOKS.md): each
//! event that matches a webhook's filter is POSTed to its URL, signed,
//! retried with backoff, and kept in a delivery log.
//!
//! # Layout
//! - [`definition`]: a webhook as the API takes it and the catalog keeps it
//!   (`Catalog::Webhooks`), validated.
//! - [`fold`]: follows the log ([`crate::follow`]) and stores one pending
//!   delivery per (webhook, matching event) — on every node; the
//!   delivery's id is derived from the pair, so the store keeps it once.
//! - [`worker`]: claims due deliveries with a lease, makes each attempt in
//!   a task of its own (bounded by `concurrency` and `timeout_ms`, so a slow
//!   endpoint delays no other delivery), and records the result.
//! - [`send`]: one attempt's signed request and how its failure is told.
//! - [`backoff`]: when a failed attempt is tried again.
//!
//! # Why so
//! Deliveries live in the store, not in memory: the delivery log survives
//! restarts, several nodes share one log, and the claim's lease makes each
//! attempt one node's (a dead node's lease lapses and another node takes
//! over). Delivery is at least once: an attempt whose result was lost (the
//! node died after sending) is made again, with the same delivery id, which
//! receivers use to drop repeats.

pub mod backoff;
pub mod definition;
pub mod fold;
pub mod send;
pub mod worker;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use tokio::sync::Notify;

use crate::state::AppState;

/// `[webhooks]`: delivery settings shared by every webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct WebhooksConfig {
    /// Attempts before a delivery is dead, unless the webhook sets its own
    /// (1..=[`MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// Delay before the second attempt, ms; doubles with each failure.
    pub backoff_ms: u64,
    /// Longest delay between attempts, ms.
    pub backoff_max_ms: u64,
    /// One attempt's time limit (connect, send, answer), ms.
    pub timeout_ms: u64,
    /// Attempts in flight at once on this node.
    pub concurrency: usize,
    /// Attempts in flight at once on this node for one webhook (at most
    /// `concurrency`), so a slow endpoint with many deliveries leaves the
    /// rest to the others.
    pub per_webhook: usize,
    /// How long a node holds a delivery it claimed, ms; longer than
    /// `timeout_ms`. A node that dies mid-attempt delays that delivery by
    /// at most this much.
    pub lease_ms: u64,
    /// How often a node looks for due deliveries it was not told about
    /// (retries scheduled by other nodes), ms.
    pub poll_ms: u64,
}

/// The most attempts a webhook may ask for.
pub const MAX_ATTEMPTS: u32 = 50;

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_ms: 1000,
            backoff_max_ms: 300_000,
            timeout_ms: 5000,
            concurrency: 64,
            per_webhook: 16,
            lease_ms: 60_000,
            poll_ms: 1000,
        }
    }
}

/// `[webhooks]` as written, before [`WebhooksConfig::check`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Unchecked {
    max_attempts: u32,
    backoff_ms: u64,
    backoff_max_ms: u64,
    timeout_ms: u64,
    concurrency: usize,
    per_webhook: usize,
    lease_ms: u64,
    poll_ms: u64,
}

impl Default for Unchecked {
    fn default() -> Self {
        let d = WebhooksConfig::default();
        Self {
            max_attempts: d.max_attempts,
            backoff_ms: d.backoff_ms,
            backoff_max_ms: d.backoff_max_ms,
            timeout_ms: d.timeout_ms,
            concurrency: d.concurrency,
            per_webhook: d.per_webhook,
            lease_ms: d.lease_ms,
            poll_ms: d.poll_ms,
        }
    }
}

impl TryFrom<Unchecked> for WebhooksConfig {
    type Error = String;

    fn try_from(u: Unchecked) -> Result<Self, String> {
        let c = Self {
            max_attempts: u.max_attempts,
            backoff_ms: u.backoff_ms,
            backoff_max_ms: u.backoff_max_ms,
            timeout_ms: u.timeout_ms,
            concurrency: u.concurrency,
            per_webhook: u.per_webhook,
            lease_ms: u.lease_ms,
            poll_ms: u.poll_ms,
        };
        c.check()?;
        Ok(c)
    }
}

impl WebhooksConfig {
    /// Checks values that parse but make no sense (at load, with the rest of
    /// the configuration).
    ///
    /// # Errors
    /// The first bad value, named.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(format!("webhooks.max_attempts must be 1..={MAX_ATTEMPTS}"));
        }
        if self.backoff_ms == 0 || self.backoff_max_ms < self.backoff_ms {
            return Err(
                "webhooks.backoff_ms must be positive and at most webhooks.backoff_max_ms".into(),
            );
        }
        if self.timeout_ms < 10 || self.poll_ms < 10 {
            return Err("webhooks.timeout_ms and webhooks.poll_ms must be at least 10".into());
        }
        if self.concurrency == 0 || !(1..=self.concurrency).contains(&self.per_webhook) {
            return Err(
                "webhooks.concurrency must be positive, webhooks.per_webhook from 1 to it".into(),
            );
        }
        if self.lease_ms <= self.timeout_ms.saturating_add(1000) {
            return Err(
                "webhooks.lease_ms must exceed webhooks.timeout_ms by more than a second, \
                 so a lease outlasts the attempt it covers"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What the routes, the fold and the worker of one node share.
#[derive(Debug)]
pub struct Webhooks {
    /// Wakes the worker: new deliveries, a redeliver, a finished attempt.
    wake: Notify,
    /// Bumped when this node changes a definition, so the fold reloads them
    /// before the next record (other nodes' changes arrive by its reload
    /// period).
    generation: AtomicU64,
    /// The soonest retry this node scheduled, ms since the epoch
    /// (`i64::MAX`: none), so the worker wakes for it without polling.
    soonest_retry: Mutex<i64>,
    /// Spreads retries (see [`backoff`]).
    pub jitter: crate::random::Random,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            wake: Notify::new(),
            generation: AtomicU64::new(0),
            soonest_retry: Mutex::new(i64::MAX),
            jitter: crate::random::Random::seeded("webhooks"),
        }
    }
}

impl Webhooks {
    /// A definition was created, replaced or deleted on this node.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.wake();
    }

    /// There may be due deliveries: the worker looks now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The definitions' generation (see [`Webhooks::changed`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Notes a retry this node scheduled at `at_ms`.
    pub fn retry_at(&self, at_ms: i64) {
        let mut soonest = self.soonest();
        *soonest = (*soonest).min(at_ms);
    }

    /// The soonest retry noted, if any; forgotten once `now_ms` reached
    /// it (the caller claims what is due next).
    fn take_due_retry(&self, now_ms: i64) -> Option<i64> {
        let mut soonest = self.soonest();
        let at = *soonest;
        if at <= now_ms {
            *soonest = i64::MAX;
        }
        (at != i64::MAX).then_some(at)
    }

    fn soonest(&self) -> std::sync::MutexGuard<'_, i64> {
        // A poisoned lock still holds a valid number.
        self.soonest_retry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts this node's delivery fold and worker; the handle goes to the
/// routes (as an extension) so that changes take effect at once.
pub fn spawn(state: &AppState) -> Arc<Webhooks> {
    let shared = Arc::new(Webhooks::default());
    state.tasks.spawn(crate::follow::run(
        state.clone(),
        fold::DeliveryFold::new(Arc::clone(&shared)),
    ));
    state
        .tasks
        .spawn(worker::run(state.clone(), Arc::clone(&shared)));
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<WebhooksConfig, String> {
        toml::from_str::<WebhooksConfig>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_checks() {
        assert_eq!(parse("").unwrap(), WebhooksConfig::default());
        assert_eq!(parse("backoff_ms = 5").unwrap().backoff_ms, 5);
        for bad in [
            "max_attempts = 0",
            "max_attempts = 51",
            "backoff_ms = 0",
            "backoff_ms = 10\nbackoff_max_ms = 5",
            "concurrency = 0",
            "per_webhook = 0",
            "concurrency = 4\nper_webhook = 5",
            "timeout_ms = 5000\nlease_ms = 5000",
            "bogus = 1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retries_are_remembered_until_due() {
        let w = Webhooks::default();
        assert_eq!(w.take_due_retry(0), None);
        w.retry_at(500);
        w.retry_at(300);
        assert_eq!(w.take_due_retry(100), Some(300));
        assert_eq!(w.take_due_retry(100), Some(300), "kept until due");
        assert_eq!(w.take_due_retry(350), Some(300), "due: told once");
        assert_eq!(w.take_due_retry(350), None, "then forgotten");
    }
}
