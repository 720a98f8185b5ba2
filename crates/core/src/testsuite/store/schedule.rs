//! Conformance checks for held scheduled events (SPEC §4): per tenant,
//! idempotent on id, apart from the log, listed and handed out by due time.

use serde_json::json;

use super::super::{fresh_tenant, new_event};
use super::{all, append, with_id};
use crate::event::{Event, Status};
use crate::store::{EventQuery, EventStore, StoreError};

/// A valid event with `id`, due at `at` (RFC 3339).
fn held(id: &str, at: &str, message: &str) -> Event {
    new_event(
        json!({"id": id, "stream_id": "s", "type": "t", "message": message,
        "scheduled_at": at}),
    )
    .event
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

/// Put holds an event apart from the log and says whether it was new; a
/// second put of the id keeps the first; get returns exactly what was put;
/// list is by due time (ties by id) and honours its limit; delete says
/// whether there was one; nothing crosses tenants.
pub async fn scheduled_events_are_held_per_tenant(store: &dyn EventStore) {
    let (t, other) = (fresh_tenant("sched"), fresh_tenant("sched-o"));
    let mut late = new_event(json!({"id": "late", "stream_id": "s", "type": "goal",
        "class": "animated", "message": "later", "data": {"score": 3, "who": "ana"},
        "tags": ["finals"], "scheduled_at": "2031-06-01T12:00:00.250Z"}))
    .event;
    late.status = Some(Status::Pending);
    let early = held("early", "2030-01-01T00:00:00.000Z", "first");
    let tie_b = held("tie-b", "2030-06-01T00:00:00.000Z", "b");
    let tie_a = held("tie-a", "2030-06-01T00:00:00.000Z", "a");
    for e in [&late, &early, &tie_b, &tie_a] {
        assert!(
            store.put_scheduled(&t, e).await.expect("put_scheduled"),
            "first put of {} is new",
            e.id
        );
    }
    let again = held("early", "2035-01-01T00:00:00.000Z", "second");
    assert!(
        !store
            .put_scheduled(&t, &again)
            .await
            .expect("put_scheduled"),
        "a second put of an id is not new"
    );
    assert_eq!(
        store
            .get_scheduled(&t, "early")
            .await
            .expect("get_scheduled"),
        Some(early.clone()),
        "the first put of an id is kept"
    );
    assert_eq!(
        store
            .get_scheduled(&t, "late")
            .await
            .expect("get_scheduled"),
        Some(late.clone()),
        "get returns exactly what was put"
    );

    let listed = store.list_scheduled(&t, 100).await.expect("list_scheduled");
    assert_eq!(
        ids(&listed),
        ["early", "tie-a", "tie-b", "late"],
        "by due time, ties by id"
    );
    let first_two = store.list_scheduled(&t, 2).await.expect("list_scheduled");
    assert_eq!(
        ids(&first_two),
        ["early", "tie-a"],
        "limit keeps the soonest"
    );

    assert!(
        store.get(&t, "early").await.expect("get").is_none(),
        "a held event is not in the log"
    );
    assert!(all(store, &t, EventQuery::default()).await.is_empty());
    assert!(
        store
            .list_streams(&t)
            .await
            .expect("list_streams")
            .is_empty(),
        "holding creates no stream"
    );

    assert!(
        store
            .get_scheduled(&other, "early")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .list_scheduled(&other, 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        !store
            .delete_scheduled(&other, "early")
            .await
            .expect("delete")
    );
    assert!(
        store
            .put_scheduled(&other, &again)
            .await
            .expect("put_scheduled"),
        "an id is held per tenant, not globally"
    );

    assert!(store.delete_scheduled(&t, "early").await.expect("delete"));
    assert!(
        !store.delete_scheduled(&t, "early").await.expect("delete"),
        "deleted once"
    );
    assert!(
        store
            .get_scheduled(&t, "early")
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        store
            .get_scheduled(&other, "early")
            .await
            .expect("get")
            .map(|e| e.message),
        Some("second".to_owned()),
        "the other tenant's event is untouched"
    );
    for id in ["tie-a", "tie-b", "late"] {
        assert!(store.delete_scheduled(&t, id).await.expect("delete"));
    }
    assert!(
        store
            .delete_scheduled(&other, "early")
            .await
            .expect("delete")
    );
    assert!(
        store
            .list_scheduled(&t, 100)
            .await
            .expect("list")
            .is_empty()
    );
}

/// `due_scheduled` hands out what is due at `now_ms` (inclusive) across
/// tenants, soonest first, honouring its limit, and removes nothing; what
/// is not due yet stays out. An appended-then-deleted event is in the log
/// once and held no more.
pub async fn due_scheduled_spans_tenants_in_due_order(store: &dyn EventStore) {
    let (a, b) = (fresh_tenant("due-a"), fresh_tenant("due-b"));
    // Far in the past, so that no other check's rows fall between them.
    let puts = [
        (&b, held("b-2", "2001-01-01T00:00:02.000Z", "")),
        (&a, held("a-1", "2001-01-01T00:00:01.000Z", "")),
        (&a, held("a-3", "2001-01-01T00:00:03.000Z", "")),
        (&b, held("b-later", "2001-01-01T00:00:09.000Z", "")),
    ];
    for (t, e) in &puts {
        assert!(store.put_scheduled(t, e).await.expect("put_scheduled"));
    }
    let now = crate::time::parse_rfc3339_ms("2001-01-01T00:00:03.000Z").expect("time");
    let ours = |got: Vec<(String, Event)>| -> Vec<(String, String)> {
        got.into_iter()
            .filter(|(t, _)| *t == a || *t == b)
            .map(|(t, e)| (t, e.id))
            .collect()
    };
    let want = vec![
        (a.clone(), "a-1".to_owned()),
        (b.clone(), "b-2".to_owned()),
        (a.clone(), "a-3".to_owned()),
    ];
    let due = store.due_scheduled(now, 100).await.expect("due_scheduled");
    assert_eq!(ours(due), want, "due at now (inclusive), soonest first");
    let due = store.due_scheduled(now, 2).await.expect("due_scheduled");
    assert_eq!(ours(due), want[..2], "limit keeps the soonest");
    let due = store.due_scheduled(now, 100).await.expect("due_scheduled");
    assert_eq!(ours(due).len(), 3, "reading removes nothing");
    let before = now - 3000;
    assert!(
        ours(store.due_scheduled(before, 100).await.expect("due")).is_empty(),
        "nothing is due before its time"
    );

    // What the scheduler does: append under the same id, then delete.
    let (_, first) = &puts[1];
    let stored = append(
        store,
        &a,
        vec![crate::validate::NewEvent {
            event: first.clone(),
            supplied_id: true,
        }],
    )
    .await;
    assert!(!stored[0].duplicate);
    assert_eq!(stored[0].record.event.scheduled_at, first.scheduled_at);
    assert!(store.delete_scheduled(&a, "a-1").await.expect("delete"));
    let again = append(store, &a, vec![with_id("s", "a-1", "again")]).await;
    assert!(
        again[0].duplicate,
        "a second append of the id is a duplicate"
    );
    assert_eq!(all(store, &a, EventQuery::default()).await.len(), 1);
    let due = store.due_scheduled(now, 100).await.expect("due_scheduled");
    assert_eq!(ours(due), want[1..], "the delivered one is held no more");

    for (t, e) in &puts {
        let was_held = store.delete_scheduled(t, &e.id).await.expect("delete");
        assert_eq!(was_held, e.id != "a-1", "{} still held", e.id);
    }
    assert!(ours(store.due_scheduled(now, 100).await.expect("due")).is_empty());
}

/// An event without a usable `scheduled_at` cannot be held: `Conflict`, and
/// nothing is stored.
pub async fn scheduled_event_needs_scheduled_at(store: &dyn EventStore) {
    let t = fresh_tenant("sched-bad");
    let mut e = held("no-time", "2030-01-01T00:00:00.000Z", "");
    e.scheduled_at = None;
    match store.put_scheduled(&t, &e).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for a missing scheduled_at, got {other:?}"),
    }
    e.scheduled_at = Some("soon".into());
    match store.put_scheduled(&t, &e).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for a bad scheduled_at, got {other:?}"),
    }
    assert!(
        store
            .list_scheduled(&t, 100)
            .await
            .expect("list")
            .is_empty()
    );
}
