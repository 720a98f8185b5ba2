//! Conformance checks for outgoing webhook deliveries (issue 6 point 4):
//! inserted once per id, listed newest first, claimed with a lease by one
//! claimant at a time, results written only under the claim's lease,
//! redelivered and deleted per webhook, never across tenants.
//!
//! Times are synthetic (a base far from now), so the checks decide what is
//! due, not the clock.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use super::super::fresh_tenant;
use crate::store::{AttemptResult, Delivery, DeliveryState, EventStore};

/// A synthetic "now", ms.
const T0: i64 = 1_000_000;

fn delivery(webhook: &str, event: &str, offset: u64, due_ms: i64) -> Delivery {
    let mut d = Delivery::new(webhook, event, offset, T0);
    d.next_attempt_ms = due_ms;
    d
}

fn ids(list: &[Delivery]) -> Vec<&str> {
    list.iter().map(|d| d.id.as_str()).collect()
}

/// Claims whose rows belong to `tenant`.
fn ours(claimed: Vec<(String, Delivery)>, tenant: &str) -> Vec<Delivery> {
    claimed
        .into_iter()
        .filter(|(t, _)| t == tenant)
        .map(|(_, d)| d)
        .collect()
}

/// Put stores each id once and says how many were new; a repeated id keeps
/// the stored row; get returns exactly what was stored; list is newest
/// event first, by state when asked, and honours its limit; the last
/// offset is per webhook; nothing crosses tenants or webhooks.
pub async fn deliveries_are_stored_once_per_id(store: &dyn EventStore) {
    let (t, other) = (fresh_tenant("dlv"), fresh_tenant("dlv-o"));
    let a1 = delivery("a", "e1", 10, T0);
    let a2 = delivery("a", "e2", 20, T0);
    let b1 = delivery("b", "e1", 10, T0);
    assert_eq!(
        store
            .put_deliveries(&t, &[a1.clone(), a2.clone(), b1.clone()])
            .await
            .expect("put_deliveries"),
        3
    );
    assert_eq!(store.put_deliveries(&t, &[]).await.expect("put nothing"), 0);
    let mut changed = a1.clone();
    changed.attempts = 5;
    changed.state = DeliveryState::Dead;
    let a3 = delivery("a", "e3", 30, T0);
    assert_eq!(
        store
            .put_deliveries(&t, &[changed, a3.clone()])
            .await
            .expect("put_deliveries"),
        1,
        "a stored id is skipped, a new neighbour stored"
    );
    assert_eq!(
        store.get_delivery(&t, &a1.id).await.expect("get"),
        Some(a1.clone()),
        "the first put of an id is kept as it was"
    );
    assert_ne!(a1.id, b1.id, "one event, two webhooks: two deliveries");

    let listed = store
        .list_deliveries(&t, "a", None, 100)
        .await
        .expect("list");
    assert_eq!(
        ids(&listed),
        [&a3.id, &a2.id, &a1.id],
        "newest event first, one webhook only"
    );
    let first = store.list_deliveries(&t, "a", None, 1).await.expect("list");
    assert_eq!(ids(&first), [&a3.id], "limit keeps the newest");
    assert!(
        store
            .list_deliveries(&t, "a", Some(DeliveryState::Dead), 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store
            .list_deliveries(&t, "a", Some(DeliveryState::Pending), 100)
            .await
            .expect("list")
            .len(),
        3
    );
    assert_eq!(
        store.last_delivery_offset(&t, "a").await.expect("last"),
        Some(30)
    );
    assert_eq!(
        store.last_delivery_offset(&t, "b").await.expect("last"),
        Some(10)
    );
    assert_eq!(
        store.last_delivery_offset(&t, "c").await.expect("last"),
        None
    );

    assert_eq!(store.get_delivery(&other, &a1.id).await.expect("get"), None);
    assert!(
        store
            .list_deliveries(&other, "a", None, 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.last_delivery_offset(&other, "a").await.expect("last"),
        None
    );
    assert_eq!(
        store
            .redeliver(&other, &a1.id, T0)
            .await
            .expect("redeliver"),
        None
    );
    assert_eq!(
        store.delete_deliveries(&other, "a").await.expect("delete"),
        0
    );

    assert_eq!(store.delete_deliveries(&t, "a").await.expect("delete"), 3);
    assert!(
        store
            .list_deliveries(&t, "a", None, 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.get_delivery(&t, &b1.id).await.expect("get"),
        Some(b1),
        "another webhook's deliveries stay"
    );
}

/// A claim takes due, pending, unleased rows soonest first up to its
/// limit and leases them; leased rows are not claimed again until the
/// lease lapses; a result is written only under the claim's lease and
/// counts the attempt; delivered and dead rows are never claimed;
/// redeliver makes any row pending and due again with no attempts.
pub async fn deliveries_are_claimed_with_a_lease(store: &dyn EventStore) {
    let t = fresh_tenant("claim");
    let soon = delivery("h", "e1", 1, T0 - 20);
    let later = delivery("h", "e2", 2, T0 - 10);
    let future = delivery("h", "e3", 3, T0 + 60_000);
    store
        .put_deliveries(&t, &[future.clone(), later.clone(), soon.clone()])
        .await
        .expect("put_deliveries");

    let lease = T0 + 30_000;
    let first = ours(
        store.claim_deliveries(T0, lease, 1).await.expect("claim"),
        &t,
    );
    assert_eq!(ids(&first), [&soon.id], "the soonest due, up to the limit");
    assert_eq!(first[0].lease_until_ms, lease, "returned as leased");
    let rest = ours(
        store.claim_deliveries(T0, lease, 10).await.expect("claim"),
        &t,
    );
    assert_eq!(
        ids(&rest),
        [&later.id],
        "leased and not-yet-due rows are not taken"
    );
    assert!(
        ours(
            store
                .claim_deliveries(T0 + 1, T0 + 40_000, 10)
                .await
                .expect("claim"),
            &t
        )
        .is_empty(),
        "nothing while leased"
    );

    let failed = AttemptResult {
        state: DeliveryState::Pending,
        next_attempt_ms: T0 + 100,
        last_status: Some(500),
        last_error: Some("HTTP 500".into()),
    };
    assert!(
        !store
            .finish_delivery(&t, &soon.id, lease + 1, &failed, T0 + 5)
            .await
            .expect("finish"),
        "another lease's token writes nothing"
    );
    assert!(
        store
            .finish_delivery(&t, &soon.id, lease, &failed, T0 + 5)
            .await
            .expect("finish")
    );
    let got = store
        .get_delivery(&t, &soon.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        (
            got.state,
            got.attempts,
            got.next_attempt_ms,
            got.lease_until_ms
        ),
        (DeliveryState::Pending, 1, T0 + 100, 0),
        "the attempt is counted and the lease released"
    );
    assert_eq!(got.last_status, Some(500));
    assert_eq!(got.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(got.updated_ms, T0 + 5);
    assert!(
        !store
            .finish_delivery(&t, &soon.id, lease, &failed, T0 + 6)
            .await
            .expect("finish"),
        "a token is used once"
    );

    // The lease on `later` lapses: another claimant takes it, and the
    // first claimant's late result is refused.
    let lapsed = ours(
        store
            .claim_deliveries(lease, lease + 30_000, 10)
            .await
            .expect("claim"),
        &t,
    );
    assert_eq!(
        ids(&lapsed),
        [&later.id, &soon.id],
        "a lapsed lease is claimed again"
    );
    assert!(
        !store
            .finish_delivery(&t, &later.id, lease, &failed, lease + 1)
            .await
            .expect("finish")
    );
    let delivered = AttemptResult {
        state: DeliveryState::Delivered,
        next_attempt_ms: 0,
        last_status: Some(204),
        last_error: None,
    };
    let dead = AttemptResult {
        state: DeliveryState::Dead,
        next_attempt_ms: 0,
        last_status: None,
        last_error: Some("timed out".into()),
    };
    assert!(
        store
            .finish_delivery(&t, &later.id, lease + 30_000, &delivered, lease + 2)
            .await
            .expect("finish")
    );
    assert!(
        store
            .finish_delivery(&t, &soon.id, lease + 30_000, &dead, lease + 2)
            .await
            .expect("finish")
    );
    let far = T0 + 10_000_000;
    assert_eq!(
        ids(&ours(
            store
                .claim_deliveries(far, far + 1_000_000, 10)
                .await
                .expect("claim"),
            &t
        )),
        [&future.id],
        "delivered and dead rows are never claimed"
    );

    let again = store
        .redeliver(&t, &soon.id, far + 5)
        .await
        .expect("redeliver")
        .expect("stored");
    assert_eq!(
        (
            again.state,
            again.attempts,
            again.next_attempt_ms,
            again.lease_until_ms
        ),
        (DeliveryState::Pending, 0, far + 5, 0)
    );
    assert_eq!(
        again.last_error.as_deref(),
        Some("timed out"),
        "the last result stays visible"
    );
    assert_eq!(
        store.get_delivery(&t, &soon.id).await.expect("get"),
        Some(again)
    );
    assert!(
        store
            .redeliver(&t, "dlv_unknown", far)
            .await
            .expect("redeliver")
            .is_none()
    );
    assert_eq!(
        ids(&ours(
            store
                .claim_deliveries(far + 5, far + 100, 10)
                .await
                .expect("claim"),
            &t
        )),
        [&soon.id],
        "a redelivered row is due again"
    );
}

/// A claimed delivery given back without an attempt is due again at the
/// given time with its attempts unchanged; only the claim's lease can give
/// it back, and only while it is pending.
pub async fn released_deliveries_keep_their_attempts(store: &dyn EventStore) {
    let t = fresh_tenant("release");
    let d = delivery("h", "e1", 1, T0 - 1);
    store
        .put_deliveries(&t, std::slice::from_ref(&d))
        .await
        .expect("put_deliveries");
    let lease = T0 + 1000;
    let claimed = ours(
        store.claim_deliveries(T0, lease, 10).await.expect("claim"),
        &t,
    );
    assert_eq!(ids(&claimed), [&d.id]);
    assert!(
        !store
            .release_delivery(&t, &d.id, lease + 1, T0 + 50, T0)
            .await
            .expect("release"),
        "another lease's token gives nothing back"
    );
    assert!(
        store
            .release_delivery(&t, &d.id, lease, T0 + 50, T0 + 1)
            .await
            .expect("release")
    );
    let got = store
        .get_delivery(&t, &d.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        (
            got.state,
            got.attempts,
            got.next_attempt_ms,
            got.lease_until_ms
        ),
        (DeliveryState::Pending, 0, T0 + 50, 0)
    );
    assert!(
        ours(
            store
                .claim_deliveries(T0 + 10, T0 + 2000, 10)
                .await
                .expect("claim"),
            &t
        )
        .is_empty(),
        "not due before the given time"
    );
    let again = ours(
        store
            .claim_deliveries(T0 + 50, T0 + 2000, 10)
            .await
            .expect("claim"),
        &t,
    );
    assert_eq!(ids(&again), [&d.id], "due at the given time");
    let delivered = AttemptResult {
        state: DeliveryState::Delivered,
        next_attempt_ms: T0 + 60,
        last_status: Some(200),
        last_error: None,
    };
    assert!(
        store
            .finish_delivery(&t, &d.id, T0 + 2000, &delivered, T0 + 60)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .release_delivery(&t, &d.id, T0 + 2000, T0 + 70, T0 + 70)
            .await
            .expect("release"),
        "a delivered row is not given back"
    );
}

/// Two claims running at once (two connections where the backend has
/// them) take disjoint rows, and together every due row.
pub async fn concurrent_claims_take_disjoint_rows(store: &dyn EventStore) {
    let t = fresh_tenant("claims");
    let rows: Vec<Delivery> = (0..40)
        .map(|i| delivery("h", &format!("e{i}"), i + 1, T0 - 1))
        .collect();
    store
        .put_deliveries(&t, &rows)
        .await
        .expect("put_deliveries");
    let (a, b) = both(
        store.claim_deliveries(T0, T0 + 1000, 25),
        store.claim_deliveries(T0, T0 + 1000, 25),
    )
    .await;
    let (a, b) = (ours(a.expect("claim"), &t), ours(b.expect("claim"), &t));
    let mut all: Vec<&str> = ids(&a).into_iter().chain(ids(&b)).collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a row was claimed twice");
    assert_eq!(all.len(), 40, "every due row is claimed by one of them");
}

/// Runs two futures concurrently on the caller's runtime (core has none).
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                ra = x;
                rb = y;
                Poll::Pending
            }
        }
    })
    .await
}
