//! Inbound integrations (issue 6 point 1, SPEC §3.2, docs/INGEST.md): signed
//! webhooks from partners and pollers that watch a partner's URL.
//!
//! - [`config`]: the `[ingest]` settings.
//! - [`signature`]: the HMAC-SHA256 scheme and its checks.
//! - [`mapping`]: a webhook body to event inputs, by JSON pointers.
//! - [`poller`]: one poller's task and health.
//! - [`registry`]: the live set of pollers, from the file and the API.
//!
//! [`Ingest`] is what the routes share with the poller tasks: the recent
//! signatures (a fast replay refusal; the deterministic event ids are the
//! durable one) and the running pollers. `serve()` builds it with
//! [`Ingest::start`] and hands it to the router as an extension, so the
//! server state stays as it is.

pub mod config;
pub mod mapping;
pub mod poller;
pub mod registry;
pub mod signature;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::state::AppState;

/// Most signatures remembered for the fast replay refusal; beyond it the
/// expired ones are dropped, then the oldest. Replays are still refused by
/// the deterministic ids, only more slowly.
pub const MAX_RECENT_SIGNATURES: usize = 10_000;

/// State shared by the ingest routes and the poller tasks.
#[derive(Default)]
pub struct Ingest {
    /// Signature (hex) → Unix second after which its timestamp is stale
    /// anyway, so it need not be remembered longer.
    recent: Mutex<HashMap<String, i64>>,
    /// Every poller this node runs, configured or created over the API.
    pub pollers: registry::Pollers,
}

impl Ingest {
    /// Starts the configured pollers and those stored in every tenant's
    /// catalog on `state.tasks`, and the task that keeps the stored ones in
    /// step with the catalog ([`registry::run`]). The catalog is read before
    /// this returns, so the first request finds every stored poller running.
    pub async fn start(state: &AppState) -> Arc<Self> {
        let ingest = Arc::new(Self::default());
        ingest.pollers.start_configured(state);
        let loaded = match ingest.pollers.resync(state).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "cannot read the poller catalog; retrying");
                false
            }
        };
        // Alone, this node makes every change itself (the routes resync at
        // once): the periodic pass is for other nodes' changes, or to retry
        // a failed first load.
        if state.config.cluster.is_cluster() || !loaded {
            state
                .tasks
                .spawn(registry::run(Arc::clone(&ingest), state.clone()));
        }
        ingest
    }

    /// True when `signature` was accepted recently.
    pub fn seen(&self, signature: &str) -> bool {
        self.recent
            .lock()
            .expect("recent signatures lock is never poisoned")
            .contains_key(signature)
    }

    /// Remembers an accepted `signature` until `until` (Unix seconds).
    pub fn remember(&self, signature: String, until: i64, now: i64) {
        let mut recent = self
            .recent
            .lock()
            .expect("recent signatures lock is never poisoned");
        if recent.len() >= MAX_RECENT_SIGNATURES {
            recent.retain(|_, t| *t >= now);
        }
        if recent.len() >= MAX_RECENT_SIGNATURES
            && let Some(oldest) = recent
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            recent.remove(&oldest);
        }
        recent.insert(signature, until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_signatures_are_bounded() {
        let ingest = Ingest::default();
        for i in 0..MAX_RECENT_SIGNATURES + 5 {
            ingest.remember(format!("s{i}"), 100 + i as i64, 0);
        }
        assert!(ingest.seen(&format!("s{}", MAX_RECENT_SIGNATURES + 4)));
        assert!(!ingest.seen("s0"));
        assert_eq!(ingest.recent.lock().unwrap().len(), MAX_RECENT_SIGNATURES);
    }
}
