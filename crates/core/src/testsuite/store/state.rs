//! Conformance checks for live keyed state (SPEC §2 "State", issue 6):
//! versions, merge patch, no-op writes, compare-and-set, tombstones, the
//! memory of unannounced changes, concurrency and isolation.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use serde_json::{Value, json};

use super::super::fresh_tenant;
use crate::state::{StateChange, StateDoc, StateOutcome, StateWrite};
use crate::store::{EventStore, StoreError};

/// Writes as the server does, minus the publishing: an unannounced change
/// found first is marked announced and the write tried again; the write's
/// own change is marked announced.
async fn write(
    store: &dyn EventStore,
    tenant: &str,
    stream: &str,
    key: &str,
    change: StateChange,
    expected: Option<u64>,
) -> Result<StateOutcome, StoreError> {
    let write = StateWrite {
        change,
        expected_version: expected,
        max_value_bytes: 0,
    };
    loop {
        let outcome = store
            .state_write(tenant, stream, key, &write, 1_000)
            .await?;
        let announce = match &outcome {
            StateOutcome::Unannounced(owed) => Some(owed.version),
            done => done.notice(key).map(|n| n.version),
        };
        if let Some(version) = announce {
            store
                .state_announced(tenant, stream, key, version)
                .await
                .expect("state_announced");
        }
        if !matches!(outcome, StateOutcome::Unannounced(_)) {
            return Ok(outcome);
        }
    }
}

/// One write, without the announcing.
async fn raw(store: &dyn EventStore, tenant: &str, key: &str, change: StateChange) -> StateOutcome {
    store
        .state_write(tenant, "s", key, &StateWrite::new(change), 1_000)
        .await
        .expect("state_write")
}

async fn put(store: &dyn EventStore, t: &str, stream: &str, key: &str, v: Value) -> StateOutcome {
    write(store, t, stream, key, StateChange::Put(v), None)
        .await
        .expect("state put")
}

async fn patch(store: &dyn EventStore, t: &str, stream: &str, key: &str, v: Value) -> StateOutcome {
    write(store, t, stream, key, StateChange::Patch(v), None)
        .await
        .expect("state patch")
}

async fn get(store: &dyn EventStore, t: &str, stream: &str, key: &str) -> Option<StateDoc> {
    store.state_get(t, stream, key).await.expect("state_get")
}

fn changed(w: &StateOutcome) -> (&StateDoc, &Value) {
    match w {
        StateOutcome::Changed { doc, patch } => (doc, patch),
        other => panic!("want Changed, got {other:?}"),
    }
}

/// Put creates version 1; a patch makes version 2 and reports the merge
/// patch between them; a put or patch that changes nothing stores nothing
/// and keeps the version; get and list return exactly what was written,
/// list by key; delete leaves nothing to read, a second delete finds
/// nothing, and a new put goes on from the delete's version.
pub async fn state_documents_keep_versions(store: &dyn EventStore) {
    let t = fresh_tenant("state");
    let first = put(
        store,
        &t,
        "board",
        "red",
        json!({"score": 1, "name": "Red", "x": null}),
    )
    .await;
    let (doc, p) = changed(&first);
    assert_eq!((doc.version, doc.updated_ms), (1, 1_000));
    assert_eq!(
        doc.value,
        json!({"score": 1, "name": "Red"}),
        "null members are dropped"
    );
    assert_eq!(p, &doc.value, "a new document's patch is its value");
    assert_eq!(get(store, &t, "board", "red").await.as_ref(), Some(doc));

    let second = patch(
        store,
        &t,
        "board",
        "red",
        json!({"score": 2.5, "tags": ["a", null]}),
    )
    .await;
    let (doc, p) = changed(&second);
    assert_eq!(doc.version, 2);
    assert_eq!(
        doc.value,
        json!({"score": 2.5, "name": "Red", "tags": ["a", null]})
    );
    assert_eq!(p, &json!({"score": 2.5, "tags": ["a", null]}));
    assert_eq!(
        get(store, &t, "board", "red").await.as_ref(),
        Some(doc),
        "read back exactly"
    );

    for change in [
        StateChange::Put(json!({"tags": ["a", null], "name": "Red", "score": 2.5})),
        StateChange::Patch(json!({"score": 2.5, "gone": null})),
        StateChange::Patch(json!({})),
    ] {
        let w = write(store, &t, "board", "red", change.clone(), None)
            .await
            .expect("no-op write");
        assert!(
            matches!(&w, StateOutcome::Unchanged(d) if d.version == 2),
            "{change:?} changes nothing: {w:?}"
        );
        assert_eq!(w.notice("red"), None, "nothing to announce");
    }
    assert_eq!(
        get(store, &t, "board", "red").await.map(|d| d.version),
        Some(2)
    );

    put(store, &t, "board", "blue", json!(7)).await;
    put(store, &t, "board", "Amber", json!("x")).await;
    let keys: Vec<(String, u64)> = store
        .state_list(&t, "board")
        .await
        .expect("state_list")
        .into_iter()
        .map(|d| (d.key, d.version))
        .collect();
    let want = [("Amber", 1), ("blue", 1), ("red", 2)].map(|(k, v)| (k.to_owned(), v));
    assert_eq!(keys, want, "by key, byte order");

    let gone = write(store, &t, "board", "red", StateChange::Delete, None)
        .await
        .expect("delete");
    assert!(
        matches!(gone, StateOutcome::Deleted { version: 3, .. }),
        "{gone:?}"
    );
    let notice = gone.notice("red").expect("a delete is announced");
    assert_eq!((notice.version, notice.value), (3, None));
    assert_eq!(get(store, &t, "board", "red").await, None);
    assert_eq!(store.state_list(&t, "board").await.expect("list").len(), 2);
    let again = write(store, &t, "board", "red", StateChange::Delete, None)
        .await
        .expect("delete again");
    assert_eq!(again, StateOutcome::Absent);
    let back = put(store, &t, "board", "red", json!({"score": 0})).await;
    assert_eq!(changed(&back).0.version, 4, "versions go on after a delete");
}

/// A write with an expected version applies only at that version (0: only
/// when there is no document); otherwise `Conflict` and nothing changes. A
/// result over the size limit is `TooLarge` and changes nothing.
pub async fn state_writes_compare_and_set(store: &dyn EventStore) {
    let t = fresh_tenant("state-cas");
    let create = |v| StateChange::Put(json!({"v": v}));
    write(store, &t, "s", "k", create(1), Some(0))
        .await
        .expect("create-only on a missing key");
    match write(store, &t, "s", "k", create(2), Some(0)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for create-only on an existing key, got {other:?}"),
    }
    match write(store, &t, "s", "k", create(2), Some(7)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for a stale version, got {other:?}"),
    }
    match write(store, &t, "s", "k", StateChange::Delete, Some(2)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for a stale delete, got {other:?}"),
    }
    match write(store, &t, "s", "missing", create(1), Some(1)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for a version of a missing key, got {other:?}"),
    }
    let doc = get(store, &t, "s", "k").await.expect("kept");
    assert_eq!(
        (doc.version, doc.value),
        (1, json!({"v": 1})),
        "refusals change nothing"
    );
    assert_eq!(get(store, &t, "s", "missing").await, None);

    let w = write(store, &t, "s", "k", create(2), Some(1))
        .await
        .expect("at the right version");
    assert_eq!(changed(&w).0.version, 2);

    let big = StateWrite {
        change: StateChange::Patch(json!({"blob": "x".repeat(100)})),
        expected_version: None,
        max_value_bytes: 64,
    };
    match store.state_write(&t, "s", "k", &big, 2_000).await {
        Err(StoreError::TooLarge(_)) => {}
        other => panic!("want TooLarge, got {other:?}"),
    }
    assert_eq!(get(store, &t, "s", "k").await.map(|d| d.version), Some(2));
}

/// Each change is stored unannounced, and until `state_announced` marks
/// its version every write of the key — one that would change nothing, a
/// stale compare-and-set and a delete of nothing included — stores nothing
/// and answers `Unannounced` with that change; marking an older version
/// changes nothing.
pub async fn state_unannounced_change_comes_first(store: &dyn EventStore) {
    let t = fresh_tenant("state-ann");
    assert!(matches!(
        raw(store, &t, "k", StateChange::Put(json!({"a": 1}))).await,
        StateOutcome::Changed { .. }
    ));
    for change in [
        StateChange::Put(json!({"a": 1})),
        StateChange::Patch(json!({"a": 2})),
        StateChange::Delete,
    ] {
        match raw(store, &t, "k", change.clone()).await {
            StateOutcome::Unannounced(owed) => {
                assert_eq!((owed.key.as_str(), owed.version), ("k", 1));
                assert_eq!(owed.patch, json!({"a": 1}));
                assert_eq!(owed.value, Some(json!({"a": 1})));
                assert_eq!(owed.at_ms, 1_000);
            }
            other => panic!("{change:?}: want Unannounced, got {other:?}"),
        }
    }
    let stale = StateWrite {
        change: StateChange::Patch(json!({"a": 3})),
        expected_version: Some(9),
        max_value_bytes: 0,
    };
    let owed = store.state_write(&t, "s", "k", &stale, 1_000).await;
    assert!(matches!(owed, Ok(StateOutcome::Unannounced(_))), "{owed:?}");
    assert_eq!(
        get(store, &t, "s", "k").await.map(|d| (d.version, d.value)),
        Some((1, json!({"a": 1})))
    );

    store
        .state_announced(&t, "s", "k", 1)
        .await
        .expect("state_announced");
    let second = raw(store, &t, "k", StateChange::Patch(json!({"a": 2}))).await;
    assert_eq!(changed(&second).0.version, 2);
    store
        .state_announced(&t, "s", "k", 1)
        .await
        .expect("an old version");
    let owed = raw(store, &t, "k", StateChange::Patch(json!({}))).await;
    assert!(
        matches!(&owed, StateOutcome::Unannounced(n) if n.version == 2 && n.patch == json!({"a": 2})),
        "{owed:?}"
    );
    store
        .state_announced(&t, "s", "k", 2)
        .await
        .expect("state_announced");
    assert!(matches!(
        raw(store, &t, "k", StateChange::Patch(json!({}))).await,
        StateOutcome::Unchanged(_)
    ));

    assert!(matches!(
        raw(store, &t, "k", StateChange::Delete).await,
        StateOutcome::Deleted { version: 3, .. }
    ));
    let owed = raw(store, &t, "k", StateChange::Delete).await;
    assert!(
        matches!(&owed, StateOutcome::Unannounced(n) if n.version == 3 && n.value.is_none()),
        "{owed:?}"
    );
    store
        .state_announced(&t, "s", "k", 3)
        .await
        .expect("state_announced");
    assert_eq!(
        raw(store, &t, "k", StateChange::Delete).await,
        StateOutcome::Absent
    );
    store
        .state_announced(&t, "nothing", "here", 5)
        .await
        .expect("marking an unknown key changes nothing");
}

/// Concurrent writes of one key — a missing one first — each get a version
/// of their own, and every patch is in the final value (each writer
/// announcing as the server does).
pub async fn state_concurrent_writes_get_distinct_versions(store: &dyn EventStore) {
    let t = fresh_tenant("state-race");
    const N: usize = 16;
    let writes: Vec<Pin<Box<dyn Future<Output = StateOutcome> + Send + '_>>> = (0..N)
        .map(|i| {
            let t = t.clone();
            Box::pin(async move {
                let mut member = serde_json::Map::new();
                member.insert(format!("m{i}"), json!(i));
                patch(store, &t, "s", "k", Value::Object(member)).await
            }) as Pin<Box<dyn Future<Output = StateOutcome> + Send + '_>>
        })
        .collect();
    let done = join_all(writes).await;
    let mut versions: Vec<u64> = done.iter().map(|w| changed(w).0.version).collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=N as u64).collect::<Vec<_>>(),
        "one version each"
    );
    let doc = get(store, &t, "s", "k").await.expect("stored");
    assert_eq!(doc.version, N as u64);
    let members = doc.value.as_object().expect("an object").len();
    assert_eq!(members, N, "no patch lost: {}", doc.value);
}

/// Nothing crosses tenants or streams: the same stream and key in another
/// tenant, and the same key in another stream, are other documents.
pub async fn state_never_crosses_tenants_or_streams(store: &dyn EventStore) {
    let (a, b) = (fresh_tenant("state-a"), fresh_tenant("state-b"));
    put(store, &a, "board", "k", json!("a")).await;
    patch(store, &a, "board", "k", json!("a2")).await;
    put(store, &b, "board", "k", json!("b")).await;
    put(store, &a, "other", "k", json!("other")).await;
    assert_eq!(
        get(store, &a, "board", "k")
            .await
            .map(|d| (d.version, d.value)),
        Some((2, json!("a2")))
    );
    assert_eq!(
        get(store, &b, "board", "k")
            .await
            .map(|d| (d.version, d.value)),
        Some((1, json!("b")))
    );
    assert_eq!(
        get(store, &a, "other", "k").await.map(|d| d.value),
        Some(json!("other"))
    );
    assert_eq!(store.state_list(&b, "board").await.expect("list").len(), 1);
    assert!(
        store
            .state_list(&b, "other")
            .await
            .expect("list")
            .is_empty()
    );
    write(store, &b, "board", "k", StateChange::Delete, None)
        .await
        .expect("delete");
    assert!(
        get(store, &a, "board", "k").await.is_some(),
        "a's document stays"
    );
    match write(store, &b, "board", "k", StateChange::Put(json!(1)), Some(2)).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("b's key has no version 2 of its own: {other:?}"),
    }
}

/// Polls every future until all are done (core has no runtime to spawn on;
/// the store's own tasks or pool give the real concurrency).
async fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> Vec<T> {
    let mut slots: Vec<Option<Pin<Box<dyn Future<Output = T> + Send + 'a>>>> =
        futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = slots.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, done) in slots.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot
                && let Poll::Ready(v) = f.as_mut().poll(cx)
            {
                *done = Some(v);
                *slot = None;
            }
        }
        if slots.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}
