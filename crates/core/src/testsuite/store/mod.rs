//! The [`EventStore`] conformance suite: the contract of `store.rs`, as checks.
//!
//! Each check is an `async fn` taking the store under test; the backend's test
//! binary runs each as its own test (fresh store each, or one shared store:
//! see the notes on [`prune_by_count_keeps_newest_and_sets_pruned_through`]
//! and the hook checks). Concurrency needs a runtime, which core does not
//! have, so for the concurrent hook check the caller spawns the appenders,
//! collects what its hook saw, and hands both to
//! [`hook_saw_each_new_record_once_in_order`].
//!
//! Here: appends, idempotency, tenants and the commit hook; `query.rs`: filters
//! and pagination; `streams.rs`: stream records and retention; `catalog.rs`:
//! event types, templates and overlay subscriptions; `lifecycle.rs`: status
//! rows and the status in stored events; `schedule.rs`: held scheduled events;
//! `security.rs`: API keys, tenant records and the audit log; `state.rs`:
//! live keyed state; `deliveries.rs`: outgoing webhook deliveries.

mod catalog;
mod deliveries;
mod lifecycle;
mod query;
mod schedule;
mod security;
mod state;
mod streams;

pub use catalog::*;
pub use deliveries::*;
pub use lifecycle::*;
pub use query::*;
pub use schedule::*;
pub use security::*;
pub use state::*;
pub use streams::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{fresh_tenant, new_event};
use crate::event::Record;
use crate::store::{Appended, EventQuery, EventStore, StreamInfo};
use crate::validate::NewEvent;

pub(super) fn ev(stream: &str, ty: &str) -> NewEvent {
    new_event(json!({"stream_id": stream, "type": ty}))
}

pub(super) fn with_id(stream: &str, id: &str, message: &str) -> NewEvent {
    new_event(json!({"stream_id": stream, "type": "t", "id": id, "message": message}))
}

pub(super) async fn append(
    store: &dyn EventStore,
    tenant: &str,
    events: Vec<NewEvent>,
) -> Vec<Appended> {
    let n = events.len();
    let out = store.append(tenant, events).await.expect("append");
    assert_eq!(out.len(), n, "one result per event, in batch order");
    out
}

pub(super) async fn all(
    store: &dyn EventStore,
    tenant: &str,
    mut q: EventQuery,
) -> Vec<Arc<Record>> {
    q.limit = 10_000;
    store.query(tenant, &q).await.expect("query").records
}

pub(super) fn offsets(records: &[Arc<Record>]) -> Vec<u64> {
    records.iter().map(|r| r.offset()).collect()
}

pub(super) async fn stream(store: &dyn EventStore, tenant: &str, name: &str) -> StreamInfo {
    let list = store.list_streams(tenant).await.expect("list_streams");
    list.into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("stream {name} missing"))
}

/// Offsets are strictly increasing in batch order and across batches; records
/// carry their tenant, offset and id; `get` and `head` agree.
pub async fn offsets_increase_in_batch_order(store: &dyn EventStore) {
    let t = fresh_tenant("order");
    let first = append(store, &t, vec![ev("a", "x"), ev("b", "y"), ev("a", "z")]).await;
    let second = append(store, &t, vec![ev("b", "x"), ev("a", "x")]).await;
    let got: Vec<u64> = first
        .iter()
        .chain(&second)
        .map(|a| a.record.offset())
        .collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "offsets not increasing: {got:?}"
    );
    assert!(got[0] > 0, "offsets start at 1");
    assert_eq!(first[1].record.event.stream_id, "b");
    assert_eq!(first[2].record.event.event_type, "z");
    for a in first.iter().chain(&second) {
        assert!(!a.duplicate);
        assert_eq!(a.record.tenant, t);
        let v: serde_json::Value = serde_json::from_slice(&a.record.json).expect("record json");
        assert_eq!(v["offset"], a.record.offset());
        assert_eq!(v["id"], a.record.event.id.as_str());
        let stored = store
            .get(&t, &a.record.event.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(*stored, *a.record, "get returns what append returned");
    }
    let head = store.head().await.expect("head");
    assert!(
        head >= *got.last().expect("offsets"),
        "head {head} behind {got:?}"
    );
}

/// A producer-supplied id is stored once: appending it again returns the first
/// record with `duplicate: true`, and queries and counts see one event.
pub async fn supplied_id_is_stored_once(store: &dyn EventStore) {
    let t = fresh_tenant("idem");
    let first = append(store, &t, vec![with_id("s", "order-1", "first")]).await;
    assert!(!first[0].duplicate);
    let again = append(
        store,
        &t,
        vec![with_id("s", "order-1", "second"), ev("s", "new")],
    )
    .await;
    assert!(again[0].duplicate, "same id again must be a duplicate");
    assert_eq!(again[0].record.offset(), first[0].record.offset());
    assert_eq!(
        again[0].record.event.message, "first",
        "the stored record is returned"
    );
    assert!(!again[1].duplicate, "a new neighbour is still stored");
    let stored = all(store, &t, EventQuery::default()).await;
    assert_eq!(
        offsets(&stored),
        vec![first[0].record.offset(), again[1].record.offset()]
    );
    assert_eq!(stream(store, &t, "s").await.events, 2);
}

/// Server-made ids are unique and never reported as duplicates.
pub async fn server_made_ids_never_collide(store: &dyn EventStore) {
    let t = fresh_tenant("ids");
    let mut ids = std::collections::HashSet::new();
    for _ in 0..4 {
        let out = append(store, &t, (0..50).map(|_| ev("s", "x")).collect()).await;
        for a in out {
            assert!(!a.duplicate);
            assert!(
                ids.insert(a.record.event.id.clone()),
                "id reused: {}",
                a.record.event.id
            );
        }
    }
    assert_eq!(all(store, &t, EventQuery::default()).await.len(), 200);
}

/// The same supplied id twice in one batch: the second is a duplicate of the first.
pub async fn duplicate_within_batch_returns_first(store: &dyn EventStore) {
    let t = fresh_tenant("dupbatch");
    let out = append(
        store,
        &t,
        vec![
            with_id("s", "k-1", "a"),
            ev("s", "x"),
            with_id("s", "k-1", "b"),
        ],
    )
    .await;
    assert!(!out[0].duplicate);
    assert!(!out[1].duplicate);
    assert!(
        out[2].duplicate,
        "second occurrence in a batch is a duplicate"
    );
    assert_eq!(*out[2].record, *out[0].record);
    assert_eq!(all(store, &t, EventQuery::default()).await.len(), 2);
}

/// Nothing crosses tenants: ids, get, query and list_streams are per tenant.
pub async fn tenants_are_isolated(store: &dyn EventStore) {
    let (a, b) = (fresh_tenant("ta"), fresh_tenant("tb"));
    let in_a = append(
        store,
        &a,
        vec![with_id("shared", "same-id", "a"), ev("only-a", "x")],
    )
    .await;
    let in_b = append(
        store,
        &b,
        vec![with_id("shared", "same-id", "b"), ev("only-b", "x")],
    )
    .await;
    assert!(
        !in_b[0].duplicate,
        "an id is unique per tenant, not globally"
    );
    assert_ne!(in_a[0].record.offset(), in_b[0].record.offset());
    let got = store
        .get(&b, "same-id")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.event.message, "b");
    assert_eq!(got.tenant, b);
    assert!(
        store
            .get(&b, &in_a[1].record.event.id)
            .await
            .expect("get")
            .is_none()
    );
    let seen_b = all(store, &b, EventQuery::default()).await;
    assert_eq!(
        offsets(&seen_b),
        offsets(&[in_b[0].record.clone(), in_b[1].record.clone()])
    );
    assert!(seen_b.iter().all(|r| r.tenant == b));
    let q = EventQuery {
        streams: Some(vec!["only-a".into()]),
        ..Default::default()
    };
    assert!(all(store, &b, q).await.is_empty());
    let names: Vec<String> = store
        .list_streams(&b)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(
        names.contains(&"only-b".to_owned()) && !names.contains(&"only-a".to_owned()),
        "{names:?}"
    );
    assert!(
        store
            .list_streams(&fresh_tenant("empty"))
            .await
            .expect("list")
            .is_empty()
    );
}

/// The commit hook sees each new record once, in offset order, and never a
/// duplicate. Registers its own hook (replacing any other) on the store.
pub async fn commit_hook_sees_new_records_in_order(store: &dyn EventStore) {
    let seen: Arc<Mutex<Vec<Arc<Record>>>> = Arc::default();
    let sink = seen.clone();
    store.set_commit_hook(Arc::new(move |records: &[Arc<Record>]| {
        sink.lock().expect("hook sink").extend_from_slice(records);
    }));
    let t = fresh_tenant("hook");
    let mut acked = Vec::new();
    acked.extend(append(store, &t, vec![ev("a", "x"), with_id("a", "h-1", "m")]).await);
    acked.extend(append(store, &t, vec![with_id("b", "h-1", "again"), ev("b", "y")]).await);
    acked.extend(append(store, &t, (0..20).map(|_| ev("c", "z")).collect()).await);
    let seen = seen.lock().expect("hook sink").clone();
    hook_saw_each_new_record_once_in_order(&seen, &acked);
    let ours = seen.iter().filter(|r| r.tenant == t).count();
    assert_eq!(ours, 23, "the duplicate is not delivered again");
}

/// Checks what a commit hook saw against what appends acknowledged: offsets
/// strictly increasing, and every acknowledged new record seen exactly once,
/// identical to the acknowledgement. `seen` may hold other tenants' records.
pub fn hook_saw_each_new_record_once_in_order(seen: &[Arc<Record>], acked: &[Appended]) {
    let offs = offsets(seen);
    if let Some(w) = offs.windows(2).find(|w| w[0] >= w[1]) {
        panic!("hook saw offset {} after {}", w[1], w[0]);
    }
    let by_offset: HashMap<u64, &Arc<Record>> = seen.iter().map(|r| (r.offset(), r)).collect();
    for a in acked.iter().filter(|a| !a.duplicate) {
        let got = by_offset
            .get(&a.record.offset())
            .unwrap_or_else(|| panic!("hook never saw offset {}", a.record.offset()));
        assert_eq!(
            **got,
            a.record,
            "hook and ack disagree at offset {}",
            a.record.offset()
        );
    }
}

/// Every check, in an order that suits one store of its own (retention last).
pub async fn run_all(store: &dyn EventStore) {
    offsets_increase_in_batch_order(store).await;
    supplied_id_is_stored_once(store).await;
    server_made_ids_never_collide(store).await;
    duplicate_within_batch_returns_first(store).await;
    tenants_are_isolated(store).await;
    query_filters_match(store).await;
    query_time_range_is_start_inclusive_end_exclusive(store).await;
    pagination_visits_every_record_once(store).await;
    streams_auto_create_and_keep_state(store).await;
    event_types_are_stored_per_tenant(store).await;
    templates_are_stored_per_tenant(store).await;
    subscriptions_are_stored_per_overlay(store).await;
    automation_catalogs_are_separate_per_tenant(store).await;
    animation_status_rows_follow_the_lifecycle(store).await;
    event_status_is_kept_in_the_stored_body(store).await;
    scheduled_events_are_held_per_tenant(store).await;
    due_scheduled_spans_tenants_in_due_order(store).await;
    scheduled_event_needs_scheduled_at(store).await;
    api_keys_round_trip_by_hash(store).await;
    api_key_revoke_is_scoped_by_tenant(store).await;
    tenants_are_created_replaced_and_deleted(store).await;
    audit_log_filters_and_pages_newest_first(store).await;
    security_rows_never_cross_tenants(store).await;
    state_documents_keep_versions(store).await;
    state_writes_compare_and_set(store).await;
    state_unannounced_change_comes_first(store).await;
    state_concurrent_writes_get_distinct_versions(store).await;
    state_never_crosses_tenants_or_streams(store).await;
    deliveries_are_stored_once_per_id(store).await;
    deliveries_are_claimed_with_a_lease(store).await;
    released_deliveries_keep_their_attempts(store).await;
    concurrent_claims_take_disjoint_rows(store).await;
    commit_hook_sees_new_records_in_order(store).await;
    prune_by_count_keeps_newest_and_sets_pruned_through(store).await;
    prune_by_age_drops_old_events(store).await;
}

/// One `#[tokio::test]` per conformance check, each on a store of its own
/// (retention and the commit hook act store-wide). `$open` is an expression
/// evaluating to `(store, guard)`; it may `return` to skip. Listing the
/// checks here, beside them, runs every new check in every backend.
#[macro_export]
#[doc(hidden)]
macro_rules! store_conformance_tests {
    ($open:expr) => {
        $crate::store_conformance_tests!(@each $open;
            offsets_increase_in_batch_order,
            supplied_id_is_stored_once,
            server_made_ids_never_collide,
            duplicate_within_batch_returns_first,
            tenants_are_isolated,
            query_filters_match,
            query_time_range_is_start_inclusive_end_exclusive,
            pagination_visits_every_record_once,
            streams_auto_create_and_keep_state,
            prune_by_count_keeps_newest_and_sets_pruned_through,
            prune_by_age_drops_old_events,
            commit_hook_sees_new_records_in_order,
            event_types_are_stored_per_tenant,
            templates_are_stored_per_tenant,
            subscriptions_are_stored_per_overlay,
            automation_catalogs_are_separate_per_tenant,
            animation_status_rows_follow_the_lifecycle,
            event_status_is_kept_in_the_stored_body,
            scheduled_events_are_held_per_tenant,
            due_scheduled_spans_tenants_in_due_order,
            scheduled_event_needs_scheduled_at,
            api_keys_round_trip_by_hash,
            api_key_revoke_is_scoped_by_tenant,
            tenants_are_created_replaced_and_deleted,
            audit_log_filters_and_pages_newest_first,
            security_rows_never_cross_tenants,
            state_documents_keep_versions,
            state_writes_compare_and_set,
            state_unannounced_change_comes_first,
            state_concurrent_writes_get_distinct_versions,
            state_never_crosses_tenants_or_streams,
            deliveries_are_stored_once_per_id,
            deliveries_are_claimed_with_a_lease,
            released_deliveries_keep_their_attempts,
            concurrent_claims_take_disjoint_rows,
            run_all,
        );
    };
    (@each $open:expr; $($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            let (store, _guard) = $open;
            $crate::testsuite::store::$check(&store).await;
            $crate::EventStore::close(&store).await;
        }
    )*};
}
