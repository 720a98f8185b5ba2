//! The audit log (SPEC §3.2 `GET /audit`, §5; issue 5): who changed what,
//! when, from where, and how it ended — one append-only row per
//! administrative request, per tenant.
//!
//! The store numbers entries (`seq`, increasing, never reused) and reads them
//! newest first with a `seq` cursor, like the event history
//! ([`crate::store::EventQuery`] descending). What counts as an action and
//! how targets are spelled is the server's choice; the store only filters on
//! them by equality.

use serde::{Deserialize, Serialize};

use crate::auth::Role;

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number, assigned by the store when appended (ignored on append;
    /// pass 0). Increasing in append order within a store.
    pub seq: u64,
    /// The tenant acted in; entries are read per tenant only.
    pub tenant: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Who (a token's `sub`, a key's name, `anonymous`).
    pub actor: String,
    /// The actor's role, when it authenticated.
    pub role: Option<Role>,
    /// What was done, e.g. `key.create`, `tenant.delete`, `stream.pause`.
    pub action: String,
    /// What it was done to, e.g. a key id, tenant or stream name.
    pub target: String,
    /// The client's address, when known.
    pub address: Option<String>,
    /// The HTTP status the request ended with (e.g. 201, 403).
    pub outcome: u16,
    /// Anything else worth keeping, as JSON (`null` when nothing); never a
    /// secret.
    pub detail: serde_json::Value,
}

/// Which entries [`crate::EventStore::query_audit`] returns: the tenant's,
/// newest first, matching every filter that is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// Only this actor (exact).
    pub actor: Option<String>,
    /// Only this action (exact).
    pub action: Option<String>,
    /// `at_ms` at or after this.
    pub since_ms: Option<i64>,
    /// `at_ms` before this.
    pub until_ms: Option<i64>,
    /// Only entries with `seq` below this (the previous page's cursor).
    pub cursor: Option<u64>,
    /// Most entries to return.
    pub limit: usize,
}
