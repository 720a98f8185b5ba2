//! This node's copy of the event-type registry (SPEC §2 "Event type"), with
//! every schema compiled once.
//!
//! The publish path looks types up here, synchronously and without a store
//! round trip ([`TypeRegistry::get`]). The store is the source of truth:
//! `POST`/`DELETE /event-types` write it and update this node's copy at
//! once; every other node reloads its copy every [`REFRESH_INTERVAL`]
//! ([`run`]), so in a cluster a change made on one node applies on the others
//! within about two seconds. A reload recompiles only the schemas whose
//! definition changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use streambus_core::event_type::CompiledType;
use streambus_core::{EventStore, StoreError};
use tracing::{debug, warn};

use crate::state::AppState;

/// How often a node reloads the registry from the store: the longest a type
/// registered (or removed) on another node goes unnoticed here.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Compiled types of one tenant, by name.
type Types = HashMap<String, Arc<CompiledType>>;

/// The node's registry: per tenant, the compiled types by name.
#[derive(Default)]
pub struct TypeRegistry {
    /// Read on every publish, written by reloads and local changes; held only
    /// for map operations, never across an await.
    tenants: RwLock<HashMap<String, Arc<Types>>>,
    /// Bumped by every local change, so a reload that read the store before
    /// the change does not undo it (it is dropped; the next one applies).
    generation: AtomicU64,
}

impl TypeRegistry {
    /// The registered type `name` of `tenant`, if any.
    pub fn get(&self, tenant: &str, name: &str) -> Option<Arc<CompiledType>> {
        let tenants = match self.tenants.read() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        tenants.get(tenant)?.get(name).cloned()
    }

    /// Adds or replaces a type just written to the store by this node.
    pub fn insert(&self, tenant: &str, compiled: Arc<CompiledType>) {
        self.change(tenant, |types| {
            types.insert(compiled.def.name.clone(), compiled);
        });
    }

    /// Forgets a type just deleted from the store by this node.
    pub fn remove(&self, tenant: &str, name: &str) {
        self.change(tenant, |types| {
            types.remove(name);
        });
    }

    fn change(&self, tenant: &str, edit: impl FnOnce(&mut Types)) {
        let mut tenants = match self.tenants.write() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut types = tenants
            .get(tenant)
            .map(|t| Types::clone(t))
            .unwrap_or_default();
        edit(&mut types);
        tenants.insert(tenant.to_owned(), Arc::new(types));
    }

    /// Reloads `tenant`'s types from the store, keeping the compiled schema
    /// of every definition that did not change. A stored schema that no
    /// longer compiles is skipped with a warning (its events then publish
    /// unchecked rather than not at all).
    ///
    /// # Errors
    /// When the store cannot list the types; the current copy stays.
    pub async fn reload(&self, store: &dyn EventStore, tenant: &str) -> Result<(), StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let defs = store.list_event_types(tenant).await?;
        let current = {
            let tenants = match self.tenants.read() {
                Ok(t) => t,
                Err(poisoned) => poisoned.into_inner(),
            };
            tenants.get(tenant).cloned().unwrap_or_default()
        };
        let mut fresh = Types::with_capacity(defs.len());
        for def in defs {
            let name = def.name.clone();
            let compiled = match current.get(&name) {
                Some(c) if c.def == def => Arc::clone(c),
                _ => match CompiledType::new(def) {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        warn!(%tenant, event_type = %name, error = %e, "stored schema does not compile");
                        continue;
                    }
                },
            };
            fresh.insert(name, compiled);
        }
        let mut tenants = match self.tenants.write() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if self.generation.load(Ordering::Acquire) != generation {
            debug!(%tenant, "registry changed during reload; the next reload applies");
            return Ok(());
        }
        tenants.insert(tenant.to_owned(), Arc::new(fresh));
        Ok(())
    }
}

/// Reloads the registry every [`REFRESH_INTERVAL`] until shutdown.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tick.tick() => {
                let tenants = match state.refresh_tenants().await {
                    Ok(t) => t,
                    Err(e) => {
                        warn!(error = %e, "cannot list tenants");
                        continue;
                    }
                };
                for tenant in tenants {
                    if let Err(e) = state.types.reload(&*state.store, &tenant).await {
                        warn!(error = %e, tenant, "cannot reload event types");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streambus_core::event_type::EventTypeDef;

    fn compiled(name: &str) -> Arc<CompiledType> {
        let def = EventTypeDef::from_json(serde_json::json!({"name": name})).expect("def");
        Arc::new(CompiledType::new(def).expect("compiles"))
    }

    #[test]
    fn local_changes_apply_at_once_and_per_tenant() {
        let r = TypeRegistry::default();
        assert!(r.get("a", "t").is_none());
        r.insert("a", compiled("t"));
        assert!(r.get("a", "t").is_some());
        assert!(r.get("b", "t").is_none());
        r.remove("a", "t");
        assert!(r.get("a", "t").is_none());
    }
}
