//! Conformance checks for the lifecycle in storage: per-(event, overlay)
//! status rows and the event-level status kept in the stored body.

use serde_json::json;

use super::super::{fresh_tenant, new_event};
use super::append;
use crate::event::Status;
use crate::lifecycle::AnimationStatus;
use crate::store::{EventStore, StoreError};

fn row(event: &str, overlay: &str, status: Status, play: u32, at: i64) -> AnimationStatus {
    AnimationStatus {
        event_id: event.into(),
        overlay_id: overlay.into(),
        status,
        play,
        started_ms: (status != Status::Pending).then_some(at),
        ended_ms: status.is_terminal().then_some(at + 5),
        updated_ms: at,
    }
}

/// Status rows: upsert by (event, overlay); allowed transitions are written,
/// a repeat or an older play keeps the stored row, a refused transition is a
/// `Conflict` that changes nothing; listed by event (by overlay id) and by
/// overlay (newest first, limited); per tenant.
pub async fn animation_status_rows_follow_the_lifecycle(store: &dyn EventStore) {
    let (t, other) = (fresh_tenant("anim"), fresh_tenant("anim-o"));
    let tenant = t.as_str();
    let put = |r: AnimationStatus| async move { store.put_animation_status(tenant, &r).await };
    let first = row("e1", "main", Status::Pending, 0, 1_000);
    assert_eq!(put(first.clone()).await.expect("insert"), first);
    let playing = row("e1", "main", Status::Active, 0, 2_000);
    assert_eq!(
        put(playing.clone()).await.expect("pending -> active"),
        playing
    );
    assert_eq!(
        put(row("e1", "main", Status::Active, 0, 2_500))
            .await
            .expect("repeat"),
        playing,
        "a repeated status keeps the stored row"
    );
    let refused = put(row("e1", "main", Status::Pending, 0, 2_600)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "active -> pending is refused: {refused:?}"
    );
    let done = row("e1", "main", Status::Completed, 0, 3_000);
    assert_eq!(put(done.clone()).await.expect("active -> completed"), done);
    let refused = put(row("e1", "main", Status::Active, 0, 3_100)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    // A replay is a newer play; a late report of the old play is ignored.
    let replay = row("e1", "main", Status::Pending, 1, 4_000);
    assert_eq!(put(replay.clone()).await.expect("replay"), replay);
    assert_eq!(
        put(row("e1", "main", Status::Failed, 0, 4_100))
            .await
            .expect("stale play"),
        replay,
        "an older play never overwrites a newer one"
    );

    let side = row("e1", "side", Status::Active, 0, 5_000);
    put(side.clone()).await.expect("second overlay");
    let e2 = row("e2", "main", Status::Pending, 0, 6_000);
    put(e2.clone()).await.expect("second event");

    let by_event = store
        .animation_status_by_event(&t, "e1")
        .await
        .expect("by event");
    assert_eq!(
        by_event,
        [replay.clone(), side],
        "one row per overlay, by overlay id"
    );
    let by_overlay = store
        .animation_status_by_overlay(&t, "main", 10)
        .await
        .expect("by overlay");
    assert_eq!(by_overlay, [e2.clone(), replay], "newest first");
    let limited = store
        .animation_status_by_overlay(&t, "main", 1)
        .await
        .expect("by overlay");
    assert_eq!(limited, [e2]);

    let theirs = store
        .animation_status_by_event(&other, "e1")
        .await
        .expect("other tenant");
    assert!(theirs.is_empty(), "rows are per tenant");
    assert!(
        store
            .animation_status_by_overlay(&other, "main", 10)
            .await
            .expect("other tenant")
            .is_empty()
    );
}

/// Event-level status: each allowed change rewrites `status`, `started_at`
/// and `completed_at` in the stored body (so `get` shows it); a repeat
/// changes nothing; a refused transition or an event without a lifecycle is
/// a `Conflict`; an unknown event is `NotFound`; offsets and the rest of
/// the event are untouched.
pub async fn event_status_is_kept_in_the_stored_body(store: &dyn EventStore) {
    let t = fresh_tenant("evstatus");
    let out = append(
        store,
        &t,
        vec![
            new_event(
                json!({"stream_id": "s", "type": "high_score", "class": "animated",
                "id": "anim-1", "message": "New high score!", "data": {"score": 9100}}),
            ),
            new_event(json!({"stream_id": "s", "type": "tick", "id": "data-1"})),
        ],
    )
    .await;
    let original = out[0].record.clone();
    assert_eq!(original.event.status, Some(Status::Pending));

    let active = store
        .set_event_status(&t, "anim-1", Status::Active, 1_642_598_400_123)
        .await
        .expect("pending -> active");
    assert_eq!(active.event.status, Some(Status::Active));
    assert_eq!(
        active.event.started_at.as_deref(),
        Some("2022-01-19T13:20:00.123Z")
    );
    assert_eq!(active.offset(), original.offset(), "the offset stays");
    let stored = store.get(&t, "anim-1").await.expect("get").expect("stored");
    assert_eq!(*stored, *active, "get shows the new status");
    let v: serde_json::Value = serde_json::from_slice(&stored.json).expect("json");
    assert_eq!(v["status"], "active");
    assert_eq!(v["started_at"], "2022-01-19T13:20:00.123Z");
    assert_eq!(v["offset"], original.offset());
    assert_eq!(v["data"]["score"], 9100);
    assert_eq!(v["message"], "New high score!");

    let again = store
        .set_event_status(&t, "anim-1", Status::Active, 1_642_598_401_000)
        .await
        .expect("repeat");
    assert_eq!(*again, *active, "a repeat changes nothing");

    let refused = store
        .set_event_status(&t, "anim-1", Status::Pending, 1_642_598_402_000)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    let done = store
        .set_event_status(&t, "anim-1", Status::Completed, 1_642_598_405_000)
        .await
        .expect("active -> completed");
    assert_eq!(
        done.event.completed_at.as_deref(),
        Some("2022-01-19T13:20:05.000Z")
    );
    assert_eq!(done.event.started_at, active.event.started_at);

    let replayed = store
        .set_event_status(&t, "anim-1", Status::Pending, 1_642_598_406_000)
        .await
        .expect("replay");
    assert_eq!(replayed.event.status, Some(Status::Pending));
    assert_eq!(
        (
            replayed.event.started_at.clone(),
            replayed.event.completed_at.clone()
        ),
        (None, None)
    );
    let stored = store.get(&t, "anim-1").await.expect("get").expect("stored");
    assert_eq!(*stored, *replayed);

    let untracked = store
        .set_event_status(&t, "data-1", Status::Active, 1)
        .await;
    assert!(
        matches!(untracked, Err(StoreError::Conflict(_))),
        "{untracked:?}"
    );
    let missing = store.set_event_status(&t, "nope", Status::Active, 1).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let elsewhere = store
        .set_event_status(&fresh_tenant("evstatus-o"), "anim-1", Status::Active, 1)
        .await;
    assert!(
        matches!(elsewhere, Err(StoreError::NotFound)),
        "per tenant: {elsewhere:?}"
    );
}
