//! `JetStreamLog`: the cluster log over NATS JetStream (SPEC §7).
//!
//! Several nodes share one JetStream stream (the log of record and the
//! cross-node fan-out) and one history database. Offsets are stream sequences,
//! so they are the same on every node.
//!
//! - `append` publishes to `<prefix>.<tenant>.<stream>.<type>` (see [`subject`])
//!   with `Nats-Msg-Id: <tenant>:<id>`, so JetStream's de-duplication window
//!   settles two nodes racing on one supplied id; then it waits until this
//!   node's indexer has stored what it published (`append.rs`).
//! - Each node runs one indexer task (`indexer.rs`): JetStream → store → live
//!   tail. `read` and `head` answer from the store and the indexer's watermark,
//!   never from JetStream, so a subscription's "read after opening the tail"
//!   never misses a record the tail already yielded.

mod append;
mod indexer;
pub mod subject;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, stream::StorageType};
use async_trait::async_trait;
use streambus_core::Record;
use streambus_core::log::{EventLog, LiveTail, LogError};
use streambus_core::store::{Appended, EventQuery, EventStore, Page};
use streambus_core::validate::NewEvent;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::local::TAIL_CAPACITY;
use indexer::{Health, Shared};

/// How long connecting may take before a dead server is reported.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `ping` waits for the stream info.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Publishes one append sends before awaiting their acks.
const PUBLISH_WINDOW: usize = 1024;
/// Unacknowledged publishes across all appends of this node. Kept below the
/// client's own in-flight limit, which would otherwise block a window midway
/// while every window waits for its acks.
const PUBLISH_INFLIGHT: usize = 4 * PUBLISH_WINDOW;

/// How to connect a [`JetStreamLog`].
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// NATS server URL (default `nats://127.0.0.1:4222`).
    pub url: String,
    /// JetStream stream holding the log, shared by every node (default `STREAMBUS`).
    pub stream: String,
    /// Subject prefix (default `sb`); the stream takes `<prefix>.>`.
    pub subject_prefix: String,
    /// How long JetStream remembers message ids for de-duplication (default 2 min).
    /// Applied when this node creates the stream.
    pub duplicate_window: Duration,
    /// Drop log entries older than this (default: keep); history stays in the
    /// store. Applied when this node creates the stream.
    pub max_age: Option<Duration>,
    /// Most records the indexer inserts in one store call (default 1000).
    pub index_batch: usize,
    /// Bound on JetStream requests and PubAcks, and on an append's wait for
    /// this node's indexer (default 5 s).
    pub publish_timeout: Duration,
}

impl JetStreamOptions {
    /// The defaults for a server URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "STREAMBUS".into(),
            subject_prefix: "sb".into(),
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            index_batch: 1000,
            publish_timeout: Duration::from_secs(5),
        }
    }
}

/// The indexer's state, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexerStatus {
    /// Highest stream sequence stored and yielded to the live tail (= `head`).
    pub watermark: u64,
    /// Whether the NATS connection is up.
    pub connected: bool,
    /// Whether the indexer task is running (false after `close`).
    pub running: bool,
    /// The failure the indexer is retrying, if any.
    pub error: Option<String>,
    /// How long it has been failing.
    pub failing_for: Option<Duration>,
}

impl IndexerStatus {
    /// Connected, running and not retrying a failure.
    pub fn is_healthy(&self) -> bool {
        self.connected && self.running && self.error.is_none()
    }
}

/// Failures specific to this backend, carried as the source of
/// [`LogError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JetStreamError {
    /// The NATS connection is down (the client keeps reconnecting).
    #[error("not connected to NATS")]
    NotConnected,
    /// An operation took longer than allowed.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The store holds offsets the JetStream stream never assigned: the
    /// stream was deleted or replaced while the history was kept. New
    /// sequences would collide with stored offsets, so the log refuses to start.
    #[error(
        "the store's head ({store_head}) is ahead of the JetStream stream's last sequence \
         ({stream_last}); was the stream recreated?"
    )]
    Diverged {
        /// The newest offset in the store.
        store_head: u64,
        /// The stream's last sequence.
        stream_last: u64,
    },
    /// A NATS or JetStream call failed.
    #[error("{what}")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
}

/// Logs a connection event; counts (re)connects for the indexer.
fn on_event(reconnects: &watch::Sender<u64>, event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            info!("connected to NATS");
            reconnects.send_modify(|n| *n += 1);
        }
        Event::Disconnected => warn!("disconnected from NATS; reconnecting"),
        Event::SlowConsumer(sid) => warn!(sid, "NATS dropped messages for a slow subscription"),
        // Every failed reconnect attempt reports one; the disconnect was logged.
        Event::ClientError(e) => debug!(error = %e, "NATS client error"),
        other => info!(event = %other, "NATS event"),
    }
}

/// Wraps a client error as `Unavailable`.
fn unavailable(what: &'static str) -> impl FnOnce(async_nats::Error) -> LogError {
    move |source| LogError::Unavailable(Box::new(JetStreamError::Nats { what, source }))
}

/// The cluster log.
pub struct JetStreamLog {
    opts: JetStreamOptions,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    shared: Arc<Shared>,
    /// Bounds unacknowledged publishes of this node (see [`PUBLISH_INFLIGHT`]).
    publish_slots: Arc<Semaphore>,
    /// The indexer task, taken by `close`.
    indexer: Mutex<Option<JoinHandle<()>>>,
}

impl JetStreamLog {
    /// Checks that NATS answers and JetStream is enabled, without creating
    /// anything (for `check-config`).
    ///
    /// # Errors
    /// `Unavailable` naming what could not be reached.
    pub async fn probe(opts: &JetStreamOptions) -> Result<(), LogError> {
        let client = async_nats::ConnectOptions::new()
            .name("streambus-check")
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(opts.url.as_str())
            .await
            .map_err(|e| unavailable("connecting to NATS")(e.into()))?;
        // A raw request: its reply decodes the same on every server version.
        let reply = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|e| unavailable("asking JetStream for account info")(e.into()))?;
        let info: serde_json::Value = serde_json::from_slice(&reply.payload)
            .map_err(|e| unavailable("reading JetStream account info")(e.into()))?;
        match info.get("error") {
            None => Ok(()),
            Some(err) => Err(LogError::Unavailable(
                format!("JetStream is not available: {err}").into(),
            )),
        }
    }

    /// Connects, gets or creates the JetStream stream and starts this node's
    /// indexer from the store's head.
    ///
    /// # Errors
    /// `Unavailable` when NATS or JetStream cannot be reached (within a few
    /// seconds); `Store` when the store's head cannot be read.
    pub async fn connect(
        opts: JetStreamOptions,
        store: Arc<dyn EventStore>,
    ) -> Result<Self, LogError> {
        let (reconnects, mut reconnected) = watch::channel(0u64);
        let client = async_nats::ConnectOptions::new()
            .name("streambus")
            .event_callback(move |event| {
                on_event(&reconnects, event);
                std::future::ready(())
            })
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(opts.publish_timeout))
            .connect(opts.url.as_str())
            .await
            .map_err(|e| unavailable("connecting to NATS")(e.into()))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(opts.publish_timeout)
            .max_ack_inflight(2 * PUBLISH_INFLIGHT)
            .build(client.clone());
        let all = subject::all_filter(&opts.subject_prefix);
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: opts.stream.clone(),
                subjects: vec![all.clone()],
                storage: StorageType::File,
                duplicate_window: opts.duplicate_window,
                max_age: opts.max_age.unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("opening the JetStream stream")(e.into()))?;
        if !stream.cached_info().config.subjects.contains(&all) {
            warn!(stream = %opts.stream, subjects = ?stream.cached_info().config.subjects,
                expected = %all, "existing JetStream stream lacks the log's subjects; publishes may fail");
        }
        let start = store.head().await?;
        let stream_last = stream.cached_info().state.last_sequence;
        if start > stream_last {
            return Err(LogError::Unavailable(Box::new(JetStreamError::Diverged {
                store_head: start,
                stream_last,
            })));
        }
        let (committed, _) = broadcast::channel(TAIL_CAPACITY);
        let (watermark, _) = watch::channel(start);
        let shared = Arc::new(Shared {
            store,
            committed,
            watermark,
            advance: Mutex::new(()),
            health: Mutex::new(Health::default()),
            shutdown: CancellationToken::new(),
        });
        // The first connect is not a reconnect.
        reconnected.borrow_and_update();
        let task = tokio::spawn(indexer::run(
            Arc::clone(&shared),
            stream.clone(),
            opts.subject_prefix.clone(),
            opts.index_batch,
            reconnected,
        ));
        info!(url = %opts.url, stream = %opts.stream, prefix = %opts.subject_prefix,
            watermark = start, "jetstream log connected");
        Ok(Self {
            opts,
            client,
            js,
            stream,
            shared,
            publish_slots: Arc::new(Semaphore::new(PUBLISH_INFLIGHT)),
            indexer: Mutex::new(Some(task)),
        })
    }

    /// The options this log was connected with.
    pub fn options(&self) -> &JetStreamOptions {
        &self.opts
    }

    /// The indexer's watermark, connection and failure, for readiness checks.
    pub fn indexer_status(&self) -> IndexerStatus {
        let (error, failing_for) = {
            let h = self.shared.health.lock().expect("health lock poisoned");
            (h.error.clone(), h.failing_since.map(|t| t.elapsed()))
        };
        let running = self
            .indexer
            .lock()
            .expect("indexer lock poisoned")
            .as_ref()
            .is_some_and(|t| !t.is_finished());
        IndexerStatus {
            watermark: self.shared.watermark(),
            connected: self.is_connected(),
            running,
            error,
            failing_for,
        }
    }

    /// How many stream sequences JetStream holds beyond this node's watermark.
    ///
    /// # Errors
    /// `Unavailable` when the stream info does not answer within a second.
    pub async fn indexer_lag(&self) -> Result<u64, LogError> {
        let info = self.stream_info().await?;
        Ok(info
            .state
            .last_sequence
            .saturating_sub(self.shared.watermark()))
    }

    /// Stops the indexer and ends every live tail with `Closed`. Idempotent.
    pub async fn close(&self) {
        self.shared.shutdown.cancel();
        let task = self.indexer.lock().expect("indexer lock poisoned").take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            warn!(error = %e, "jetstream indexer task failed");
        }
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn ensure_connected(&self) -> Result<(), LogError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(LogError::Unavailable(Box::new(
                JetStreamError::NotConnected,
            )))
        }
    }

    async fn stream_info(&self) -> Result<jetstream::stream::Info, LogError> {
        self.ensure_connected()?;
        match tokio::time::timeout(PING_TIMEOUT, self.stream.get_info()).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(unavailable("reading the JetStream stream info")(e.into())),
            Err(_) => Err(LogError::Unavailable(Box::new(JetStreamError::Timeout(
                "JetStream stream info",
            )))),
        }
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, tenant: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        self.append_events(tenant, events).await
    }

    async fn read(&self, tenant: &str, query: &EventQuery) -> Result<Page, LogError> {
        Ok(self.shared.store.query(tenant, query).await?)
    }

    fn tail(&self) -> Box<dyn LiveTail> {
        let _guard = self.shared.advance.lock().expect("advance lock poisoned");
        Box::new(JetStreamTail {
            rx: self.shared.committed.subscribe(),
            last: self.shared.watermark(),
            shutdown: self.shared.shutdown.clone(),
        })
    }

    async fn head(&self) -> Result<u64, LogError> {
        Ok(self.shared.watermark())
    }

    async fn ping(&self) -> Result<(), LogError> {
        self.stream_info().await.map(|_| ())
    }

    async fn close(&self) {
        JetStreamLog::close(self).await;
    }
}

/// A live tail: the records this node's indexer stored, in offset order.
struct JetStreamTail {
    rx: broadcast::Receiver<Arc<Record>>,
    /// The last offset yielded (at first: the watermark when opened), reported on lag.
    last: u64,
    shutdown: CancellationToken,
}

#[async_trait]
impl LiveTail for JetStreamTail {
    async fn next(&mut self) -> Result<Arc<Record>, LogError> {
        let next = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(LogError::Closed),
            next = self.rx.recv() => next,
        };
        match next {
            Ok(r) => {
                self.last = r.offset();
                Ok(r)
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Err(LogError::Lagged { after: self.last })
            }
            Err(broadcast::error::RecvError::Closed) => Err(LogError::Closed),
        }
    }
}
