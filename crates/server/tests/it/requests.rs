//! Tracked requests (SPEC §6, seed 003; issue 6 point 5): the lifecycle
//! through published events and through the REST report route, delivery of
//! the reports, a handler whose heartbeats stop, a request left open across
//! restarts, listing by state, permissions and bad input.

use serde_json::{Value, json};
use streambus_core::auth::Role;

use crate::cluster::Nodes;
use crate::util::*;

const PREFIX: &str = "campaign:update:v1";
const STREAM: &str = "campaigns";
/// The heartbeat timeout of the servers that time requests out.
const SHORT_MS: u64 = 500;

async fn short_timeout_server() -> TestServer {
    TestServer::start_with(|c| c.requests.heartbeat_timeout_ms = SHORT_MS).await
}

/// Publishes `<PREFIX>:requested` with id `id` and returns the stored event.
async fn request(server: &TestServer, id: &str) -> Value {
    server
        .publish(json!({"id": id, "type": format!("{PREFIX}:requested"),
                        "stream_id": STREAM, "data": {"campaign_id": 7}}))
        .await
}

/// Publishes a report as a handler would with `POST /events`.
async fn publish_report(server: &TestServer, step: &str, meta: Value, data: Value) -> Value {
    server
        .publish(
            json!({"type": format!("{PREFIX}:{step}"), "stream_id": STREAM,
                        "metadata": meta, "data": data}),
        )
        .await
}

/// `POST /requests/{id}/{report}` with a JSON body.
async fn rest_report(server: &TestServer, id: &str, report: &str, body: &Value) -> Resp {
    server
        .post_json(&format!("/api/v1/requests/{id}/{report}"), body)
        .await
}

async fn get_request(server: &TestServer, id: &str) -> Value {
    let r = server.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Polls `GET /requests/{id}` until it is in `state`.
async fn until_state(server: &TestServer, id: &str, state: &str) -> Value {
    eventually(&format!("request {id} {state}"), || async {
        let r = get_request(server, id).await;
        (r["state"] == state).then_some(r)
    })
    .await
}

/// The ids listed by `GET /requests?<query>`, in order.
async fn listed(server: &TestServer, query: &str) -> Vec<String> {
    let r = server.get(&format!("/api/v1/requests?{query}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The stored `<PREFIX>:failed` events naming `id`.
async fn failures(server: &TestServer, id: &str) -> Vec<Value> {
    server
        .history(&format!("stream_id={STREAM}&type={PREFIX}:failed"))
        .await
        .into_iter()
        .filter(|e| e["data"]["request_id"] == id)
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

fn typed(steps: &[&str]) -> Vec<String> {
    steps.iter().map(|s| format!("{PREFIX}:{s}")).collect()
}

#[tokio::test]
async fn published_reports_walk_a_request_to_success() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": [STREAM]})).await;

    request(&server, "upd-1").await;
    let r = get_request(&server, "upd-1").await;
    assert_eq!(r["state"], "requested", "{r}");
    assert_eq!(
        (r["type"].clone(), r["stream"].clone()),
        (json!(format!("{PREFIX}:requested")), json!(STREAM))
    );
    assert!(
        r["deadline"].is_string(),
        "an open request has a deadline: {r}"
    );

    // The handler names the request by correlation id or by data.request_id.
    publish_report(
        &server,
        "started",
        json!({"correlation_id": "upd-1"}),
        json!({}),
    )
    .await;
    publish_report(
        &server,
        "progress",
        json!({}),
        json!({"request_id": "upd-1", "percent": 40, "message": "sending"}),
    )
    .await;
    let r = until_state(&server, "upd-1", "running").await;
    assert!(r["started_at"].is_string(), "{r}");
    eventually("progress folded", || async {
        let r = get_request(&server, "upd-1").await;
        (r["progress"]["percent"] == 40.0).then_some(())
    })
    .await;
    assert_eq!(listed(&server, "state=running").await, ["upd-1"]);

    publish_report(
        &server,
        "success",
        json!({"correlation_id": "upd-1"}),
        json!({"sent": 120}),
    )
    .await;
    let r = until_state(&server, "upd-1", "succeeded").await;
    assert_eq!(r["result"], json!({"sent": 120}), "{r}");
    assert_eq!(
        r["progress"]["message"], "sending",
        "last progress kept: {r}"
    );
    assert_eq!(
        (r["reports"].clone(), r["deadline"].clone()),
        (json!(3), Value::Null),
        "{r}"
    );
    assert_rfc3339_ms(r["finished_at"].as_str().expect("finished_at"));
    assert_eq!(listed(&server, "state=succeeded").await, ["upd-1"]);
    assert!(listed(&server, "state=running").await.is_empty());

    let got = ws.events(4).await;
    assert_eq!(
        types(&got),
        typed(&["requested", "started", "progress", "success"])
    );
    // The stored request follows along.
    eventually("request event completed", || async {
        let e = server.get("/api/v1/events/upd-1").await;
        (e.body["status"] == "completed").then_some(())
    })
    .await;
}

#[tokio::test]
async fn rest_reports_walk_a_request_to_success_and_a_late_report_is_refused() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(
        &server.url(&format!("/api/v1/events/stream/{STREAM}")),
        None,
    )
    .await;
    request(&server, "upd-2").await;

    let r = rest_report(&server, "upd-2", "started", &json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let e = &r.body["event"];
    assert_eq!(e["type"], format!("{PREFIX}:started"));
    assert_eq!(e["stream_id"], STREAM);
    assert_eq!(e["metadata"]["correlation_id"], "upd-2");
    assert_eq!(e["data"]["request_id"], "upd-2");
    assert_eq!(
        r.body["request"]["state"], "running",
        "read-your-writes: {}",
        r.text
    );

    // An empty body is an empty `data`.
    let r = server
        .post_raw("/api/v1/requests/upd-2/heartbeat", None, "")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = rest_report(
        &server,
        "upd-2",
        "progress",
        &json!({"percent": 50, "message": "half"}),
    )
    .await;
    assert_eq!(r.body["request"]["progress"]["percent"], 50.0, "{}", r.text);
    assert_eq!(
        r.body["request"]["progress"]["message"], "half",
        "{}",
        r.text
    );
    let r = rest_report(
        &server,
        "upd-2",
        "success",
        &json!({"url": "https://example.com/c/7"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["request"]["state"], "succeeded", "{}", r.text);
    assert_eq!(
        r.body["request"]["result"]["url"],
        "https://example.com/c/7"
    );
    assert_eq!(r.body["request"]["reports"], 4);

    let got: Vec<Value> = sse.take(5).await.iter().map(SseMessage::json).collect();
    assert_eq!(
        types(&got),
        typed(&["requested", "started", "heartbeat", "progress", "success"])
    );

    let before = server.history(&format!("stream_id={STREAM}")).await.len();
    for report in ["heartbeat", "failed", "success"] {
        assert_problem(
            &rest_report(&server, "upd-2", report, &json!({})).await,
            409,
            None,
        );
    }
    assert_eq!(
        server.history(&format!("stream_id={STREAM}")).await.len(),
        before,
        "nothing stored"
    );
    assert_eq!(get_request(&server, "upd-2").await["state"], "succeeded");
}

#[tokio::test]
async fn a_handler_that_stops_heart_beating_fails_with_a_timeout() {
    let server = short_timeout_server().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": [STREAM]})).await;
    request(&server, "upd-3").await;
    let r = rest_report(&server, "upd-3", "started", &json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut deadline = r.body["request"]["deadline"]
        .as_str()
        .expect("deadline")
        .to_owned();
    // Two heartbeats, over REST and as a published event; each moves the
    // deadline.
    let r = rest_report(&server, "upd-3", "heartbeat", &json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let next = r.body["request"]["deadline"]
        .as_str()
        .expect("deadline")
        .to_owned();
    assert!(next >= deadline, "{next} < {deadline}");
    deadline = next;
    let last = publish_report(
        &server,
        "heartbeat",
        json!({"correlation_id": "upd-3"}),
        json!({}),
    )
    .await;
    let r = eventually("second heartbeat folded", || async {
        let r = get_request(&server, "upd-3").await;
        (r["reports"] == 3).then_some(r)
    })
    .await;
    assert!(
        r["deadline"].as_str().expect("deadline") >= deadline.as_str(),
        "{r}"
    );

    // Then nothing: the request fails for lack of heartbeats.
    let r = until_state(&server, "upd-3", "failed").await;
    assert_eq!(r["error"]["reason"], "timeout", "{r}");
    assert_eq!(
        r["error"]["detail"],
        format!("no heartbeat for {SHORT_MS} ms"),
        "{r}"
    );

    let stored = failures(&server, "upd-3").await;
    assert_eq!(stored.len(), 1, "one timeout stored: {stored:?}");
    let f = &stored[0];
    assert_eq!(f["id"], "req_timeout:upd-3");
    assert_eq!(f["metadata"]["correlation_id"], "upd-3");
    let gap = time_ms(f) - time_ms(&last);
    assert!(
        gap >= SHORT_MS as i64,
        "timed out {gap} ms after the last heartbeat"
    );

    let got = ws.events(5).await;
    assert_eq!(
        types(&got),
        typed(&["requested", "started", "heartbeat", "heartbeat", "failed"])
    );
    assert_eq!(got[4]["data"]["reason"], "timeout");
    assert_problem(
        &rest_report(&server, "upd-3", "heartbeat", &json!({})).await,
        409,
        None,
    );
    assert_eq!(listed(&server, "state=failed").await, ["upd-3"]);
    assert_eq!(failures(&server, "upd-3").await.len(), 1, "still one");
}

fn time_ms(event: &Value) -> i64 {
    streambus_core::time::parse_rfc3339_ms(event["time"].as_str().expect("time")).expect("RFC 3339")
}

#[tokio::test]
async fn a_request_left_open_across_a_restart_fails_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    // First run: the default timeout (30 s) is far away when it stops.
    let server = TestServer::start_in(tmp.path(), |_| {}).await;
    request(&server, "upd-4").await;
    assert_eq!(get_request(&server, "upd-4").await["state"], "requested");
    server.stop().await;

    // Second run, with a short timeout: the deadline computed from the
    // stored request has passed, so it fails at once.
    let short = |c: &mut streambus_server::Config| c.requests.heartbeat_timeout_ms = SHORT_MS;
    let server = TestServer::start_in(tmp.path(), short).await;
    let r = until_state(&server, "upd-4", "failed").await;
    assert_eq!(
        r["error"]["detail"],
        format!("not started within {SHORT_MS} ms"),
        "{r}"
    );
    assert_eq!(failures(&server, "upd-4").await.len(), 1);
    eventually("request event failed", || async {
        let e = server.get("/api/v1/events/upd-4").await;
        (e.body["status"] == "failed").then_some(())
    })
    .await;
    server.stop().await;

    // Third run: the failure is folded from storage, nothing is proposed
    // again. A fresh request timing out shows the timeouts ran.
    let server = TestServer::start_in(tmp.path(), short).await;
    assert_eq!(get_request(&server, "upd-4").await["state"], "failed");
    server
        .publish(
            json!({"id": "upd-5", "type": format!("{PREFIX}:requested"), "stream_id": STREAM,
                        "metadata": {"heartbeat_timeout_ms": 1}}),
        )
        .await;
    until_state(&server, "upd-5", "failed").await;
    assert_eq!(
        failures(&server, "upd-4").await.len(),
        1,
        "not failed twice"
    );
    assert_eq!(
        server
            .history(&format!("stream_id={STREAM}&type={PREFIX}:failed"))
            .await
            .len(),
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn requests_are_listed_newest_first_by_state_type_and_stream() {
    let server = TestServer::start().await;
    for id in ["a1", "a2", "a3"] {
        request(&server, id).await;
    }
    server
        .publish(
            json!({"id": "m1", "type": "media:stream_rooms:v1:requested", "stream_id": "media"}),
        )
        .await;
    rest_report(&server, "a2", "success", &json!({})).await;
    // Not requests: a plain event, a report naming nothing, an internal
    // stream's lookalike is never published by producers.
    server
        .publish(json!({"type": "campaign:update:v1:stream", "stream_id": STREAM}))
        .await;
    publish_report(
        &server,
        "started",
        json!({"correlation_id": "nobody"}),
        json!({}),
    )
    .await;

    assert_eq!(listed(&server, "").await, ["m1", "a3", "a2", "a1"]);
    assert_eq!(listed(&server, "state=requested").await, ["m1", "a3", "a1"]);
    assert_eq!(listed(&server, "state=succeeded").await, ["a2"]);
    assert_eq!(listed(&server, "type=campaign:*").await, ["a3", "a2", "a1"]);
    assert_eq!(
        listed(&server, "type=media:stream_rooms:v1:requested").await,
        ["m1"]
    );
    assert_eq!(listed(&server, "stream=media").await, ["m1"]);
    assert_eq!(listed(&server, "limit=2").await, ["m1", "a3"]);
    let r = server.get("/api/v1/requests?state=requested&limit=1").await;
    let item = &r.body["data"][0];
    for field in [
        "id",
        "type",
        "stream",
        "state",
        "requested_at",
        "updated_at",
        "deadline",
        "reports",
    ] {
        assert!(!item[field].is_null(), "{field} in {item}");
    }
    // The seed alias path serves the same.
    let r = server.get("/api/requests/a2").await;
    assert_eq!(r.body["state"], "succeeded", "{}", r.text);
}

/// A refused report: path, content type, body, status and field.
type BadReport = (
    &'static str,
    Option<&'static str>,
    &'static str,
    u16,
    Option<&'static str>,
);

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    let server = TestServer::start().await;
    request(&server, "upd-6").await;
    server
        .publish(json!({"id": "plain-1", "type": "high_score", "stream_id": STREAM}))
        .await;
    let before = server.history(&format!("stream_id={STREAM}")).await.len();

    let cases: &[BadReport] = &[
        (
            "/api/v1/requests/upd-6/finished",
            None,
            "{}",
            422,
            Some("report"),
        ),
        (
            "/api/v1/requests/upd-6/requested",
            None,
            "{}",
            422,
            Some("report"),
        ),
        ("/api/v1/requests/nope/started", None, "{}", 404, None),
        ("/api/v1/requests/plain-1/started", None, "{}", 404, None),
        (
            "/api/v1/requests/upd-6/started",
            Some("application/json"),
            "[1, 2]",
            422,
            Some("data"),
        ),
        (
            "/api/v1/requests/upd-6/started",
            Some("application/json"),
            "\"go\"",
            422,
            Some("data"),
        ),
        (
            "/api/v1/requests/upd-6/started",
            Some("application/json"),
            "{",
            400,
            None,
        ),
        (
            "/api/v1/requests/upd-6/progress",
            None,
            r#"{"percent": 140}"#,
            422,
            Some("data.percent"),
        ),
        (
            "/api/v1/requests/upd-6/progress",
            None,
            r#"{"message": 3}"#,
            422,
            Some("data.message"),
        ),
        (
            "/api/v1/requests/upd-6/heartbeat",
            None,
            r#"{"heartbeat_timeout_ms": 0}"#,
            422,
            Some("data.heartbeat_timeout_ms"),
        ),
        (
            "/api/v1/requests/upd-6/started",
            None,
            r#"{"request_id": "other"}"#,
            422,
            Some("data.request_id"),
        ),
        (
            "/api/v1/requests/a%20b/started",
            None,
            "{}",
            400,
            Some("id"),
        ),
    ];
    for (path, ctype, body, status, field) in cases {
        let r = server.post_raw(path, *ctype, body.to_string()).await;
        assert_problem(&r, *status, *field);
    }
    assert_problem(&server.get("/api/v1/requests/nope").await, 404, None);
    assert_problem(&server.get("/api/v1/requests/plain-1").await, 404, None);
    for (query, field) in [
        ("state=done", "state"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("type=a%20b", "type"),
        ("stream=Bad", "stream"),
        ("bogus=1", "bogus"),
    ] {
        assert_problem(
            &server.get(&format!("/api/v1/requests?{query}")).await,
            400,
            Some(field),
        );
    }

    assert_eq!(
        server.history(&format!("stream_id={STREAM}")).await.len(),
        before,
        "nothing stored"
    );
    let r = get_request(&server, "upd-6").await;
    assert_eq!(
        (r["state"].clone(), r["reports"].clone()),
        (json!("requested"), json!(0)),
        "{r}"
    );
}

fn token(role: Role, streams: &[&str]) -> String {
    let publish: &[&str] = if role == Role::Producer { streams } else { &[] };
    mint(
        "default",
        &format!("requests-{}", role.as_str()),
        role,
        publish,
        streams,
    )
}

#[tokio::test]
async fn reporting_is_publishing_to_the_requests_stream_and_reading_is_for_operators() {
    let server = TestServer::start_with(|c| c.auth.hs256_secret = AUTH_SECRET.into()).await;
    let admin = token(Role::Admin, &[]);
    let handler = token(Role::Producer, &[STREAM]);
    let elsewhere = token(Role::Producer, &["other"]);
    let consumer = token(Role::Consumer, &[STREAM]);
    server
        .publish_with(
            &admin,
            json!({"id": "upd-7", "type": format!("{PREFIX}:requested"), "stream_id": STREAM}),
        )
        .await;
    let post = |token: String, report: &'static str| {
        let url = server.url(&format!("/api/v1/requests/upd-7/{report}"));
        async move {
            Resp::from(
                http()
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .expect("POST"),
            )
            .await
        }
    };
    assert_problem(&post(elsewhere.clone(), "started").await, 403, None);
    assert_problem(&post(consumer.clone(), "started").await, 403, None);
    // A producer of another stream cannot end it by publishing either: its
    // report would have to be in the request's stream.
    let r = http()
        .post(server.url("/api/v1/events"))
        .bearer_auth(&elsewhere)
        .json(
            &json!({"type": format!("{PREFIX}:failed"), "stream_id": "other",
                      "data": {"request_id": "upd-7"}}),
        )
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(post(handler.clone(), "started").await.status, 201);

    let get = |token: String| {
        let url = server.url("/api/v1/requests/upd-7");
        async move {
            Resp::from(
                http()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("GET"),
            )
            .await
        }
    };
    assert_problem(&get(handler).await, 403, None);
    let r = get(admin).await;
    assert_eq!(r.body["state"], "running", "{}", r.text);
}

/// Three nodes each follow the whole log and each may time the request out;
/// the timeout is stored once and every node sees the request failed (skipped
/// without `STREAMBUS_TEST_POSTGRES_URL` and `STREAMBUS_TEST_NATS_URL`).
#[tokio::test]
async fn three_nodes_time_a_request_out_once() {
    let Some(nodes) = Nodes::start(3, |c| c.requests.heartbeat_timeout_ms = SHORT_MS).await else {
        return;
    };
    let id = "upd-c";
    let mut ws = WsClient::connect(&nodes[1]).await;
    ws.subscribe(json!({"streams": [STREAM]})).await;
    request(&nodes[0], id).await;
    // Reports through other nodes, over REST and as an event.
    let r = rest_report(&nodes[1], id, "started", &json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    publish_report(
        &nodes[2],
        "heartbeat",
        json!({"correlation_id": id}),
        json!({}),
    )
    .await;

    for node in nodes.iter() {
        let r = until_state(node, id, "failed").await;
        assert_eq!(r["error"]["reason"], "timeout", "{r}");
    }
    for node in nodes.iter() {
        let stored = failures(node, id).await;
        assert_eq!(stored.len(), 1, "one timeout stored: {stored:?}");
    }
    let got = ws.events(4).await;
    assert_eq!(
        types(&got),
        typed(&["requested", "started", "heartbeat", "failed"])
    );
    nodes.stop().await;
}
