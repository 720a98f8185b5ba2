//! The shared `EventStore` conformance suite against `PgStore`, one test per
//! check, each in a schema of its own (skipped without PostgreSQL).

streambus_core::store_conformance_tests!(crate::pg_store_or_skip!());
