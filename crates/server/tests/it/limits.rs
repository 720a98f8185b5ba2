//! Rate and connection limits per key and per address (issue 5 point 5):
//! `429` with `Retry-After` over REST, `rate_limited` over WebSocket, other
//! keys unaffected by one key's flood.

use std::time::{Duration, Instant};

use serde_json::json;
use streambus_core::auth::Role;

use crate::util::*;

fn producer(sub: &str) -> String {
    mint("default", sub, Role::Producer, &["*"], &["*"])
}

async fn limited(adjust: impl FnOnce(&mut streambus_server::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.auth.hs256_secret = AUTH_SECRET.into();
        adjust(c);
    })
    .await
}

async fn publish(server: &TestServer, token: &str, stream: &str) -> reqwest::Response {
    http()
        .post(server.url("/api/v1/events"))
        .bearer_auth(token)
        .json(&json!({"type": "t", "stream_id": stream}))
        .send()
        .await
        .expect("publish")
}

#[tokio::test]
async fn a_key_over_its_publish_rate_gets_429_with_retry_after_and_others_do_not() {
    let server = limited(|c| {
        c.limits.publish_rate_per_key = 5;
        c.limits.publish_burst_per_key = 5;
    })
    .await;
    let (a, b) = (producer("flooder"), producer("steady"));
    for _ in 0..5 {
        assert_eq!(publish(&server, &a, "s").await.status().as_u16(), 201);
    }
    let res = publish(&server, &a, "s").await;
    assert_eq!(res.status().as_u16(), 429);
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry >= 1, "{retry}");
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    // Another key is not slowed.
    assert_eq!(publish(&server, &b, "s").await.status().as_u16(), 201);
    // In a batch the items over the rate are 429, the others stored.
    let batch = http().post(server.url("/api/v1/events")).bearer_auth(&b)
        .json(&json!([{"type": "t"}, {"type": "t"}, {"type": "t"}, {"type": "t"}, {"type": "t"}, {"type": "t"}]))
        .send().await.expect("batch");
    let body: serde_json::Value = batch.json().await.expect("json");
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [201, 201, 201, 201, 429, 429], "{body}");
    // Over WebSocket: an ERROR, the connection stays.
    let mut ws = WsClient::connect_with_token(&server, &a).await;
    ws.expect_error(
        r#"{"type":"PUBLISH","event":{"type":"t"},"ref":"x"}"#,
        "rate_limited",
    )
    .await;
    ws.assert_alive().await;
    // Nothing over the limit was stored.
    let res = http()
        .get(server.url("/api/v1/events?stream_id=s&limit=100"))
        .bearer_auth(&b)
        .send()
        .await
        .expect("history");
    let page: serde_json::Value = res.json().await.expect("json");
    assert_eq!(
        page["data"].as_array().map(Vec::len),
        Some(6),
        "5 from the flooder, 1 from steady"
    );
}

#[tokio::test]
async fn connections_per_key_are_capped() {
    let server = limited(|c| c.limits.max_connections_per_key = 1).await;
    let t = producer("viewer");
    let url = format!("ws://{}/api/v1/ws?token={t}", server.addr);
    let (first, _) = tokio_tungstenite::connect_async(&url).await.expect("first");
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 429)
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    let sse = http()
        .get(server.url(&format!("/api/v1/events/stream/s?token={t}")))
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status().as_u16(), 429);
    drop(first);
    eventually("the slot is free again", || async {
        tokio_tungstenite::connect_async(&url)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// Publish-to-delivery times of `n` events from `token`, paced.
async fn delivery_ms(server: &TestServer, token: &str, n: usize) -> Vec<f64> {
    let mut sse = SseClient::connect(
        &server.url(&format!("/api/v1/events/stream/steady?token={token}")),
        None,
    )
    .await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        assert_eq!(
            publish(server, token, "steady").await.status().as_u16(),
            201,
            "steady is never limited"
        );
        sse.next().await;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
        // 10 a second: well under the limit of 20.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.sort_by(f64::total_cmp);
    out
}

#[tokio::test]
async fn a_flood_from_one_key_leaves_another_keys_delivery_alone() {
    let server = limited(|c| {
        c.limits.publish_rate_per_key = 20;
        c.limits.publish_burst_per_key = 20;
    })
    .await;
    let steady = producer("steady");
    let baseline = delivery_ms(&server, &steady, 10).await;
    let flooder = producer("flooder");
    let stop = tokio_util::sync::CancellationToken::new();
    let flood = {
        let (url, stop) = (server.url("/api/v1/events"), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            while !stop.is_cancelled() {
                let res = http()
                    .post(&url)
                    .bearer_auth(&flooder)
                    .json(&json!({"type": "t", "stream_id": "flood"}))
                    .send()
                    .await
                    .expect("flood");
                match res.status().as_u16() {
                    201 => ok += 1,
                    429 => refused += 1,
                    s => panic!("flood got {s}"),
                }
            }
            (ok, refused)
        })
    };
    let during = delivery_ms(&server, &steady, 10).await;
    stop.cancel();
    let (ok, refused) = flood.await.expect("flood task");
    let median = |v: &[f64]| v[v.len() / 2];
    eprintln!(
        "steady delivery p50: {:.1} ms alone, {:.1} ms during the flood ({ok} accepted, {refused} refused)",
        median(&baseline),
        median(&during)
    );
    assert!(refused > 0, "the flood must hit its limit");
    // Shared machine: a generous bound, but one a flood that was not
    // limited (thousands of stored events a second) would break.
    assert!(
        median(&during) < median(&baseline) * 5.0 + 100.0,
        "{baseline:?} vs {during:?}"
    );
}
