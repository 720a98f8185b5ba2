//! Three nodes sharing PostgreSQL and NATS JetStream: every node folds the
//! whole log into deliveries, yet each event is delivered once per webhook
//! and each attempt is made by one node.
//!
//! Needs `STREAMBUS_TEST_POSTGRES_URL` and `STREAMBUS_TEST_NATS_URL` (see
//! `crate::cluster`).

use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::cluster::Nodes;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_deliver_each_event_once_per_webhook() {
    let Some(nodes) = Nodes::start(3, fast_retries).await else {
        return;
    };
    // Every delivery fails once: its retry may be any node's.
    let receiver = Receiver::with_policy(|attempt| if attempt == 1 { 500 } else { 200 }).await;
    let body = json!({"id": "all", "url": receiver.url, "secret": SECRET,
                      "filter": {"streams": ["orders"]}});
    create(&nodes[0], body.clone()).await;
    // Replacing it unchanged on the other nodes makes them reload at once
    // (instead of within `fold::RELOAD`), so every node stores every
    // delivery: the store must keep each once.
    for node in &nodes[1..] {
        let r = node.put_json("/api/v1/webhooks/all", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    let mut events = Vec::new();
    for i in 0..12 {
        events.push(publish(&nodes[i % 3], "orders", "order.paid").await);
        publish(&nodes[(i + 1) % 3], "elsewhere", "order.paid").await;
    }
    let log = wait_deliveries(&nodes[2], "all", 12, "delivered").await;
    assert!(log.iter().all(|d| d["attempts"] == 2), "{log:?}");
    for node in &nodes[..2] {
        assert_eq!(deliveries(node, "all").await, log, "one log on every node");
    }
    // Settled: nothing is pending, so any duplicate attempt would already
    // be under way; give it a moment to land.
    tokio::time::sleep(QUIET).await;
    let mut per_delivery: HashMap<String, Vec<String>> = HashMap::new();
    for hit in receiver.hits() {
        assert!(hit.signed_with(SECRET));
        per_delivery
            .entry(hit.delivery().to_owned())
            .or_default()
            .push(hit.event_id().to_owned());
    }
    assert_eq!(per_delivery.len(), 12, "one delivery id per event");
    for e in &events {
        let id = e["id"].as_str().expect("id");
        let attempts: Vec<_> = per_delivery.values().filter(|v| v[0] == id).collect();
        assert_eq!(attempts.len(), 1, "event {id}: {per_delivery:?}");
        assert_eq!(attempts[0].len(), 2, "event {id}: one failure, one success");
    }
    nodes.stop().await;
}
