//! [`SqliteStore`]: the embedded `EventStore` (SPEC §7) — one SQLite file in
//! WAL mode under the data directory.
//!
//! # Shape
//! SQLite allows one writer at a time, so every write goes through one task
//! (`writer.rs`) that owns the only read-write connection. Callers serialise
//! their events (the CPU-heavy part) on their own tasks, then queue a request
//! on a bounded channel; the writer drains whatever is queued into one
//! transaction (group commit, SPEC §7/§9), assigns offsets from an in-memory
//! counter, commits, calls the commit hook (the embedded log's live tail) and
//! only then answers. Reads never wait for the writer: they run on a small pool
//! of read-only connections, which WAL lets proceed beside the writer
//! (`read.rs`). WAL checkpoints run on a task of their own (`checkpoint.rs`) so
//! they never stall a commit; retention is chunked (`maintain.rs`).
//!
//! Durability: with WAL and `synchronous=NORMAL` (the default) a committed
//! transaction survives the process being killed; `synchronous=FULL` also
//! survives power loss at some cost per commit.
//!
//! The on-air catalog (event types, templates, overlay subscriptions) and
//! the lifecycle writes run on the writer task too, as short jobs between
//! group commits (`catalog.rs`, `lifecycle.rs`), and so do the writes of
//! held scheduled events (`schedule.rs`) and of API keys, tenant records and
//! the audit log (`security.rs`), of live keyed state (`state.rs`), and of
//! outgoing webhook deliveries (`deliveries.rs`).
//! Options, tunables and counters are in `options.rs`.

mod catalog;
mod checkpoint;
mod deliveries;
mod lifecycle;
mod maintain;
mod options;
mod pipe;
mod read;
mod schedule;
mod security;
mod state;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
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
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::sql_error;
use checkpoint::Checkpointer;
use options::AUTOCHECKPOINT_PAGES;
pub use options::{
    BUSY_TIMEOUT, DB_FILE, DEFAULT_BATCH_MAX, DEFAULT_QUEUE, PAGE_SIZE, PRUNE_CHUNK,
    READ_CONNECTIONS, SqliteOptions, SqliteStats,
};
use writer::{Pending, Request, Writer};

/// State shared by the store handle and its writer task.
#[derive(Default)]
pub(crate) struct Shared {
    /// The newest committed offset; written only by the writer after COMMIT so
    /// `head()` needs no database round trip.
    pub(crate) head: AtomicU64,
    /// Append transactions committed.
    pub(crate) commits: AtomicU64,
    /// Events those transactions stored.
    pub(crate) events: AtomicU64,
    /// The live-tail hook; read by the writer after each commit.
    pub(crate) hook: RwLock<Option<CommitHook>>,
    /// Set by `close`: new writes are refused before they reach the queue.
    pub(crate) closed: AtomicBool,
}

/// The embedded store: SQLite in WAL mode, one group-committing writer task and
/// a read-only pool. See the module documentation for the shape.
///
/// Only ids marked `supplied_id` are checked for duplicates (SPEC §9: the
/// idempotency lookup only where a producer supplied the id). Any id the
/// server did not just generate — a producer's key, a rule's deterministic id
/// — must be marked so; a repeated unmarked id violates the unique index and
/// fails its whole group-commit transaction with `Unavailable`.
pub struct SqliteStore {
    /// Requests to the writer task (bounded: backpressure on publishers).
    tx: mpsc::Sender<Request>,
    /// Read-only connections; WAL lets them read while the writer commits.
    reads: SqlitePool,
    shared: Arc<Shared>,
    /// The writer task, awaited by `close` so that it returns after the flush.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The WAL checkpoint task (off the writer's path), stopped by `close`/drop.
    checkpointer: Mutex<Option<Checkpointer>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // The writer stops by itself once its queue's sender is gone; the
        // checkpoint task has to be told.
        let slot = match self.checkpointer.get_mut() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = slot.as_ref() {
            c.signal();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("head", &self.shared.head.load(Ordering::Relaxed))
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/streambus.db`, runs migrations and
    /// starts the writer task. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// `Unavailable` when the directory or database cannot be opened or a
    /// migration fails.
    pub async fn open(opts: SqliteOptions) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(&opts.data_dir)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let path = opts.data_dir.join(DB_FILE);
        let synchronous = if opts.synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(synchronous)
            .pragma("temp_store", "memory");
        let write_opts = base
            .clone()
            .create_if_missing(true)
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            // 64 MiB of page cache: the writer touches the right edge of three
            // B-trees, keeping them hot avoids re-reading interior pages.
            .pragma("cache_size", "-65536")
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
            .statement_cache_capacity(128);
        let mut conn: SqliteConnection = write_opts.connect().await.map_err(sql_error)?;
        let applied =
            crate::migrate::run::<sqlx::Sqlite>(&mut conn, &crate::migrate::SQLITE).await?;
        let last = max_offset(&mut conn).await?;

        let checkpoint_conn = base.clone().connect().await.map_err(sql_error)?;
        let read_opts = base.read_only(true).pragma("cache_size", "-16384");
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(read_opts)
            .await
            .map_err(sql_error)?;

        let shared = Arc::new(Shared::default());
        shared.head.store(last, Ordering::Release);
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let writer = Writer::new(conn, last, shared.clone(), opts.batch_max.max(1));
        let handle = tokio::spawn(writer.run(rx));
        let checkpointer = Checkpointer::spawn(checkpoint_conn);
        info!(path = %path.display(), head = last, migrations = applied.len(), "sqlite store open");
        Ok(Self {
            tx,
            reads,
            shared,
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    /// Counters of the writer so far.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            events: self.shared.events.load(Ordering::Relaxed),
        }
    }

    /// Queues a request for the writer and waits for its answer.
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        // A dropped reply means the writer stopped without answering.
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// The highest offset ever handed out. Retention may have deleted the newest
/// events, so the streams' `last_seq`/`pruned_through` count too: an offset is
/// never reused, even across restarts.
async fn max_offset(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "SELECT max(
            (SELECT coalesce(max(seq), 0) FROM events),
            (SELECT coalesce(max(last_seq), 0) FROM streams),
            (SELECT coalesce(max(pruned_through), 0) FROM streams))",
    )
    .fetch_one(conn)
    .await
    .map_err(sql_error)?;
    let max: i64 = row.try_get(0).map_err(sql_error)?;
    Ok(u64::try_from(max).unwrap_or(0))
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // Serialise here, on the caller's task, so the single writer does only
        // SQL. The offset is zeroed so `to_string` yields exactly
        // `Event::to_body()` without its clone of the event.
        let mut pending = Vec::with_capacity(events.len());
        for NewEvent {
            mut event,
            supplied_id,
        } in events
        {
            event.offset = 0;
            let body =
                serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let time_ms = event.time_ms();
            pending.push(Pending {
                event,
                body,
                supplied_id,
                time_ms,
            });
        }
        let tenant: Arc<str> = Arc::from(tenant);
        self.call(|reply| Request::Append {
            tenant,
            events: pending,
            reply,
        })
        .await
    }

    async fn insert_records(&self, records: &[Arc<Record>]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = maintain::rows_from_records(records);
        self.call(|reply| Request::Insert { rows, reply }).await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Record>>, StoreError> {
        read::get(&self.reads, tenant, id).await
    }

    async fn query(&self, tenant: &str, query: &EventQuery) -> Result<Page, StoreError> {
        read::query(&self.reads, tenant, query).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(self.shared.head.load(Ordering::Acquire))
    }

    async fn list_streams(&self, tenant: &str) -> Result<Vec<StreamInfo>, StoreError> {
        read::list_streams(&self.reads, tenant).await
    }

    async fn set_stream_state(
        &self,
        tenant: &str,
        stream: &str,
        state: StreamState,
        held_after: u64,
    ) -> Result<StreamInfo, StoreError> {
        let (tenant, stream) = (tenant.to_owned(), stream.to_owned());
        self.call(|reply| Request::SetState {
            tenant,
            stream,
            state,
            held_after,
            reply,
        })
        .await
    }

    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        maintain::prune(self, retention).await
    }

    fn set_commit_hook(&self, hook: CommitHook) {
        match self.shared.hook.write() {
            Ok(mut slot) => *slot = Some(hook),
            Err(poisoned) => *poisoned.into_inner() = Some(hook),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.shared.closed.load(Ordering::Acquire) || self.tx.is_closed() {
            return Err(StoreError::Closed);
        }
        sqlx::query("SELECT 1")
            .execute(&self.reads)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    async fn put_event_type(&self, tenant: &str, def: &EventTypeDef) -> Result<bool, StoreError> {
        self.put_doc(&catalog::EVENT_TYPES, tenant, &def.name, def)
            .await
    }

    async fn get_event_type(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<EventTypeDef>, StoreError> {
        catalog::get_doc(&self.reads, &catalog::EVENT_TYPES, tenant, name).await
    }

    async fn list_event_types(&self, tenant: &str) -> Result<Vec<EventTypeDef>, StoreError> {
        catalog::list_docs(&self.reads, &catalog::EVENT_TYPES, tenant).await
    }

    async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.delete_doc(&catalog::EVENT_TYPES, tenant, name).await
    }

    async fn put_template(&self, tenant: &str, template: &Template) -> Result<bool, StoreError> {
        self.put_doc(&catalog::TEMPLATES, tenant, &template.name, template)
            .await
    }

    async fn get_template(&self, tenant: &str, name: &str) -> Result<Option<Template>, StoreError> {
        catalog::get_doc(&self.reads, &catalog::TEMPLATES, tenant, name).await
    }

    async fn list_templates(&self, tenant: &str) -> Result<Vec<Template>, StoreError> {
        catalog::list_docs(&self.reads, &catalog::TEMPLATES, tenant).await
    }

    async fn delete_template(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.delete_doc(&catalog::TEMPLATES, tenant, name).await
    }

    async fn put_entry(
        &self,
        catalog: Catalog,
        tenant: &str,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.put_doc(catalog::table_of(catalog), tenant, name, body)
            .await
    }

    async fn get_entry(
        &self,
        catalog: Catalog,
        tenant: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        catalog::get_doc(&self.reads, catalog::table_of(catalog), tenant, name).await
    }

    async fn list_entries(
        &self,
        catalog: Catalog,
        tenant: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        catalog::list_docs(&self.reads, catalog::table_of(catalog), tenant).await
    }

    async fn delete_entry(
        &self,
        catalog: Catalog,
        tenant: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.delete_doc(catalog::table_of(catalog), tenant, name)
            .await
    }

    async fn put_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
        filter: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.put_doc(&catalog::SUBSCRIPTIONS, tenant, overlay_id, filter)
            .await
    }

    async fn get_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        catalog::get_doc(&self.reads, &catalog::SUBSCRIPTIONS, tenant, overlay_id).await
    }

    async fn delete_subscription(
        &self,
        tenant: &str,
        overlay_id: &str,
    ) -> Result<bool, StoreError> {
        self.delete_doc(&catalog::SUBSCRIPTIONS, tenant, overlay_id)
            .await
    }

    async fn put_animation_status(
        &self,
        tenant: &str,
        row: &AnimationStatus,
    ) -> Result<AnimationStatus, StoreError> {
        self.put_status_row(tenant, row).await
    }

    async fn animation_status_by_event(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Vec<AnimationStatus>, StoreError> {
        lifecycle::by_event(&self.reads, tenant, event_id).await
    }

    async fn animation_status_by_overlay(
        &self,
        tenant: &str,
        overlay_id: &str,
        limit: usize,
    ) -> Result<Vec<AnimationStatus>, StoreError> {
        lifecycle::by_overlay(&self.reads, tenant, overlay_id, limit).await
    }

    async fn set_event_status(
        &self,
        tenant: &str,
        event_id: &str,
        status: Status,
        at_ms: i64,
    ) -> Result<Arc<Record>, StoreError> {
        self.set_status(tenant, event_id, status, at_ms).await
    }

    async fn put_scheduled(&self, tenant: &str, event: &Event) -> Result<bool, StoreError> {
        self.hold(tenant, event).await
    }

    async fn get_scheduled(&self, tenant: &str, id: &str) -> Result<Option<Event>, StoreError> {
        schedule::get(&self.reads, tenant, id).await
    }

    async fn list_scheduled(&self, tenant: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        schedule::list(&self.reads, tenant, limit).await
    }

    async fn due_scheduled(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Event)>, StoreError> {
        schedule::due(&self.reads, now_ms, limit).await
    }

    async fn delete_scheduled(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        self.unhold(tenant, id).await
    }

    async fn put_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        self.insert_api_key(key, hash).await
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        security::key_by_hash(&self.reads, hash).await
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        security::list_keys(&self.reads, tenant).await
    }

    async fn revoke_api_key(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.revoke_key(tenant, id, now_ms).await
    }

    async fn touch_api_key(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.touch_key(id, now_ms).await
    }

    async fn put_tenant(
        &self,
        name: &str,
        display_name: &str,
        limits: &serde_json::Value,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.upsert_tenant(name, display_name, limits, now_ms).await
    }

    async fn get_tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        security::get_tenant(&self.reads, name).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        security::list_tenants(&self.reads).await
    }

    async fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        self.remove_tenant(name).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.insert_audit(entry).await
    }

    async fn query_audit(
        &self,
        tenant: &str,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), StoreError> {
        security::query_audit(&self.reads, tenant, query).await
    }

    async fn state_get(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
    ) -> Result<Option<StateDoc>, StoreError> {
        state::get(&self.reads, tenant, stream, key).await
    }

    async fn state_list(&self, tenant: &str, stream: &str) -> Result<Vec<StateDoc>, StoreError> {
        state::list(&self.reads, tenant, stream).await
    }

    async fn state_write(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
        write: &StateWrite,
        now_ms: i64,
    ) -> Result<StateOutcome, StoreError> {
        self.write_state(tenant, stream, key, write, now_ms).await
    }

    async fn state_announced(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        self.mark_announced(tenant, stream, key, version).await
    }

    async fn put_deliveries(
        &self,
        tenant: &str,
        deliveries: &[Delivery],
    ) -> Result<usize, StoreError> {
        self.insert_deliveries(tenant, deliveries).await
    }

    async fn get_delivery(&self, tenant: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        deliveries::get(&self.reads, tenant, id).await
    }

    async fn list_deliveries(
        &self,
        tenant: &str,
        webhook: &str,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        deliveries::list(&self.reads, tenant, webhook, state, limit).await
    }

    async fn last_delivery_offset(
        &self,
        tenant: &str,
        webhook: &str,
    ) -> Result<Option<u64>, StoreError> {
        deliveries::last_offset(&self.reads, tenant, webhook).await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Delivery)>, StoreError> {
        self.claim(now_ms, lease_until_ms, limit).await
    }

    async fn finish_delivery(
        &self,
        tenant: &str,
        id: &str,
        lease_until_ms: i64,
        result: &AttemptResult,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.finish(tenant, id, lease_until_ms, result, now_ms)
            .await
    }

    async fn release_delivery(
        &self,
        tenant: &str,
        id: &str,
        lease_until_ms: i64,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.release(tenant, id, lease_until_ms, next_attempt_ms, now_ms)
            .await
    }

    async fn redeliver(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        self.send_again(tenant, id, now_ms).await
    }

    async fn delete_deliveries(&self, tenant: &str, webhook: &str) -> Result<u64, StoreError> {
        self.remove_deliveries(tenant, webhook).await
    }

    async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let (reply, done) = oneshot::channel();
        if self.tx.send(Request::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
        let handle = match self.writer.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle
            && let Err(e) = handle.await
        {
            warn!(error = %e, "sqlite writer task ended abnormally");
        }
        let checkpointer = match self.checkpointer.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(c) = checkpointer {
            c.stop().await;
        }
        self.reads.close().await;
    }
}
