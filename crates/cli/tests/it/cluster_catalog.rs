//! The on-air catalog across cluster nodes (issue 4): an event type
//! registered on one node is enforced by the others within their registry
//! refresh (2 s), templates and overlay subscriptions stored through one
//! node are used by another at once.
//!
//! Needs `STREAMBUS_TEST_POSTGRES_URL` and `STREAMBUS_TEST_NATS_URL`, as the
//! other cluster tests.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};

use crate::cluster::{Cluster, engines, publish, ws_events, ws_next, ws_subscribe};
use crate::proc::DEADLINE;

/// Publishes `event` (with a fixed id, so repeats store it at most once) on
/// `url` until `done` accepts the status; returns how long that took.
async fn publish_until(
    client: &reqwest::Client,
    url: &str,
    event: &Value,
    done: impl Fn(u16) -> bool,
) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let r = publish(client, url, event).await;
        if done(r.status().as_u16()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "never answered as expected (last {})",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_changes_on_one_node_apply_on_the_others() {
    let Some((pg, nats)) = engines() else { return };
    let cluster = Cluster::start(2, &pg, &nats).await;
    let client = reqwest::Client::new();
    let (a, b) = (cluster.url(0, "/api/v1"), cluster.url(1, "/api/v1"));

    let def = json!({"name": "high_score", "priority": "high",
        "schema": {"type": "object", "properties": {"score": {"maximum": 100}}}});
    let r = client
        .post(format!("{a}/event-types"))
        .json(&def)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let bad = json!({"type": "high_score", "id": "probe", "data": {"score": 500}});
    let took = publish_until(&client, &format!("{b}/events"), &bad, |s| s == 422).await;
    // The documented bound is one refresh (2 s); allow for a loaded machine.
    assert!(
        took < Duration::from_secs(6),
        "node B took {took:?} to see the type"
    );
    let good = publish(
        &client,
        &format!("{b}/events"),
        &json!({"type": "high_score", "data": {"score": 5}}),
    )
    .await;
    assert_eq!(good.status(), 201);
    let good: Value = good.json().await.expect("json");
    assert_eq!(
        good["metadata"]["priority"], "high",
        "B applies A's defaults"
    );

    // A template made on A fires on B, and B's registry checks the result.
    let template =
        json!({"name": "score", "event": {"type": "high_score", "data": {"score": "{{s}}"}}});
    let r = client
        .post(format!("{a}/event-templates"))
        .json(&template)
        .send()
        .await
        .expect("template");
    assert_eq!(r.status(), 201);
    let fire = |s: u32| {
        client
            .post(format!("{b}/event-templates/score/fire"))
            .json(&json!({"params": {"s": s}}))
            .send()
    };
    assert_eq!(fire(7).await.expect("fire").status(), 201);
    assert_eq!(fire(700).await.expect("fire").status(), 422);

    // A subscription stored through A is what an overlay on B gets.
    let r = client
        .put(format!("{a}/subscriptions/main"))
        .json(&json!({"eventTypes": ["goal"]}))
        .send()
        .await
        .expect("put subscription");
    assert_eq!(r.status(), 200);
    let mut overlay = ws_subscribe(cluster.ports[1], json!({"overlayId": "main"})).await;
    let batch = json!([{"type": "card"}, {"type": "goal", "message": "in"}]);
    assert_eq!(
        publish(&client, &format!("{a}/events"), &batch)
            .await
            .status(),
        200
    );
    let got = ws_events(&mut overlay, 1).await;
    assert_eq!(
        got[0]["message"], "in",
        "only the stored filter's types: {got:?}"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), ws_next(&mut overlay)).await;
    assert!(quiet.is_err(), "nothing else arrives: {quiet:?}");

    // Removing the type on A lifts the check on B.
    let r = client
        .delete(format!("{a}/event-types/high_score"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    // 201, or 200 if B had stored the probe before it first saw the type.
    publish_until(&client, &format!("{b}/events"), &bad, |s| {
        s == 201 || s == 200
    })
    .await;
    cluster.cleanup().await;
}

/// The next frame of `kind` on `ws`, skipping others.
async fn next_of(ws: &mut crate::browser::WsStream, kind: &str) -> Value {
    loop {
        let m = ws_next(ws).await;
        if m["type"] == kind {
            return m;
        }
    }
}

/// An overlay's state on node `i`, once `check` accepts it.
async fn overlay_on(
    c: &Cluster,
    client: &reqwest::Client,
    i: usize,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = tokio::time::Instant::now();
    loop {
        let r = client
            .get(c.url(i, "/api/v1/overlays/main"))
            .send()
            .await
            .expect("get");
        if r.status() == 200 {
            let v: Value = r.json().await.expect("json");
            if check(&v) {
                return v;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "overlay state never matched on node {i}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_queue_is_one_queue_across_nodes() {
    let Some((pg, nats)) = engines() else { return };
    let c = Cluster::start(3, &pg, &nats).await;
    let client = reqwest::Client::new();
    // Two pages of one overlay, on nodes 0 and 1.
    let mut a = ws_subscribe(c.ports[0], json!({"overlayId": "main"})).await;
    let mut b = ws_subscribe(c.ports[1], json!({"overlayId": "main"})).await;
    for (id, p) in [("q1", "low"), ("q2", "critical")] {
        let e = json!({"id": id, "type": "high_score", "class": "animated", "duration_ms": 60000,
            "metadata": {"priority": p}});
        let r = publish(&client, &c.url(2, "/api/v1/events"), &e).await;
        assert_eq!(r.status(), 201);
    }
    // One of them is dispatched once, and both pages get the same item.
    let first = next_of(&mut a, "EVENT_BROADCAST").await["event"]["id"].clone();
    assert_eq!(
        next_of(&mut b, "EVENT_BROADCAST").await["event"]["id"],
        first
    );
    // Every node shows the same playing item, and (once the nodes' presence
    // reports, every 2 s, are in) both connections.
    for i in 0..3 {
        overlay_on(&c, &client, i, |v| {
            v["now_playing"]["event_id"] == first && v["connections"] == 2
        })
        .await;
    }
    // A cancel through node 2 stops it on both pages; the other one follows.
    let r = client
        .put(c.url(
            2,
            &format!("/api/v1/events/{}/cancel", first.as_str().unwrap()),
        ))
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(next_of(&mut a, "ANIMATION_CANCEL").await["eventId"], first);
    assert_eq!(next_of(&mut b, "ANIMATION_CANCEL").await["eventId"], first);
    let second = next_of(&mut a, "EVENT_BROADCAST").await["event"]["id"].clone();
    assert_ne!(second, first);
    assert_eq!(
        next_of(&mut b, "EVENT_BROADCAST").await["event"]["id"],
        second
    );
    // The end report from one page ends it everywhere; it was played once.
    a.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "ANIMATION_ENDED", "eventId": second, "play": 0})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    for i in 0..3 {
        let v = overlay_on(&c, &client, i, |v| {
            v["now_playing"].is_null() && v["history"].as_array().is_some_and(|h| h.len() == 2)
        })
        .await;
        assert_eq!(v["history"][0]["status"], "completed", "node {i}: {v}");
        assert_eq!(v["history"][1]["status"], "cancelled", "node {i}: {v}");
    }
    c.cleanup().await;
}
