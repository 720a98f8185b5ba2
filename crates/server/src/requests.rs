//! Tracked requests (SPEC §6, seed 003; issue 6 point 5): this node's tables
//! of `…:requested` events and their reports, folded from the log, and the
//! timeouts of handlers whose heartbeats stopped. `docs/REQUESTS.md`.
//!
//! [`Follower`] is a [`Fold`] run by [`crate::follow::run`]: it replays the
//! stored history, then the live tail, into [`Requests`] — per-tenant
//! [`Table`]s behind a mutex, shared with the API (`api::requests`). Every
//! record outside the internal streams (`_…`) is offered to the tables;
//! [`streambus_core::request`] decides what it means.
//!
//! Timeouts are proposed, not applied: when an open request passes its
//! deadline, [`Fold::tick`] publishes `<prefix>:failed` (reason `timeout`) in
//! the request's stream under the deterministic id
//! [`streambus_core::request::timeout_id`], and the request fails only when
//! that event comes back through the log. Every node of a cluster folds the
//! same log and may propose the same timeout; the log stores it once. A
//! request whose deadline passed while the server was down is timed out at
//! the first tick after the replay, since deadlines come from event times.
//!
//! The stored `:requested` event follows along (`status` pending → active →
//! completed | failed), written off the fold's path for live records only,
//! except for `animated` requests, whose status the overlay queues own.

mod fold;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use streambus_core::filter::Glob;
use streambus_core::request::{self, MAX_TIMEOUT_MS, Request, State, Step, Table};
use streambus_core::store::StoreError;
use tokio::sync::watch;

use crate::state::AppState;

pub use fold::Follower;

/// Longest an API call waits for this node to fold a record.
const FOLD_WAIT: Duration = Duration::from_secs(5);

/// `[requests]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct RequestsConfig {
    /// Heartbeat timeout of a request that names none, ms.
    pub heartbeat_timeout_ms: u64,
    /// Finished requests kept per tenant for `GET /requests`.
    pub keep_finished: usize,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        Self {
            heartbeat_timeout_ms: 30_000,
            keep_finished: 10_000,
        }
    }
}

/// `[requests]` as written, checked into [`RequestsConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    heartbeat_timeout_ms: u64,
    keep_finished: usize,
}

impl Default for RawConfig {
    fn default() -> Self {
        let d = RequestsConfig::default();
        Self {
            heartbeat_timeout_ms: d.heartbeat_timeout_ms,
            keep_finished: d.keep_finished,
        }
    }
}

impl TryFrom<RawConfig> for RequestsConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        if !(1..=MAX_TIMEOUT_MS).contains(&raw.heartbeat_timeout_ms) {
            return Err(format!(
                "requests.heartbeat_timeout_ms must be from 1 to {MAX_TIMEOUT_MS}"
            ));
        }
        Ok(Self {
            heartbeat_timeout_ms: raw.heartbeat_timeout_ms,
            keep_finished: raw.keep_finished,
        })
    }
}

/// Why a request could not be looked up or reported on.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No tracked request has this id (or it finished long ago and was
    /// forgotten).
    #[error("no tracked request `{0}`")]
    NotFound(String),
    /// The request already succeeded or failed.
    #[error("request `{id}` already {state}; later reports are ignored")]
    Finished {
        /// The request.
        id: String,
        /// `succeeded` or `failed`.
        state: &'static str,
    },
    /// This node has not folded the log far enough yet.
    #[error("the request tables have not caught up with {0}")]
    Behind(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `GET /requests` asks for.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only requests in this state.
    pub state: Option<State>,
    /// Only requests whose type matches.
    pub event_type: Option<Glob>,
    /// Only requests in this stream.
    pub stream: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// The node's request tables. Shared behind an `Arc` by the fold and the API.
pub struct Requests {
    config: RequestsConfig,
    /// Per-tenant tables; short sections only, never held across `.await`.
    tables: Mutex<HashMap<String, Table>>,
    /// The last offset folded, for read-your-writes in the API.
    folded: watch::Sender<u64>,
    /// True once the stored history is folded.
    live: watch::Sender<bool>,
}

impl Requests {
    /// Empty tables with `config`.
    pub fn new(config: RequestsConfig) -> Self {
        Self {
            config,
            tables: Mutex::new(HashMap::new()),
            folded: watch::channel(0).0,
            live: watch::channel(false).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Table>> {
        // A panic in a short section leaves the tables consistent enough.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request `id` of `tenant` as folded so far.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Request> {
        self.lock().get(tenant)?.get(id).cloned()
    }

    /// `tenant`'s requests matching `filter` as the API shows them, newest
    /// first.
    pub fn list(&self, tenant: &str, filter: &ListFilter) -> Vec<Value> {
        let tables = self.lock();
        let Some(table) = tables.get(tenant) else {
            return Vec::new();
        };
        table
            .newest_first()
            .filter(|r| filter.state.is_none_or(|s| r.state == s))
            .filter(|r| filter.stream.as_ref().is_none_or(|s| &r.stream == s))
            .filter(|r| {
                filter
                    .event_type
                    .as_ref()
                    .is_none_or(|g| g.matches(&r.event_type))
            })
            .take(filter.limit)
            .map(Request::view)
            .collect()
    }

    /// Waits until this node has folded `offset`.
    ///
    /// # Errors
    /// [`RequestError::Behind`] when it does not get there in time.
    pub async fn wait_folded(&self, offset: u64) -> Result<(), RequestError> {
        let mut rx = self.folded.subscribe();
        match tokio::time::timeout(FOLD_WAIT, rx.wait_for(|f| *f >= offset)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RequestError::Behind(format!("offset {offset}"))),
        }
    }

    /// Waits until the stored history is folded (just after a start).
    ///
    /// # Errors
    /// [`RequestError::Behind`] when it is not in time.
    pub async fn wait_live(&self) -> Result<(), RequestError> {
        let mut rx = self.live.subscribe();
        match tokio::time::timeout(FOLD_WAIT, rx.wait_for(|l| *l)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RequestError::Behind("the stored history".into())),
        }
    }

    /// The request `id` of `tenant`. One this node has not folded yet (just
    /// published, here or on another node) is waited for.
    ///
    /// # Errors
    /// `NotFound` for an id that names no request; `Behind` when the fold
    /// does not reach it in time; `Store` when storage fails.
    pub async fn find(
        &self,
        state: &AppState,
        tenant: &str,
        id: &str,
    ) -> Result<Request, RequestError> {
        if let Some(r) = self.get(tenant, id) {
            return Ok(r);
        }
        let not_found = || RequestError::NotFound(id.to_owned());
        let Some(record) = state.store.get(tenant, id).await? else {
            return Err(not_found());
        };
        let opens = matches!(
            request::parse_type(&record.event.event_type),
            Some((_, Step::Requested))
        );
        if !opens || is_internal(&record.event.stream_id) {
            return Err(not_found());
        }
        self.wait_folded(record.offset()).await?;
        self.get(tenant, id).ok_or_else(not_found)
    }

    fn mark_folded(&self, offset: u64) {
        self.folded.send_if_modified(|f| {
            let moved = offset > *f;
            *f = (*f).max(offset);
            moved
        });
    }
}

/// Internal streams (`_overlays`, …) hold the server's bookkeeping, never
/// requests.
fn is_internal(stream: &str) -> bool {
    stream.starts_with('_')
}
