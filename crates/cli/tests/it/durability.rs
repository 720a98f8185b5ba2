//! An acknowledged event survives `kill -9`; SIGTERM drains with close frames.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::proc::{DEADLINE, Proc};

/// Every id acknowledged before the kill is stored after the restart, once,
/// with offsets that keep increasing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_publish_loop_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut server = Proc::spawn(dir.path(), &[]).await;
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let client = reqwest::Client::new();
    let mut loops = Vec::new();
    for worker in 0..4 {
        let (acked, client, url) = (
            Arc::clone(&acked),
            client.clone(),
            server.url("/api/v1/events"),
        );
        loops.push(tokio::spawn(async move {
            for i in 0.. {
                let batch: Vec<Value> = (0..5)
                    .map(|j| json!({"type": "tick", "stream_id": "durable", "data": {"w": worker, "i": i, "j": j}}))
                    .collect();
                let Ok(res) = client.post(&url).json(&batch).send().await else { break };
                let Ok(body) = res.json::<Value>().await else { break };
                let mut a = acked.lock().expect("lock");
                for r in body["results"].as_array().expect("results") {
                    assert_eq!(r["status"], 201, "{r}");
                    a.push((r["event"]["id"].as_str().expect("id").to_owned(), r["event"]["offset"].as_u64().expect("offset")));
                }
            }
        }));
    }
    // Kill once a good number of events were acknowledged, mid-loop.
    let start = tokio::time::Instant::now();
    while acked.lock().expect("lock").len() < 2000 {
        assert!(start.elapsed() < DEADLINE, "publishers too slow");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.kill9().await;
    for l in loops {
        let _ = l.await;
    }
    let acked = acked.lock().expect("lock").clone();

    let server = Proc::spawn(dir.path(), &[]).await;
    let mut stored = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut last = 0u64;
    loop {
        let mut url = server.url("/api/v1/events?stream_id=durable&order=asc&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        for e in page["data"].as_array().expect("data") {
            let offset = e["offset"].as_u64().expect("offset");
            assert!(offset > last, "offsets increase");
            last = offset;
            assert!(
                stored.insert(e["id"].as_str().expect("id").to_owned()),
                "no duplicate"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, _)| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(acked.len() >= 2000);

    // Offsets continue above everything stored before the crash.
    let after: Value = client
        .post(server.url("/api/v1/events"))
        .json(&json!({"type": "after", "stream_id": "durable"}))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("json");
    assert!(after["offset"].as_u64().expect("offset") > last);
}

/// SIGTERM: WebSocket clients get a close frame (1001), SSE streams end, the
/// process exits 0, and what was acknowledged is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_closes_connections_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut server = Proc::spawn(dir.path(), &[]).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/api/v1/ws", server.port))
            .await
            .expect("ws");
    ws.send(Message::Text(
        json!({"type": "SUBSCRIBE", "streams": ["default"]})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let sse = reqwest::Client::new()
        .get(server.url("/api/v1/events/stream/default"))
        .send()
        .await
        .expect("sse");
    let client = reqwest::Client::new();
    let stored: Value = client
        .post(server.url("/api/v1/events"))
        .json(&json!({"type": "before_term"}))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("json");

    server.sigterm();
    let close = tokio::time::timeout(DEADLINE, async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Close(frame)) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .expect("close frame in time");
    let frame = close.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1001);
    let body = tokio::time::timeout(DEADLINE, sse.bytes())
        .await
        .expect("SSE ends in time");
    let text = String::from_utf8_lossy(&body.expect("SSE body")).into_owned();
    assert!(
        text.contains(stored["id"].as_str().expect("id")),
        "SSE delivered before closing: {text}"
    );
    let status = tokio::time::timeout(DEADLINE, server.child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "exit status {status}");

    let server = Proc::spawn(dir.path(), &[]).await;
    let got = client
        .get(server.url(&format!(
            "/api/v1/events/{}",
            stored["id"].as_str().expect("id")
        )))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), 200);
}
