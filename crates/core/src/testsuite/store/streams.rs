//! Stream checks: auto-creation, state, and retention.

use serde_json::json;

use super::{all, append, ev, offsets, stream};
use crate::store::{EventQuery, EventStore, Retention, StreamState};
use crate::testsuite::{fresh_tenant, new_event};
use crate::validate::NewEvent;

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
        .set_stream_state(&t, "alpha", StreamState::Paused, 0)
        .await
        .expect("set state");
    assert_eq!(paused.state, StreamState::Paused);
    assert_eq!(paused.held_after, 0);
    let held = store
        .set_stream_state(&t, "alpha", StreamState::Paused, out[1].record.offset())
        .await
        .expect("set hold point");
    assert_eq!(
        held.held_after,
        out[1].record.offset(),
        "the hold point is kept"
    );
    let listed = stream(store, &t, "alpha").await;
    assert_eq!(listed.held_after, out[1].record.offset(), "and listed");
    assert_eq!(paused.events, 3);
    let beta = store
        .set_stream_state(&t, "beta", StreamState::Stopped, 0)
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
