//! Pause semantics (SPEC §2 Stream): a paused stream accepts and stores
//! events but holds live delivery; resume delivers what was held, in order,
//! then live events, with no duplicate.

use serde_json::{Value, json};

use crate::util::*;

async fn control(server: &TestServer, stream: &str, action: &str) {
    let r = server
        .post_json(
            &format!("/api/v1/events/stream/{stream}/{action}"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{action}: {}", r.text);
    assert_eq!(r.body["success"], true);
}

fn event(stream: &str, n: usize) -> Value {
    json!({"stream_id": stream, "type": "tick", "message": format!("{stream}-{n}")})
}

#[tokio::test]
async fn paused_stream_stores_but_holds_delivery_until_resume() {
    let server = TestServer::start().await;
    let mut scores = SseClient::connect(&server.url("/api/v1/events/stream/scores"), None).await;
    let mut other = SseClient::connect(&server.url("/api/v1/events/stream/other"), None).await;

    control(&server, "scores", "pause").await;
    let held = server
        .publish_batch(&[event("scores", 1), event("scores", 2), event("scores", 3)])
        .await;

    // Stored and queryable at once...
    let stored = server.history("stream_id=scores").await;
    assert_eq!(offsets(&stored), offsets(&held));
    // ...while other streams keep flowing...
    let marker = server.publish(event("other", 1)).await;
    assert_eq!(other.next().await.json()["offset"], marker["offset"]);
    // ...and nothing of the paused stream is delivered.
    assert!(
        scores.quiet_for(QUIET).await,
        "a paused stream must hold live delivery"
    );

    control(&server, "scores", "resume").await;
    let released: Vec<Value> = scores.take(3).await.iter().map(SseMessage::json).collect();
    assert_eq!(
        offsets(&released),
        offsets(&held),
        "held events in order after resume"
    );

    let live = server
        .publish_batch(&[event("scores", 4), event("scores", 5)])
        .await;
    let next: Vec<Value> = scores.take(2).await.iter().map(SseMessage::json).collect();
    assert_eq!(offsets(&next), offsets(&live));
    assert!(scores.quiet_for(QUIET).await, "no duplicate after resume");
}

#[tokio::test]
async fn subscriber_joining_during_a_pause_gets_the_held_events_on_resume() {
    let server = TestServer::start().await;
    let before = server.publish(event("scores", 0)).await;
    control(&server, "scores", "pause").await;
    let held = server
        .publish_batch(&[event("scores", 1), event("scores", 2)])
        .await;

    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["scores"]})).await;
    assert!(ws.quiet_for(QUIET).await, "nothing while paused");

    control(&server, "scores", "resume").await;
    let got = ws.events(2).await;
    assert_eq!(offsets(&got), offsets(&held));
    assert!(
        offsets(&got)
            .iter()
            .all(|o| *o > before["offset"].as_u64().unwrap())
    );
    let live = server.publish(event("scores", 3)).await;
    assert_eq!(ws.events(1).await[0]["offset"], live["offset"]);
    assert!(ws.quiet_for(QUIET).await, "no duplicate");
}

#[tokio::test]
async fn resume_since_inside_a_pause_does_not_leak_held_events() {
    let server = TestServer::start().await;
    let first = server.publish(event("scores", 0)).await;
    control(&server, "scores", "pause").await;
    let held = server
        .publish_batch(&[event("scores", 1), event("scores", 2)])
        .await;

    // A resume from before the pause reads storage, but must still hold.
    let since = first["offset"].as_u64().unwrap() - 1;
    let mut sse = SseClient::connect(
        &server.url(&format!("/api/v1/events/stream/scores?since={since}")),
        None,
    )
    .await;
    assert_eq!(sse.next().await.json()["offset"], first["offset"]);
    assert!(
        sse.quiet_for(QUIET).await,
        "held events must wait for resume"
    );

    control(&server, "scores", "resume").await;
    let got: Vec<Value> = sse.take(2).await.iter().map(SseMessage::json).collect();
    assert_eq!(offsets(&got), offsets(&held));
    assert!(sse.quiet_for(QUIET).await);
}

#[tokio::test]
async fn pause_is_reported_in_the_streams_list() {
    let server = TestServer::start().await;
    server.publish(event("scores", 0)).await;
    control(&server, "scores", "pause").await;
    let info = stream_info(&server, "scores").await;
    assert_eq!(info["active"], true, "paused is not stopped: {info}");
    assert_eq!(info["state"], "paused", "{info}");
    control(&server, "scores", "resume").await;
    assert_eq!(stream_info(&server, "scores").await["state"], "active");
}

#[tokio::test]

async fn pause_survives_a_restart_and_resume_releases_what_was_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.publish(event("scores", 0)).await;
    control(&server, "scores", "pause").await;
    let held = server
        .publish_batch(&[event("scores", 1), event("scores", 2)])
        .await;
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let mut sse = SseClient::connect(&server.url("/api/v1/events/stream/scores"), None).await;
    let later = server.publish(event("scores", 3)).await;
    assert!(sse.quiet_for(QUIET).await, "still paused after the restart");

    control(&server, "scores", "resume").await;
    // Held before the restart: must come first, in order.
    let first = sse.next().await.json();
    assert_eq!(
        first["offset"], held[0]["offset"],
        "first event after resume: {first}"
    );
    let got: Vec<Value> = sse.take(2).await.iter().map(SseMessage::json).collect();
    assert_eq!(got[0]["offset"], held[1]["offset"]);
    assert_eq!(got[1]["offset"], later["offset"]);
    assert!(sse.quiet_for(QUIET).await);
}

/// Publishes 2,000 events while a stream is paused, and resumes it with a
/// ring of 64 events: the release overruns the ring, so subscribers fall
/// back to storage *while* the held range is being released. Every one must
/// still get every held event once, in order, then live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_release_through_a_small_ring_loses_nothing() {
    let server = TestServer::start_with(|c| c.delivery.hub_capacity = 64).await;
    let mut before = WsClient::connect(&server).await;
    before.subscribe(json!({"streams": ["scores"]})).await;
    let mut sse_before =
        SseClient::connect(&server.url("/api/v1/events/stream/scores"), None).await;
    control(&server, "scores", "pause").await;
    let mut held = Vec::new();
    for chunk in 0..4 {
        let batch: Vec<Value> = (0..500).map(|i| event("scores", chunk * 500 + i)).collect();
        held.extend(offsets(&server.publish_batch(&batch).await));
    }
    let mut during = WsClient::connect(&server).await;
    during.subscribe(json!({"streams": ["scores"]})).await;

    // Up to 2 s without an event means the rest is not coming.
    let idle = std::time::Duration::from_secs(2);
    let reader =
        |mut ws: WsClient| tokio::spawn(async move { ws.offsets_until_idle(2000, idle).await });
    let (r1, r2) = (reader(before), reader(during));
    let sse = tokio::spawn(async move { sse_before.offsets_until_idle(2000, idle).await });
    control(&server, "scores", "resume").await;
    assert_same_offsets(
        &r1.await.unwrap(),
        &held,
        "WebSocket subscribed before the pause",
    );
    assert_same_offsets(
        &r2.await.unwrap(),
        &held,
        "WebSocket subscribed during the pause",
    );
    assert_same_offsets(
        &sse.await.unwrap(),
        &held,
        "SSE subscribed before the pause",
    );
}

/// Publishes continuously while the stream is paused and resumed: the
/// subscriber sees every event exactly once, in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_through_pause_and_resume_loses_and_duplicates_nothing() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["scores"]})).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let publisher = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..150 {
                out.push(
                    server.publish(event("scores", i)).await["offset"]
                        .as_u64()
                        .unwrap(),
                );
                let _ = tx.send(i);
            }
            out
        })
    };
    for _ in 0..3 {
        for _ in 0..20 {
            rx.recv().await;
        }
        control(&server, "scores", "pause").await;
        for _ in 0..20 {
            rx.recv().await;
        }
        control(&server, "scores", "resume").await;
    }
    let published = publisher.await.unwrap();
    assert_eq!(offsets(&ws.events(published.len()).await), published);
    assert!(ws.quiet_for(QUIET).await, "no duplicate");
}
