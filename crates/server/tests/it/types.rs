//! Event types (SPEC §2, §3.2; issue 4 point 5): the registry routes, and
//! every publish path honouring it — defaults for what the producer left
//! out, `data` checked against the schema, a failing event stored nowhere.

use serde_json::{Value, json};

use crate::util::*;

const TYPES: &str = "/api/v1/event-types";
const EVENTS: &str = "/api/v1/events";

/// `score` at most 100, `player` required.
fn score_type() -> Value {
    json!({"name": "high_score", "description": "a new high score",
        "schema": {"type": "object", "required": ["player"],
                   "properties": {"player": {"type": "string"},
                                  "score": {"type": "integer", "maximum": 100}}}})
}

async fn register(server: &TestServer, def: &Value) {
    let r = server.post_json(TYPES, def).await;
    assert!(r.status == 201 || r.status == 200, "register: {}", r.text);
}

/// Asserts a schema refusal: 422 problem whose field is `field` and whose
/// detail carries the schema's message.
fn assert_schema_problem(r: &Resp, field: &str) {
    assert_problem(r, 422, Some(field));
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("100"),
        "detail is the schema error: {detail}"
    );
}

#[tokio::test]
async fn event_type_routes_create_replace_read_and_delete() {
    let server = TestServer::start().await;
    let r = server.post_json(TYPES, &score_type()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location"), "/api/v1/event-types/high_score");
    assert_eq!(r.body, score_type(), "the stored definition is returned");

    let replaced = json!({"name": "high_score", "class": "animated", "priority": "high"});
    let r = server.post_json(TYPES, &replaced).await;
    assert_eq!(r.status, 200, "a second POST replaces: {}", r.text);
    let r = server.get("/api/v1/event-types/high_score").await;
    assert_eq!(
        (r.status, r.body.clone()),
        (200, replaced.clone()),
        "{}",
        r.text
    );

    register(&server, &json!({"name": "alert:v1", "class": "alert"})).await;
    let r = server.get(TYPES).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"data": [{"name": "alert:v1", "class": "alert"}, replaced]}),
        "listed by name"
    );
    let r = server.get("/api/event-types/alert:v1").await;
    assert_eq!(
        r.status, 200,
        "served at the seed's /api path too: {}",
        r.text
    );

    let r = server.delete("/api/v1/event-types/high_score").await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(
        &server.get("/api/v1/event-types/high_score").await,
        404,
        None,
    );
    assert_problem(
        &server.delete("/api/v1/event-types/high_score").await,
        404,
        None,
    );
    assert_problem(
        &server.get("/api/v1/event-types/a%20b").await,
        400,
        Some("name"),
    );
}

#[tokio::test]
async fn invalid_definitions_are_refused_naming_the_field_and_store_nothing() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"name": "t", "schema": {"type": "strin"}}), "schema"),
        (json!({"name": "t", "schema": {"minimum": "ten"}}), "schema"),
        (json!({"name": "t", "schema": "object"}), "schema"),
        (json!({"description": "no name"}), "name"),
        (json!({"name": "a b"}), "name"),
        (json!({"name": "t", "class": "loud"}), "class"),
        (json!({"name": "t", "priority": "urgent"}), "priority"),
        (json!({"name": "t", "duration_ms": -1}), "duration_ms"),
        (json!({"name": "t", "cancelable": "yes"}), "cancelable"),
        (json!({"name": "t", "colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let r = server.post_json(TYPES, &body).await;
        assert_problem(&r, 422, Some(field));
    }
    let r = server
        .post_raw(TYPES, Some("application/json"), "{nope")
        .await;
    assert_problem(&r, 400, None);
    let r = server.get(TYPES).await;
    assert_eq!(r.body, json!({"data": []}), "nothing stored");
    // An event of the refused type publishes unchecked.
    server.publish(json!({"type": "t", "data": {"x": 1}})).await;
}

#[tokio::test]
async fn schema_failure_refuses_a_single_publish_and_stores_nothing() {
    let server = TestServer::start().await;
    register(&server, &score_type()).await;
    let bad = json!({"type": "high_score", "data": {"player": "ana", "score": 9100}});
    assert_schema_problem(&server.post_json(EVENTS, &bad).await, "data/score");
    let r = server
        .post_json(EVENTS, &json!({"type": "high_score", "data": {"score": 5}}))
        .await;
    assert_problem(&r, 422, Some("data"));
    // `payload` is `data` under seed 000's name: checked the same way.
    let r = server
        .post_json(
            EVENTS,
            &json!({"type": "high_score", "payload": {"player": 5}}),
        )
        .await;
    assert_problem(&r, 422, Some("data/player"));
    assert!(server.history("type=high_score").await.is_empty());

    let good = server
        .publish(json!({"type": "high_score", "data": {"player": "ana", "score": 91}}))
        .await;
    assert_eq!(good["data"]["score"], 91);
    // Other types are not affected.
    server
        .publish(json!({"type": "other", "data": {"score": 9100}}))
        .await;
}

#[tokio::test]
async fn schema_failure_refuses_only_that_item_of_a_batch() {
    let server = TestServer::start().await;
    register(&server, &score_type()).await;
    let items = [
        json!({"type": "high_score", "data": {"player": "a", "score": 1}}),
        json!({"type": "high_score", "data": {"player": "b", "score": 500}}),
        json!({"type": "plain", "message": "neighbour"}),
    ];
    let r = server.post_json(EVENTS, &Value::from(items.to_vec())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.body["results"].as_array().expect("results");
    assert_eq!(results[0]["status"], 201, "{}", r.text);
    assert_eq!(results[1]["status"], 422, "{}", r.text);
    assert_eq!(results[1]["problem"]["field"], "data/score", "{}", r.text);
    assert_eq!(results[2]["status"], 201, "{}", r.text);

    let ndjson = items
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let r = server
        .post_raw(EVENTS, Some("application/x-ndjson"), ndjson)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let statuses: Vec<&Value> = r.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| &x["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(201), &json!(422), &json!(201)],
        "{}",
        r.text
    );
    let scores: Vec<Value> = server
        .history("type=high_score")
        .await
        .iter()
        .map(|e| e["data"]["score"].clone())
        .collect();
    assert_eq!(
        scores,
        [json!(1), json!(1)],
        "only the valid items are stored"
    );
}

#[tokio::test]
async fn schema_failure_refuses_a_websocket_publish() {
    let server = TestServer::start().await;
    register(&server, &score_type()).await;
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({"type": "PUBLISH", "ref": "bad",
        "event": {"type": "high_score", "data": {"player": "a", "score": 101}}}))
        .await;
    let e = ws.expect("ERROR").await;
    assert_eq!(e["code"], "invalid", "{e}");
    assert_eq!(e["field"], "event.data/score", "{e}");
    assert_eq!(e["ref"], "bad", "{e}");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("100")),
        "{e}"
    );
    ws.send(json!({"type": "PUBLISH", "ref": "good",
        "event": {"type": "high_score", "data": {"player": "a", "score": 100}}}))
        .await;
    let ack = ws.expect("ACK").await;
    assert_eq!(ack["ref"], "good");
    let stored = server.history("type=high_score").await;
    assert_eq!(offsets(&stored), [ack["offset"].as_u64().expect("offset")]);
}

#[tokio::test]
async fn seed_broadcast_honours_the_schema() {
    let server = TestServer::start().await;
    register(&server, &score_type()).await;
    let r = server
        .post_json(
            "/api/v1/events/broadcast",
            &json!({"stream_id": "scores", "type": "high_score", "message": "x",
                    "data": {"player": "a", "score": 1000}}),
        )
        .await;
    assert_problem(&r, 422, Some("data/score"));
    assert!(server.history("type=high_score").await.is_empty());
}

#[tokio::test]
async fn type_defaults_fill_only_what_the_producer_left_out() {
    let server = TestServer::start().await;
    register(
        &server,
        &json!({"name": "goal", "class": "animated", "priority": "high", "duration_ms": 3000,
                "cancelable": false, "replayable": false}),
    )
    .await;
    let e = server.publish(json!({"type": "goal"})).await;
    assert_eq!(e["class"], "animated", "{e}");
    assert_eq!(e["metadata"]["priority"], "high", "{e}");
    assert_eq!(e["duration_ms"], 3000, "{e}");
    assert_eq!(e["cancelable"], false, "{e}");
    assert_eq!(e["replayable"], false, "{e}");
    assert_eq!(e["status"], "pending", "an animated event is tracked: {e}");

    let own = server
        .publish(
            json!({"type": "goal", "class": "animated", "metadata": {"priority": "low"},
                        "duration": 1000, "cancelable": true}),
        )
        .await;
    assert_eq!(own["metadata"]["priority"], "low", "{own}");
    assert_eq!(own["duration_ms"], 1000, "{own}");
    assert_eq!(own["cancelable"], true, "{own}");
    assert_eq!(own["replayable"], false, "{own}");

    let data = server
        .publish(json!({"type": "goal", "class": "data"}))
        .await;
    assert_eq!(data["class"], "data", "{data}");
    assert_eq!(
        data.get("status"),
        None,
        "a data event has no lifecycle: {data}"
    );

    // WebSocket publishes get the same defaults.
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({"type": "PUBLISH", "event": {"type": "goal", "id": "ws-goal"}}))
        .await;
    ws.expect("ACK").await;
    let r = server.get("/api/v1/events/ws-goal").await;
    assert_eq!(r.body["class"], "animated", "{}", r.text);
    assert_eq!(r.body["duration_ms"], 3000, "{}", r.text);
}

#[tokio::test]
async fn deleting_a_type_stops_its_checks_and_types_survive_a_restart() {
    let server = TestServer::start().await;
    register(&server, &score_type()).await;
    let bad = json!({"type": "high_score", "data": {"player": "a", "score": 500}});
    let dir = server.stop().await.expect("own data dir");

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    assert_schema_problem(&server.post_json(EVENTS, &bad).await, "data/score");
    assert_eq!(
        server.delete("/api/v1/event-types/high_score").await.status,
        204
    );
    let r = server.post_json(EVENTS, &bad).await;
    assert_eq!(r.status, 201, "unregistered again: {}", r.text);
    server.stop().await;
    drop(dir);
}
