//! SSE beyond the seed's examples (SPEC §3.1): `?types=` and `?classes=`,
//! heartbeats, what a reconnecting browser sends, bad parameters, shutdown.

use serde_json::{Value, json};

use crate::util::*;

const LIVE: &str = "/api/v1/events/stream/live";

fn offset_of(m: &SseMessage) -> u64 {
    m.json()["offset"].as_u64().unwrap()
}

#[tokio::test]
async fn types_and_classes_query_filters() {
    let server = TestServer::start().await;
    let mut goals =
        SseClient::connect(&server.url(&format!("{LIVE}?types=goal,card_*")), None).await;
    let mut alerts =
        SseClient::connect(&server.url(&format!("{LIVE}?classes=alert,system")), None).await;
    let stored = server
        .publish_batch(&[
            json!({"stream_id": "live", "type": "pass"}),
            json!({"stream_id": "live", "type": "goal", "class": "alert"}),
            json!({"stream_id": "live", "type": "card_red"}),
            json!({"stream_id": "live", "type": "pass", "class": "system"}),
            json!({"stream_id": "other", "type": "goal", "class": "alert"}),
            json!({"stream_id": "live", "type": "goal"}),
            json!({"stream_id": "live", "type": "end", "class": "alert"}),
        ])
        .await;
    let o = offsets(&stored);
    let got: Vec<u64> = goals.take(3).await.iter().map(offset_of).collect();
    assert_eq!(got, [o[1], o[2], o[5]]);
    let got: Vec<u64> = alerts.take(3).await.iter().map(offset_of).collect();
    assert_eq!(got, [o[1], o[3], o[6]]);
    assert!(goals.quiet_for(QUIET).await);
}

#[tokio::test]
async fn heartbeat_comments_keep_the_stream_open() {
    let server = TestServer::start_with(|c| c.server.heartbeat_secs = 1).await;
    let mut sse = SseClient::connect(&server.url(LIVE), None).await;
    let first = sse.next_comment().await;
    assert!(first.starts_with("recovered=true"), "{first}");
    assert_eq!(sse.next_comment().await, "heartbeat");
    // Still delivering after the heartbeat.
    let e = server
        .publish(json!({"stream_id": "live", "type": "t"}))
        .await;
    assert_eq!(sse.next().await.json()["offset"], e["offset"]);
}

#[tokio::test]
async fn last_event_id_of_a_reconnect_wins_over_the_since_in_the_url() {
    // A browser keeps the URL it was given; on reconnect it adds Last-Event-ID.
    let server = TestServer::start().await;
    let events: Vec<Value> = (0..6)
        .map(|i| json!({"stream_id": "live", "type": "t", "message": i.to_string()}))
        .collect();
    let o = offsets(&server.publish_batch(&events).await);
    let url = server.url(&format!("{LIVE}?since={}", o[0]));
    let mut sse = SseClient::connect_with(&url, &[("Last-Event-ID", &o[3].to_string())]).await;
    let got: Vec<u64> = sse.take(2).await.iter().map(offset_of).collect();
    assert_eq!(got, o[4..]);
    assert!(sse.quiet_for(QUIET).await);
}

#[tokio::test]
async fn bad_sse_parameters_are_400_problems() {
    let server = TestServer::start().await;
    let cases = [
        (format!("{LIVE}?since=abc"), "since"),
        (format!("{LIVE}?since=-1"), "since"),
        (format!("{LIVE}?rewind=abc"), "rewind"),
        (format!("{LIVE}?rewind=100000"), "rewind"),
        (format!("{LIVE}?types=a%20b"), "types"),
        (format!("{LIVE}?classes=loud"), "classes"),
        ("/api/v1/events/stream/Live".to_owned(), "stream_id"),
        ("/api/v1/events/stream/-live".to_owned(), "stream_id"),
    ];
    for (path, field) in cases {
        let r = server.get(&path).await;
        assert_problem(&r, 400, Some(field));
    }
    let r = Resp::from(
        http()
            .get(server.url(LIVE))
            .header("Last-Event-ID", "abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_problem(&r, 400, Some("Last-Event-ID"));
    let r = server.get(&format!("{LIVE}?colour=red")).await;
    assert_problem(&r, 400, None);
    assert!(server.history("").await.is_empty());
    // No subscription was left behind by the refused requests.
    let live = stream_info(&server, "live").await;
    assert!(live.is_null() || live["clients"] == 0, "{live}");
}

#[tokio::test]
async fn shutdown_ends_sse_streams_and_closes_websockets_with_going_away() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(&server.url(LIVE), None).await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({})).await;
    server.stop().await;
    assert!(sse.ended().await, "the SSE response ends at shutdown");
    let close = loop {
        match tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut ws.ws))
            .await
            .expect("close in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
}
