//! [`PgStore`]: the cluster `EventStore` (SPEC §7) on PostgreSQL.
//!
//! # Shape
//! In cluster mode NATS JetStream is the log of record and assigns offsets;
//! every node consumes it in order and calls
//! [`insert_records`](EventStore::insert_records) with contiguous batches.
//! All nodes insert the same records, so the insert is idempotent
//! (`ON CONFLICT DO NOTHING` on the `seq` key and on `(tenant, id)`) and only
//! the rows a node actually inserted count towards the stream records and
//! reach its commit hook (`write.rs`). Queries serve history and catch-up
//! (`read.rs`); retention and stream state are in `maintain.rs`; pool, schema
//! and migrations in `connect.rs`; the on-air catalog (event types,
//! templates, overlay subscriptions) in `catalog.rs`, the lifecycle
//! (status rows, event status) in `lifecycle.rs`, held scheduled events
//! in `schedule.rs`, API keys, tenant records and the audit log in
//! `security.rs`, live keyed state in `state.rs`, and outgoing webhook
//! deliveries in `deliveries.rs`.
//!
//! [`append`](EventStore::append) serves the conformance suite and a
//! PostgreSQL-only setup: it assigns `max + 1…` inside a transaction holding a
//! transaction-level advisory lock, so nodes sharing the database never hand
//! out one offset twice. There is no group commit here: each call is one
//! transaction.
//!
//! Writes of one store are serialised by a local mutex, held until the commit
//! hook returns, so the hook sees each store's records in offset order.
//!
//! Bodies are `JSONB`. PostgreSQL normalises them (key order, spacing, number
//! spelling), so records are rebuilt from `body::text` — `append` returns what
//! `get` and `query` will later return; `insert_records` hands its hook the
//! records it was given. JSONB cannot hold U+0000: it is stored as U+FFFD
//! (`write.rs`), so one such event cannot block a cluster's ingest forever.
//!
//! Failures: connection, I/O and pool timeouts are `Unavailable` (the API's
//! 503 + Retry-After); the pool's short acquire timeout makes calls fail fast
//! while the server is down, and the pool reconnects once it is back. A
//! deadlock or serialisation failure is retried once.

mod catalog;
mod connect;
mod deliveries;
mod lifecycle;
mod maintain;
mod presence;
mod read;
mod rows;
mod schedule;
mod security;
mod state;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use streambus_core::audit::{AuditEntry, AuditQuery};
use streambus_core::event::Status;
use streambus_core::event::{Event, Record};
use streambus_core::event_type::EventTypeDef;
use streambus_core::keys::{ApiKey, Tenant};
use streambus_core::lifecycle::AnimationStatus;
use streambus_core::state::{StateDoc, StateOutcome, StateWrite};
use streambus_core::store::{
    Appended, AttemptResult, Catalog, CommitHook, Delivery, DeliveryState, EventQuery, Page,
    Retention, StreamInfo, StreamState,
};
use streambus_core::template::Template;
use streambus_core::validate::NewEvent;
use streambus_core::{EventStore, StoreError};
use tracing::error;

use crate::sql_error;

/// Default pool size of a node.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// How long a call waits for a pooled connection (or a new one) before it
/// fails with `Unavailable`: short, so requests fail fast while PostgreSQL is
/// down instead of piling up.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`EventStore::ping`] waits for `SELECT 1`.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Most rows one `INSERT … SELECT FROM UNNEST(…)` statement carries. Arrays
/// travel as nine bind parameters whatever their length, so PostgreSQL's
/// 65,535-parameter limit never applies; the bound keeps each statement's
/// memory and lock footprint moderate.
pub const MAX_ROWS_PER_INSERT: usize = 1000;
/// Events one retention step deletes (one short statement each).
pub const PRUNE_CHUNK: i64 = 2000;
/// Above this many streams a query filters one scan by `stream = ANY(…)`
/// instead of merging one index scan per stream.
pub const MAX_MERGED_STREAMS: usize = 32;

/// How to open a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?application_name=…]`.
    pub url: String,
    /// Schema holding the tables (created if missing; every connection's
    /// `search_path`), or `None` for the server's default search path. Letters,
    /// digits and `_`, not starting with a digit, at most 63 bytes.
    pub schema: Option<String>,
    /// Most pooled connections.
    pub max_connections: u32,
}

impl PgOptions {
    /// The defaults for a URL: the default search path and
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The cluster store: a PostgreSQL pool. See the module documentation.
///
/// As with `SqliteStore`, only ids marked `supplied_id` are checked for
/// duplicates by `append`; a repeated unmarked id violates the unique index and
/// fails its whole call with `Unavailable`.
pub struct PgStore {
    pool: PgPool,
    /// Key of the transaction-level advisory lock `append` holds while it
    /// assigns offsets (per schema, so test schemas do not contend).
    append_lock: i64,
    /// Serialises this store's writes until their hook returns, so the hook
    /// sees offsets in order (several tasks may write through one store).
    writes: tokio::sync::Mutex<()>,
    /// The live-tail hook; read after each commit.
    hook: RwLock<Option<CommitHook>>,
    /// Set by `close`: later calls fail with `Closed`.
    closed: AtomicBool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates the schema if missing and runs migrations under an
    /// advisory lock (several nodes may start at once). Must be called inside
    /// a tokio runtime.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached within
    /// [`ACQUIRE_TIMEOUT`], the URL or schema name is invalid, or a migration
    /// fails.
    pub async fn open(opts: PgOptions) -> Result<Self, StoreError> {
        let (pool, append_lock) = connect::open_pool(&opts).await?;
        Ok(Self {
            pool,
            append_lock,
            writes: tokio::sync::Mutex::new(()),
            hook: RwLock::new(None),
            closed: AtomicBool::new(false),
        })
    }

    /// Checks that PostgreSQL answers at `opts.url`, creating nothing.
    ///
    /// # Errors
    /// `Unavailable` when it cannot be reached within a few seconds.
    pub async fn probe(opts: &PgOptions) -> Result<(), StoreError> {
        connect::probe(opts).await
    }

    /// The connection pool, for operational queries and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// Calls the commit hook with records that were just committed.
    fn call_hook(&self, records: &[Arc<Record>]) {
        if records.is_empty() {
            return;
        }
        let hook = match self.hook.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(hook) = hook {
            // A panicking hook must not poison the write path.
            let call = std::panic::AssertUnwindSafe(|| hook(records));
            if std::panic::catch_unwind(call).is_err() {
                error!(records = records.len(), "commit hook panicked");
            }
        }
    }
}

/// Whether a failed transaction is worth one more try: a deadlock or a
/// serialisation failure, which PostgreSQL resolves by aborting one side.
fn is_retryable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

/// Offsets are `u64` in the model and `BIGINT` in PostgreSQL.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.check_open()?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        write::append(self, tenant, events).await
    }

    async fn insert_records(&self, records: &[Arc<Record>]) -> Result<(), StoreError> {
        self.check_open()?;
        if records.is_empty() {
            return Ok(());
        }
        write::insert_records(self, records).await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Record>>, StoreError> {
        self.check_open()?;
        read::get(&self.pool, tenant, id).await
    }

    async fn query(&self, tenant: &str, query: &EventQuery) -> Result<Page, StoreError> {
        self.check_open()?;
        read::query(&self.pool, tenant, query).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        self.check_open()?;
        read::head(&self.pool).await
    }

    async fn list_streams(&self, tenant: &str) -> Result<Vec<StreamInfo>, StoreError> {
        self.check_open()?;
        read::list_streams(&self.pool, tenant).await
    }

    async fn set_stream_state(
        &self,
        tenant: &str,
        stream: &str,
        state: StreamState,
        held_after: u64,
    ) -> Result<StreamInfo, StoreError> {
        self.check_open()?;
        maintain::set_stream_state(&self.pool, tenant, stream, state, held_after).await
    }

    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        self.check_open()?;
        maintain::prune(&self.pool, retention).await
    }

    fn set_commit_hook(&self, hook: CommitHook) {
        match self.hook.write() {
            Ok(mut slot) => *slot = Some(hook),
            Err(poisoned) => *poisoned.into_inner() = Some(hook),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_open()?;
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        match tokio::time::timeout(PING_TIMEOUT, probe).await {
            Ok(done) => done.map(|_| ()).map_err(sql_error),
            Err(elapsed) => Err(StoreError::Unavailable(Box::new(elapsed))),
        }
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Let a write in progress finish (and call its hook) first.
        let _idle = self.writes.lock().await;
        self.pool.close().await;
    }

    async fn put_event_type(&self, tenant: &str, def: &EventTypeDef) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::put(&self.pool, &catalog::EVENT_TYPES, tenant, &def.name, def).await
    }

    async fn get_event_type(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<EventTypeDef>, StoreError> {
        self.check_open()?;
        catalog::get(&self.pool, &catalog::EVENT_TYPES, tenant, name).await
    }

    async fn list_event_types(&self, tenant: &str) -> Result<Vec<EventTypeDef>, StoreError> {
        self.check_open()?;
        catalog::list(&self.pool, &catalog::EVENT_TYPES, tenant).await
    }

    async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::delete(&self.pool, &catalog::EVENT_TYPES, tenant, name).await
    }

    async fn put_template(&self, tenant: &str, template: &Template) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::put(
            &self.pool,
            &catalog::TEMPLATES,
            tenant,
            &template.name,
            template,
        )
        .await
    }

    async fn get_template(&self, tenant: &str, name: &str) -> Result<Option<Template>, StoreError> {
        self.check_open()?;
        catalog::get(&self.pool, &catalog::TEMPLATES, tenant, name).await
    }

    async fn list_templates(&self, tenant: &str) -> Result<Vec<Template>, StoreError> {
        self.check_open()?;
        catalog::list(&self.pool, &catalog::TEMPLATES, tenant).await
    }

    async fn delete_template(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::delete(&self.pool, &catalog::TEMPLATES, tenant, name).await
    }

    async fn put_entry(
        &self,
        catalog: Catalog,
        tenant: &str,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::put(&self.pool, catalog::table_of(catalog), tenant, name, body).await
    }

    async fn get_entry(
        &self,
        catalog: Catalog,
        tenant: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.check_open()?;
        catalog::get(&self.pool, catalog::table_of(catalog), tenant, name).await
    }

    async fn list_entries(
        &self,
        catalog: Catalog,
        tenant: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.check_open()?;
        catalog::list(&self.pool, catalog::table_of(catalog), tenant).await
    }

    async fn delete_entry(
        &self,
        catalog: Catalog,
        tenant: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::delete(&self.pool, catalog::table_of(catalog), tenant, name).await
    }

    async fn put_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
        filter: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::put(
            &self.pool,
            &catalog::SUBSCRIPTIONS,
            tenant,
            overlay_id,
            filter,
        )
        .await
    }

    async fn get_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.check_open()?;
        catalog::get(&self.pool, &catalog::SUBSCRIPTIONS, tenant, overlay_id).await
    }

    async fn delete_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        catalog::delete(&self.pool, &catalog::SUBSCRIPTIONS, tenant, overlay_id).await
    }

    async fn put_animation_status(
        &self,
        tenant: &str,
        row: &AnimationStatus,
    ) -> Result<AnimationStatus, StoreError> {
        self.check_open()?;
        lifecycle::put_row(&self.pool, tenant, row).await
    }

    async fn animation_status_by_event(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Vec<AnimationStatus>, StoreError> {
        self.check_open()?;
        lifecycle::by_event(&self.pool, tenant, event_id).await
    }

    async fn animation_status_by_overlay(
        &self,
        tenant: &str,
        overlay_id: &str,
        limit: usize,
    ) -> Result<Vec<AnimationStatus>, StoreError> {
        self.check_open()?;
        lifecycle::by_overlay(&self.pool, tenant, overlay_id, limit).await
    }

    async fn set_event_status(
        &self,
        tenant: &str,
        event_id: &str,
        status: Status,
        at_ms: i64,
    ) -> Result<Arc<Record>, StoreError> {
        self.check_open()?;
        lifecycle::set_event(&self.pool, tenant, event_id, status, at_ms).await
    }

    async fn put_scheduled(&self, tenant: &str, event: &Event) -> Result<bool, StoreError> {
        self.check_open()?;
        schedule::put(&self.pool, tenant, event).await
    }

    async fn get_scheduled(&self, tenant: &str, id: &str) -> Result<Option<Event>, StoreError> {
        self.check_open()?;
        schedule::get(&self.pool, tenant, id).await
    }

    async fn list_scheduled(&self, tenant: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.check_open()?;
        schedule::list(&self.pool, tenant, limit).await
    }

    async fn due_scheduled(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Event)>, StoreError> {
        self.check_open()?;
        schedule::due(&self.pool, now_ms, limit).await
    }

    async fn delete_scheduled(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        schedule::delete(&self.pool, tenant, id).await
    }

    async fn report_presence(
        &self,
        node: &str,
        tenant: &str,
        counts: &[(String, u64)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.check_open()?;
        presence::report(&self.pool, node, tenant, counts, now_ms).await
    }

    async fn presence(
        &self,
        tenant: &str,
        exclude_node: &str,
        fresh_since_ms: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.check_open()?;
        presence::others(&self.pool, tenant, exclude_node, fresh_since_ms).await
    }

    async fn put_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        self.check_open()?;
        security::put_key(&self.pool, key, hash).await
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.check_open()?;
        security::key_by_hash(&self.pool, hash).await
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        self.check_open()?;
        security::list_keys(&self.pool, tenant).await
    }

    async fn revoke_api_key(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        security::revoke_key(&self.pool, tenant, id, now_ms).await
    }

    async fn touch_api_key(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.check_open()?;
        security::touch_key(&self.pool, id, now_ms).await
    }

    async fn put_tenant(
        &self,
        name: &str,
        display_name: &str,
        limits: &serde_json::Value,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        security::put_tenant(&self.pool, name, display_name, limits, now_ms).await
    }

    async fn get_tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.check_open()?;
        security::get_tenant(&self.pool, name).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.check_open()?;
        security::list_tenants(&self.pool).await
    }

    async fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        security::delete_tenant(&self.pool, name).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.check_open()?;
        security::append_audit(&self.pool, entry).await
    }

    async fn query_audit(
        &self,
        tenant: &str,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), StoreError> {
        self.check_open()?;
        security::query_audit(&self.pool, tenant, query).await
    }

    async fn state_get(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
    ) -> Result<Option<StateDoc>, StoreError> {
        self.check_open()?;
        state::get(&self.pool, tenant, stream, key).await
    }

    async fn state_list(&self, tenant: &str, stream: &str) -> Result<Vec<StateDoc>, StoreError> {
        self.check_open()?;
        state::list(&self.pool, tenant, stream).await
    }

    async fn state_write(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
        write: &StateWrite,
        now_ms: i64,
    ) -> Result<StateOutcome, StoreError> {
        self.check_open()?;
        state::write(&self.pool, tenant, stream, key, write, now_ms).await
    }

    async fn state_announced(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        self.check_open()?;
        state::mark_announced(&self.pool, tenant, stream, key, version).await
    }

    async fn put_deliveries(
        &self,
        tenant: &str,
        deliveries: &[Delivery],
    ) -> Result<usize, StoreError> {
        self.check_open()?;
        deliveries::put(&self.pool, tenant, deliveries).await
    }

    async fn get_delivery(&self, tenant: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.check_open()?;
        deliveries::get(&self.pool, tenant, id).await
    }

    async fn list_deliveries(
        &self,
        tenant: &str,
        webhook: &str,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.check_open()?;
        deliveries::list(&self.pool, tenant, webhook, state, limit).await
    }

    async fn last_delivery_offset(
        &self,
        tenant: &str,
        webhook: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.check_open()?;
        deliveries::last_offset(&self.pool, tenant, webhook).await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Delivery)>, StoreError> {
        self.check_open()?;
        deliveries::claim(&self.pool, now_ms, lease_until_ms, limit).await
    }

    async fn finish_delivery(
        &self,
        tenant: &str,
        id: &str,
        lease_until_ms: i64,
        result: &AttemptResult,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        deliveries::finish(&self.pool, tenant, id, lease_until_ms, result, now_ms).await
    }

    async fn release_delivery(
        &self,
        tenant: &str,
        id: &str,
        lease_until_ms: i64,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.check_open()?;
        deliveries::release(
            &self.pool,
            tenant,
            id,
            lease_until_ms,
            next_attempt_ms,
            now_ms,
        )
        .await
    }

    async fn redeliver(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        self.check_open()?;
        deliveries::redeliver(&self.pool, tenant, id, now_ms).await
    }

    async fn delete_deliveries(&self, tenant: &str, webhook: &str) -> Result<u64, StoreError> {
        self.check_open()?;
        deliveries::delete(&self.pool, tenant, webhook).await
    }
}
