//! Seed 004's SSE API (SPEC §3.1), driven exactly as that document's curl,
//! Python and JavaScript examples drive it.

use serde_json::{Value, json};

use crate::util::*;

const STREAM: &str = "/api/v1/events/stream";
const BROADCAST: &str = "/api/v1/events/broadcast";

/// The seed's success envelope: `{"success": true, "message": …, "timestamp": <int>}`.
fn assert_envelope(r: &Resp, message: &str) {
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type").starts_with("application/json"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body["success"], true, "{}", r.text);
    assert_eq!(r.body["message"], message, "{}", r.text);
    assert_unix_seconds_now(&r.body["timestamp"]);
}

#[tokio::test]
async fn sse_stream_answers_the_curl_example_with_seed_headers() {
    let server = TestServer::start().await;
    // curl -N -H "Accept: text/event-stream" -H "Cache-Control: no-cache" …/stream/default
    let sse = SseClient::connect(&server.url(&format!("{STREAM}/default")), None).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), "text/event-stream");
    assert_eq!(sse.header("cache-control"), "no-cache");
    let origins: Vec<_> = sse
        .headers
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(origins, ["*"], "exactly one Access-Control-Allow-Origin: *");
    let allow = sse.header("access-control-allow-headers");
    assert!(
        allow
            .split(',')
            .any(|h| h.trim().eq_ignore_ascii_case("cache-control")),
        "Access-Control-Allow-Headers must contain Cache-Control: {allow:?}"
    );
}

#[tokio::test]
async fn sse_frames_carry_id_and_data_without_event_line_in_the_seed_shape() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(&server.url(&format!("{STREAM}/default")), None).await;
    let data = json!({"user_id": "12345", "action": "login"});
    let r = server
        .post_json(
            BROADCAST,
            &json!({"stream_id": "default", "type": "user_action", "message": "User logged in", "data": data}),
        )
        .await;
    assert_envelope(&r, "Event broadcasted to stream: default");

    let m = sse.next().await;
    // No `event:` line, so `EventSource.onmessage` fires (the seed's JavaScript).
    assert_eq!(m.event, None, "an `event:` line would bypass onmessage");
    let e = m.json();
    assert!(e["id"].as_str().is_some_and(|id| !id.is_empty()), "{e}");
    assert_eq!(e["type"], "user_action");
    assert_eq!(e["message"], "User logged in");
    assert_eq!(e["data"], data);
    assert_eq!(e["stream_id"], "default");
    assert_unix_seconds_now(&e["timestamp"]);
    // `id:` is the offset, what a reconnecting EventSource sends back.
    assert_eq!(
        m.last_event_id,
        e["offset"].as_u64().expect("offset").to_string()
    );
}

#[tokio::test]
async fn broadcast_to_one_stream_reaches_only_that_stream() {
    let server = TestServer::start().await;
    let mut notifications =
        SseClient::connect(&server.url(&format!("{STREAM}/notifications")), None).await;
    let mut default = SseClient::connect(&server.url(&format!("{STREAM}/default")), None).await;
    let data = json!({"priority": "high", "sender": "admin", "recipients": ["user1", "user2"]});
    let r = server
        .post_json(
            BROADCAST,
            &json!({"stream_id": "notifications", "type": "custom_event",
                    "message": "Custom notification message", "data": data}),
        )
        .await;
    assert_envelope(&r, "Event broadcasted to stream: notifications");

    let e = notifications.next().await.json();
    assert_eq!(e["type"], "custom_event");
    assert_eq!(e["message"], "Custom notification message");
    assert_eq!(e["data"], data);
    assert_eq!(e["stream_id"], "notifications");

    // A later marker on `default` must be the first thing `default` sees:
    // delivery is in offset order, so a leaked event would come before it.
    let r = server
        .post_json(
            BROADCAST,
            &json!({"stream_id": "default", "type": "marker", "message": "m"}),
        )
        .await;
    assert_envelope(&r, "Event broadcasted to stream: default");
    assert_eq!(default.next().await.json()["type"], "marker");
    assert!(
        notifications.quiet_for(QUIET).await,
        "the marker must not reach notifications"
    );
}

#[tokio::test]
async fn broadcast_without_stream_id_reaches_every_known_stream() {
    let server = TestServer::start().await;
    // `orders` is known only from storage; `default` and `system` only from clients.
    server
        .publish(json!({"stream_id": "orders", "type": "order_created"}))
        .await;
    let mut default = SseClient::connect(&server.url(&format!("{STREAM}/default")), None).await;
    let mut system = SseClient::connect(&server.url(&format!("{STREAM}/system")), None).await;

    // The seed's "Broadcast to All Streams" body: no stream_id at all.
    let body = json!({"type": "system_maintenance", "message": "System maintenance scheduled",
        "data": {"maintenance_window": "2024-01-15T02:00:00Z", "duration_minutes": 30}});
    let r = server.post_json(BROADCAST, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_unix_seconds_now(&r.body["timestamp"]);
    for (sse, stream) in [(&mut default, "default"), (&mut system, "system")] {
        let e = sse.next().await.json();
        assert_eq!(e["type"], "system_maintenance", "on {stream}");
        assert_eq!(e["stream_id"], stream);
        assert_eq!(e["data"]["duration_minutes"], 30);
    }
    let stored = server.history("type=system_maintenance").await;
    let mut streams: Vec<_> = stored
        .iter()
        .map(|e| e["stream_id"].as_str().unwrap().to_owned())
        .collect();
    streams.sort();
    assert_eq!(streams, ["default", "orders", "system"]);

    // `"stream_id": ""` means the same (the seed's request-body comment).
    let r = server
        .post_json(
            BROADCAST,
            &json!({"stream_id": "", "type": "test", "message": "Hello from Service G"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        default.next().await.json()["message"],
        "Hello from Service G"
    );
    assert_eq!(
        system.next().await.json()["message"],
        "Hello from Service G"
    );
    assert_eq!(server.history("type=test").await.len(), 3);
}

#[tokio::test]
async fn streams_list_counts_clients_and_falls_back_when_they_leave() {
    let server = TestServer::start().await;
    let a = SseClient::connect(&server.url(&format!("{STREAM}/default")), None).await;
    let b = SseClient::connect(&server.url(&format!("{STREAM}/default")), None).await;
    let _c = SseClient::connect(&server.url(&format!("{STREAM}/system")), None).await;

    let r = server.get("/api/v1/events/streams").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert_unix_seconds_now(&r.body["timestamp"]);
    let d = &r.body["data"]["default"];
    assert_eq!(d["clients"], 2, "{}", r.text);
    assert_eq!(d["active"], true);
    assert_eq!(d["generator"], json!({"running": false, "paused": false}));
    assert_eq!(r.body["data"]["system"]["clients"], 1, "{}", r.text);

    drop(a);
    drop(b);
    eventually("default's client count to fall back to 0", || async {
        let d = stream_info(&server, "default").await;
        (d.is_null() || d["clients"] == 0).then_some(())
    })
    .await;
    assert_eq!(stream_info(&server, "system").await["clients"], 1);
}

#[tokio::test]
async fn ws_subscribers_count_as_clients_of_their_streams() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["scores"]})).await;
    assert_eq!(stream_info(&server, "scores").await["clients"], 1);
    ws.send(json!({"type": "UNSUBSCRIBE"})).await;
    ws.expect("UNSUBSCRIBED").await;
    let s = stream_info(&server, "scores").await;
    assert!(s.is_null() || s["clients"] == 0, "{s}");
    // A glob subscription watches no single stream: it is counted apart.
    ws.subscribe(json!({"streams": ["match-*"]})).await;
    let r = server.get("/api/v1/events/streams").await;
    assert_eq!(r.body["subscribers_all_streams"], 1, "{}", r.text);

    // A connection that just goes away stops counting too.
    let mut gone = WsClient::connect(&server).await;
    gone.subscribe(json!({"streams": ["scores"]})).await;
    assert_eq!(stream_info(&server, "scores").await["clients"], 1);
    drop(gone);
    eventually("the dropped connection to stop counting", || async {
        let s = stream_info(&server, "scores").await;
        (s.is_null() || s["clients"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_control_follows_the_seed_and_the_generator_produces() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(&server.url(&format!("{STREAM}/custom")), None).await;
    let control = |action: &str| format!("{STREAM}/custom/{action}");

    assert_envelope(
        &server.post_json(&control("start"), &json!({})).await,
        "Stream 'custom' started",
    );
    let info = stream_info(&server, "custom").await;
    assert_eq!(
        info["generator"],
        json!({"running": true, "paused": false}),
        "{info}"
    );
    assert_eq!(info["active"], true);
    assert_eq!(info["clients"], 1);

    let first = sse.next().await.json();
    assert_eq!(first["type"], "stream_started", "{first}");
    assert_eq!(first["stream_id"], "custom");
    // The generator goes on producing (every 1–3 s).
    let generated = sse.next().await.json();
    assert_eq!(generated["stream_id"], "custom");
    let kind = generated["type"].as_str().unwrap_or_default();
    assert!(
        ["user_action", "notification", "data_update"].contains(&kind),
        "{generated}"
    );
    assert!(generated["offset"].as_u64() > first["offset"].as_u64());

    assert_envelope(
        &server.post_json(&control("pause"), &json!({})).await,
        "Stream 'custom' paused",
    );
    let info = stream_info(&server, "custom").await;
    assert_eq!(
        info["generator"],
        json!({"running": true, "paused": true}),
        "{info}"
    );

    assert_envelope(
        &server.post_json(&control("resume"), &json!({})).await,
        "Stream 'custom' resumed",
    );
    let info = stream_info(&server, "custom").await;
    assert_eq!(
        info["generator"],
        json!({"running": true, "paused": false}),
        "{info}"
    );

    assert_envelope(
        &server.post_json(&control("stop"), &json!({})).await,
        "Stream 'custom' stopped and removed",
    );
    let info = stream_info(&server, "custom").await;
    if !info.is_null() {
        assert_eq!(
            info["generator"],
            json!({"running": false, "paused": false}),
            "{info}"
        );
        assert_eq!(info["active"], false, "{info}");
    }
}

#[tokio::test]
async fn control_works_without_a_body_as_in_the_seed() {
    // The seed documents these endpoints without a request body.
    let server = TestServer::start().await;
    let r = Resp::from(
        http()
            .post(server.url(&format!("{STREAM}/quiet/pause")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_envelope(&r, "Stream 'quiet' paused");
    let r = Resp::from(
        http()
            .post(server.url(&format!("{STREAM}/quiet/resume")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_envelope(&r, "Stream 'quiet' resumed");
}

#[tokio::test]
async fn broadcast_demo_service_answers_like_the_events_service() {
    let server = TestServer::start().await;
    // curl -N …/api/v1/broadcast-demo/stream/demo-notifications
    let mut sse = SseClient::connect(
        &server.url("/api/v1/broadcast-demo/stream/demo-notifications"),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), "text/event-stream");

    let r = server
        .post_json(
            "/api/v1/broadcast-demo/broadcast",
            &json!({"type": "test", "message": "Hello from Service H"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert_eq!(sse.next().await.json()["message"], "Hello from Service H");

    let demo = server.get("/api/v1/broadcast-demo/streams").await;
    let events = server.get("/api/v1/events/streams").await;
    assert_eq!(demo.status, 200);
    assert_eq!(demo.body["success"], true);
    assert_eq!(demo.body["data"], events.body["data"]);
    assert_eq!(
        demo.body["data"]["demo-notifications"]["clients"], 1,
        "{}",
        demo.text
    );
}

#[tokio::test]
async fn api_aliases_serve_the_same_resources() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(&server.url("/api/events/stream/default"), None).await;
    assert_eq!(sse.status, 200);
    let r = server
        .post_json(
            "/api/events",
            &json!({"type": "alias", "message": "via /api"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(sse.next().await.json()["id"], r.body["id"]);
    let list = server.get("/api/events?order=asc").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["data"][0]["id"], r.body["id"]);
    let one = server
        .get(&format!("/api/events/{}", r.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.body, r.body);
    let b = server
        .post_json(
            "/api/events/broadcast",
            &json!({"stream_id": "default", "type": "b"}),
        )
        .await;
    assert_eq!(b.body["message"], "Event broadcasted to stream: default");
    assert_eq!(sse.next().await.json()["type"], "b");
    assert_eq!(
        server.get("/api/events/streams").await.body["data"]["default"]["clients"],
        1
    );
}

#[tokio::test]
async fn bad_broadcasts_are_problems_and_store_nothing() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(&server.url(&format!("{STREAM}/default")), None).await;
    let cases: [(Value, u16, Option<&str>); 6] = [
        (json!({"message": "no type"}), 422, Some("type")),
        (json!({"stream_id": 5, "type": "t"}), 400, Some("stream_id")),
        (
            json!({"stream_id": "Bad Name", "type": "t"}),
            422,
            Some("stream_id"),
        ),
        (json!({"type": "t", "id": "fixed"}), 400, Some("id")),
        (
            json!({"stream_id": "default", "type": "t", "bogus": 1}),
            422,
            Some("bogus"),
        ),
        (json!(["not", "an", "object"]), 400, None),
    ];
    for (body, status, field) in cases {
        let r = server.post_json(BROADCAST, &body).await;
        assert_problem(&r, status, field);
        assert_eq!(r.body["success"], false, "{}", r.text);
    }
    let r = server
        .post_raw(BROADCAST, Some("application/json"), "{\"type\":")
        .await;
    assert_problem(&r, 400, None);
    let big = json!({"stream_id": "default", "type": "t", "data": {"blob": "x".repeat(70_000)}});
    assert_problem(&server.post_json(BROADCAST, &big).await, 413, None);
    assert!(server.history("").await.is_empty());
    assert!(sse.quiet_for(QUIET).await);
}

#[tokio::test]
async fn bad_stream_requests_are_problems() {
    let server = TestServer::start().await;
    assert_problem(
        &server
            .post_json(&format!("{STREAM}/custom/explode"), &json!({}))
            .await,
        404,
        None,
    );
    assert_problem(
        &server
            .post_json(&format!("{STREAM}/Bad/start"), &json!({}))
            .await,
        400,
        Some("stream_id"),
    );
    assert_problem(
        &server.get(&format!("{STREAM}/Bad")).await,
        400,
        Some("stream_id"),
    );
    assert!(stream_info(&server, "custom").await["generator"]["running"] != true);
    assert!(server.history("").await.is_empty());
}
