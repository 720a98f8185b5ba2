//! `serve --demo` (issue 6 point 6): the simulated tournament drives the
//! high-score and win-streak rules into animated events that an overlay's
//! queue plays, and the simulated
//! chat fills the live-streams registry through link detection. The demo is
//! sped up with `STREAMBUS_SERVER__DEMO_INTERVAL_MS`; every wait polls
//! against a deadline.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{ws_next, ws_subscribe};
use crate::proc::{DEADLINE, Proc, free_port};

async fn get(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

/// Polls `url` until `done` holds for its body, within `limit`.
async fn until(
    client: &reqwest::Client,
    url: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = tokio::time::Instant::now();
    loop {
        let body = get(client, url).await;
        if done(&body) {
            return body;
        }
        assert!(start.elapsed() < limit, "{url}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn non_empty(body: &Value) -> bool {
    body["data"].as_array().is_some_and(|d| !d.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tournament_drives_the_rules_and_fills_the_registry() {
    let dir = tempfile::tempdir().expect("dir");
    let env = [(
        "STREAMBUS_SERVER__DEMO_INTERVAL_MS".to_owned(),
        "40".to_owned(),
    )];
    let server = Proc::spawn_with(free_port(), dir.path(), &["--demo"], &env).await;
    let client = reqwest::Client::new();
    // An overlay, as the OBS page connects: its queue plays the derived
    // animated events.
    let mut overlay = ws_subscribe(server.port, json!({"overlayId": "main"})).await;

    let rules = get(&client, &server.url("/api/v1/rules")).await;
    let ids: Vec<&str> = rules["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["demo-chat-links", "demo-high-score", "demo-win-streak"]
    );

    let scores = until(
        &client,
        &server.url("/api/v1/events?stream_id=tournament&type=high_score&limit=5"),
        DEADLINE,
        non_empty,
    )
    .await;
    let e = &scores["data"][0];
    assert_eq!(e["class"], "animated");
    assert_eq!(e["source"], "rule:demo-high-score");
    assert!(e["derived_from"].is_string(), "{e}");

    // Streaks need several matches; the demo runs one every few steps.
    let streaks = until(
        &client,
        &server.url("/api/v1/events?stream_id=tournament&type=win_streak&limit=5"),
        DEADLINE * 3,
        non_empty,
    )
    .await;
    assert!(
        streaks["data"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("win streak")),
        "{streaks}"
    );

    let start = tokio::time::Instant::now();
    let played = loop {
        let frame = ws_next(&mut overlay).await;
        if frame["type"] == "EVENT_BROADCAST" && frame["event"]["source"] == "rule:demo-high-score"
        {
            break frame;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no derived event reached the overlay"
        );
    };
    assert_eq!(played["event"]["type"], "high_score", "{played}");
    assert!(
        played["play"].as_u64().is_some(),
        "queued for the overlay: {played}"
    );

    let registry = until(
        &client,
        &server.url("/api/v1/state/streams"),
        DEADLINE,
        |b| b["data"].as_object().is_some_and(|d| !d.is_empty()),
    )
    .await;
    let (key, doc) = registry["data"]
        .as_object()
        .and_then(|d| d.iter().next())
        .expect("a registry document");
    let platform = doc["value"]["platform"].as_str().expect("platform");
    assert!(key.starts_with(&format!("{platform}:")), "{key}: {doc}");
    assert_eq!(doc["value"]["live"], true);
}
