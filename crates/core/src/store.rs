//! The store seam (SPEC §7): durable events, queries, and stream records.
//!
//! Every method takes the tenant explicitly and never returns another
//! tenant's rows. Backends: `SqliteStore` (embedded) and `PgStore` (cluster), in
//! the `streambus-store` crate; both run the same conformance expectations.
//!
//! Besides events and streams the store keeps the on-air catalog (issue 4):
//! event types, templates, overlays' stored subscriptions, and the lifecycle
//! — per-(event, overlay) status rows and the status inside each event's
//! stored body. Lifecycle writes are compare-and-set against the stored
//! state, using the rules of [`crate::lifecycle`].
//!
//! It also holds scheduled events (SPEC §4): an event whose `scheduled_at`
//! lies in the future is kept apart from the log until it is due, then
//! appended by the server's scheduler under its own id and removed.
//!
//! And the records of security and tenancy (SPEC §5, issue 5): API keys,
//! found by the hash of their secret ([`crate::keys`]), tenant records, and
//! the append-only audit log ([`crate::audit`]).
//!
//! And live keyed state (SPEC §2 "State", issue 6): versioned JSON
//! documents per (tenant, stream, key), written by compare-and-set with the
//! rules of [`crate::state`], each change remembered until it is announced.
//!
//! And outgoing webhook deliveries (issue 6 point 4, [`delivery`]): one row
//! per (webhook, event), inserted once whichever node folds the event,
//! claimed with a lease so each attempt is made by one node.

pub mod delivery;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, AuditQuery};
use crate::event::{Event, EventClass, Record, Status};
use crate::event_type::EventTypeDef;
use crate::keys::{ApiKey, Tenant};
use crate::lifecycle::AnimationStatus;
use crate::state::{StateDoc, StateOutcome, StateWrite};
use crate::template::Template;
use crate::validate::NewEvent;
pub use delivery::{AttemptResult, Delivery, DeliveryState};

/// Store failures, named for what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The write conflicts with stored data.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The engine cannot be reached or refused the work; retry later.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be read back.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("store closed")]
    Closed,
    /// The result of the write would be larger than allowed; nothing changed.
    #[error("too large: {0}")]
    TooLarge(String),
}

/// The result of appending one event.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The stored record (for a duplicate: the one stored first).
    pub record: Arc<Record>,
    /// True when the id was already stored: nothing new was delivered.
    pub duplicate: bool,
}

/// A history query. Results are ordered by offset; the cursor is an offset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventQuery {
    /// Only these streams (exact names); `None` for all.
    pub streams: Option<Vec<String>>,
    /// Only this type.
    pub event_type: Option<String>,
    /// Only this class.
    pub class: Option<EventClass>,
    /// Only this source.
    pub source: Option<String>,
    /// Event time at or after, ms since the epoch.
    pub start_ms: Option<i64>,
    /// Event time before, ms since the epoch.
    pub end_ms: Option<i64>,
    /// Ascending: offsets greater than this. Descending: offsets less than this.
    pub cursor: Option<u64>,
    /// Newest first when true.
    pub descending: bool,
    /// Most records to return.
    pub limit: usize,
}

/// A page of query results.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The records, in the query's order.
    pub records: Vec<Arc<Record>>,
    /// The cursor for the next page, when there may be one.
    pub next_cursor: Option<u64>,
}

/// Live-delivery state of a stream (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Delivering.
    Active,
    /// Storing, holding delivery until resumed.
    Paused,
    /// Stopped by an operator; still accepts events.
    Stopped,
}

impl StreamState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::Stopped]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A stream's stored record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamInfo {
    /// Its name.
    pub name: String,
    /// Delivery state.
    pub state: StreamState,
    /// When it was created, ms since the epoch.
    pub created_ms: i64,
    /// Offset of its newest event (0 when empty).
    pub last_offset: u64,
    /// Events it holds now.
    pub events: u64,
    /// Highest offset removed by retention (0 when none): a resume from below
    /// this cannot be complete.
    pub pruned_through: u64,
    /// While paused: the last offset delivered before the pause; what came
    /// after it is held until the stream resumes.
    pub held_after: u64,
}

/// How much history to keep (SPEC §2, Stream retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep at most this many events per stream (0: no limit).
    pub max_events: u64,
    /// Drop events older than this many ms (0: no limit).
    pub max_age_ms: i64,
}

/// An automation catalog (issue 6): rules, outgoing webhooks and pollers
/// made over the API, each a set of named JSON bodies per tenant whose shape
/// the server owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Catalog {
    /// Detectors that derive events.
    Rules,
    /// Outgoing webhooks.
    Webhooks,
    /// URLs watched for changes.
    Pollers,
}

impl Catalog {
    /// What an entry of it is called in messages.
    pub fn what(self) -> &'static str {
        match self {
            Self::Rules => "rule",
            Self::Webhooks => "webhook",
            Self::Pollers => "poller",
        }
    }
}

/// Called by a store, in offset order, after each commit.
pub type CommitHook = Arc<dyn Fn(&[Arc<Record>]) + Send + Sync>;

/// The store seam.
///
/// Contract every backend keeps:
/// - `append` makes events durable before returning; offsets are strictly
///   increasing across the store and assigned in the order of the batch.
/// - An event whose id the producer supplied is stored once per tenant; a later
///   append of the same id returns the stored record with `duplicate: true`.
/// - Queries never return another tenant's rows.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends a batch for one tenant, in order.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; nothing of the batch is stored then.
    async fn append(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError>;

    /// Stores records whose offsets were assigned elsewhere (a cluster log),
    /// skipping offsets already stored. Backends that assign offsets themselves
    /// may refuse.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn insert_records(&self, records: &[Arc<Record>]) -> Result<(), StoreError>;

    /// One event by id.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Record>>, StoreError>;

    /// History query with cursor pagination.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn query(&self, tenant: &str, query: &EventQuery) -> Result<Page, StoreError>;

    /// The newest offset stored for any tenant (0 when empty).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn head(&self) -> Result<u64, StoreError>;

    /// Every stream of the tenant.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn list_streams(&self, tenant: &str) -> Result<Vec<StreamInfo>, StoreError>;

    /// Creates the stream if missing and sets its state; `held_after` is the
    /// hold point of a pause (kept so a restart can release what was held).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn set_stream_state(
        &self,
        tenant: &str,
        stream: &str,
        state: StreamState,
        held_after: u64,
    ) -> Result<StreamInfo, StoreError>;

    /// Applies retention to every stream; returns how many events were removed.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn prune(&self, retention: Retention) -> Result<u64, StoreError>;

    /// Registers the hook called after each commit with the new records, in
    /// offset order (the embedded log's live tail).
    fn set_commit_hook(&self, hook: CommitHook);

    /// Checks that the engine answers.
    ///
    /// # Errors
    /// `Unavailable` when it does not.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes pending writes and stops accepting new ones.
    async fn close(&self);

    /// Creates or replaces the event type `def.name`; true when it was new.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn put_event_type(&self, tenant: &str, def: &EventTypeDef) -> Result<bool, StoreError>;

    /// One event type by name.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn get_event_type(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<EventTypeDef>, StoreError>;

    /// Every event type of the tenant, by name.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn list_event_types(&self, tenant: &str) -> Result<Vec<EventTypeDef>, StoreError>;

    /// Removes an event type; true when there was one.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// Creates or replaces the template `template.name`; true when it was new.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn put_template(&self, tenant: &str, template: &Template) -> Result<bool, StoreError>;

    /// One template by name.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn get_template(&self, tenant: &str, name: &str) -> Result<Option<Template>, StoreError>;

    /// Every template of the tenant, by name.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn list_templates(&self, tenant: &str) -> Result<Vec<Template>, StoreError>;

    /// Removes a template; true when there was one.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn delete_template(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// Creates or replaces the entry `name` of `catalog`; true when it was new.
    ///
    /// The catalog methods have defaults only so that wrappers and test
    /// doubles need not forward them: the default keeps nothing (reads find
    /// nothing, writes refuse). Every real backend overrides all four.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn put_entry(
        &self,
        catalog: Catalog,
        _tenant: &str,
        _name: &str,
        _body: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable(
            format!("this store keeps no {}s", catalog.what()).into(),
        ))
    }

    /// One entry of `catalog` by name.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn get_entry(
        &self,
        _catalog: Catalog,
        _tenant: &str,
        _name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(None)
    }

    /// Every entry of `catalog` for the tenant, by name.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn list_entries(
        &self,
        _catalog: Catalog,
        _tenant: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        Ok(Vec::new())
    }

    /// Removes an entry; true when there was one.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn delete_entry(
        &self,
        _catalog: Catalog,
        _tenant: &str,
        _name: &str,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Stores an overlay's subscription (the canonical filter JSON of
    /// [`crate::consumer::filter_to_json`]); true when it was new.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn put_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
        filter: &serde_json::Value,
    ) -> Result<bool, StoreError>;

    /// An overlay's stored subscription.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn get_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError>;

    /// Removes an overlay's subscription; true when there was one.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn delete_subscription(&self, tenant: &str, overlay_id: &str)
    -> Result<bool, StoreError>;

    /// Writes one (event, overlay) status row by the compare-and-set rule of
    /// [`crate::lifecycle::decide_row_write`]: a new row or a newer play is
    /// written, an older play or a repeated status keeps the stored row, and
    /// within one play the status must be an allowed transition. Returns the
    /// row stored afterwards. The event need not exist (rows may arrive before
    /// a cluster node has indexed it).
    ///
    /// # Errors
    /// `Conflict` for a transition the lifecycle does not allow (nothing
    /// changes); `Unavailable` when the engine fails.
    async fn put_animation_status(
        &self,
        tenant: &str,
        row: &AnimationStatus,
    ) -> Result<AnimationStatus, StoreError>;

    /// The status rows of one event, by overlay id.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn animation_status_by_event(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Vec<AnimationStatus>, StoreError>;

    /// The status rows of one overlay, most recently updated first, at most
    /// `limit` of them.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn animation_status_by_overlay(
        &self,
        tenant: &str,
        overlay_id: &str,
        limit: usize,
    ) -> Result<Vec<AnimationStatus>, StoreError>;

    /// Moves a stored event to `status` at `at_ms`, rewriting `status`,
    /// `started_at` and `completed_at` in its stored body
    /// ([`crate::lifecycle::apply_status`]), so later reads show it. Setting
    /// the status it already has changes nothing. Returns the stored record.
    ///
    /// # Errors
    /// `NotFound` for an unknown event; `Conflict` when the event has no
    /// lifecycle (no `status`) or the transition is not allowed (nothing
    /// changes); `Unavailable` when the engine fails.
    async fn set_event_status(
        &self,
        tenant: &str,
        event_id: &str,
        status: Status,
        at_ms: i64,
    ) -> Result<Arc<Record>, StoreError>;

    /// Holds `event` until its `scheduled_at` (SPEC §4), apart from the log:
    /// it gets no offset and reaches no subscriber while held. Idempotent on
    /// the id: when the tenant already holds an event with this id, the stored
    /// one is kept unchanged and false is returned; true when it was new.
    ///
    /// The scheduled-event methods have defaults only so that wrappers and
    /// test doubles need not forward them: the default holds nothing (reads
    /// find nothing, this refuses). Every real backend overrides all five.
    ///
    /// # Errors
    /// `Conflict` when `scheduled_at` is missing or not RFC 3339 (nothing is
    /// stored); `Unavailable` when the engine fails or cannot hold events.
    async fn put_scheduled(&self, _tenant: &str, _event: &Event) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable(
            "this store cannot hold scheduled events".into(),
        ))
    }

    /// One held event by id (`None` once it was appended, cancelled or never
    /// held).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn get_scheduled(&self, _tenant: &str, _id: &str) -> Result<Option<Event>, StoreError> {
        Ok(None)
    }

    /// The tenant's held events, soonest due first (ties by id), at most
    /// `limit` of them.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn list_scheduled(&self, _tenant: &str, _limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(Vec::new())
    }

    /// Held events of every tenant due at or before `now_ms`, soonest first
    /// (ties by tenant and id), at most `limit`, with their tenant. Reading
    /// removes nothing: the caller appends each, then deletes it, so a crash
    /// in between delivers it again (the log de-duplicates the id).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn due_scheduled(
        &self,
        _now_ms: i64,
        _limit: usize,
    ) -> Result<Vec<(String, Event)>, StoreError> {
        Ok(Vec::new())
    }

    /// Removes a held event; true when there was one.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn delete_scheduled(&self, _tenant: &str, _id: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Replaces this node's report of connection counts per stream (cluster
    /// presence). A backend that serves one node keeps nothing.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn report_presence(
        &self,
        _node: &str,
        _tenant: &str,
        _counts: &[(String, u64)],
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Connection counts per stream reported by nodes other than
    /// `exclude_node` since `fresh_since_ms`; empty on a one-node backend.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn presence(
        &self,
        _tenant: &str,
        _exclude_node: &str,
        _fresh_since_ms: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(Vec::new())
    }

    /// Stores a new API key with the hash of its secret
    /// ([`crate::keys::key_hash`]); the secret itself never reaches the
    /// store. `key.tenant` scopes it; `revoked_ms` and `last_used_ms` are
    /// stored as given (normally `None`).
    ///
    /// The key, tenant and audit methods have defaults only so that wrappers
    /// and test doubles need not forward them: the default stores nothing
    /// (reads find nothing, writes refuse). Every real backend overrides all
    /// of them.
    ///
    /// # Errors
    /// `Conflict` when a key with this id (in any tenant) or this hash is
    /// already stored (nothing changes); `Unavailable` when the engine fails
    /// or cannot hold keys.
    async fn put_api_key(&self, _key: &ApiKey, _hash: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "this store cannot hold API keys".into(),
        ))
    }

    /// The key whose secret hashes to `hash`, in whatever tenant — this is
    /// how a request's key finds its tenant. Revoked keys are returned too,
    /// so the caller can say "revoked" rather than "unknown".
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn api_key_by_hash(&self, _hash: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(None)
    }

    /// Every key of the tenant, revoked ones included, newest first (ties by
    /// id, descending).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn list_api_keys(&self, _tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        Ok(Vec::new())
    }

    /// Revokes the tenant's key `id` at `now_ms`; true when it was revoked
    /// now, false when the tenant has no such key (another tenant's key id
    /// included) or it was revoked already (its `revoked_ms` stays).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn revoke_api_key(
        &self,
        _tenant: &str,
        _id: &str,
        _now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Records that key `id` authenticated a request at `now_ms` (its
    /// `last_used_ms` only moves forward; an unknown id changes nothing).
    /// Each call is a write: callers record a key's use at most every so
    /// often, not on every request.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn touch_api_key(&self, _id: &str, _now_ms: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Creates the tenant record `name`, or replaces its display name and
    /// limits (keeping `created_ms`); true when it was new. `limits` is
    /// stored as given.
    ///
    /// # Errors
    /// `Conflict` when `name` is not a valid tenant name
    /// ([`crate::keys::check_tenant_name`]; nothing is stored);
    /// `Unavailable` when the engine fails or cannot hold tenants.
    async fn put_tenant(
        &self,
        _name: &str,
        _display_name: &str,
        _limits: &serde_json::Value,
        _now_ms: i64,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable(
            "this store cannot hold tenant records".into(),
        ))
    }

    /// One tenant record by name.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn get_tenant(&self, _name: &str) -> Result<Option<Tenant>, StoreError> {
        Ok(None)
    }

    /// Every tenant record, by name (byte order).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        Ok(Vec::new())
    }

    /// Removes a tenant record; true when there was one. Only the record:
    /// the tenant's keys, events and audit entries stay (revoke its keys
    /// first to lock it out).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn delete_tenant(&self, _name: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Appends one audit entry in `entry.tenant`; the store assigns its
    /// `seq` (the given one is ignored), increasing and never reused.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails or cannot hold an audit log.
    async fn append_audit(&self, _entry: &AuditEntry) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "this store cannot hold an audit log".into(),
        ))
    }

    /// The tenant's audit entries matching `query`, newest first (by `seq`,
    /// descending), at most `query.limit`; with the cursor for the next page
    /// (the last entry's `seq`) when the page is full, `None` when it is not.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn query_audit(
        &self,
        _tenant: &str,
        _query: &AuditQuery,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), StoreError> {
        Ok((Vec::new(), None))
    }

    /// The live state document `key` of `stream` (`None` when there is
    /// none, or it was deleted).
    ///
    /// The state methods have defaults only so that wrappers and test
    /// doubles need not forward them: the default holds no state (reads
    /// find nothing, writes refuse). Every real backend overrides all four.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn state_get(
        &self,
        _tenant: &str,
        _stream: &str,
        _key: &str,
    ) -> Result<Option<StateDoc>, StoreError> {
        Ok(None)
    }

    /// Every live state document of `stream`, by key (byte order).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn state_list(&self, _tenant: &str, _stream: &str) -> Result<Vec<StateDoc>, StoreError> {
        Ok(Vec::new())
    }

    /// Writes `key` of `stream` by compare-and-set, in one transaction:
    /// reads the stored row (tombstones included), decides with
    /// [`crate::state::plan_write`] at `now_ms`, and stores the row it
    /// returns, if any. Concurrent writes of one key (from any node) are
    /// serialised, so each real change gets the next version exactly once.
    /// A new row is stored unannounced; while it is, every write of the key
    /// stores nothing and answers `Unannounced` with its change (see
    /// [`crate::state`], "Announcing").
    ///
    /// # Errors
    /// `Conflict` when `write.expected_version` differs from the stored
    /// version; `TooLarge` when the result is over `write.max_value_bytes`
    /// (nothing changes then); `Unavailable` when the engine fails or
    /// cannot hold state.
    async fn state_write(
        &self,
        _tenant: &str,
        _stream: &str,
        _key: &str,
        _write: &StateWrite,
        _now_ms: i64,
    ) -> Result<StateOutcome, StoreError> {
        Err(StoreError::Unavailable(
            "this store cannot hold state".into(),
        ))
    }

    /// Records that the change making `version` of `key` was published; a
    /// row at another version (a later write already replaced it) is left
    /// as it is.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn state_announced(
        &self,
        _tenant: &str,
        _stream: &str,
        _key: &str,
        _version: u64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Stores new deliveries of the tenant, each once: a delivery whose id
    /// the tenant already holds is skipped and the stored row kept as it is
    /// (every node inserts the same rows). Returns how many were new.
    ///
    /// The delivery methods have defaults only so that wrappers and test
    /// doubles need not forward them: the default holds nothing (reads find
    /// nothing, this refuses). Every real backend overrides all nine.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails or cannot hold deliveries; then
    /// none of them is stored.
    async fn put_deliveries(
        &self,
        _tenant: &str,
        _deliveries: &[Delivery],
    ) -> Result<usize, StoreError> {
        Err(StoreError::Unavailable(
            "this store cannot hold webhook deliveries".into(),
        ))
    }

    /// One delivery by id.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when it does not decode.
    async fn get_delivery(&self, _tenant: &str, _id: &str) -> Result<Option<Delivery>, StoreError> {
        Ok(None)
    }

    /// The deliveries of one webhook, newest event first (ties by id,
    /// descending), only those in `state` when given, at most `limit`.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails; `Corrupt` when one does not decode.
    async fn list_deliveries(
        &self,
        _tenant: &str,
        _webhook: &str,
        _state: Option<DeliveryState>,
        _limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        Ok(Vec::new())
    }

    /// The largest event offset among the webhook's deliveries, if it has
    /// any: where a restarted node resumes creating them.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn last_delivery_offset(
        &self,
        _tenant: &str,
        _webhook: &str,
    ) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Takes up to `limit` pending deliveries of any tenant that are due
    /// (`next_attempt_ms <= now_ms`) and not leased (`lease_until_ms <=
    /// now_ms`), soonest due first, and leases them until `lease_until_ms`;
    /// returns them, with their tenant, as stored after the claim. Atomic:
    /// of concurrent claims (from any node) each row goes to at most one
    /// until its lease lapses. `lease_until_ms` must be later than `now_ms`.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails (nothing is leased then).
    async fn claim_deliveries(
        &self,
        _now_ms: i64,
        _lease_until_ms: i64,
        _limit: usize,
    ) -> Result<Vec<(String, Delivery)>, StoreError> {
        Ok(Vec::new())
    }

    /// Records one attempt of a claimed delivery: counts it, writes
    /// `result` and releases the lease, but only while the row is still
    /// pending and leased with `lease_until_ms` (the claim's token). True
    /// when written; false when the row is gone, was redelivered or was
    /// claimed again after the lease lapsed (nothing changes then).
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn finish_delivery(
        &self,
        _tenant: &str,
        _id: &str,
        _lease_until_ms: i64,
        _result: &AttemptResult,
        _now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Gives a claimed delivery back without an attempt (its node will not
    /// make one now): clears the lease and makes it due at
    /// `next_attempt_ms`, its attempts unchanged, but only while it is still
    /// pending and leased with `lease_until_ms`. True when given back.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn release_delivery(
        &self,
        _tenant: &str,
        _id: &str,
        _lease_until_ms: i64,
        _next_attempt_ms: i64,
        _now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Sends a delivery again, whatever its state: back to pending with no
    /// attempts, due at `now_ms`, its lease cleared (a result of an attempt
    /// still in flight is then dropped). Returns the stored row, or `None`
    /// when the tenant has no such delivery.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn redeliver(
        &self,
        _tenant: &str,
        _id: &str,
        _now_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        Ok(None)
    }

    /// Removes every delivery of one webhook of the tenant (the webhook was
    /// deleted); returns how many.
    ///
    /// # Errors
    /// `Unavailable` when the engine fails.
    async fn delete_deliveries(&self, _tenant: &str, _webhook: &str) -> Result<u64, StoreError> {
        Ok(0)
    }
}
