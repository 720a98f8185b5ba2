//! Test fixtures: the NATS URL from the environment, a JetStream stream of
//! one's own (deleted on drop), nodes with their own SQLite stores.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use streambus_core::log::{LiveTail, LogError};
use streambus_core::store::EventStore;
use streambus_core::testsuite::{fresh_tenant, new_event};
use streambus_core::validate::NewEvent;
use streambus_core::{EventLog, Record};
use streambus_log::{JetStreamLog, JetStreamOptions};
use streambus_store::{SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// `STREAMBUS_TEST_NATS_URL`, or `None` after printing why the test is skipped.
///
/// # Panics
/// When the variable is missing and `STREAMBUS_REQUIRE_SERVICES=1`.
pub fn nats_url() -> Option<String> {
    match std::env::var("STREAMBUS_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("STREAMBUS_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "STREAMBUS_TEST_NATS_URL is required (STREAMBUS_REQUIRE_SERVICES=1)"
            );
            eprintln!("skipping: STREAMBUS_TEST_NATS_URL not set");
            None
        }
    }
}

/// Skips the test unless a NATS server is configured; yields a fresh [`Cluster`].
macro_rules! cluster_or_skip {
    () => {
        match $crate::util::nats_url() {
            Some(url) => $crate::util::Cluster::new(&url),
            None => return,
        }
    };
}
pub(crate) use cluster_or_skip;

/// One test's JetStream stream and subject prefix (random), shared by its nodes.
pub struct Cluster {
    pub opts: JetStreamOptions,
}

impl Cluster {
    /// Options with a stream name and prefix no other test uses.
    pub fn new(url: &str) -> Self {
        let suffix = fresh_tenant("t").replace('-', "_").to_uppercase();
        let mut opts = JetStreamOptions::new(url);
        opts.stream = format!("SBTEST_{suffix}");
        opts.subject_prefix = format!("sbtest_{}", suffix.to_lowercase());
        Self { opts }
    }

    /// A node with a fresh SQLite store.
    pub async fn node(&self) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        self.node_in(dir).await
    }

    /// A node whose SQLite store lives in `dir` (reopened if it exists).
    pub async fn node_in(&self, dir: TempDir) -> Node {
        let store = SqliteStore::open(SqliteOptions::new(dir.path()))
            .await
            .expect("open store");
        let store: Arc<dyn EventStore> = Arc::new(store);
        let log = JetStreamLog::connect(self.opts.clone(), Arc::clone(&store))
            .await
            .expect("connect jetstream log");
        Node { log, store, dir }
    }

    /// A raw JetStream context for checks behind the log's back.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.opts.url.as_str())
            .await
            .expect("connect nats");
        async_nats::jetstream::new(client)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Drop cannot await: delete the stream on a thread with its own runtime.
        let (url, stream) = (self.opts.url.clone(), self.opts.stream.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&stream)
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

/// One streambus node: its log and its own store.
pub struct Node {
    pub log: JetStreamLog,
    pub store: Arc<dyn EventStore>,
    pub dir: TempDir,
}

impl Node {
    /// Stops the indexer and the store; returns the store's directory.
    pub async fn shut_down(self) -> TempDir {
        self.log.close().await;
        self.store.close().await;
        self.dir
    }

    /// Waits until this node's watermark reaches `offset`.
    pub async fn wait_head(&self, offset: u64) {
        tokio::time::timeout(WAIT, async {
            while self.log.head().await.expect("head") < offset {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node did not index through {offset}"));
    }
}

/// An event on `stream` with `event_type`, and the producer's `id` if given.
pub fn event(stream: &str, event_type: &str, id: Option<&str>) -> NewEvent {
    let mut v = json!({"stream_id": stream, "type": event_type, "data": {"n": 1}});
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    new_event(v)
}

/// `n` events on `stream`.
pub fn events(stream: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event(stream, &format!("e{i}"), None))
        .collect()
}

/// The tail's next record within [`WAIT`].
pub async fn next(tail: &mut Box<dyn LiveTail>) -> Arc<Record> {
    tokio::time::timeout(WAIT, tail.next())
        .await
        .expect("tail yielded nothing in time")
        .expect("tail failed")
}

/// True when the tail yields nothing for a short while.
pub async fn quiet(tail: &mut Box<dyn LiveTail>) -> bool {
    let r: Result<Result<Arc<Record>, LogError>, _> =
        tokio::time::timeout(Duration::from_millis(300), tail.next()).await;
    r.is_err()
}
