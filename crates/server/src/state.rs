//! Shared server state: configuration, the two seams, the hub, the demo
//! generators and the shutdown signal. Handlers see only the seam traits.

use std::ops::Deref;
use std::sync::Arc;

use streambus_core::{EventLog, EventStore, Limits};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::generator::Generators;
use crate::hub::Hub;
use crate::overlays::Overlays;
use crate::registry::TypeRegistry;

/// Cloneable handle on the server state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The state itself.
pub struct Inner {
    /// Loaded configuration.
    pub config: Config,
    /// Input limits derived from the configuration.
    pub limits: Limits,
    /// Queries, streams, lifecycle.
    pub store: Arc<dyn EventStore>,
    /// Append, read, live tail.
    pub log: Arc<dyn EventLog>,
    /// Fan-out.
    pub hub: Arc<Hub>,
    /// Overlay playout queues.
    pub overlays: Arc<Overlays>,
    /// Tracked requests (SPEC §6), folded from the log by `requests::Follower`.
    pub requests: Arc<crate::requests::Requests>,
    /// Demo generators per stream.
    pub generators: Generators,
    /// Registered event types, compiled; reloaded from the store.
    pub types: TypeRegistry,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Long-lived connection tasks, awaited at shutdown.
    pub tasks: TaskTracker,
    /// This node's name in cluster presence reports.
    pub node_id: String,
    /// Verifies tokens; `None` when no authentication is configured.
    pub verifier: Option<crate::auth::jwt::Verifier>,
    /// Rules and their memories.
    pub rules: Arc<crate::rules::Rules>,
    /// Rate and connection limits per key and address.
    pub limiter: Arc<crate::limits::Limiter>,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(
        config: Config,
        store: Arc<dyn EventStore>,
        log: Arc<dyn EventLog>,
        verifier: Option<crate::auth::jwt::Verifier>,
    ) -> Self {
        let limits = config.input_limits();
        let hub = Arc::new(Hub::new(config.delivery.hub_capacity));
        let overlays = Arc::new(Overlays::new(config.overlays));
        let requests = Arc::new(crate::requests::Requests::new(config.requests));
        let limiter = Arc::new(crate::limits::Limiter::new(&config.limits));
        let node_id = format!(
            "{}-{}-{}",
            config.server.listen,
            std::process::id(),
            streambus_core::time::now_ms()
        );
        Self(Arc::new(Inner {
            config,
            limits,
            store,
            log,
            hub,
            overlays,
            requests,
            generators: Generators::default(),
            types: TypeRegistry::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            node_id,
            verifier,
            limiter,
            rules: Arc::default(),
        }))
    }
}

impl AppState {
    /// Every tenant: `default` and those created by its admins.
    ///
    /// # Errors
    /// When the store cannot list them.
    pub async fn tenants(&self) -> Result<Vec<String>, streambus_core::StoreError> {
        let records = self.store.list_tenants().await?;
        Ok(tenant_names(records.into_iter().map(|t| t.name)))
    }

    /// [`Self::tenants`], also bringing this node's per-tenant limits in step
    /// with the records (another node may have changed them).
    ///
    /// # Errors
    /// When the store cannot list them.
    pub async fn refresh_tenants(&self) -> Result<Vec<String>, streambus_core::StoreError> {
        let records = self.store.list_tenants().await?;
        for t in records
            .iter()
            .filter(|t| t.name != streambus_core::DEFAULT_TENANT)
        {
            if let Err(e) = self.limiter.set_tenant(&t.name, &t.limits) {
                tracing::warn!(tenant = %t.name, error = %e, "tenant limits ignored");
            }
        }
        Ok(tenant_names(records.into_iter().map(|t| t.name)))
    }

    /// Connections per stream on every node: this node's live counts plus the
    /// fresh reports of the others (cluster mode; see [`crate::sync`]).
    pub async fn client_counts(&self, tenant: &str) -> std::collections::HashMap<String, usize> {
        let mut counts = self.hub.client_counts(tenant);
        let fresh_since = streambus_core::time::now_ms() - crate::sync::PRESENCE_FRESH_MS;
        match self
            .store
            .presence(tenant, &self.node_id, fresh_since)
            .await
        {
            Ok(others) => {
                for (stream, n) in others {
                    *counts.entry(stream).or_default() += usize::try_from(n).unwrap_or(usize::MAX);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read other nodes' client counts"),
        }
        counts
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// `default` first, then the stored tenants' names.
fn tenant_names(stored: impl Iterator<Item = String>) -> Vec<String> {
    let default = streambus_core::DEFAULT_TENANT;
    std::iter::once(default.to_owned())
        .chain(stored.filter(|n| n != default))
        .collect()
}
