//! Scheduled events (SPEC §4): an event whose `scheduled_at` lies ahead is
//! held (202, no offset), appended and delivered at its time with a new
//! offset and the same id, listed and cancellable while held, and still
//! delivered after a restart — at once when it fell due while the server was
//! down.

use serde_json::{Value, json};

use crate::util::*;

const EVENTS: &str = "/api/v1/events";
const SCHEDULED: &str = "/api/v1/events/scheduled";

/// Milliseconds since the epoch, now (the server's clock: same machine).
fn now_ms() -> i64 {
    streambus_core::time::now_ms()
}

/// An event on stream `sched` due `ahead_ms` from now; returns it and the
/// due time.
fn scheduled(id: &str, ahead_ms: i64) -> (Value, i64) {
    let due = now_ms() + ahead_ms;
    let at = streambus_core::time::rfc3339_ms(due);
    let e = json!({"id": id, "stream_id": "sched", "type": "reminder", "scheduled_at": at});
    (e, due)
}

/// The ids of the held events listed by `GET /events/scheduled`.
async fn held_ids(server: &TestServer) -> Vec<String> {
    let r = server.get(SCHEDULED).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| {
            assert_eq!(e["scheduled"], true, "{e}");
            e["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// Polls `GET /events/{id}` until the event is in the log (has an offset).
async fn delivered(server: &TestServer, id: &str) -> Value {
    let path = format!("{EVENTS}/{id}");
    eventually(&format!("{id} in the log"), || async {
        let r = server.get(&path).await;
        (r.status == 200 && r.body["offset"].is_u64()).then_some(r.body)
    })
    .await
}

#[tokio::test]
async fn scheduled_event_is_held_then_delivered_at_its_time_with_a_new_offset() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["sched"]})).await;

    // ~1 s ahead: room for the checks below while it is held, even on a
    // busy machine running the other tests at once.
    let (event, due) = scheduled("later-1", 1000);
    let r = server.post_json(EVENTS, &event).await;
    assert_eq!(r.status, 202, "held: {}", r.text);
    // Published after, delivered before: the held one is not in the log.
    let now = server
        .publish(json!({"stream_id": "sched", "type": "now"}))
        .await;
    assert!(r.header("content-type").starts_with("application/json"));
    assert_eq!(r.header("location"), "/api/v1/events/later-1");
    let held = &r.body;
    assert_eq!(held["id"], "later-1");
    assert_eq!(held["scheduled"], true, "{held}");
    assert_eq!(held["status"], "pending", "{held}");
    assert!(held.get("offset").is_none(), "no offset while held: {held}");
    assert_eq!(
        held["scheduled_at"],
        streambus_core::time::rfc3339_ms(due),
        "{held}"
    );

    let shown = server.get("/api/v1/events/later-1").await;
    assert_eq!(shown.status, 200, "GET falls back to the held event");
    assert_eq!(shown.body, r.body);
    assert_eq!(held_ids(&server).await, ["later-1"]);
    let one = server.get(&format!("{SCHEDULED}/later-1")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body, r.body);

    let first = ws.events(1).await.remove(0);
    assert_eq!(first["id"], now["id"], "the immediate event comes first");

    let released = ws.events(1).await.remove(0);
    assert!(now_ms() >= due, "delivered {} ms early", due - now_ms());
    assert_eq!(released["id"], "later-1");
    assert!(
        released["offset"].as_u64() > now["offset"].as_u64(),
        "a new offset, after the immediate one: {released}"
    );
    assert!(released.get("scheduled").is_none(), "{released}");
    assert!(
        released.get("status").is_none(),
        "a data event has no lifecycle: {released}"
    );

    let stored = server.get("/api/v1/events/later-1").await;
    assert_eq!(stored.status, 200);
    assert_eq!(stored.body["offset"], released["offset"]);
    assert!(stored.body.get("scheduled").is_none(), "{}", stored.body);
    assert!(
        held_ids(&server).await.is_empty(),
        "released, no longer held"
    );
    assert!(ws.quiet_for(QUIET).await, "delivered once");

    // Its id stays idempotent: publishing it again delivers nothing new.
    let (again, _) = scheduled("later-1", 600);
    let r = server.post_json(EVENTS, &again).await;
    assert_eq!(r.status, 200, "a duplicate of a stored event: {}", r.text);
    assert_eq!(r.body["offset"], released["offset"]);
    assert!(held_ids(&server).await.is_empty());
}

#[tokio::test]
async fn repeated_id_while_held_returns_the_first() {
    let server = TestServer::start().await;
    let (mut first, _) = scheduled("twice", 60_000);
    first["message"] = "first".into();
    let (mut second, _) = scheduled("twice", 120_000);
    second["message"] = "second".into();
    let a = server.post_json(EVENTS, &first).await;
    let b = server.post_json(EVENTS, &second).await;
    assert_eq!((a.status, b.status), (202, 202), "{} / {}", a.text, b.text);
    assert_eq!(b.body, a.body, "the event held first is kept");
    assert_eq!(held_ids(&server).await, ["twice"]);
}

#[tokio::test]
async fn cancelled_scheduled_event_is_never_delivered() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["sched"]})).await;

    let (doomed, _) = scheduled("doomed", 1200);
    assert_eq!(server.post_json(EVENTS, &doomed).await.status, 202);
    // Due after the cancelled one: once it arrives, the other had its chance.
    let (witness, _) = scheduled("witness", 1500);
    assert_eq!(server.post_json(EVENTS, &witness).await.status, 202);
    assert_eq!(
        held_ids(&server).await,
        ["doomed", "witness"],
        "by due time"
    );

    let r = server.delete(&format!("{SCHEDULED}/doomed")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(
        &server.delete(&format!("{SCHEDULED}/doomed")).await,
        404,
        None,
    );
    assert_problem(
        &server.delete(&format!("{SCHEDULED}/unknown")).await,
        404,
        None,
    );
    assert_problem(&server.get("/api/v1/events/doomed").await, 404, None);
    assert_eq!(held_ids(&server).await, ["witness"]);

    let got = ws.events(1).await.remove(0);
    assert_eq!(got["id"], "witness", "the cancelled event is not delivered");
    assert!(ws.quiet_for(QUIET).await);
    let ids: Vec<Value> = server
        .history("stream_id=sched")
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("witness")]);
    assert_problem(&server.get("/api/v1/events/doomed").await, 404, None);
}

#[tokio::test]
async fn bad_scheduled_at_is_a_422_naming_the_field_and_stores_nothing() {
    let server = TestServer::start().await;
    for bad in [json!("next tuesday"), json!(true), json!({"in": 5})] {
        let r = server
            .post_json(
                EVENTS,
                &json!({"stream_id": "sched", "type": "t", "scheduled_at": bad}),
            )
            .await;
        assert_problem(&r, 422, Some("scheduled_at"));
    }
    let r = server
        .post_json(
            EVENTS,
            &json!([{"type": "t", "stream_id": "sched", "scheduled_at": "soon"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["results"][0]["status"], 422, "{}", r.text);
    assert_eq!(r.body["results"][0]["problem"]["field"], "scheduled_at");
    assert!(held_ids(&server).await.is_empty(), "nothing held");
    assert!(
        server.history("stream_id=sched").await.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn past_or_imminent_scheduled_at_is_appended_at_once() {
    let server = TestServer::start().await;
    let (past, _) = scheduled("past", -60_000);
    let r = server.post_json(EVENTS, &past).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.body["offset"].is_u64());
    assert!(held_ids(&server).await.is_empty());
}

#[tokio::test]
async fn batch_and_ndjson_report_held_items_as_202() {
    let server = TestServer::start().await;
    let (held, _) = scheduled("in-batch", 60_000);
    let batch = json!([
        {"stream_id": "sched", "type": "now"},
        held,
        {"stream_id": "sched", "type": "bad type"},
    ]);
    let r = server.post_json(EVENTS, &batch).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.body["results"].as_array().expect("results");
    let statuses: Vec<&Value> = results.iter().map(|i| &i["status"]).collect();
    assert_eq!(
        statuses,
        [&json!(201), &json!(202), &json!(422)],
        "{}",
        r.text
    );
    assert!(results[0]["event"]["offset"].is_u64());
    let e = &results[1]["event"];
    assert_eq!(e["id"], "in-batch");
    assert_eq!(e["scheduled"], true);
    assert_eq!(e["status"], "pending");
    assert!(e.get("offset").is_none(), "{e}");

    let (line, _) = scheduled("in-ndjson", 60_000);
    let body = format!(
        "{}\n{}\n",
        json!({"stream_id": "sched", "type": "now"}),
        line
    );
    let r = server
        .post_raw(EVENTS, Some("application/x-ndjson"), body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["results"][0]["status"], 201, "{}", r.text);
    assert_eq!(r.body["results"][1]["status"], 202, "{}", r.text);
    assert_eq!(r.body["results"][1]["event"]["scheduled"], true);
    assert_eq!(held_ids(&server).await, ["in-batch", "in-ndjson"]);
    assert_eq!(server.history("stream_id=sched").await.len(), 2);
}

#[tokio::test]
async fn scheduled_events_survive_a_restart_and_overdue_ones_go_out_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let (soon, due) = scheduled("overdue", 1500);
    assert_eq!(server.post_json(EVENTS, &soon).await.status, 202);
    let (later, _) = scheduled("next-hour", 3_600_000);
    assert_eq!(server.post_json(EVENTS, &later).await.status, 202);
    server.stop().await;
    assert!(
        now_ms() < due,
        "the server stopped before the event was due"
    );

    // Let it fall due while the server is down.
    eventually("the due time to pass", || async {
        (now_ms() > due).then_some(())
    })
    .await;
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let stored = delivered(&server, "overdue").await;
    assert!(stored.get("scheduled").is_none(), "{stored}");
    assert_eq!(
        held_ids(&server).await,
        ["next-hour"],
        "still held after the restart"
    );
    let ids: Vec<Value> = server
        .history("stream_id=sched")
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("overdue")], "delivered once");

    // A late subscriber resumes it from the log like any other event.
    let mut sse = SseClient::connect(&server.url("/api/v1/events/stream/sched"), Some("0")).await;
    let got = sse.next().await.json();
    assert_eq!(got["id"], "overdue");
    assert_eq!(got["offset"], stored["offset"]);
}
