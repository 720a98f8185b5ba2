//! Conformance suites for the backend seams (STYLE §4, SPEC §7).
//!
//! Each backend runs the same checks against its own implementation, so the
//! trait contract is stated once, here, next to the trait (centrifuge's
//! `map_broker_shared_test.go` pattern). Core has no async runtime: the checks
//! are plain `async fn`s taking `&dyn Trait`, and the backend's test binary
//! drives them on its runtime — and spawns any concurrency they need.
//!
//! Checks panic with a message on a violation, as tests do. Each uses fresh
//! tenant names, so checks may share a store, except where noted.

pub mod store;

use crate::validate::{NewEvent, PublishContext, event_from_json};

/// A fresh tenant name (`<prefix>-<uuid>`, valid for prefixes of up to 31
/// bytes), so checks never see each other's rows.
pub fn fresh_tenant(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// A valid event from JSON; panics on invalid input (tests only).
pub fn new_event(json: serde_json::Value) -> NewEvent {
    event_from_json(json, &PublishContext::default()).expect("test event must be valid")
}
