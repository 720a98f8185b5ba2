//! streambus storage backends behind the `EventStore` seam (SPEC §7).
//!
//! # Layout
//! - [`sqlite`]: [`SqliteStore`], the embedded default — one SQLite file in WAL
//!   mode, one writer task doing group commit, a small read-only pool.
//! - `catalog`: what both backends share for the on-air catalog and the
//!   lifecycle (issue 4): body encoding, status columns, status changes.
//! - [`migrate`]: the schema-migration runner every SQL backend shares, with
//!   the SQL embedded from `migrations/<backend>/`.
//! - [`postgres`]: [`PgStore`], the cluster store — a PostgreSQL pool that
//!   stores the records the cluster log (JetStream) numbered, idempotently on
//!   every node, and serves history and catch-up.
//!
//! Both run the conformance suite of `streambus_core::testsuite`. This crate
//! knows nothing of HTTP or of the log: `LocalLog` is handed an
//! `Arc<dyn EventStore>` and tails it through the commit hook.

mod catalog;
pub mod migrate;
pub mod postgres;
mod query;
pub mod sqlite;

pub use postgres::{PgOptions, PgStore};
pub use sqlite::{SqliteOptions, SqliteStats, SqliteStore};

use streambus_core::StoreError;

/// Translates an sqlx failure: data that does not decode is `Corrupt`, a closed
/// pool is `Closed`, everything else is `Unavailable` (retry later, 503).
pub(crate) fn sql_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
        sqlx::Error::PoolClosed => StoreError::Closed,
        e => StoreError::Unavailable(Box::new(e)),
    }
}
