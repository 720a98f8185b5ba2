//! The shared `EventStore` conformance suite against `SqliteStore`, one test
//! per check, each on a store in a directory of its own.

streambus_core::store_conformance_tests!(crate::temp_store().await);
