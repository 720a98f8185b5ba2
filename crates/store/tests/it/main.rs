//! Integration tests of `streambus-store` (one binary, STYLE §8).
//!
//! - `suite`: the `EventStore` conformance suite of `streambus_core::testsuite`
//!   against a fresh `SqliteStore` per check.
//! - `sqlite`: what only the embedded store promises — reopen, group commit
//!   under concurrency, refusal after close.
//! - `postgres`: `PgStore` — the conformance suite, the cluster insert path and
//!   what only it promises; needs `STREAMBUS_TEST_POSTGRES_URL` (see there).
//! - `bench`: an `#[ignore]`d ingest measurement (run in release, by hand).

mod bench;
mod postgres;
mod sqlite;
mod suite;

use streambus_store::{SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// A store in a fresh temporary directory; keep the `TempDir` alive with it.
pub async fn temp_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteOptions::new(dir.path()))
        .await
        .expect("open store");
    (store, dir)
}
