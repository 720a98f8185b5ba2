//! The indexer against a store that fails: the tail stalls, nothing is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use streambus_core::event::Status;
use streambus_core::event_type::EventTypeDef;
use streambus_core::lifecycle::AnimationStatus;
use streambus_core::store::{
    Appended, CommitHook, EventQuery, EventStore, Page, Retention, StreamInfo, StreamState,
};
use streambus_core::template::Template;
use streambus_core::testsuite::fresh_tenant;
use streambus_core::validate::NewEvent;
use streambus_core::{EventLog, Record, StoreError};
use streambus_log::JetStreamLog;
use streambus_store::{SqliteOptions, SqliteStore};

use crate::util::{cluster_or_skip, events, next, quiet};

/// A SQLite store whose `insert_records` fails while `failing` is set.
struct FlakyStore {
    inner: SqliteStore,
    failing: AtomicBool,
    refused: AtomicUsize,
}

#[async_trait]
impl EventStore for FlakyStore {
    async fn append(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.inner.append(tenant, events).await
    }
    async fn insert_records(&self, records: &[Arc<Record>]) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        self.inner.insert_records(records).await
    }
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Record>>, StoreError> {
        self.inner.get(tenant, id).await
    }
    async fn query(&self, tenant: &str, query: &EventQuery) -> Result<Page, StoreError> {
        self.inner.query(tenant, query).await
    }
    async fn head(&self) -> Result<u64, StoreError> {
        self.inner.head().await
    }
    async fn list_streams(&self, tenant: &str) -> Result<Vec<StreamInfo>, StoreError> {
        self.inner.list_streams(tenant).await
    }
    async fn set_stream_state(
        &self,
        tenant: &str,
        stream: &str,
        state: StreamState,
        held_after: u64,
    ) -> Result<StreamInfo, StoreError> {
        self.inner
            .set_stream_state(tenant, stream, state, held_after)
            .await
    }
    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        self.inner.prune(retention).await
    }
    fn set_commit_hook(&self, hook: CommitHook) {
        self.inner.set_commit_hook(hook);
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
    async fn put_event_type(&self, tenant: &str, def: &EventTypeDef) -> Result<bool, StoreError> {
        self.inner.put_event_type(tenant, def).await
    }
    async fn get_event_type(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<EventTypeDef>, StoreError> {
        self.inner.get_event_type(tenant, name).await
    }
    async fn list_event_types(&self, tenant: &str) -> Result<Vec<EventTypeDef>, StoreError> {
        self.inner.list_event_types(tenant).await
    }
    async fn delete_event_type(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_event_type(tenant, name).await
    }
    async fn put_template(&self, tenant: &str, t: &Template) -> Result<bool, StoreError> {
        self.inner.put_template(tenant, t).await
    }
    async fn get_template(&self, tenant: &str, name: &str) -> Result<Option<Template>, StoreError> {
        self.inner.get_template(tenant, name).await
    }
    async fn list_templates(&self, tenant: &str) -> Result<Vec<Template>, StoreError> {
        self.inner.list_templates(tenant).await
    }
    async fn delete_template(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_template(tenant, name).await
    }
    async fn put_subscription(
        &self,
        tenant: &str,
        overlay: &str,
        filter: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.inner.put_subscription(tenant, overlay, filter).await
    }
    async fn get_subscription(
        &self,
        tenant: &str,
        overlay: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.inner.get_subscription(tenant, overlay).await
    }
    async fn delete_subscription(&self, tenant: &str, overlay: &str) -> Result<bool, StoreError> {
        self.inner.delete_subscription(tenant, overlay).await
    }
    async fn put_animation_status(
        &self,
        tenant: &str,
        row: &AnimationStatus,
    ) -> Result<AnimationStatus, StoreError> {
        self.inner.put_animation_status(tenant, row).await
    }
    async fn animation_status_by_event(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Vec<AnimationStatus>, StoreError> {
        self.inner.animation_status_by_event(tenant, event_id).await
    }
    async fn animation_status_by_overlay(
        &self,
        tenant: &str,
        overlay: &str,
        limit: usize,
    ) -> Result<Vec<AnimationStatus>, StoreError> {
        self.inner
            .animation_status_by_overlay(tenant, overlay, limit)
            .await
    }
    async fn set_event_status(
        &self,
        tenant: &str,
        event_id: &str,
        status: Status,
        at_ms: i64,
    ) -> Result<Arc<Record>, StoreError> {
        self.inner
            .set_event_status(tenant, event_id, status, at_ms)
            .await
    }
}

#[tokio::test]
async fn store_failure_stalls_the_tail_and_loses_nothing() {
    let mut cluster = cluster_or_skip!();
    cluster.opts.publish_timeout = Duration::from_secs(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(FlakyStore {
        inner: SqliteStore::open(SqliteOptions::new(dir.path()))
            .await
            .expect("open store"),
        failing: AtomicBool::new(false),
        refused: AtomicUsize::new(0),
    });
    let log = JetStreamLog::connect(
        cluster.opts.clone(),
        Arc::clone(&store) as Arc<dyn EventStore>,
    )
    .await
    .expect("connect");
    let tenant = fresh_tenant("flaky");
    let mut tail = log.tail();
    log.append(&tenant, events("s", 2)).await.expect("append");

    store.failing.store(true, Ordering::SeqCst);
    // Durable in JetStream, so the append succeeds after its bounded wait.
    let acked = log.append(&tenant, events("s", 3)).await.expect("append");
    assert_eq!(acked[2].record.offset(), 5);
    assert_eq!(
        log.head().await.expect("head"),
        2,
        "not indexed while the store fails"
    );
    assert!(store.refused.load(Ordering::SeqCst) > 0);
    let status = log.indexer_status();
    assert!(!status.is_healthy());
    assert!(
        status.error.as_deref().is_some_and(|e| e.contains("store")),
        "{status:?}"
    );
    assert_eq!(next(&mut tail).await.offset(), 1);
    assert_eq!(next(&mut tail).await.offset(), 2);
    assert!(
        quiet(&mut tail).await,
        "the tail stalls instead of skipping"
    );

    store.failing.store(false, Ordering::SeqCst);
    for want in 3..=5 {
        assert_eq!(next(&mut tail).await.offset(), want);
    }
    assert_eq!(log.head().await.expect("head"), 5);
    assert!(log.indexer_status().is_healthy());
    let page = log
        .read(
            &tenant,
            &EventQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("read");
    assert_eq!(page.records.len(), 5);
    log.close().await;
}
