//! What only the PostgreSQL store promises: data and offsets survive a
//! reopen, nodes may start and append at once, bodies survive JSONB, and
//! failures are `Unavailable` (fast) or `Closed`, with recovery afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row as _;
use streambus_core::event::{Event, Record};
use streambus_core::store::{EventQuery, Retention, StreamState};
use streambus_core::testsuite::{new_event, store::hook_saw_each_new_record_once_in_order};
use streambus_core::validate::NewEvent;
use streambus_core::{EventStore, StoreError};
use streambus_store::{PgOptions, PgStore};

use super::{TestDb, eventually};

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
    let (store, db) = crate::pg_store_or_skip!();
    let mut events: Vec<NewEvent> = (0..9).map(|_| ev("s")).collect();
    events.push(new_event(
        json!({"stream_id": "s", "type": "x", "id": "keep-me"}),
    ));
    let first = store.append("default", events).await.expect("append");
    store
        .set_stream_state("default", "s", StreamState::Paused, 4)
        .await
        .expect("pause");
    let last = first[9].record.offset();
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.head().await.expect("head"), last);
    let got = store.query("default", &everything()).await.expect("query");
    let want: Vec<Arc<Record>> = first.iter().map(|a| a.record.clone()).collect();
    assert_eq!(got.records, want, "records read back as appended");
    let s = &store.list_streams("default").await.expect("list")[0];
    assert_eq!(
        (s.state, s.events, s.last_offset, s.held_after),
        (StreamState::Paused, 10, last, 4)
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
        .expect("append after reopen");
    assert!(again[0].duplicate, "idempotency survives a restart");
    assert_eq!(again[1].record.offset(), last + 1, "offsets continue");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_at_once_migrate_once() {
    let Some(db) = TestDb::new() else { return };
    let opens: Vec<_> = (0..4)
        .map(|_| tokio::spawn(PgStore::open(db.options())))
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.expect("open task").expect("open"));
    }
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY 1")
        .fetch_all(stores[0].pool())
        .await
        .expect("ledger");
    let all: Vec<i64> = streambus_store::migrate::POSTGRES
        .migrations
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, all, "every migration applied once");
    for s in &stores {
        s.ping().await.expect("ping");
        s.close().await;
    }
}

/// Two nodes append at once: offsets are distinct and gapless across both, and
/// each node's hook sees its own records once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_on_two_nodes_get_gapless_offsets() {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let Some(db) = TestDb::new() else { return };
    let nodes = [Arc::new(db.open().await), Arc::new(db.open().await)];
    let seen: [Arc<Mutex<Vec<Arc<Record>>>>; 2] = Default::default();
    for (node, sink) in nodes.iter().zip(&seen) {
        let sink = sink.clone();
        node.set_commit_hook(Arc::new(move |r: &[Arc<Record>]| {
            sink.lock().expect("hook sink").extend_from_slice(r);
        }));
    }
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let node = nodes[i % 2].clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..EACH {
                    let batch = vec![ev(&format!("s{}", i % 3)), ev("all")];
                    let keyed =
                        new_event(json!({"stream_id": "k", "type": "x", "id": format!("k-{n}")}));
                    let mut batch = batch;
                    batch.push(keyed);
                    acked.extend(node.append("t", batch).await.expect("append"));
                }
                (i % 2, acked)
            })
        })
        .collect();
    let mut acked: [Vec<_>; 2] = Default::default();
    for t in tasks {
        let (node, a) = t.await.expect("task");
        acked[node].extend(a);
    }
    let mut offs: Vec<u64> = acked
        .iter()
        .flatten()
        .filter(|a| !a.duplicate)
        .map(|a| a.record.offset())
        .collect();
    offs.sort_unstable();
    let n = offs.len() as u64;
    assert_eq!(offs, (1..=n).collect::<Vec<_>>(), "distinct and gapless");
    assert_eq!(n, (TASKS * EACH * 2 + EACH) as u64, "each key stored once");
    for (node, sink) in seen.iter().enumerate() {
        let sink = sink.lock().expect("hook sink").clone();
        hook_saw_each_new_record_once_in_order(&sink, &acked[node]);
    }
    let total: u64 = nodes[0]
        .list_streams("t")
        .await
        .expect("list")
        .iter()
        .map(|s| s.events)
        .sum();
    assert_eq!(total, n, "stream counts match");
    for node in &nodes {
        node.close().await;
    }
}

#[tokio::test]
async fn jsonb_body_round_trips_the_event() {
    let (store, _db) = crate::pg_store_or_skip!();
    let rich = new_event(json!({
        "stream_id": "round.trip-1",
        "type": "campaign:send:v1:requested",
        "class": "animated",
        "source": "game \"server\" \\ 1",
        "message": "Quotes \" backslash \\ newline \n tab \t ünïcödé 🎉 <b>&amp;</b>",
        "data": {
            "nested": {"list": [1, -2, 3.5, 1e-7, null, true, "x"], "empty": {}},
            "big": u64::MAX, "small": i64::MIN, "float": 0.1, "zero": 0.0,
            "z_key": 1, "a_key": 2, "longer_key_first": 3
        },
        "metadata": {"priority": "critical", "tags": ["finals", "b"],
                     "correlation_id": "c-91", "tournament_id": 7},
        "duration_ms": 1500, "cancelable": false, "replayable": true,
        "scheduled_at": "2030-01-01T00:00:00.000Z",
    }));
    let alert = new_event(json!({"stream_id": "s", "type": "a", "class": "alert",
                                 "level": "warning", "message": "nul\u{0}inside"}));
    let want = rich.event.clone();
    let out = store
        .append("default", vec![rich, alert])
        .await
        .expect("append");
    let got = store
        .get("default", &want.id)
        .await
        .expect("get")
        .expect("stored");
    let mut expect = want.clone();
    expect.offset = out[0].record.offset();
    assert_eq!(got.event, expect, "parsed event unchanged by JSONB");
    let as_json: serde_json::Value = serde_json::from_slice(&got.json).expect("json");
    assert_eq!(as_json, serde_json::to_value(&expect).expect("value"));
    assert_eq!(*got, *out[0].record, "append returns what get returns");

    // U+0000 cannot be stored in PostgreSQL text: it becomes U+FFFD instead of
    // failing the batch.
    let nul = store
        .get("default", &out[1].record.event.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(nul.event.message, "nul\u{FFFD}inside");
    assert_eq!(nul.event.level.as_deref(), Some("warning"));

    // The cluster path stores the log's record the same way.
    let mut logged: Event = want;
    logged.id = "from-the-log".into();
    logged.offset = 1000;
    let record = Arc::new(Record::from_event("other", logged.clone()));
    store.insert_records(&[record]).await.expect("insert");
    let got = store
        .get("other", "from-the-log")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.event, logged);
    store.close().await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_fast() {
    // Needs no server: nothing listens on port 1.
    let started = Instant::now();
    let err = PgStore::open(PgOptions::new("postgres://postgres@127.0.0.1:1/postgres"))
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let mut bad_schema = PgOptions::new("postgres://postgres@127.0.0.1:1/postgres");
    bad_schema.schema = Some("no-dashes".into());
    let err = PgStore::open(bad_schema)
        .await
        .expect_err("bad schema name");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn pool_recovers_after_its_connections_are_killed() {
    let (store, db) = crate::pg_store_or_skip!();
    store.append("t", vec![ev("s")]).await.expect("append");
    let mut admin = db.admin().await;
    let killed: i64 = sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.schema)
    .fetch_one(&mut admin)
    .await
    .expect("terminate")
    .try_get(0)
    .expect("count");
    assert!(killed >= 1, "the store's connections were found");
    let recovered = eventually(Duration::from_secs(10), || async {
        store.append("t", vec![ev("s")]).await.is_ok()
    })
    .await;
    assert!(recovered, "the pool reconnects by itself");
    store.ping().await.expect("ping after recovery");
    let n = store
        .query("t", &everything())
        .await
        .expect("query")
        .records
        .len();
    assert!(n >= 2);
    store.close().await;
}

#[tokio::test]
async fn failed_append_stores_nothing_and_reuses_no_offset() {
    let (store, _db) = crate::pg_store_or_skip!();
    let first = store.append("t", vec![ev("s")]).await.expect("append");
    // A server-made id is not looked up, so a clash with a stored one violates
    // the unique index and the whole call fails.
    let mut clash = ev("s");
    clash.event.id = first[0].record.event.id.clone();
    let err = store
        .append("t", vec![ev("s"), clash])
        .await
        .expect_err("clash");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let stored = store.query("t", &everything()).await.expect("query");
    assert_eq!(stored.records.len(), 1);
    let next = store.append("t", vec![ev("s")]).await.expect("append");
    assert_eq!(next[0].record.offset(), 2, "no offset was used up");
    assert_eq!(store.list_streams("t").await.expect("list")[0].events, 2);
    store.close().await;
}

#[tokio::test]
async fn closed_store_refuses_work() {
    let (store, _db) = crate::pg_store_or_skip!();
    store.append("t", vec![ev("s")]).await.expect("append");
    store.close().await;
    let err = store.append("t", vec![ev("s")]).await.expect_err("closed");
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    assert!(matches!(store.ping().await, Err(StoreError::Closed)));
    assert!(matches!(store.head().await, Err(StoreError::Closed)));
    store.close().await; // twice is harmless
}

#[tokio::test]
async fn prune_in_many_chunks_and_offsets_never_reused_after_reopen() {
    let (store, db) = crate::pg_store_or_skip!();
    for _ in 0..5 {
        let batch = (0..1000).map(|_| ev("big")).collect();
        store.append("default", batch).await.expect("append");
    }
    let old =
        (0..3).map(|_| new_event(json!({"stream_id": "old", "type": "x", "timestamp": 1_000_000})));
    store
        .append("default", old.collect())
        .await
        .expect("append old");
    let removed = store
        .prune(Retention {
            max_events: 10,
            max_age_ms: 86_400_000,
        })
        .await
        .expect("prune");
    assert_eq!(removed, 4990 + 3);
    let listed: Vec<(String, u64, u64)> = store
        .list_streams("default")
        .await
        .expect("list")
        .into_iter()
        .map(|s| (s.name, s.events, s.pruned_through))
        .collect();
    assert_eq!(
        listed,
        vec![("big".to_owned(), 10, 4990), ("old".to_owned(), 0, 5003)]
    );
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.head().await.expect("head"), 5003);
    let next = store
        .append("default", vec![ev("old")])
        .await
        .expect("append");
    assert_eq!(
        next[0].record.offset(),
        5004,
        "pruned offsets are not reused"
    );
    store.close().await;
}
