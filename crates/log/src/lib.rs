//! Event logs: the append / read-from-offset / live-tail seam of SPEC §7.
//!
//! - [`LocalLog`]: embedded mode. Appends go to the store's single writer; the
//!   store's commit hook feeds the live tail, so the tail sees records in offset
//!   order no matter how many tasks append concurrently.

mod local;

pub use local::{LocalLog, TAIL_CAPACITY};
