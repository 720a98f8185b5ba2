//! The streambus server: HTTP, SSE and WebSocket API over the store and log
//! seams, the fan-out hub, demo generators and background tasks.
//!
//! # Layout
//! - [`config`]: settings, loaded once and validated.
//! - [`state`]: what handlers share; only the seam traits, never a backend.
//! - [`hub`]: the node's fan-out; [`subscription`]: one connection's view of it.
//! - [`overlays`]: the overlay playout queues, folded from the log.
//! - [`follow`]: the loop that folds the log into an engine's view.
//! - [`demo`]: the demo tournament and chat of `serve --demo`.
//! - [`publish`]: the one publish path; [`generator`]: demo streams.
//! - [`schedule`]: holds events scheduled for later and releases them when due.
//! - [`requests`]: tracked requests and their heartbeat timeouts (SPEC §6).
//! - [`registry`]: this node's compiled copy of the event-type registry.
//! - [`rules`]: detectors that derive events, folded from the log.
//! - [`ingest`]: signed inbound webhooks and pollers (docs/INGEST.md).
//! - [`webhooks`]: outgoing webhooks, their deliveries and retries
//!   (docs/WEBHOOKS.md).
//! - [`api`]: routes, one module per group, and the problem+json error type.
//!
//! [`open`] builds the state from a configuration; [`serve`] runs it on a bound
//! listener until the shutdown future completes, then drains (SPEC §3.5).

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod demo;
pub mod follow;
pub mod generator;
pub mod hub;
pub mod ingest;
pub mod limits;
pub mod overlays;
pub mod publish;
pub mod random;
pub mod registry;
pub mod requests;
pub mod rules;
pub mod schedule;
pub mod state;
pub mod subscription;
pub mod sync;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use streambus_core::store::{Retention, StreamState};
use streambus_core::{DEFAULT_TENANT, EventLog, EventStore, StoreError};
use streambus_log::{JetStreamLog, JetStreamOptions, LocalLog};
use streambus_store::{PgOptions, PgStore, SqliteOptions, SqliteStore};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::Config;
pub use state::AppState;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error("cannot open storage in {dir}")]
    Store {
        /// The data directory.
        dir: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The log could not be opened.
    #[error("cannot connect the log")]
    Log(#[source] streambus_core::LogError),
    /// The configuration selects something this build cannot run.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// Serving failed.
    #[error("server failed")]
    Io(#[from] std::io::Error),
}

/// Opens storage and the log for `config`: SQLite and the in-process log
/// (embedded), or PostgreSQL and NATS JetStream (cluster, SPEC §7).
///
/// # Errors
/// When the configuration is inconsistent, or an engine cannot be opened,
/// reached or migrated.
pub async fn open(config: Config) -> Result<AppState, ServeError> {
    let verifier = auth::verifier(&config.auth)?;
    let (store, log): (Arc<dyn EventStore>, Arc<dyn EventLog>) = match config.cluster.mode()? {
        config::Mode::Embedded => {
            let mut opts = SqliteOptions::new(config.server.data_dir.clone());
            opts.synchronous_full = config.storage.synchronous == config::Synchronous::Full;
            opts.batch_max = config.storage.batch_max;
            let dir = config.server.data_dir.display().to_string();
            let store = SqliteStore::open(opts)
                .await
                .map_err(|source| ServeError::Store { dir, source })?;
            let store: Arc<dyn EventStore> = Arc::new(store);
            let log = Arc::new(LocalLog::new(Arc::clone(&store)));
            (store, log)
        }
        config::Mode::Cluster {
            postgres_url,
            nats_url,
        } => {
            let c = &config.cluster;
            let mut pg = PgOptions::new(postgres_url);
            pg.max_connections = c.postgres_max_connections;
            pg.schema = Some(c.postgres_schema.clone()).filter(|s| !s.is_empty());
            let store = PgStore::open(pg)
                .await
                .map_err(|source| ServeError::Store {
                    dir: "postgresql".into(),
                    source,
                })?;
            let store: Arc<dyn EventStore> = Arc::new(store);
            let mut js = JetStreamOptions::new(nats_url);
            js.stream = c.stream.clone();
            js.subject_prefix = c.subject_prefix.clone();
            js.duplicate_window = Duration::from_secs(c.duplicate_window_secs);
            let log = JetStreamLog::connect(js, Arc::clone(&store))
                .await
                .map_err(ServeError::Log)?;
            (store, Arc::new(log))
        }
    };
    let state = AppState::new(config, store, log, verifier);
    let tenants = state.refresh_tenants().await.unwrap_or_else(|e| {
        warn!(error = %e, "cannot list tenants");
        vec![DEFAULT_TENANT.to_owned()]
    });
    for tenant in &tenants {
        match state.store.list_streams(tenant).await {
            Ok(streams) => {
                for s in streams.iter().filter(|s| s.state == StreamState::Paused) {
                    state.hub.hold(tenant, &s.name, s.held_after);
                }
            }
            Err(e) => warn!(error = %e, tenant, "cannot read stream states"),
        }
        // Loaded before the first request, so a restart never publishes a
        // registered type unchecked; kept fresh by `registry::run`.
        if let Err(e) = state.types.reload(&*state.store, tenant).await {
            warn!(error = %e, tenant, "cannot read event types");
        }
    }
    // Before the engine replays history, so the replay sees them.
    if let Err(e) = state.rules.load(&state).await {
        warn!(error = %e, "cannot load the rules");
    }
    if let Err(e) = state.overlays.rebuild(&state).await {
        warn!(error = %e, "cannot rebuild the overlay queues; they start empty");
    }
    Ok(state)
}

/// One engine's reachability, as `check-config` reports it.
#[derive(Debug)]
pub struct EngineCheck {
    /// `sqlite`, `postgresql` or `nats-jetstream`.
    pub engine: &'static str,
    /// Where it was looked for (a directory or a URL without credentials).
    pub target: String,
    /// `Err` with the reason when it could not be reached.
    pub result: Result<(), String>,
}

/// Checks each engine `config` selects, independently. Cluster engines are
/// only asked to answer (nothing is created or migrated); the embedded
/// database is opened, which creates it if missing.
///
/// # Errors
/// An inconsistent configuration.
pub async fn check_engines(config: &Config) -> Result<Vec<EngineCheck>, ServeError> {
    let describe = |e: &dyn std::error::Error| error_chain(e);
    Ok(match config.cluster.mode()? {
        config::Mode::Embedded => {
            let dir = config.server.data_dir.clone();
            let result = match SqliteStore::open(SqliteOptions::new(dir.clone())).await {
                Ok(store) => {
                    let ping = store.ping().await.map_err(|e| describe(&e));
                    store.close().await;
                    ping
                }
                Err(e) => Err(describe(&e)),
            };
            vec![EngineCheck {
                engine: "sqlite",
                target: dir.display().to_string(),
                result,
            }]
        }
        config::Mode::Cluster {
            postgres_url,
            nats_url,
        } => {
            let mut pg = PgOptions::new(postgres_url.clone());
            pg.schema = Some(config.cluster.postgres_schema.clone()).filter(|s| !s.is_empty());
            let pg_result = PgStore::probe(&pg).await.map_err(|e| describe(&e));
            let js = JetStreamOptions::new(nats_url.clone());
            let nats_result = JetStreamLog::probe(&js).await.map_err(|e| describe(&e));
            vec![
                EngineCheck {
                    engine: "postgresql",
                    target: without_password(&postgres_url),
                    result: pg_result,
                },
                EngineCheck {
                    engine: "nats-jetstream",
                    target: without_password(&nats_url),
                    result: nats_result,
                },
            ]
        }
    })
}

/// An error with its causes, `outer: inner: …`, for messages (the causes
/// hold the useful part, such as "connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// A URL with any password replaced, for messages.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then stops
/// accepting, closes connections with a proper close frame, and flushes the
/// writer before returning.
///
/// # Errors
/// I/O failures of the listener.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let hub_task =
        tokio::spawn(Arc::clone(&state.hub).run(Arc::clone(&state.log), state.shutdown.clone()));
    state.tasks.spawn(retention(state.clone()));
    state
        .tasks
        .spawn(Arc::clone(&state.overlays).run(state.clone()));
    // Every node times requests out: the log stores each timeout once.
    state
        .tasks
        .spawn(follow::run(state.clone(), requests::Follower::new(&state)));
    state.tasks.spawn(follow::run(
        state.clone(),
        rules::RulesFold::new(Arc::clone(&state.rules), state.config.cluster.is_cluster()),
    ));
    // Every node runs it: the log de-duplicates what two nodes release.
    state.tasks.spawn(schedule::run(state.clone()));
    // Only other nodes can change stream states or event types behind this
    // node's back; alone, the hub and the registry are updated in place.
    if state.config.cluster.is_cluster() {
        state.tasks.spawn(sync::run(state.clone()));
        state.tasks.spawn(registry::run(state.clone()));
    }
    if state.config.server.demo {
        for stream in generator::DEMO_STREAMS {
            state.generators.start(&state, DEFAULT_TENANT, stream);
        }
        state.tasks.spawn(demo::run(state.clone()));
    }
    let addr = listener.local_addr()?;
    info!(%addr, data_dir = %state.config.server.data_dir.display(), demo = state.config.server.demo, "streambus listening");

    // Pollers (docs/INGEST.md); their health and the recent webhook
    // signatures reach the routes as an extension.
    let ingest = ingest::Ingest::start(&state).await;
    // Outgoing webhooks (docs/WEBHOOKS.md): every node folds the log into
    // deliveries and attempts the ones it claims; the routes tell it of
    // changes through the extension.
    let webhooks = webhooks::spawn(&state);
    let app = api::router(state.clone())
        .layer(axum::Extension(ingest))
        .layer(axum::Extension(webhooks))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let token = state.shutdown.clone();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            info!("shutting down: no new connections, closing streams");
            token.cancel();
        })
        .await;

    state.shutdown.cancel();
    state.tasks.close();
    let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, state.tasks.wait())
        .await
        .is_err()
    {
        warn!("connections still open after the grace period");
    }
    let _ = hub_task.await;
    state.log.close().await;
    state.store.close().await;
    info!("storage flushed; bye");
    Ok(result?)
}

/// Applies retention periodically until shutdown.
async fn retention(state: AppState) {
    let r = &state.config.retention;
    if r.max_events_per_stream == 0 && r.max_age_secs == 0 {
        return;
    }
    let policy = Retention {
        max_events: r.max_events_per_stream,
        max_age_ms: i64::try_from(r.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(r.interval_secs.max(1)));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tick.tick() => match state.store.prune(policy).await {
                Ok(0) => {}
                Ok(n) => info!(removed = n, "retention pass"),
                Err(e) => warn!(error = %e, "retention pass failed"),
            },
        }
    }
}
