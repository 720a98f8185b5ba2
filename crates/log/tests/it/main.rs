//! Integration tests of `streambus-log` (one binary, STYLE §8).
//!
//! The JetStream tests need a nats-server with JetStream at
//! `STREAMBUS_TEST_NATS_URL`; without it they print a skip line and pass
//! (`STREAMBUS_REQUIRE_SERVICES=1` makes them fail instead). Each test makes its
//! own JetStream stream and subject prefix and deletes the stream at the end.
//!
//! - `node`: one node — offsets, tail, idempotent ids, subject escaping.
//! - `cluster`: several nodes on one stream — fan-out, racing ids, catch-up.
//! - `failure`: NATS unreachable or going away.
//! - `flaky`: a store that fails under the indexer.

mod cluster;
mod failure;
mod flaky;
mod node;
mod util;
