//! `POST /api/v1/events` (SPEC §3.2, §3): one event, an array, or NDJSON;
//! idempotent ids; limits; every bad input a problem that stores nothing.

use serde_json::{Value, json};

use crate::util::*;

const EVENTS: &str = "/api/v1/events";

#[tokio::test]
async fn single_publish_is_201_with_offset_id_time_and_location() {
    let server = TestServer::start().await;
    let r = server
        .post_json(
            EVENTS,
            &json!({"type": "user_action", "message": "hi", "data": {"a": 1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.header("content-type").starts_with("application/json"));
    let e = &r.body;
    assert!(e["offset"].as_u64().is_some_and(|o| o > 0), "{e}");
    let id = e["id"].as_str().expect("id");
    assert!(
        id.starts_with("evt_") && id.len() > 20,
        "server-made id: {id}"
    );
    assert_rfc3339_ms(e["time"].as_str().expect("time"));
    assert_unix_seconds_now(&e["timestamp"]);
    assert_eq!(e["stream_id"], "default");
    assert_eq!(e["class"], "data");
    assert_eq!(e["data"], json!({"a": 1}));
    assert_eq!(r.header("location"), format!("/api/v1/events/{id}"));

    let fetched = server.get(r.header("location")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, r.body);

    let second = server.publish(json!({"type": "user_action"})).await;
    assert!(
        second["offset"].as_u64() > e["offset"].as_u64(),
        "offsets strictly increase"
    );
}

#[tokio::test]
async fn correlation_id_header_is_kept_in_metadata() {
    let server = TestServer::start().await;
    let res = http()
        .post(server.url(EVENTS))
        .header("X-Correlation-Id", "c-91")
        .json(&json!({"type": "t"}))
        .send()
        .await
        .unwrap();
    let r = Resp::from(res).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["metadata"]["correlation_id"], "c-91");
}

#[tokio::test]
async fn supplied_id_is_idempotent_and_delivered_once() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(&server.url("/api/v1/events/stream/default"), None).await;
    let event = json!({"id": "order-1", "type": "order_created", "message": "first"});
    let first = server.post_json(EVENTS, &event).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["id"], "order-1");

    let again = server.post_json(EVENTS, &event).await;
    assert_eq!(
        again.status, 200,
        "a repeated id is not created again: {}",
        again.text
    );
    assert_eq!(again.body["offset"], first.body["offset"]);
    // A different body under the same id returns the stored event.
    let changed = server
        .post_json(
            EVENTS,
            &json!({"id": "order-1", "type": "order_created", "message": "second"}),
        )
        .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, first.body);

    assert_eq!(sse.next().await.json()["id"], "order-1");
    assert!(
        sse.quiet_for(QUIET).await,
        "a repeated id delivers nothing new"
    );
    let stored = server.history("").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["message"], "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_of_one_id_store_it_once() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut sse = SseClient::connect(&server.url("/api/v1/events/stream/default"), None).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let server = std::sync::Arc::clone(&server);
            tokio::spawn(async move {
                server
                    .post_json(
                        EVENTS,
                        &json!({"id": "race-1", "type": "t", "message": i.to_string()}),
                    )
                    .await
            })
        })
        .collect();
    let mut created = 0;
    let mut offsets = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.status == 201 || r.status == 200, "{}", r.text);
        created += usize::from(r.status == 201);
        offsets.insert(r.body["offset"].as_u64().unwrap());
    }
    assert_eq!(created, 1, "exactly one publish creates the event");
    assert_eq!(
        offsets.len(),
        1,
        "every publish reports the same stored event"
    );
    assert_eq!(sse.next().await.json()["id"], "race-1");
    assert!(sse.quiet_for(QUIET).await, "delivered once");
    assert_eq!(server.history("").await.len(), 1);
}

#[tokio::test]
async fn repeated_id_within_one_batch_is_stored_once() {
    let server = TestServer::start().await;
    let body = json!([{"id": "k-1", "type": "t", "message": "a"}, {"id": "k-1", "type": "t", "message": "b"}]);
    let r = server.post_json(EVENTS, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], 201, "{}", r.text);
    assert_eq!(results[1]["status"], 200, "{}", r.text);
    assert_eq!(results[1]["event"]["offset"], results[0]["event"]["offset"]);
    assert_eq!(server.history("").await.len(), 1);
}

fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn array_with_bad_items_stores_the_valid_ones_in_order() {
    let server = TestServer::start().await;
    let body = json!([
        {"type": "t", "message": "one"},
        {"type": "bad type", "message": "x"},
        {"type": "t", "message": "two"},
        {"type": "t", "class": "loud"},
        {"type": "t", "message": "three"},
        {"type": "t", "data": {"blob": "x".repeat(70_000)}},
    ]);
    let r = server.post_json(EVENTS, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.body["results"].as_array().expect("results");
    let statuses: Vec<_> = results
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 201, 422, 201, 413]);
    assert_eq!(results[1]["problem"]["field"], "type");
    assert_eq!(results[3]["problem"]["field"], "class");
    assert_eq!(results[1]["problem"]["status"], 422);
    let stored = server.history("").await;
    assert_eq!(messages(&stored), ["one", "two", "three"]);
    let acked: Vec<u64> = [0, 2, 4]
        .iter()
        .map(|i| results[*i]["event"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets(&stored), acked);
    assert_increasing(&acked);
}

#[tokio::test]
async fn ndjson_with_bad_lines_stores_the_valid_ones_in_order() {
    let server = TestServer::start().await;
    let body = [
        r#"{"type":"t","message":"one"}"#,
        r#"{"type":"t","message":"#,
        r#"{"type":"t","message":"two"}"#,
        r#"{"type":"t","bogus":1}"#,
        r#"{"type":"t","message":"three"}"#,
    ]
    .join("\n");
    let r = server
        .post_raw(EVENTS, Some("application/x-ndjson"), format!("{body}\n"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.body["results"].as_array().expect("results");
    let statuses: Vec<_> = results
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 400, 201, 422, 201]);
    assert_eq!(results[3]["problem"]["field"], "bogus");
    let stored = server.history("").await;
    assert_eq!(messages(&stored), ["one", "two", "three"]);
}

#[tokio::test]
async fn batch_over_max_batch_is_413_and_stores_nothing() {
    let server = TestServer::start_with(|c| c.limits.max_batch = 3).await;
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"type": "t", "message": i.to_string()}))
        .collect();
    assert_problem(
        &server.post_json(EVENTS, &Value::from(four.clone())).await,
        413,
        None,
    );
    let ndjson: String = four.iter().map(|e| format!("{e}\n")).collect();
    assert_problem(
        &server
            .post_raw(EVENTS, Some("application/x-ndjson"), ndjson)
            .await,
        413,
        None,
    );
    assert!(server.history("").await.is_empty());
    // At the limit is fine.
    assert_eq!(server.publish_batch(&four[..3]).await.len(), 3);
}

/// A single-event body of exactly `len` bytes.
fn event_of_len(len: usize) -> String {
    let shell = json!({"type": "t", "data": {"blob": ""}}).to_string();
    let body = json!({"type": "t", "data": {"blob": "x".repeat(len - shell.len())}}).to_string();
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn event_over_64_kib_is_413_and_stores_nothing() {
    let server = TestServer::start().await;
    let r = server
        .post_raw(
            EVENTS,
            Some("application/json"),
            event_of_len(64 * 1024 + 1),
        )
        .await;
    assert_problem(&r, 413, None);
    assert!(server.history("").await.is_empty());
    let r = server
        .post_raw(EVENTS, Some("application/json"), event_of_len(64 * 1024))
        .await;
    assert_eq!(
        r.status, 201,
        "an event of exactly 64 KiB is accepted: {}",
        r.body["detail"]
    );
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413_problem() {
    let server = TestServer::start_with(|c| c.limits.max_body_bytes = 100_000).await;
    let many: Vec<Value> = (0..200)
        .map(|_| json!({"type": "t", "message": "x".repeat(600)}))
        .collect();
    let body = Value::from(many).to_string();
    assert!(body.len() > 100_000);
    assert_problem(
        &server
            .post_raw(EVENTS, Some("application/json"), body)
            .await,
        413,
        None,
    );
    assert!(server.history("").await.is_empty());
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let server = TestServer::start().await;
    for ct in [
        "application/xml",
        "text/csv",
        "multipart/form-data; boundary=x",
    ] {
        let r = server.post_raw(EVENTS, Some(ct), r#"{"type":"t"}"#).await;
        assert_problem(&r, 415, None);
    }
    assert!(server.history("").await.is_empty());
}

#[tokio::test]
async fn invalid_json_is_400() {
    let server = TestServer::start().await;
    for body in [
        r#"{"type":"#,
        "",
        "   ",
        r#""just a string""#,
        "[1,",
        r#"{"type":"t"} trailing"#,
    ] {
        let r = server
            .post_raw(EVENTS, Some("application/json"), body)
            .await;
        assert_problem(&r, 400, None);
    }
    assert!(server.history("").await.is_empty());
}

#[tokio::test]
async fn validation_failures_are_422_naming_the_field() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"message": "no type"}), "type"),
        (json!({"type": "a b"}), "type"),
        (json!({"type": "t", "stream_id": "Bad Name"}), "stream_id"),
        (json!({"type": "t", "class": "loud"}), "class"),
        (json!({"type": "t", "colour": "red"}), "colour"),
        (json!({"type": "t", "priority": "urgent"}), "priority"),
        (
            json!({"type": "t", "metadata": {"priority": "urgent"}}),
            "metadata.priority",
        ),
        (json!({"type": "t", "tags": "finals"}), "tags"),
        (json!({"type": "t", "id": "has space"}), "id"),
        (json!({"type": "t", "level": "info"}), "level"),
        (
            json!({"type": "t", "class": "alert", "level": "panic"}),
            "level",
        ),
        (json!({"type": "t", "timestamp": "soon"}), "timestamp"),
        (json!({"type": "t", "duration_ms": -1}), "duration_ms"),
        (json!({"type": "t", "message": 5}), "message"),
        (json!({"type": "t", "message": "x".repeat(9000)}), "message"),
    ];
    for (body, field) in cases {
        let r = server.post_json(EVENTS, &body).await;
        assert_problem(&r, 422, Some(field));
        assert!(
            r.body["detail"].as_str().unwrap().contains(field),
            "detail names {field}: {}",
            r.text
        );
    }
    // In a batch, a non-object item is refused on its own.
    let r = server.post_json(EVENTS, &json!([1, "x"])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["results"][0]["status"], 422, "{}", r.text);
    assert_eq!(r.body["results"][1]["status"], 422, "{}", r.text);
    assert!(server.history("").await.is_empty());
}
