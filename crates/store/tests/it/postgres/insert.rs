//! The cluster path: `insert_records` stores records numbered by the log,
//! idempotently, while several nodes insert the same batches at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::json;
use streambus_core::EventStore;
use streambus_core::event::Record;
use streambus_core::store::{EventQuery, StreamState};
use streambus_core::testsuite::new_event;
use streambus_store::PgStore;

/// A record as the cluster log would hand it over: offset assigned, id unique.
fn record(tenant: &str, stream: &str, offset: u64) -> Arc<Record> {
    let mut e = new_event(json!({
        "stream_id": stream,
        "type": "score",
        "id": format!("log-{offset}"),
        "data": {"n": offset},
    }))
    .event;
    e.offset = offset;
    Arc::new(Record::from_event(tenant, e))
}

fn everything() -> EventQuery {
    EventQuery {
        limit: 100_000,
        ..Default::default()
    }
}

type Seen = Arc<Mutex<Vec<Arc<Record>>>>;

fn hook_into(store: &PgStore) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    store.set_commit_hook(Arc::new(move |r: &[Arc<Record>]| {
        sink.lock().expect("hook sink").extend_from_slice(r);
    }));
    seen
}

fn offsets(records: &[Arc<Record>]) -> Vec<u64> {
    records.iter().map(|r| r.offset()).collect()
}

#[tokio::test]
async fn insert_records_skips_stored_offsets_and_ids_and_counts_once() {
    let (store, _db) = crate::pg_store_or_skip!();
    let seen = hook_into(&store);
    let (r100, r101, r103) = (
        record("default", "c", 100),
        record("default", "c", 101),
        record("default", "c", 103),
    );
    store
        .insert_records(&[r100.clone(), r101.clone()])
        .await
        .expect("first insert");
    store
        .insert_records(&[r103.clone(), r101.clone()])
        .await
        .expect("overlapping insert");
    // The same id under another offset (a re-published message) is skipped.
    let mut again = r100.event.clone();
    again.offset = 104;
    store
        .insert_records(&[Arc::new(Record::from_event("default", again))])
        .await
        .expect("id conflict is skipped");
    store.insert_records(&[]).await.expect("empty batch");

    let got = store.query("default", &everything()).await.expect("query");
    assert_eq!(offsets(&got.records), vec![100, 101, 103]);
    assert_eq!(got.records[0].event, r100.event, "stored as given");
    let s = &store.list_streams("default").await.expect("list")[0];
    assert_eq!(
        (s.events, s.last_offset, s.state),
        (3, 103, StreamState::Active)
    );
    assert_eq!(store.head().await.expect("head"), 103);

    let seen = seen.lock().expect("hook sink").clone();
    assert_eq!(
        offsets(&seen),
        vec![100, 101, 103],
        "hook: inserted rows only"
    );
    assert!(
        Arc::ptr_eq(&seen[2], &r103),
        "the hook gets the given records"
    );

    let next = store
        .append(
            "default",
            vec![new_event(json!({"stream_id": "c", "type": "x"}))],
        )
        .await
        .expect("append after insert");
    assert_eq!(
        next[0].record.offset(),
        104,
        "append continues after the head"
    );
    store.close().await;
}

#[tokio::test]
async fn insert_records_keeps_a_paused_stream_paused() {
    let (store, _db) = crate::pg_store_or_skip!();
    store
        .set_stream_state("t", "s", StreamState::Paused, 7)
        .await
        .expect("pause");
    store
        .insert_records(&[record("t", "s", 8), record("t", "s", 9)])
        .await
        .expect("insert");
    let s = &store.list_streams("t").await.expect("list")[0];
    assert_eq!(
        (s.state, s.held_after, s.events, s.last_offset),
        (StreamState::Paused, 7, 2, 9)
    );
    store.close().await;
}

/// Three nodes (three stores on one schema) consume the same log of 3,000
/// records at once, in contiguous batches cut at different places.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn three_nodes_insert_overlapping_batches_concurrently() {
    const TOTAL: u64 = 3000;
    let Some(db) = crate::postgres::TestDb::new() else {
        return;
    };
    let tenants = ["alpha", "beta"];
    let log: Vec<Arc<Record>> = (1..=TOTAL)
        .map(|o| {
            let tenant = tenants[(o % 2) as usize];
            record(tenant, &format!("s{}", o % 5), o)
        })
        .collect();
    let log = Arc::new(log);

    let mut nodes = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(db.open().await);
        let seen = hook_into(&store);
        nodes.push((store, seen));
    }
    let tasks: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, (store, _))| {
            let (store, log) = (store.clone(), log.clone());
            tokio::spawn(async move {
                // Node i cuts its batches at a different phase and size.
                let size = 200 + 50 * i;
                let mut start = 0;
                let mut end = 70 * i + 1;
                while start < log.len() {
                    let end_at = end.min(log.len());
                    store.insert_records(&log[start..end_at]).await?;
                    start = end_at;
                    end = start + size;
                }
                Ok::<_, streambus_core::StoreError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("node task").expect("insert_records");
    }

    let store = &nodes[0].0;
    let mut stored = Vec::new();
    for t in tenants {
        stored.extend(store.query(t, &everything()).await.expect("query").records);
    }
    let mut got = offsets(&stored);
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=TOTAL).collect::<Vec<_>>(),
        "each record stored once"
    );
    assert_eq!(store.head().await.expect("head"), TOTAL);

    let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for r in log.iter() {
        let e = want
            .entry((r.tenant.clone(), r.event.stream_id.clone()))
            .or_default();
        e.0 += 1;
        e.1 = e.1.max(r.offset());
    }
    let mut listed = BTreeMap::new();
    for t in tenants {
        for s in store.list_streams(t).await.expect("list") {
            listed.insert((t.to_owned(), s.name), (s.events, s.last_offset));
        }
    }
    assert_eq!(listed, want, "stream counts and last offsets");

    let mut union = Vec::new();
    for (i, (_, seen)) in nodes.iter().enumerate() {
        let seen = seen.lock().expect("hook sink").clone();
        let offs = offsets(&seen);
        assert!(
            offs.windows(2).all(|w| w[0] < w[1]),
            "node {i}'s hook saw offsets out of order"
        );
        for r in &seen {
            assert_eq!(**r, *log[(r.offset() - 1) as usize], "hook record differs");
        }
        eprintln!("node {i} inserted {} records", offs.len());
        union.extend(offs);
    }
    let distinct: HashSet<u64> = union.iter().copied().collect();
    assert_eq!(
        (union.len(), distinct.len()),
        (TOTAL as usize, TOTAL as usize),
        "across the nodes' hooks every record appears exactly once"
    );
    for (store, _) in &nodes {
        store.close().await;
    }
}
