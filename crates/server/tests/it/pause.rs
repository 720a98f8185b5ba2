//! Pause semantics (SPEC §2 Stream): a paused stream accepts and stores
//! events but holds live delivery; resume delivers what was held, in order,
//! then live events, with no duplicate.

use serde_json::{Value, json};

use crate::util::*;

async fn control(server: &TestServer, stream: &str, action: &str) {
    let r = server.post_json(&format!("/api/v1/events/stream/{stream}/{action}"), &json!({})).await;
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
    let held = server.publish_batch(&[event("scores", 1), event("scores", 2), event("scores", 3)]).await;

    // Stored and queryable at once...
    let stored = server.history("stream_id=scores").await;
    assert_eq!(offsets(&stored), offsets(&held));
    // ...while other streams keep flowing...
    let marker = server.publish(event("other", 1)).await;
    assert_eq!(other.next().await.json()["offset"], marker["offset"]);
    // ...and nothing of the paused stream is delivered.
    assert!(scores.quiet_for(QUIET).await, "a paused stream must hold live delivery");

    control(&server, "scores", "resume").await;
    let released: Vec<Value> = scores.take(3).await.iter().map(SseMessage::json).collect();
    assert_eq!(offsets(&released), offsets(&held), "held events in order after resume");

    let live = server.publish_batch(&[event("scores", 4), event("scores", 5)]).await;
    let next: Vec<Value> = scores.take(2).await.iter().map(SseMessage::json).collect();
    assert_eq!(offsets(&next), offsets(&live));
    assert!(scores.quiet_for(QUIET).await, "no duplicate after resume");
}

#[tokio::test]
async fn subscriber_joining_during_a_pause_gets_the_held_events_on_resume() {
    let server = TestServer::start().await;
    let before = server.publish(event("scores", 0)).await;
    control(&server, "scores", "pause").await;
    let held = server.publish_batch(&[event("scores", 1), event("scores", 2)]).await;

    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["scores"]})).await;
    assert!(ws.quiet_for(QUIET).await, "nothing while paused");

    control(&server, "scores", "resume").await;
    let got = ws.events(2).await;
    assert_eq!(offsets(&got), offsets(&held));
    assert!(offsets(&got).iter().all(|o| *o > before["offset"].as_u64().unwrap()));
    let live = server.publish(event("scores", 3)).await;
    assert_eq!(ws.events(1).await[0]["offset"], live["offset"]);
    assert!(ws.quiet_for(QUIET).await, "no duplicate");
}

#[tokio::test]
async fn resume_since_inside_a_pause_does_not_leak_held_events() {
    let server = TestServer::start().await;
    let first = server.publish(event("scores", 0)).await;
    control(&server, "scores", "pause").await;
    let held = server.publish_batch(&[event("scores", 1), event("scores", 2)]).await;

    // A resume from before the pause reads storage, but must still hold.
    let since = first["offset"].as_u64().unwrap() - 1;
    let mut sse = SseClient::connect(&server.url(&format!("/api/v1/events/stream/scores?since={since}")), None).await;
    assert_eq!(sse.next().await.json()["offset"], first["offset"]);
    assert!(sse.quiet_for(QUIET).await, "held events must wait for resume");

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
#[ignore = "server bug: events held by a pause are lost to live delivery when the server restarts before resume"]
async fn pause_survives_a_restart_and_resume_releases_what_was_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.publish(event("scores", 0)).await;
    control(&server, "scores", "pause").await;
    let held = server.publish_batch(&[event("scores", 1), event("scores", 2)]).await;
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let mut sse = SseClient::connect(&server.url("/api/v1/events/stream/scores"), None).await;
    let later = server.publish(event("scores", 3)).await;
    assert!(sse.quiet_for(QUIET).await, "still paused after the restart");

    control(&server, "scores", "resume").await;
    // Held before the restart: must come first, in order.
    let first = sse.next().await.json();
    assert_eq!(first["offset"], held[0]["offset"], "first event after resume: {first}");
    let got: Vec<Value> = sse.take(2).await.iter().map(SseMessage::json).collect();
    assert_eq!(got[0]["offset"], held[1]["offset"]);
    assert_eq!(got[1]["offset"], later["offset"]);
    assert!(sse.quiet_for(QUIET).await);
}
