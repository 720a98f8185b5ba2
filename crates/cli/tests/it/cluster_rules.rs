//! Rules across cluster nodes (issue 6 point 3): a rule made on one node
//! runs on every node, every node derives the same events, and each derived
//! event is stored once — the fire count agrees on every node.
//!
//! Needs `STREAMBUS_TEST_POSTGRES_URL` and `STREAMBUS_TEST_NATS_URL`, as the
//! other cluster tests.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Cluster, engines, publish};
use crate::proc::DEADLINE;

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `url` until `done` holds for its JSON body; returns the body.
async fn until(client: &reqwest::Client, url: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let start = tokio::time::Instant::now();
    loop {
        let (status, body) = get(client, url).await;
        if done(status, &body) {
            return body;
        }
        assert!(start.elapsed() < DEADLINE, "{url}: last {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_once_although_three_nodes_see_the_event() {
    let Some((pg, nats)) = engines() else { return };
    let cluster = Cluster::start(3, &pg, &nats).await;
    let client = reqwest::Client::new();
    let rule = json!({"id": "hs", "when": {"eventTypes": ["score"]},
        "detect": {"kind": "high_score", "field": "data.score", "subject": "data.player"}});
    let r = client
        .post(cluster.url(0, "/api/v1/rules"))
        .json(&rule)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);

    // The first causes reach nodes that do not know the rule yet: when they
    // learn it, they must first fold these into its memory, or `s4` (not a
    // new maximum) would look like one to them.
    let score = |id: &str, i: usize, score: i64| {
        json!({"id": id, "stream_id": "match", "type": "score",
               "data": {"player": format!("p{i}"), "score": score}})
    };
    for (i, (id, points)) in [("s1", 10), ("s2", 5), ("s3", 20)].into_iter().enumerate() {
        let r = publish(
            &client,
            &cluster.url(1 + i % 2, "/api/v1/events"),
            &score(id, i, points),
        )
        .await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    for i in 1..3 {
        until(&client, &cluster.url(i, "/api/v1/rules/hs"), |s, _| {
            s == 200
        })
        .await;
    }
    for (i, (id, points)) in [("s4", 15), ("s5", 30)].into_iter().enumerate() {
        let r = publish(
            &client,
            &cluster.url(i % 3, "/api/v1/events"),
            &score(id, i, points),
        )
        .await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let history = cluster.url(2, "/api/v1/events?type=high_score&order=asc&limit=100");
    let body = until(&client, &history, |_, b| {
        b["data"].as_array().is_some_and(|d| d.len() >= 3)
    })
    .await;
    let causes: Vec<&Value> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| &e["derived_from"])
        .collect();
    assert_eq!(causes, [&json!("s1"), &json!("s3"), &json!("s5")]);

    // Every node has folded all three (and no more): the counts agree.
    for i in 0..3 {
        let url = cluster.url(i, "/api/v1/rules/hs");
        let body = until(&client, &url, |_, b| b["stats"]["fired"] == 3).await;
        assert_eq!(body["stats"]["fired"], 3, "node {i}");
    }
    let (_, all) = get(&client, &history).await;
    assert_eq!(
        all["data"].as_array().map(Vec::len),
        Some(3),
        "stored once each"
    );
    cluster.cleanup().await;
}
