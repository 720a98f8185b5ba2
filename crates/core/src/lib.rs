//! The streambus model and its seams, with no I/O.
//!
//! # Layout
//! - [`event`]: the canonical [`Event`] and its enums (SPEC §2).
//! - [`name`]: validated names — tenants, streams, event types, ids.
//! - [`validate`]: turns producer input (JSON) into events, naming the bad field.
//! - [`filter`]: what a consumer wants; evaluated against every delivered event.
//! - [`consumer`]: a consumer's stored subscription in its JSON form.
//! - [`event_type`]: the event-type registry entry, its defaults and its
//!   compiled JSON Schema for `data`.
//! - [`template`]: named partial events fired with parameters.
//! - [`lifecycle`]: allowed status transitions and per-overlay status rows.
//! - [`overlay`]: playout queues per overlay, folded from the log.
//! - [`wire`]: WebSocket messages shared by the server, `tail` and `bench`.
//! - [`store`] and [`log`]: the two backend seams of SPEC §7. The API layer knows
//!   only these traits; SQLite/PostgreSQL and in-process/JetStream implement them.
//! - [`keys`]: API keys and tenant records, key secrets and their hashes (SPEC §5).
//! - [`audit`]: audit-log entries and their query (SPEC §5).
//! - [`request`]: tracked requests (`…:requested` and their reports, SPEC §6).
//! - [`state`]: live keyed state — JSON merge patch (RFC 7396), versions and
//!   the compare-and-set decision every store makes (SPEC §2 "State").
//! - [`time`]: clock helpers (Unix seconds and RFC 3339 with milliseconds).
//!
//! Keeping this crate free of tokio, sqlx and axum is what lets the traits be
//! tested without a runtime and the backends be swapped without touching handlers.

pub mod audit;
pub mod auth;
pub mod consumer;
pub mod event;
pub mod event_type;
pub mod filter;
pub mod keys;
pub mod lifecycle;
pub mod log;
pub mod name;
pub mod overlay;
pub mod request;
pub mod rule;
pub mod state;
pub mod store;
pub mod template;
#[doc(hidden)]
pub mod testsuite;
pub mod time;
pub mod validate;
pub mod wire;

pub use event::{Event, EventClass, Priority, Record, Status};
pub use filter::{Filter, Glob};
pub use log::{EventLog, LogError};
pub use store::{EventStore, StoreError};
pub use validate::{Limits, ValidationError};

/// The tenant used by single-user installs (SPEC §2).
pub const DEFAULT_TENANT: &str = "default";
