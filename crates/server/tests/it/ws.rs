//! The WebSocket protocol (SPEC §3.3): filters, ordering, PUBLISH/ACK,
//! UNSUBSCRIBE, PING, and bad frames that get `ERROR` while the connection
//! keeps working.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::util::*;

/// Subscribes with `request` (a whole SUBSCRIBE frame), publishes `cases` as
/// one batch and checks that exactly the matching ones arrive. The last case
/// must match: delivery is in offset order, so any wrongly delivered event
/// would arrive before it.
async fn check_filter(request: Value, cases: &[(Value, bool)]) {
    assert!(
        cases.last().is_some_and(|c| c.1),
        "the last case must match"
    );
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.send(request.clone()).await;
    let reply = ws.expect("SUBSCRIBED").await;
    assert!(reply["offset"].is_u64(), "{reply}");
    let events: Vec<Value> = cases.iter().map(|c| c.0.clone()).collect();
    let stored = server.publish_batch(&events).await;
    let want: Vec<u64> = stored
        .iter()
        .zip(cases)
        .filter(|(_, c)| c.1)
        .map(|(e, _)| e["offset"].as_u64().unwrap())
        .collect();
    let got = ws.events(want.len()).await;
    assert_eq!(offsets(&got), want, "filter {request}");
}

#[tokio::test]
async fn streams_filter_accepts_names_and_globs() {
    check_filter(
        json!({"type": "SUBSCRIBE", "streams": ["match-*", "lobby"]}),
        &[
            (json!({"type": "t", "stream_id": "other"}), false),
            (json!({"type": "t", "stream_id": "match-1"}), true),
            (json!({"type": "t", "stream_id": "matchx"}), false),
            (json!({"type": "t", "stream_id": "lobby-2"}), false),
            (json!({"type": "t", "stream_id": "lobby"}), true),
            (json!({"type": "t", "stream_id": "match-22"}), true),
        ],
    )
    .await;
}

#[tokio::test]
async fn event_types_filter_accepts_globs() {
    check_filter(
        json!({"type": "SUBSCRIBE", "eventTypes": ["high_*", "goal"]}),
        &[
            (json!({"type": "low_score"}), false),
            (json!({"type": "high_score"}), true),
            (json!({"type": "high"}), false),
            (json!({"type": "goals"}), false),
            (json!({"type": "goal"}), true),
            (json!({"type": "high_five"}), true),
        ],
    )
    .await;
}

#[tokio::test]
async fn classes_filter() {
    check_filter(
        json!({"type": "SUBSCRIBE", "classes": ["alert", "animated"]}),
        &[
            (json!({"type": "t", "class": "data"}), false),
            (json!({"type": "t", "class": "alert"}), true),
            (json!({"type": "t", "class": "system"}), false),
            (json!({"type": "t"}), false),
            (json!({"type": "t", "class": "animated"}), true),
        ],
    )
    .await;
}

#[tokio::test]
async fn tags_filter_matches_any_tag() {
    check_filter(
        json!({"type": "SUBSCRIBE", "tags": ["finals", "vip"]}),
        &[
            (json!({"type": "t", "tags": ["semis"]}), false),
            (json!({"type": "t", "tags": ["semis", "finals"]}), true),
            (json!({"type": "t"}), false),
            (json!({"type": "t", "metadata": {"tags": ["vip"]}}), true),
        ],
    )
    .await;
}

#[tokio::test]
async fn min_priority_filter() {
    check_filter(
        json!({"type": "SUBSCRIBE", "minPriority": "high"}),
        &[
            (json!({"type": "t", "priority": "normal"}), false),
            (json!({"type": "t", "priority": "critical"}), true),
            (json!({"type": "t", "priority": "low"}), false),
            (json!({"type": "t"}), false),
            (json!({"type": "t", "metadata": {"priority": "high"}}), true),
        ],
    )
    .await;
}

#[tokio::test]
async fn field_filter_matches_data_and_metadata_values() {
    check_filter(
        json!({"type": "SUBSCRIBE", "filter": {"data.team": ["a", "c"]}}),
        &[
            (json!({"type": "t", "data": {"team": "b"}}), false),
            (json!({"type": "t", "data": {"team": "a"}}), true),
            (json!({"type": "t", "data": {}}), false),
            (json!({"type": "t", "data": {"team": ["a"]}}), false),
            (json!({"type": "t", "data": {"team": "c"}}), true),
        ],
    )
    .await;
    check_filter(
        json!({"type": "SUBSCRIBE", "filter": {"metadata.tournament_id": 7}}),
        &[
            (
                json!({"type": "t", "metadata": {"tournament_id": 8}}),
                false,
            ),
            (json!({"type": "t", "metadata": {"tournament_id": 7}}), true),
        ],
    )
    .await;
}

#[tokio::test]
async fn seed_001_teams_subscription_filters_by_team() {
    check_filter(
        json!({"type": "subscribe", "teams": ["team_1"]}),
        &[
            (
                json!({"type": "score", "data": {"team": "team_2", "score": 1}}),
                false,
            ),
            (
                json!({"type": "score", "data": {"team": "team_1", "score": 2}}),
                true,
            ),
            (json!({"type": "score", "data": {"score": 3}}), false),
            (
                json!({"type": "score", "data": {"team": "team_1", "score": 4}}),
                true,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn filters_combine() {
    check_filter(
        json!({"type": "SUBSCRIBE", "streams": ["match-*"], "eventTypes": ["goal"], "filter": {"data.team": "a"}}),
        &[
            (json!({"type": "goal", "stream_id": "lobby", "data": {"team": "a"}}), false),
            (json!({"type": "card", "stream_id": "match-1", "data": {"team": "a"}}), false),
            (json!({"type": "goal", "stream_id": "match-1", "data": {"team": "b"}}), false),
            (json!({"type": "goal", "stream_id": "match-1", "data": {"team": "a"}}), true),
        ],
    )
    .await;
}

#[tokio::test]
async fn overlays_do_not_get_system_events_unless_they_ask() {
    check_filter(
        json!({"type": "SUBSCRIBE", "overlayId": "main"}),
        &[
            (json!({"type": "conn", "class": "system"}), false),
            (json!({"type": "t", "class": "alert"}), true),
        ],
    )
    .await;
    check_filter(
        json!({"type": "SUBSCRIBE", "overlayId": "main", "classes": ["system"]}),
        &[
            (json!({"type": "t", "class": "alert"}), false),
            (json!({"type": "conn", "class": "system"}), true),
        ],
    )
    .await;
}

/// Publishes `n` events to `stream` over one WebSocket connection, pipelined,
/// and returns the acknowledged offsets.
async fn publish_over_ws(server: &TestServer, stream: &str, n: usize) -> Vec<u64> {
    let mut ws = WsClient::connect(server).await;
    for i in 0..n {
        let event = json!({"type": "tick", "stream_id": stream, "message": i.to_string()});
        ws.send(json!({"type": "PUBLISH", "ref": i.to_string(), "event": event}))
            .await;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ack = ws.expect("ACK").await;
        assert_eq!(ack["ref"], i.to_string(), "ACKs come in publish order");
        out.push(ack["offset"].as_u64().unwrap());
    }
    out
}

async fn publish_over_rest(server: &TestServer, stream: &str, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let e = server
            .publish(json!({"type": "tick", "stream_id": stream, "message": i.to_string()}))
            .await;
        out.push(e["offset"].as_u64().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_reach_every_subscriber_in_offset_order_with_none_missing() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut subscribers = Vec::new();
    for filter in [
        json!({}),
        json!({"streams": ["s*"]}),
        json!({"streams": ["s0", "s1", "s2", "s3"]}),
    ] {
        let mut ws = WsClient::connect(&server).await;
        ws.subscribe(filter).await;
        subscribers.push(ws);
    }
    let mut sse = SseClient::connect(&server.url("/api/v1/events/stream/s0"), None).await;

    let mut tasks = Vec::new();
    for i in 0..4 {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let stream = format!("s{i}");
            if i % 2 == 0 {
                publish_over_ws(&server, &stream, 50).await
            } else {
                publish_over_rest(&server, &stream, 50).await
            }
        }));
    }
    let mut published = HashSet::new();
    let mut s0 = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let offs = t.await.unwrap();
        if i == 0 {
            s0 = offs.clone();
        }
        published.extend(offs);
    }
    assert_eq!(published.len(), 200, "every publish got its own offset");

    for ws in &mut subscribers {
        let got = offsets(&ws.events(200).await);
        assert_increasing(&got);
        assert_eq!(got.iter().copied().collect::<HashSet<_>>(), published);
    }
    let got: Vec<u64> = sse
        .take(50)
        .await
        .iter()
        .map(|m| m.json()["offset"].as_u64().unwrap())
        .collect();
    assert_increasing(&got);
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        s0.iter().collect::<HashSet<_>>()
    );
    assert!(subscribers[0].quiet_for(QUIET).await, "no duplicate");
}

#[tokio::test]
async fn pipelined_publishes_on_one_connection_are_stored_in_send_order() {
    let server = TestServer::start().await;
    let acked = publish_over_ws(&server, "seq", 100).await;
    assert_increasing(&acked);
    let stored = server.history("stream_id=seq").await;
    let order: Vec<String> = stored
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..100).map(|i: usize| i.to_string()).collect();
    assert_eq!(order, want);
}

#[tokio::test]
async fn publish_is_acked_with_ref_and_then_delivered() {
    let server = TestServer::start().await;
    let mut sub = WsClient::connect(&server).await;
    sub.subscribe(json!({"streams": ["chat"]})).await;
    let mut producer = WsClient::connect(&server).await;
    producer
        .send(json!({"type": "PUBLISH", "ref": "p-1",
                     "event": {"type": "msg", "stream_id": "chat", "message": "hello"}}))
        .await;
    let ack = producer.expect("ACK").await;
    assert_eq!(ack["ref"], "p-1");
    assert!(
        ack["id"].as_str().is_some_and(|id| id.starts_with("evt_")),
        "{ack}"
    );
    assert!(ack["offset"].as_u64().is_some_and(|o| o > 0), "{ack}");

    let e = &sub.events(1).await[0];
    assert_eq!(e["id"], ack["id"]);
    assert_eq!(e["offset"], ack["offset"]);
    assert_eq!(e["message"], "hello");
    let stored = server.history("").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], ack["id"]);

    // A subscribed publisher gets both its ACK and its own event.
    let mut both = WsClient::connect(&server).await;
    both.subscribe(json!({"streams": ["chat"]})).await;
    both.send(json!({"type": "PUBLISH", "ref": 9, "event": {"type": "msg", "stream_id": "chat"}}))
        .await;
    let (a, b) = (both.recv().await, both.recv().await);
    let (ack, event) = if a["type"] == "ACK" { (a, b) } else { (b, a) };
    assert_eq!(ack["type"], "ACK");
    assert_eq!(ack["ref"], "9");
    assert_eq!(event["type"], "EVENT_BROADCAST");
    assert_eq!(event["event"]["offset"], ack["offset"]);
}

#[tokio::test]
async fn ws_publish_with_a_supplied_id_is_idempotent() {
    let server = TestServer::start().await;
    let mut sub = WsClient::connect(&server).await;
    sub.subscribe(json!({})).await;
    let mut producer = WsClient::connect(&server).await;
    let frame = json!({"type": "PUBLISH", "event": {"id": "w-1", "type": "t"}});
    producer.send(frame.clone()).await;
    let first = producer.expect("ACK").await;
    assert_eq!(first["id"], "w-1");
    assert_eq!(first["duplicate"], false);
    producer.send(frame).await;
    let second = producer.expect("ACK").await;
    assert_eq!(second["offset"], first["offset"]);
    assert_eq!(second["duplicate"], true);
    assert_eq!(sub.events(1).await[0]["id"], "w-1");
    assert!(sub.quiet_for(QUIET).await, "delivered once");
    assert_eq!(server.history("").await.len(), 1);
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = TestServer::start().await;
    let mut a = WsClient::connect(&server).await;
    a.subscribe(json!({})).await;
    let mut b = WsClient::connect(&server).await;
    b.subscribe(json!({})).await;
    a.send(json!({"type": "UNSUBSCRIBE"})).await;
    a.expect("UNSUBSCRIBED").await;
    let e = server.publish(json!({"type": "t"})).await;
    assert_eq!(b.events(1).await[0]["offset"], e["offset"]);
    assert!(a.quiet_for(QUIET).await, "no delivery after UNSUBSCRIBE");
    a.assert_alive().await;
    // And a new SUBSCRIBE starts again.
    a.subscribe(json!({})).await;
    let e = server.publish(json!({"type": "t"})).await;
    assert_eq!(a.events(1).await[0]["offset"], e["offset"]);
}

#[tokio::test]
async fn ping_gets_pong() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({"type": "PING", "ref": "r-1"})).await;
    let pong = ws.expect("PONG").await;
    assert_eq!(pong["ref"], "r-1");
    let ts = pong["timestamp"].as_i64().expect("timestamp");
    assert!((ts / 1000 - now_secs()).abs() < 120, "{pong}");
    ws.send(json!({"type": "ping"})).await;
    ws.expect("PONG").await;
}

#[tokio::test]
async fn bad_frames_get_error_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    let big =
        json!({"type": "PUBLISH", "event": {"type": "t", "data": {"blob": "x".repeat(70_000)}}})
            .to_string();
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("not json".into(), "bad_frame", None),
        ("[1,2]".into(), "bad_frame", None),
        ("42".into(), "bad_frame", None),
        (r#"{"x":1}"#.into(), "bad_frame", None),
        (r#"{"type":"DANCE"}"#.into(), "unknown_type", Some("type")),
        (
            r#"{"type":"SUBSCRIBE","classes":["loud"]}"#.into(),
            "invalid",
            Some("classes"),
        ),
        (
            r#"{"type":"SUBSCRIBE","streams":["Bad Name"]}"#.into(),
            "invalid",
            Some("streams"),
        ),
        (
            r#"{"type":"SUBSCRIBE","streams":5}"#.into(),
            "invalid",
            Some("streams"),
        ),
        (
            r#"{"type":"SUBSCRIBE","since":-1}"#.into(),
            "invalid",
            Some("since"),
        ),
        (
            r#"{"type":"SUBSCRIBE","rewind":100000}"#.into(),
            "invalid",
            Some("rewind"),
        ),
        (
            r#"{"type":"SUBSCRIBE","minPriority":"urgent"}"#.into(),
            "invalid",
            Some("minPriority"),
        ),
        (
            r#"{"type":"SUBSCRIBE","filter":{"team":"a"}}"#.into(),
            "invalid",
            Some("filter"),
        ),
        (
            r#"{"type":"SUBSCRIBE","bogus":1}"#.into(),
            "invalid",
            Some("bogus"),
        ),
        (r#"{"type":"PUBLISH"}"#.into(), "invalid", Some("event")),
        (
            r#"{"type":"PUBLISH","event":{"message":"no type"}}"#.into(),
            "invalid",
            Some("event.type"),
        ),
        (
            r#"{"type":"PUBLISH","event":{"type":"t","class":"loud"}}"#.into(),
            "invalid",
            Some("event.class"),
        ),
        (
            r#"{"type":"PUBLISH","event":{"type":"t","stream_id":"Bad"}}"#.into(),
            "invalid",
            Some("event.stream_id"),
        ),
        (
            r#"{"type":"PUBLISH","event":"text"}"#.into(),
            "invalid",
            Some("event"),
        ),
        (big, "too_large", None),
    ];
    for (frame, code, field) in cases {
        let e = ws.expect_error(&frame, code).await;
        if let Some(f) = field {
            assert_eq!(e["field"], f, "for {frame}: {e}");
        }
        ws.assert_alive().await;
    }
    ws.send_binary(b"{\"type\":\"PING\"}").await;
    let e = ws.expect("ERROR").await;
    assert_eq!(e["code"], "bad_frame");
    ws.assert_alive().await;

    // Refused publishes stored nothing; a valid one still works.
    assert!(server.history("").await.is_empty());
    ws.send(json!({"type": "PUBLISH", "ref": "ok", "event": {"type": "t"}}))
        .await;
    assert_eq!(ws.expect("ACK").await["ref"], "ok");
    assert_eq!(server.history("").await.len(), 1);
}

#[tokio::test]
async fn publish_error_echoes_the_ref() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    let e = ws
        .expect_error(
            r#"{"type":"PUBLISH","ref":"p-7","event":{"type":"t","class":"loud"}}"#,
            "invalid",
        )
        .await;
    assert_eq!(e["ref"], "p-7");
}

#[tokio::test]
async fn a_bad_subscribe_keeps_the_current_subscription() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["keep"]})).await;
    ws.expect_error(r#"{"type":"SUBSCRIBE","streams":["Bad Name"]}"#, "invalid")
        .await;
    let e = server
        .publish(json!({"type": "t", "stream_id": "keep"}))
        .await;
    assert_eq!(ws.events(1).await[0]["offset"], e["offset"]);
}

#[tokio::test]
async fn a_new_subscribe_replaces_the_old_one() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["first"]})).await;
    ws.subscribe(json!({"streams": ["second"]})).await;
    let stored = server
        .publish_batch(&[
            json!({"type": "t", "stream_id": "first"}),
            json!({"type": "t", "stream_id": "second"}),
        ])
        .await;
    assert_eq!(ws.events(1).await[0]["offset"], stored[1]["offset"]);
}

/// A frame over `limits.max_frame_bytes` cannot be read and answered like
/// a bad frame; but the client must learn why: either an `ERROR` (and the
/// connection goes on) or a close frame with 1009 "message too big"
/// (RFC 6455 §7.4.1) — not a reset connection.
#[tokio::test]
async fn frame_over_the_frame_limit_gets_a_clear_answer() {
    let server = TestServer::start_with(|c| c.limits.max_frame_bytes = 256 * 1024).await;
    let mut ws = WsClient::connect(&server).await;
    let big =
        json!({"type": "PUBLISH", "event": {"type": "t", "data": {"blob": "x".repeat(300_000)}}})
            .to_string();
    ws.send_text(&big).await;
    let msg = tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut ws.ws))
        .await
        .expect("an answer in time");
    match msg {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["type"], "ERROR", "{v}");
            assert_eq!(v["code"], "too_large", "{v}");
            ws.assert_alive().await;
        }
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
        }
        other => panic!("expected ERROR or close 1009, got {other:?}"),
    }
    assert!(server.history("").await.is_empty());
}
