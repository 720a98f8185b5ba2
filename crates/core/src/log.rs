//! The log seam (SPEC §7): append, read from an offset, live tail.
//!
//! Embedded mode uses `LocalLog` over a store; cluster mode uses NATS
//! JetStream, where offsets are stream sequences shared by every node.

use std::sync::Arc;

use async_trait::async_trait;

use crate::event::Record;
use crate::store::{Appended, EventQuery, Page, StoreError};
use crate::validate::NewEvent;

/// Log failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The engine cannot be reached; retry later.
    #[error("log unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A live tail fell behind and skipped records; read from `next` to recover.
    #[error("live tail lagged; resume reading after offset {after}")]
    Lagged {
        /// Every record up to and including this offset was delivered.
        after: u64,
    },
    /// The log is shutting down.
    #[error("log closed")]
    Closed,
    /// The store behind the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A live tail: every committed record of every tenant, in offset order.
#[async_trait]
pub trait LiveTail: Send {
    /// The next committed record.
    ///
    /// # Errors
    /// `Lagged` when records were skipped (read them with [`EventLog::read`]),
    /// `Closed` at shutdown.
    async fn next(&mut self) -> Result<Arc<Record>, LogError>;
}

/// The log seam.
///
/// Contract: `append` returns after the events are durable, with offsets
/// strictly increasing across the log; a producer-supplied id is stored once
/// (`duplicate: true` after); the live tail yields each new record once, in
/// offset order; `read` sees every record the tail has yielded.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events for one tenant, in order.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; nothing is acknowledged then.
    async fn append(&self, tenant: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError>;

    /// Reads committed records (catch-up, resume, history).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn read(&self, tenant: &str, query: &EventQuery) -> Result<Page, LogError>;

    /// Opens the live tail; a node opens one and fans it out.
    fn tail(&self) -> Box<dyn LiveTail>;

    /// The newest committed offset.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn head(&self) -> Result<u64, LogError>;

    /// Checks that the engine answers.
    ///
    /// # Errors
    /// `Unavailable` when it does not.
    async fn ping(&self) -> Result<(), LogError>;

    /// Stops background work (e.g. a cluster node's indexer); the log is not
    /// used afterwards. The default does nothing.
    async fn close(&self) {}
}
