//! `LocalLog`: the in-process log over an [`EventStore`].
//!
//! The store assigns offsets and calls the commit hook from its writer after
//! each commit; the hook pushes the records into a tokio broadcast channel that
//! live tails read. A tail that falls more than [`TAIL_CAPACITY`] records
//! behind gets [`LogError::Lagged`] and recovers by reading the store.

use std::sync::Arc;

use async_trait::async_trait;
use streambus_core::Record;
use streambus_core::log::{EventLog, LiveTail, LogError};
use streambus_core::store::{Appended, EventQuery, EventStore, Page};
use streambus_core::validate::NewEvent;
use tokio::sync::broadcast;

/// Records a live tail may fall behind before it must catch up from the store.
pub const TAIL_CAPACITY: usize = 65_536;

/// The embedded log.
pub struct LocalLog {
    store: Arc<dyn EventStore>,
    /// Committed records, in offset order, from the store's writer.
    committed: broadcast::Sender<Arc<Record>>,
}

impl LocalLog {
    /// A log over `store`; registers the store's commit hook.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        let (committed, _) = broadcast::channel(TAIL_CAPACITY);
        let sender = committed.clone();
        store.set_commit_hook(Arc::new(move |records: &[Arc<Record>]| {
            for r in records {
                // No receiver just means no tail is open yet.
                let _ = sender.send(Arc::clone(r));
            }
        }));
        Self { store, committed }
    }
}

#[async_trait]
impl EventLog for LocalLog {
    async fn append(&self, tenant: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        Ok(self.store.append(tenant, events).await?)
    }

    async fn read(&self, tenant: &str, query: &EventQuery) -> Result<Page, LogError> {
        Ok(self.store.query(tenant, query).await?)
    }

    fn tail(&self) -> Box<dyn LiveTail> {
        Box::new(LocalTail {
            rx: self.committed.subscribe(),
            last: 0,
        })
    }

    async fn head(&self) -> Result<u64, LogError> {
        Ok(self.store.head().await?)
    }

    async fn ping(&self) -> Result<(), LogError> {
        Ok(self.store.ping().await?)
    }
}

struct LocalTail {
    rx: broadcast::Receiver<Arc<Record>>,
    /// The last offset yielded, reported on lag.
    last: u64,
}

#[async_trait]
impl LiveTail for LocalTail {
    async fn next(&mut self) -> Result<Arc<Record>, LogError> {
        match self.rx.recv().await {
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
