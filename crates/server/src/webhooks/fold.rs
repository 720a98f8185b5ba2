//! The delivery fold: follows the log ([`crate::follow`]) and stores one
//! pending delivery per (webhook, matching event).
//!
//! Every node runs it over the whole log and inserts the same rows; the
//! delivery id is derived from the pair, so the store keeps each once and
//! a cluster delivers an event once per webhook, however many nodes.
//!
//! Each webhook has a *floor*: events at or below it get no delivery from
//! this node. It is the larger of the webhook's `created_offset` (only
//! later events are delivered) and the newest event offset among its
//! stored deliveries. At start nothing is replayed as such: every webhook
//! is found afresh and caught up from its floor to the head, which repeats
//! nothing (what was delivered, or given up, keeps its row and its state)
//! but creates the rows a crash may have missed after the last stored one;
//! the fold stores rows in offset order, so none is missing below the
//! newest.
//!
//! Definitions are loaded at the first record and reloaded when this node
//! changes one ([`super::Webhooks::changed`]) or every [`RELOAD`] (other
//! nodes' changes). A webhook found on a reload is caught up from storage:
//! the records between its floor and what was folded already, so a
//! definition made just before a record (or on another node) misses
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use streambus_core::event::Record;
use streambus_core::filter::Filter;
use streambus_core::store::{Catalog, Delivery};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Webhooks;
use super::definition::Webhook;
use crate::api::error::ApiError;
use crate::follow::{Fold, read_range};
use crate::state::AppState;

/// How often definitions are reloaded without a local change.
pub const RELOAD: Duration = Duration::from_secs(5);
/// Offsets read (and their deliveries stored) at a time by a catch-up.
const CATCH_UP_SPAN: u64 = 10_000;
/// How long a failed insert of deliveries waits before it is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// One webhook as the fold needs it.
#[derive(Debug, Clone)]
struct Active {
    id: String,
    filter: Filter,
    /// Tells a re-created webhook (same id) from the one it replaced.
    created_offset: u64,
    /// Events at or below it get no delivery from this node.
    floor: u64,
}

/// The fold; see the module documentation.
pub struct DeliveryFold {
    shared: Arc<Webhooks>,
    /// Tenant → its webhooks.
    hooks: HashMap<String, Vec<Active>>,
    /// `None` until the first load.
    generation: Option<u64>,
    next_reload: Instant,
    /// The newest offset folded.
    folded: u64,
}

impl DeliveryFold {
    /// A fold that has loaded nothing yet.
    pub fn new(shared: Arc<Webhooks>) -> Self {
        Self {
            shared,
            hooks: HashMap::new(),
            generation: None,
            next_reload: Instant::now() + RELOAD,
            folded: 0,
        }
    }

    /// Reloads definitions when this node changed one, or they were never
    /// loaded; a failed load keeps the previous ones.
    async fn refresh(&mut self, state: &AppState, periodic: bool) {
        let generation = self.shared.generation();
        if !periodic && self.generation == Some(generation) {
            return;
        }
        self.next_reload = Instant::now() + RELOAD;
        match self.reload(state).await {
            Ok(()) => self.generation = Some(generation),
            Err(e) => warn!(error = %e, "cannot load webhook definitions; keeping the last ones"),
        }
    }

    async fn reload(&mut self, state: &AppState) -> Result<(), ApiError> {
        let mut next: HashMap<String, Vec<Active>> = HashMap::new();
        let mut found = Vec::new();
        for tenant in state.tenants().await? {
            for body in state.store.list_entries(Catalog::Webhooks, &tenant).await? {
                let hook = match Webhook::from_stored(&body) {
                    Ok(h) => h,
                    Err(e) => {
                        warn!(%tenant, error = %e, "webhook skipped");
                        continue;
                    }
                };
                let known = self.hooks.get(&tenant).and_then(|hs| {
                    hs.iter()
                        .find(|h| h.id == hook.id && h.created_offset == hook.created_offset)
                });
                let active = match known {
                    Some(k) => Active {
                        filter: hook.filter,
                        ..k.clone()
                    },
                    None => {
                        let stored = state.store.last_delivery_offset(&tenant, &hook.id).await?;
                        let active = Active {
                            floor: hook.created_offset.max(stored.unwrap_or(0)),
                            id: hook.id,
                            filter: hook.filter,
                            created_offset: hook.created_offset,
                        };
                        found.push((tenant.clone(), active.clone()));
                        active
                    }
                };
                next.entry(tenant.clone()).or_default().push(active);
            }
        }
        // Before the new set is taken: should a catch-up fail, the next
        // reload finds the same webhooks new again and repeats it.
        for (tenant, hook) in &found {
            self.catch_up(state, tenant, hook).await?;
        }
        self.hooks = next;
        Ok(())
    }

    /// Stores the deliveries of a newly found webhook for what was folded
    /// before it was found.
    async fn catch_up(
        &self,
        state: &AppState,
        tenant: &str,
        hook: &Active,
    ) -> Result<(), ApiError> {
        if hook.floor >= self.folded {
            return Ok(());
        }
        // A span of offsets at a time, stored in offset order, so a long
        // backlog is never held whole.
        let mut deliveries = 0;
        let mut from = hook.floor;
        while from < self.folded && !state.shutdown.is_cancelled() {
            let to = from.saturating_add(CATCH_UP_SPAN).min(self.folded);
            let records = read_range(state, tenant, from, to, |_| {}).await?;
            let now = streambus_core::time::now_ms();
            let rows: Vec<Delivery> = records
                .iter()
                .filter(|r| hook.filter.matches(&r.event))
                .map(|r| Delivery::new(&hook.id, &r.event.id, r.offset(), now))
                .collect();
            deliveries += rows.len();
            self.store(state, tenant, rows).await;
            from = to;
        }
        info!(%tenant, webhook = %hook.id, from = hook.floor, to = self.folded,
              deliveries, "webhook caught up");
        Ok(())
    }

    /// Inserts `rows` (retrying while storage fails: a row skipped here
    /// would never be made, see the module documentation) and wakes the
    /// worker for the new ones.
    async fn store(&self, state: &AppState, tenant: &str, rows: Vec<Delivery>) {
        if rows.is_empty() {
            return;
        }
        loop {
            match state.store.put_deliveries(tenant, &rows).await {
                Ok(0) => return,
                Ok(new) => {
                    debug!(%tenant, new, "deliveries stored");
                    self.shared.wake();
                    return;
                }
                Err(e) => {
                    warn!(%tenant, error = %e, rows = rows.len(), "cannot store deliveries; retrying");
                    tokio::select! {
                        () = state.shutdown.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Fold for DeliveryFold {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    async fn apply(&mut self, state: &AppState, records: &[Arc<Record>], _replay: bool) {
        // The same rule for the replay and the live tail: the floors keep
        // the replay from repeating deliveries (module documentation).
        self.refresh(state, false).await;
        let now = streambus_core::time::now_ms();
        let mut rows: HashMap<&str, Vec<Delivery>> = HashMap::new();
        for r in records {
            self.folded = self.folded.max(r.offset());
            let Some(hooks) = self.hooks.get(&r.tenant) else {
                continue;
            };
            for h in hooks {
                if r.offset() > h.floor && h.filter.matches(&r.event) {
                    rows.entry(r.tenant.as_str())
                        .or_default()
                        .push(Delivery::new(&h.id, &r.event.id, r.offset(), now));
                }
            }
        }
        for (tenant, rows) in rows {
            self.store(state, tenant, rows).await;
        }
    }

    /// Nothing is replayed: when the fold goes live, each webhook is found
    /// afresh and caught up from its own floor ([`DeliveryFold::catch_up`]),
    /// which reads only what may lack a delivery.
    fn replay_from(&self) -> u64 {
        u64::MAX
    }

    async fn live(&mut self, state: &AppState, folded: u64) {
        self.folded = self.folded.max(folded);
        self.refresh(state, false).await;
        // Deliveries left pending before a restart are due.
        self.shared.wake();
    }

    fn next_tick(&self) -> Option<Instant> {
        Some(self.next_reload)
    }

    async fn tick(&mut self, state: &AppState) {
        self.refresh(state, true).await;
    }
}
