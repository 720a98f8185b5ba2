//! Event logs: the append / read-from-offset / live-tail seam of SPEC §7.
//!
//! - [`LocalLog`]: embedded mode. Appends go to the store's single writer; the
//!   store's commit hook feeds the live tail, so the tail sees records in offset
//!   order no matter how many tasks append concurrently.
//! - [`JetStreamLog`]: cluster mode. NATS JetStream is the log of record and the
//!   cross-node fan-out; each node's indexer copies the stream into its store and
//!   feeds its live tail from there, so `read` always covers what the tail yielded.

mod jetstream;
mod local;

pub use jetstream::{IndexerStatus, JetStreamError, JetStreamLog, JetStreamOptions, subject};
pub use local::{LocalLog, TAIL_CAPACITY};
