//! The live set of pollers (issue 6 point 1): the `[[ingest.pollers]]` of
//! the configuration file and those created over the API, keyed by
//! `(tenant, name)`, each running as its own task.
//!
//! API pollers are kept in the store's poller catalog
//! ([`Catalog::Pollers`], the [`PollerConfig`] as JSON), which is the truth:
//! a change over the API is written there first, then applied here at once
//! (the old task is cancelled through its own child of `state.shutdown`, and
//! awaited, before the new one starts). At start every tenant's catalog is
//! loaded, and it is re-read every [`RESYNC_INTERVAL`], so that in cluster
//! mode a change made on another node takes effect here too. Every node runs
//! every poller; the deterministic event ids of [`super::poller`] store each
//! change once.
//!
//! Configured pollers cannot be replaced or deleted over the API, and an API
//! poller cannot take a configured one's name in its tenant.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use streambus_core::StoreError;
use streambus_core::store::Catalog;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::{PollerConfig, PollerInvalid};
use super::poller::{Origin, Poller};
use crate::state::AppState;

/// How often a node re-reads the poller catalog, picking up changes made on
/// other nodes (cluster mode) and deleted tenants.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(3);
/// Most pollers a tenant may create over the API: each one is a task and a
/// request every `interval_ms`.
pub const MAX_POLLERS_PER_TENANT: usize = 100;
/// The longest wait for a stopped poller's task to end.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Why a poller change over the API is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollerError {
    /// A bad setting.
    #[error(transparent)]
    Invalid(#[from] PollerInvalid),
    /// `POST` of a name the tenant already uses.
    #[error("a poller named `{0}` already exists")]
    Exists(String),
    /// The name belongs to a poller of the configuration file.
    #[error("the poller `{0}` is set in the configuration file; change it there")]
    Configured(String),
    /// The tenant has [`MAX_POLLERS_PER_TENANT`] pollers already.
    #[error("a tenant may have at most {MAX_POLLERS_PER_TENANT} pollers")]
    TooMany,
    /// No such poller.
    #[error("no poller named `{0}`")]
    NotFound(String),
    /// The catalog could not be read or written.
    #[error("the poller catalog is unavailable")]
    Store(#[from] StoreError),
}

type Key = (String, String);

/// A running poller and what stops it.
struct Running {
    poller: Arc<Poller>,
    /// A child of `state.shutdown`, cancelled alone to stop this poller.
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Every poller this node runs.
#[derive(Default)]
pub struct Pollers {
    /// Held briefly, never across an await.
    running: Mutex<BTreeMap<Key, Running>>,
    /// Serialises catalog writes with the changes they make to `running`, so
    /// that concurrent requests (and the catalog pass) leave this node
    /// running what the catalog holds.
    writes: tokio::sync::Mutex<()>,
    /// Stored entries already reported as skipped, so that each catalog pass
    /// does not warn again.
    reported: Mutex<HashSet<Key>>,
}

impl Pollers {
    fn reported(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        self.reported
            .lock()
            .expect("reported pollers lock is never poisoned")
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Running>> {
        self.running
            .lock()
            .expect("running pollers lock is never poisoned")
    }

    /// Starts `config`; the caller has stopped any poller of the same tenant
    /// and name (see [`Self::replace`]).
    fn start(&self, state: &AppState, config: PollerConfig, origin: Origin) -> Arc<Poller> {
        let key = (config.tenant.clone(), config.name.clone());
        let poller = Arc::new(Poller::new(config, origin));
        let cancel = state.shutdown.child_token();
        let task = state
            .tasks
            .spawn(Arc::clone(&poller).run(state.clone(), cancel.clone()));
        let running = Running {
            poller: Arc::clone(&poller),
            cancel,
            task,
        };
        if let Some(old) = self.running().insert(key, running) {
            old.cancel.cancel();
        }
        poller
    }

    /// Stops the poller `(tenant, name)` of `config`, if one runs, then starts
    /// `config`: the two never poll side by side.
    async fn replace(&self, state: &AppState, config: PollerConfig, origin: Origin) -> Arc<Poller> {
        if let Some(old) = self.take(&config.tenant, &config.name) {
            stop(old).await;
        }
        self.start(state, config, origin)
    }

    /// Removes `(tenant, name)` from the running set, to be [`stop`]ped.
    fn take(&self, tenant: &str, name: &str) -> Option<Running> {
        self.running().remove(&(tenant.to_owned(), name.to_owned()))
    }

    /// The running poller `(tenant, name)`.
    pub fn get(&self, tenant: &str, name: &str) -> Option<Arc<Poller>> {
        self.running()
            .get(&(tenant.to_owned(), name.to_owned()))
            .map(|r| Arc::clone(&r.poller))
    }

    /// Starts every poller of the configuration file.
    pub fn start_configured(&self, state: &AppState) {
        for c in &state.config.ingest.pollers {
            self.start(state, c.clone(), Origin::Config);
        }
    }

    /// Brings this node's API pollers in step with the catalog of every
    /// tenant: starts the new, restarts the changed, stops the removed.
    ///
    /// # Errors
    /// When the tenants or a tenant's catalog cannot be listed; nothing is
    /// stopped then.
    pub async fn resync(&self, state: &AppState) -> Result<(), StoreError> {
        let _writes = self.writes.lock().await;
        let mut wanted: HashMap<Key, PollerConfig> = HashMap::new();
        for tenant in state.tenants().await? {
            for entry in state.store.list_entries(Catalog::Pollers, &tenant).await? {
                let key = (
                    tenant.clone(),
                    entry["name"].as_str().unwrap_or("").to_owned(),
                );
                let skipped = match decode(&tenant, entry) {
                    Ok(c) if is_configured(state, &tenant, &c.name) => {
                        Some("it has the name of a configured poller, which runs instead".into())
                    }
                    Ok(c) => {
                        wanted.insert(key.clone(), c);
                        None
                    }
                    Err(reason) => Some(reason),
                };
                if let Some(reason) = skipped
                    && self.reported().insert(key.clone())
                {
                    warn!(tenant = %key.0, poller = %key.1, %reason, "stored poller skipped");
                }
            }
        }
        let (mut stale, mut fresh) = (Vec::new(), Vec::new());
        {
            let running = self.running();
            for (key, r) in running.iter() {
                let keep = wanted.get(key).is_some_and(|c| *c == r.poller.config);
                if r.poller.origin == Origin::Api && !keep {
                    stale.push(key.clone());
                }
            }
            for (key, c) in wanted {
                match running.get(&key) {
                    Some(r) if r.poller.config == c => {}
                    _ => fresh.push(c),
                }
            }
        }
        for (tenant, name) in stale {
            if let Some(old) = self.take(&tenant, &name) {
                debug!(%tenant, poller = %name, "poller removed from the catalog");
                stop(old).await;
            }
        }
        for c in fresh {
            debug!(tenant = %c.tenant, poller = %c.name, "poller (re)started from the catalog");
            self.replace(state, c, Origin::Api).await;
        }
        Ok(())
    }

    /// `POST /pollers`: stores and starts a new poller.
    ///
    /// # Errors
    /// `Configured` or `Exists` for a name in use, `TooMany`, or `Store`.
    pub async fn create(
        &self,
        state: &AppState,
        config: PollerConfig,
    ) -> Result<Value, PollerError> {
        Ok(self.store(state, config, false).await?.0)
    }

    /// `PUT /pollers/{name}`: stores and (re)starts a poller; true when it
    /// is new.
    ///
    /// # Errors
    /// `Configured`, `TooMany` (when new), or `Store`.
    pub async fn put(
        &self,
        state: &AppState,
        config: PollerConfig,
    ) -> Result<(Value, bool), PollerError> {
        self.store(state, config, true).await
    }

    /// [`Self::create`] and [`Self::put`]: refuses a configured name, an
    /// existing one unless `replace`, and a new one beyond the tenant's
    /// bound, then stores and runs `config`.
    async fn store(
        &self,
        state: &AppState,
        config: PollerConfig,
        replace: bool,
    ) -> Result<(Value, bool), PollerError> {
        let _writes = self.writes.lock().await;
        refuse_configured(state, &config.tenant, &config.name)?;
        let stored = state
            .store
            .list_entries(Catalog::Pollers, &config.tenant)
            .await?;
        let exists = stored.iter().any(|e| e["name"] == config.name.as_str());
        if exists && !replace {
            return Err(PollerError::Exists(config.name));
        }
        if !exists && stored.len() >= MAX_POLLERS_PER_TENANT {
            return Err(PollerError::TooMany);
        }
        self.store_and_start(state, config).await
    }

    /// Writes `config` to the catalog and runs it (a running poller with the
    /// same settings is kept, with its health); true when the entry is new.
    async fn store_and_start(
        &self,
        state: &AppState,
        config: PollerConfig,
    ) -> Result<(Value, bool), PollerError> {
        let body = serde_json::to_value(&config)
            .expect("a PollerConfig serialises: it holds strings and integers only");
        let created = state
            .store
            .put_entry(Catalog::Pollers, &config.tenant, &config.name, &body)
            .await?;
        info!(tenant = %config.tenant, poller = %config.name, url = %config.url, created, "poller stored");
        let running = self
            .get(&config.tenant, &config.name)
            .filter(|p| p.origin == Origin::Api && p.config == config);
        let poller = match running {
            Some(p) => p,
            None => self.replace(state, config, Origin::Api).await,
        };
        Ok((poller.report(), created))
    }

    /// `DELETE /pollers/{name}`: removes and stops a poller.
    ///
    /// # Errors
    /// `Configured`, `NotFound`, or `Store`.
    pub async fn delete(
        &self,
        state: &AppState,
        tenant: &str,
        name: &str,
    ) -> Result<(), PollerError> {
        let _writes = self.writes.lock().await;
        refuse_configured(state, tenant, name)?;
        let existed = state
            .store
            .delete_entry(Catalog::Pollers, tenant, name)
            .await?;
        if let Some(old) = self.take(tenant, name) {
            stop(old).await;
        }
        if !existed {
            return Err(PollerError::NotFound(name.to_owned()));
        }
        info!(%tenant, poller = %name, "poller deleted");
        Ok(())
    }

    /// `GET /pollers`: the configured pollers of `tenant`, then its stored
    /// ones by name, each with this node's view of its health.
    ///
    /// # Errors
    /// `Store` when the catalog cannot be read.
    pub async fn list(&self, state: &AppState, tenant: &str) -> Result<Vec<Value>, PollerError> {
        let mut out: Vec<Value> = state
            .config
            .ingest
            .pollers
            .iter()
            .filter(|c| c.tenant == tenant)
            .filter_map(|c| self.get(tenant, &c.name).map(|p| p.report()))
            .collect();
        let mut stored: Vec<PollerConfig> = state
            .store
            .list_entries(Catalog::Pollers, tenant)
            .await?
            .into_iter()
            .filter_map(|e| decode(tenant, e).ok())
            .filter(|c| !is_configured(state, tenant, &c.name))
            .collect();
        stored.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(stored.iter().map(|c| self.report_of_stored(c)));
        Ok(out)
    }

    /// `GET /pollers/{name}`.
    ///
    /// # Errors
    /// `NotFound`, or `Store` when the catalog cannot be read.
    pub async fn find(
        &self,
        state: &AppState,
        tenant: &str,
        name: &str,
    ) -> Result<Value, PollerError> {
        if is_configured(state, tenant, name) {
            return self
                .get(tenant, name)
                .map(|p| p.report())
                .ok_or_else(|| PollerError::NotFound(name.to_owned()));
        }
        let entry = state
            .store
            .get_entry(Catalog::Pollers, tenant, name)
            .await?
            .and_then(|e| decode(tenant, e).ok())
            .ok_or_else(|| PollerError::NotFound(name.to_owned()))?;
        Ok(self.report_of_stored(&entry))
    }

    /// The report of a stored poller: the running one's when it runs these
    /// settings, else `pending` (another node changed it moments ago).
    fn report_of_stored(&self, c: &PollerConfig) -> Value {
        match self.get(&c.tenant, &c.name) {
            Some(p) if p.origin == Origin::Api && p.config == *c => p.report(),
            _ => Poller::pending_report(c),
        }
    }
}

/// Cancels a poller and waits (briefly) for its task to end, so that no
/// request of it is in flight when the API answers.
async fn stop(old: Running) {
    old.cancel.cancel();
    let c = &old.poller.config;
    match tokio::time::timeout(STOP_WAIT, old.task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(tenant = %c.tenant, poller = %c.name, error = %e, "poller task failed"),
        Err(_) => {
            warn!(tenant = %c.tenant, poller = %c.name, "poller task still running after being stopped")
        }
    }
}

/// Is `(tenant, name)` a poller of the configuration file?
fn is_configured(state: &AppState, tenant: &str, name: &str) -> bool {
    state
        .config
        .ingest
        .pollers
        .iter()
        .any(|c| c.tenant == tenant && c.name == name)
}

fn refuse_configured(state: &AppState, tenant: &str, name: &str) -> Result<(), PollerError> {
    if is_configured(state, tenant, name) {
        return Err(PollerError::Configured(name.to_owned()));
    }
    Ok(())
}

/// A stored entry of `tenant` as settings, or why it is not usable (written
/// by another version, or edited by hand); the catalog pass reports those.
fn decode(tenant: &str, entry: Value) -> Result<PollerConfig, String> {
    let c = serde_json::from_value::<PollerConfig>(entry).map_err(|e| e.to_string())?;
    if c.tenant != tenant {
        return Err(format!("stored with the tenant `{}`", c.tenant));
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Keeps the stored pollers in step with the catalog every
/// [`RESYNC_INTERVAL`]: in cluster mode, until shutdown, this is how a
/// change made on another node arrives; alone it only retries a failed
/// first load, until one succeeds.
pub async fn run(ingest: Arc<super::Ingest>, state: AppState) {
    let cluster = state.config.cluster.is_cluster();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + RESYNC_INTERVAL,
        RESYNC_INTERVAL,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match ingest.pollers.resync(&state).await {
            Ok(()) if !cluster => break,
            Ok(()) => {}
            Err(e) => warn!(error = %e, "cannot read the poller catalog"),
        }
    }
}
