//! Keeps this node's hub in step with stream states in the shared store.
//!
//! In cluster mode an operator's pause or resume reaches one node; the state
//! is written to PostgreSQL, and every other node picks it up here within one
//! [`SYNC_INTERVAL`]. Held events are released by the same per-connection
//! reads as on one node, so a node that delivered a little past the hold
//! point before it saw the pause sends nothing twice. In embedded mode the
//! hub and the store always agree and a pass changes nothing.

use std::time::Duration;

use streambus_core::DEFAULT_TENANT;
use streambus_core::store::StreamState;
use tracing::{debug, warn};

use crate::state::AppState;

/// How often a node compares its holds with the store.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// How often a node reports its connection counts.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(2);
/// Reports older than this are ignored (the node is gone).
pub const PRESENCE_FRESH_MS: i64 = 6_000;
/// Overlay connections are reported as `overlay:<id>`, which no stream name
/// can be.
pub const OVERLAY_PREFIX: &str = "overlay:";

/// Runs until shutdown, then withdraws this node's presence report.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    let mut presence = tokio::time::interval(PRESENCE_INTERVAL);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tick.tick() => {
                for tenant in tenants(&state).await {
                    if let Err(e) = pass(&state, &tenant).await {
                        warn!(error = %e, tenant, "cannot read stream states");
                    }
                }
            }
            _ = presence.tick() => {
                for tenant in tenants(&state).await {
                    report(&state, &tenant, false).await;
                }
            }
        }
    }
    for tenant in tenants(&state).await {
        report(&state, &tenant, true).await;
    }
}

/// Every tenant, or the default one when they cannot be listed.
async fn tenants(state: &AppState) -> Vec<String> {
    state.tenants().await.unwrap_or_else(|e| {
        debug!(error = %e, "cannot list tenants");
        vec![DEFAULT_TENANT.to_owned()]
    })
}

/// Reports this node's connection counts (none when `leaving`).
async fn report(state: &AppState, tenant: &str, leaving: bool) {
    let counts: Vec<(String, u64)> = if leaving {
        Vec::new()
    } else {
        state
            .hub
            .client_counts(tenant)
            .into_iter()
            .map(|(s, n)| (s, n as u64))
            .chain(
                state
                    .overlays
                    .local_counts(tenant)
                    .into_iter()
                    .map(|(o, n)| (format!("{OVERLAY_PREFIX}{o}"), n as u64)),
            )
            .collect()
    };
    let now = streambus_core::time::now_ms();
    if let Err(e) = state
        .store
        .report_presence(&state.node_id, tenant, &counts, now)
        .await
    {
        debug!(error = %e, "cannot report presence");
    }
}

/// One comparison for `tenant`.
///
/// # Errors
/// When the store cannot list the streams.
pub async fn pass(state: &AppState, tenant: &str) -> Result<(), streambus_core::StoreError> {
    let stored = state.store.list_streams(tenant).await?;
    let held = state.hub.paused(tenant);
    for s in &stored {
        match (s.state == StreamState::Paused, held.contains_key(&s.name)) {
            (true, false) => {
                debug!(stream = %s.name, held_after = s.held_after, "paused elsewhere");
                state.hub.hold(tenant, &s.name, s.held_after);
            }
            (false, true) => {
                debug!(stream = %s.name, "resumed elsewhere");
                state.hub.resume(tenant, &s.name);
            }
            _ => {}
        }
    }
    Ok(())
}
