//! What only the embedded store promises: durability across reopen, group
//! commit under concurrency, offsets never reused, clean refusal after close.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;
use streambus_core::event::Record;
use streambus_core::store::{EventQuery, Retention, StreamState};
use streambus_core::testsuite::{new_event, store::hook_saw_each_new_record_once_in_order};
use streambus_core::validate::NewEvent;
use streambus_core::{EventStore, StoreError};
use streambus_store::{SqliteOptions, SqliteStore};

fn ev(stream: &str) -> NewEvent {
    new_event(json!({"stream_id": stream, "type": "x", "data": {"n": 1}}))
}

fn everything() -> EventQuery {
    EventQuery {
        limit: 100_000,
        ..Default::default()
    }
}

#[tokio::test]
async fn data_survives_close_and_reopen_and_offsets_continue() {
    let (store, dir) = crate::temp_store().await;
    let mut events: Vec<NewEvent> = (0..9).map(|_| ev("s")).collect();
    events.push(new_event(
        json!({"stream_id": "s", "type": "x", "id": "keep-me"}),
    ));
    let first = store.append("default", events).await.unwrap();
    store
        .set_stream_state("default", "s", StreamState::Paused, 0)
        .await
        .unwrap();
    let last = first[9].record.offset();
    store.close().await;

    let store = SqliteStore::open(SqliteOptions::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap(), last);
    let got = store.query("default", &everything()).await.unwrap().records;
    let want: Vec<Arc<Record>> = first.iter().map(|a| a.record.clone()).collect();
    assert_eq!(got, want, "records read back byte for byte");
    let s = &store.list_streams("default").await.unwrap()[0];
    assert_eq!(
        (s.state, s.events, s.last_offset),
        (StreamState::Paused, 10, last)
    );

    let again = store
        .append(
            "default",
            vec![
                new_event(json!({"stream_id": "s", "type": "x", "id": "keep-me"})),
                ev("s"),
            ],
        )
        .await
        .unwrap();
    assert!(again[0].duplicate, "idempotency survives a restart");
    assert_eq!(
        again[1].record.offset(),
        last + 1,
        "offsets continue from the max"
    );
    store.close().await;
}

#[tokio::test]
async fn concurrent_appenders_are_group_committed_gapless() {
    const APPENDERS: usize = 50;
    const EACH: usize = 200;
    let (store, _dir) = crate::temp_store().await;
    let store = Arc::new(store);
    let seen: Arc<Mutex<Vec<Arc<Record>>>> = Arc::default();
    let sink = seen.clone();
    store.set_commit_hook(Arc::new(move |r: &[Arc<Record>]| {
        sink.lock().unwrap().extend_from_slice(r)
    }));

    let tasks: Vec<_> = (0..APPENDERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let tenant = if i % 2 == 0 { "even" } else { "odd" };
                let stream = format!("s{}", i % 7);
                let mut acked = Vec::with_capacity(EACH);
                for _ in 0..EACH {
                    acked.extend(store.append(tenant, vec![ev(&stream)]).await.unwrap());
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        let offs: Vec<u64> = mine.iter().map(|a| a.record.offset()).collect();
        assert!(
            offs.windows(2).all(|w| w[0] < w[1]),
            "one appender's offsets increase"
        );
        acked.extend(mine);
    }

    let total = APPENDERS * EACH;
    assert_eq!(acked.len(), total);
    let mut offs: Vec<u64> = acked.iter().map(|a| a.record.offset()).collect();
    offs.sort_unstable();
    assert_eq!(
        offs,
        (1..=total as u64).collect::<Vec<_>>(),
        "offsets unique and gapless"
    );
    assert_eq!(store.head().await.unwrap(), total as u64);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total);
    hook_saw_each_new_record_once_in_order(&seen, &acked);

    let stats = store.stats();
    assert_eq!(stats.events, total as u64);
    assert!(
        stats.commits < stats.events,
        "group commit batched nothing: {stats:?}"
    );
    let mut listed = 0;
    for t in ["even", "odd"] {
        listed += store
            .list_streams(t)
            .await
            .unwrap()
            .iter()
            .map(|s| s.events)
            .sum::<u64>();
    }
    assert_eq!(listed, total as u64, "stream counts match");
    store.close().await;
}

#[tokio::test]
async fn append_after_close_is_refused_and_stores_nothing() {
    let (store, dir) = crate::temp_store().await;
    store.append("default", vec![ev("s")]).await.unwrap();
    store.close().await;
    let err = store.append("default", vec![ev("s")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    assert!(store.ping().await.is_err());
    assert!(matches!(
        store
            .set_stream_state("default", "s", StreamState::Stopped, 0)
            .await,
        Err(StoreError::Closed)
    ));
    store.close().await; // twice is harmless

    let store = SqliteStore::open(SqliteOptions::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(
        store
            .query("default", &everything())
            .await
            .unwrap()
            .records
            .len(),
        1
    );
    assert_eq!(store.head().await.unwrap(), 1);
    store.close().await;
}

#[tokio::test]
async fn failed_transaction_stores_nothing_and_reuses_no_offset() {
    let (store, _dir) = crate::temp_store().await;
    let first = store.append("default", vec![ev("s")]).await.unwrap();
    // A server-made id is not looked up, so forcing a clash with a stored one
    // makes the insert violate the unique index and the whole batch fail.
    let mut clash = ev("s");
    clash.event.id = first[0].record.event.id.clone();
    let err = store
        .append("default", vec![ev("s"), clash])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(
        store
            .query("default", &everything())
            .await
            .unwrap()
            .records
            .len(),
        1
    );
    assert_eq!(store.head().await.unwrap(), 1);
    let next = store.append("default", vec![ev("s")]).await.unwrap();
    assert_eq!(
        next[0].record.offset(),
        2,
        "the counter did not advance on failure"
    );
    assert_eq!(store.list_streams("default").await.unwrap()[0].events, 2);
    store.close().await;
}

#[tokio::test]
async fn dropping_without_close_keeps_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(SqliteOptions::new(dir.path()))
            .await
            .unwrap();
        store
            .append("default", vec![ev("s"), ev("s")])
            .await
            .unwrap();
    }
    let store = SqliteStore::open(SqliteOptions::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap(), 2);
    assert_eq!(
        store
            .query("default", &everything())
            .await
            .unwrap()
            .records
            .len(),
        2
    );
    store.close().await;
}

#[tokio::test]
async fn insert_records_skips_stored_offsets_and_moves_the_counter() {
    let (store, _dir) = crate::temp_store().await;
    let rec = |offset: u64, id: &str| {
        let mut e = ev("c").event;
        e.id = id.to_owned();
        e.offset = offset;
        Arc::new(Record::from_event("default", e))
    };
    let (r100, r101, r103) = (rec(100, "c-100"), rec(101, "c-101"), rec(103, "c-103"));
    store
        .insert_records(&[r100.clone(), r101.clone()])
        .await
        .unwrap();
    store.insert_records(&[r101, r103]).await.unwrap();
    let got = store.query("default", &everything()).await.unwrap().records;
    assert_eq!(
        got.iter().map(|r| r.offset()).collect::<Vec<_>>(),
        vec![100, 101, 103]
    );
    assert_eq!(got[0].event, r100.event, "stored as given");
    let s = &store.list_streams("default").await.unwrap()[0];
    assert_eq!((s.events, s.last_offset), (3, 103));
    assert_eq!(store.head().await.unwrap(), 103);
    let next = store.append("default", vec![ev("c")]).await.unwrap();
    assert_eq!(next[0].record.offset(), 104);
    store.close().await;
}

#[tokio::test]
async fn prune_in_many_chunks_and_offsets_never_reused_after_reopen() {
    let (store, dir) = crate::temp_store().await;
    for _ in 0..5 {
        store
            .append("default", (0..1000).map(|_| ev("big")).collect())
            .await
            .unwrap();
    }
    let old =
        (0..3).map(|_| new_event(json!({"stream_id": "old", "type": "x", "timestamp": 1_000_000})));
    store.append("default", old.collect()).await.unwrap();
    let removed = store
        .prune(Retention {
            max_events: 10,
            max_age_ms: 86_400_000,
        })
        .await
        .unwrap();
    assert_eq!(removed, 4990 + 3);
    let big = store.list_streams("default").await.unwrap();
    let ids: HashSet<(&str, u64, u64)> = big
        .iter()
        .map(|s| (s.name.as_str(), s.events, s.pruned_through))
        .collect();
    assert_eq!(ids, HashSet::from([("big", 10, 4990), ("old", 0, 5003)]));
    store.close().await;

    let store = SqliteStore::open(SqliteOptions::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap(), 5003);
    let next = store.append("default", vec![ev("old")]).await.unwrap();
    assert_eq!(
        next[0].record.offset(),
        5004,
        "the pruned newest offsets are not handed out again"
    );
    store.close().await;
}
