//! The [`EventStore`] conformance suite: the contract of `store.rs`, as checks.
//!
//! Each check is an `async fn` taking the store under test; the backend's test
//! binary runs each as its own test (fresh store each, or one shared store:
//! see the notes on [`prune_by_count_keeps_newest_and_sets_pruned_through`]
//! and the hook checks). Concurrency needs a runtime, which core does not
//! have, so for the concurrent hook check the caller spawns the appenders,
//! collects what its hook saw, and hands both to
//! [`hook_saw_each_new_record_once_in_order`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{fresh_tenant, new_event};
use crate::event::{EventClass, Record};
use crate::store::{Appended, EventQuery, EventStore, Retention, StreamInfo, StreamState};
use crate::validate::NewEvent;

fn ev(stream: &str, ty: &str) -> NewEvent {
    new_event(json!({"stream_id": stream, "type": ty}))
}

fn with_id(stream: &str, id: &str, message: &str) -> NewEvent {
    new_event(json!({"stream_id": stream, "type": "t", "id": id, "message": message}))
}

async fn append(store: &dyn EventStore, tenant: &str, events: Vec<NewEvent>) -> Vec<Appended> {
    let n = events.len();
    let out = store.append(tenant, events).await.expect("append");
    assert_eq!(out.len(), n, "one result per event, in batch order");
    out
}

async fn all(store: &dyn EventStore, tenant: &str, mut q: EventQuery) -> Vec<Arc<Record>> {
    q.limit = 10_000;
    store.query(tenant, &q).await.expect("query").records
}

fn offsets(records: &[Arc<Record>]) -> Vec<u64> {
    records.iter().map(|r| r.offset()).collect()
}

async fn stream(store: &dyn EventStore, tenant: &str, name: &str) -> StreamInfo {
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

/// Stream, type, class and source filters, alone and combined.
pub async fn query_filters_match(store: &dyn EventStore) {
    let t = fresh_tenant("filter");
    let mk = |s: &str, ty: &str, class: &str, source: &str| {
        new_event(json!({"stream_id": s, "type": ty, "class": class, "source": source}))
    };
    let out = append(
        store,
        &t,
        vec![
            mk("a", "x", "data", "s1"),
            mk("b", "y", "alert", "s2"),
            mk("c", "x", "alert", "s1"),
            mk("a", "y", "data", "s2"),
            mk("b", "x", "data", "s1"),
        ],
    )
    .await;
    let off = |i: &[usize]| {
        i.iter()
            .map(|&i| out[i].record.offset())
            .collect::<Vec<_>>()
    };
    let cases = [
        (
            EventQuery {
                streams: Some(vec!["a".into(), "b".into()]),
                ..Default::default()
            },
            off(&[0, 1, 3, 4]),
        ),
        (
            EventQuery {
                streams: Some(vec![]),
                ..Default::default()
            },
            vec![],
        ),
        (
            EventQuery {
                event_type: Some("x".into()),
                ..Default::default()
            },
            off(&[0, 2, 4]),
        ),
        (
            EventQuery {
                class: Some(EventClass::Alert),
                ..Default::default()
            },
            off(&[1, 2]),
        ),
        (
            EventQuery {
                source: Some("s2".into()),
                ..Default::default()
            },
            off(&[1, 3]),
        ),
        (
            EventQuery {
                streams: Some(vec!["a".into(), "c".into()]),
                event_type: Some("x".into()),
                source: Some("s1".into()),
                ..Default::default()
            },
            off(&[0, 2]),
        ),
        (
            EventQuery {
                class: Some(EventClass::System),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (q, want) in cases {
        assert_eq!(offsets(&all(store, &t, q.clone()).await), want, "{q:?}");
    }
}

/// The time range is on event time: start inclusive, end exclusive.
pub async fn query_time_range_is_start_inclusive_end_exclusive(store: &dyn EventStore) {
    let t = fresh_tenant("time");
    let base = 1_700_000_000_000i64;
    let events = (0..5)
        .map(|i| {
            let time = crate::time::rfc3339_ms(base + i * 1000);
            new_event(json!({"stream_id": "s", "type": "x", "time": time}))
        })
        .collect();
    let out = append(store, &t, events).await;
    let q = EventQuery {
        start_ms: Some(base + 1000),
        end_ms: Some(base + 3000),
        ..Default::default()
    };
    let want = vec![out[1].record.offset(), out[2].record.offset()];
    assert_eq!(offsets(&all(store, &t, q).await), want);
    let q = EventQuery {
        start_ms: Some(base + 3500),
        ..Default::default()
    };
    assert_eq!(
        offsets(&all(store, &t, q).await),
        vec![out[4].record.offset()]
    );
    let q = EventQuery {
        end_ms: Some(base),
        ..Default::default()
    };
    assert!(all(store, &t, q).await.is_empty());
}

/// Cursor pagination in both orders visits every matching record exactly once,
/// in order, for one stream, a few streams, many streams and all streams; a
/// short page has no next cursor.
pub async fn pagination_visits_every_record_once(store: &dyn EventStore) {
    let t = fresh_tenant("page");
    let (mut in_s, mut every) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let out = append(
            store,
            &t,
            (0..10)
                .map(|i| ev(if i % 3 == 0 { "other" } else { "s" }, "x"))
                .collect(),
        )
        .await;
        in_s.extend(
            out.iter()
                .filter(|a| a.record.event.stream_id == "s")
                .map(|a| a.record.offset()),
        );
        every.extend(out.iter().map(|a| a.record.offset()));
    }
    let mut many: Vec<String> = (0..40).map(|i| format!("absent-{i}")).collect();
    many.push("s".into());
    let scopes = [
        (Some(vec!["s".to_owned()]), &in_s),
        (
            Some(vec!["other".to_owned(), "s".to_owned(), "s".to_owned()]),
            &every,
        ),
        (Some(many), &in_s),
        (None, &every),
    ];
    for (streams, want) in scopes {
        for descending in [false, true] {
            for limit in [1, 4, 5, 100] {
                let mut q = EventQuery {
                    streams: streams.clone(),
                    descending,
                    limit,
                    ..Default::default()
                };
                let mut seen = Vec::new();
                for _ in 0..=want.len() + 1 {
                    let page = store.query(&t, &q).await.expect("query");
                    assert!(page.records.len() <= limit);
                    seen.extend(offsets(&page.records));
                    if page.records.len() < limit {
                        assert_eq!(page.next_cursor, None, "a short page ends the walk");
                    }
                    match page.next_cursor {
                        Some(c) => q.cursor = Some(c),
                        None => break,
                    }
                }
                let mut expected = want.clone();
                if descending {
                    expected.reverse();
                }
                let n = streams.as_ref().map(Vec::len);
                assert_eq!(
                    seen, expected,
                    "streams={n:?} descending={descending} limit={limit}"
                );
            }
        }
    }
}

/// Publishing creates the stream (active, counted); `set_stream_state` changes
/// the state, creates a missing stream, and appends keep the state.
pub async fn streams_auto_create_and_keep_state(store: &dyn EventStore) {
    let t = fresh_tenant("streams");
    let out = append(
        store,
        &t,
        vec![ev("alpha", "x"), ev("alpha", "x"), ev("alpha", "x")],
    )
    .await;
    let s = stream(store, &t, "alpha").await;
    assert_eq!(s.state, StreamState::Active);
    assert_eq!(s.events, 3);
    assert_eq!(s.last_offset, out[2].record.offset());
    assert_eq!(s.pruned_through, 0);
    assert!(s.created_ms > 0);

    let paused = store
        .set_stream_state(&t, "alpha", StreamState::Paused)
        .await
        .expect("set state");
    assert_eq!(paused.state, StreamState::Paused);
    assert_eq!(paused.events, 3);
    let beta = store
        .set_stream_state(&t, "beta", StreamState::Stopped)
        .await
        .expect("set state");
    assert_eq!(
        (
            beta.name.as_str(),
            beta.state,
            beta.events,
            beta.last_offset
        ),
        ("beta", StreamState::Stopped, 0, 0)
    );

    let more = append(store, &t, vec![ev("alpha", "x")]).await;
    let s = stream(store, &t, "alpha").await;
    assert_eq!(
        s.state,
        StreamState::Paused,
        "a paused stream still stores and stays paused"
    );
    assert_eq!((s.events, s.last_offset), (4, more[0].record.offset()));
    assert_eq!(store.list_streams(&t).await.expect("list").len(), 2);
}

/// Retention by count keeps the newest events of each stream and records the
/// highest removed offset. Prunes every stream of the store: give it a store
/// of its own (or run it after the checks whose data it would trim).
pub async fn prune_by_count_keeps_newest_and_sets_pruned_through(store: &dyn EventStore) {
    let t = fresh_tenant("prune");
    let a = append(store, &t, (0..10).map(|_| ev("a", "x")).collect()).await;
    append(store, &t, (0..3).map(|_| ev("b", "x")).collect()).await;
    let removed = store
        .prune(Retention {
            max_events: 4,
            max_age_ms: 0,
        })
        .await
        .expect("prune");
    assert!(removed >= 6, "removed {removed}");
    let sa = stream(store, &t, "a").await;
    assert_eq!((sa.events, sa.pruned_through), (4, a[5].record.offset()));
    let q = EventQuery {
        streams: Some(vec!["a".into()]),
        ..Default::default()
    };
    let kept: Vec<u64> = a[6..].iter().map(|x| x.record.offset()).collect();
    assert_eq!(offsets(&all(store, &t, q).await), kept);
    let sb = stream(store, &t, "b").await;
    assert_eq!((sb.events, sb.pruned_through), (3, 0));
    assert!(
        store
            .get(&t, &a[0].record.event.id)
            .await
            .expect("get")
            .is_none()
    );

    store
        .prune(Retention {
            max_events: 4,
            max_age_ms: 0,
        })
        .await
        .expect("prune again");
    assert_eq!(
        stream(store, &t, "a").await.events,
        4,
        "pruning again changes nothing"
    );
    let next = append(store, &t, vec![ev("a", "x")]).await;
    assert!(
        next[0].record.offset() > a[9].record.offset(),
        "offsets are never reused"
    );
}

/// Retention by age drops events whose event time is older than the limit.
pub async fn prune_by_age_drops_old_events(store: &dyn EventStore) {
    let t = fresh_tenant("age");
    let old: Vec<NewEvent> = (0..3)
        .map(|_| new_event(json!({"stream_id": "s", "type": "x", "timestamp": 978_307_200})))
        .collect();
    let old = append(store, &t, old).await;
    let fresh = append(store, &t, vec![ev("s", "x"), ev("s", "x")]).await;
    let removed = store
        .prune(Retention {
            max_events: 0,
            max_age_ms: 86_400_000,
        })
        .await
        .expect("prune");
    assert!(removed >= 3, "removed {removed}");
    let s = stream(store, &t, "s").await;
    assert_eq!((s.events, s.pruned_through), (2, old[2].record.offset()));
    let kept: Vec<u64> = fresh.iter().map(|x| x.record.offset()).collect();
    assert_eq!(offsets(&all(store, &t, EventQuery::default()).await), kept);
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
    commit_hook_sees_new_records_in_order(store).await;
    prune_by_count_keeps_newest_and_sets_pruned_through(store).await;
    prune_by_age_drops_old_events(store).await;
}
