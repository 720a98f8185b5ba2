//! Delivery: signatures, retries, dead and redeliver, filters, isolation of
//! a slow endpoint, restarts and deletion.

use serde_json::json;

use super::*;

#[tokio::test]
async fn webhook_retries_against_an_endpoint_that_fails_twice_then_succeeds() {
    let server = server().await;
    let receiver = Receiver::with_policy(|attempt| if attempt <= 2 { 500 } else { 200 }).await;
    create_hook(
        &server,
        "orders",
        &receiver.url,
        json!({"streams": ["orders"]}),
    )
    .await;
    let event = publish(&server, "orders", "order.paid").await;

    let log = wait_deliveries(&server, "orders", 1, "delivered").await;
    let d = &log[0];
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(d["last_status"], 200, "{d}");
    assert_eq!(d["last_error"], Value::Null, "{d}");
    assert_eq!(d["event_id"], event["id"], "{d}");
    assert_eq!(d["event_offset"], event["offset"], "{d}");
    assert_eq!(d["next_attempt_at"], Value::Null, "not pending: {d}");
    assert!(
        d["id"].as_str().is_some_and(|id| id.starts_with("dlv_")),
        "{d}"
    );

    let hits = receiver.hits();
    assert_eq!(hits.len(), 3, "two failures and the success");
    for hit in &hits {
        assert_eq!(hit.delivery(), d["id"], "one delivery id on every attempt");
        assert_eq!(hit.event_id(), event["id"]);
        assert_eq!(hit.header("x-streambus-webhook"), "orders");
        assert_eq!(hit.header("content-type"), "application/json");
        assert!(hit.signed_with(SECRET), "signature of {:?}", hit.headers);
        assert!(!hit.signed_with("another-secret-0123456789"));
        let ts: i64 = hit
            .header("x-streambus-timestamp")
            .parse()
            .expect("unix seconds");
        assert!((ts - now_secs()).abs() < 60, "timestamp {ts}");
        assert_eq!(hit.json(), event, "the body is the event's canonical JSON");
    }
}

#[tokio::test]
async fn only_events_after_creation_that_match_the_filter_are_delivered() {
    let server = server().await;
    let receiver = Receiver::start(204).await;
    let before = publish(&server, "orders", "order.paid").await;
    create_hook(
        &server,
        "paid",
        &receiver.url,
        json!({"streams": ["orders"], "eventTypes": ["order.*"]}),
    )
    .await;
    publish(&server, "other", "order.paid").await;
    publish(&server, "orders", "refund.done").await;
    let matching = publish(&server, "orders", "order.shipped").await;

    // The fold takes events in order: once the last one is delivered, the
    // earlier ones would have deliveries too if they matched.
    let log = wait_deliveries(&server, "paid", 1, "delivered").await;
    assert_eq!(log[0]["event_id"], matching["id"]);
    assert_eq!(log[0]["last_status"], 204);
    let hits = receiver.wait_hits(1).await;
    assert_eq!(hits.len(), 1, "only the matching event");
    assert_eq!(hits[0].event_id(), matching["id"]);
    assert_ne!(
        hits[0].event_id(),
        before["id"],
        "older events are not delivered"
    );
}

#[tokio::test]
async fn always_failing_endpoint_goes_dead_then_redeliver_succeeds_after_recovery() {
    let server = server().await;
    let receiver = Receiver::start(503).await;
    create(
        &server,
        json!({"id": "flaky", "url": receiver.url, "secret": SECRET, "max_attempts": 3}),
    )
    .await;
    let event = publish(&server, "s", "t").await;

    let log = wait_deliveries(&server, "flaky", 1, "dead").await;
    let dead = &log[0];
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(dead["max_attempts"], 3, "{dead}");
    assert_eq!(dead["last_status"], 503, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{dead}"
    );
    assert_eq!(receiver.hits().len(), 3, "no attempt after the last");
    let r = server
        .get("/api/v1/webhooks/flaky/deliveries?state=dead")
        .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
    let r = server
        .get("/api/v1/webhooks/flaky/deliveries?state=pending")
        .await;
    assert_eq!(r.body["data"], json!([]), "{}", r.text);

    receiver.answer(200);
    let id = dead["id"].as_str().expect("id");
    let r = server
        .post_json(
            &format!("/api/v1/webhooks/flaky/deliveries/{id}/redeliver"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["state"], "pending", "{}", r.text);
    assert_eq!(
        r.body["attempts"], 0,
        "a fresh series of attempts: {}",
        r.text
    );
    assert!(r.body["next_attempt_at"].is_string(), "{}", r.text);

    let log = wait_deliveries(&server, "flaky", 1, "delivered").await;
    assert_eq!(log[0]["attempts"], 1, "{}", log[0]);
    assert_eq!(log[0]["last_status"], 200);
    let hits = receiver.hits();
    assert_eq!(hits.len(), 4);
    assert!(
        hits.iter()
            .all(|h| h.delivery() == id && h.event_id() == event["id"])
    );
    let one = server
        .get(&format!("/api/v1/webhooks/flaky/deliveries/{id}"))
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body, log[0]);
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_another_webhook() {
    let server = TestServer::start_with(|c| {
        fast_retries(c);
        // Longer than the test: the slow request stays in flight until
        // the test opens its gate.
        c.webhooks.timeout_ms = 60_000;
        c.webhooks.lease_ms = 120_000;
    })
    .await;
    let slow = Receiver::start(200).await;
    let fast = Receiver::start(200).await;
    slow.close();
    create_hook(&server, "slow", &slow.url, json!({})).await;
    create_hook(&server, "fast", &fast.url, json!({})).await;

    let first = publish(&server, "s", "t").await;
    eventually("the slow endpoint holds the first event", || async {
        (slow.waiting() == 1).then_some(())
    })
    .await;
    let second = publish(&server, "s", "t").await;
    let third = publish(&server, "s", "t").await;
    let delivered = wait_deliveries(&server, "fast", 3, "delivered").await;
    let ids: Vec<&Value> = delivered.iter().map(|d| &d["event_id"]).collect();
    assert_eq!(
        ids,
        [&third["id"], &second["id"], &first["id"]],
        "newest first"
    );

    // All while the slow endpoint still holds its answers: nothing of it
    // is recorded yet.
    assert!(slow.waiting() >= 1, "the slow endpoint was released early");
    let held = deliveries(&server, "slow").await;
    assert!(
        held.iter()
            .all(|d| d["state"] == "pending" && d["attempts"] == 0),
        "{held:?}"
    );
    assert!(
        held.iter().any(|d| d["event_id"] == first["id"]),
        "the held delivery is in the log: {held:?}"
    );

    slow.open();
    wait_deliveries(&server, "slow", 3, "delivered").await;
    assert_eq!(fast.hits().len(), 3);
}

#[tokio::test]
async fn one_slow_webhook_cannot_take_every_attempt_slot() {
    let server = TestServer::start_with(|c| {
        fast_retries(c);
        c.webhooks.concurrency = 2;
        c.webhooks.per_webhook = 1;
        c.webhooks.timeout_ms = 60_000;
        c.webhooks.lease_ms = 120_000;
    })
    .await;
    let slow = Receiver::start(200).await;
    let fast = Receiver::start(200).await;
    slow.close();
    create_hook(&server, "slow", &slow.url, json!({})).await;
    create_hook(&server, "fast", &fast.url, json!({})).await;
    for _ in 0..4 {
        publish(&server, "s", "t").await;
    }
    // Both slots would be the slow endpoint's without the per-webhook
    // limit, and the fast webhook would wait for it.
    wait_deliveries(&server, "fast", 4, "delivered").await;
    assert_eq!(slow.waiting(), 1, "one slow attempt at a time");
    assert_eq!(slow.hits().len(), 1);
    slow.open();
    wait_deliveries(&server, "slow", 4, "delivered").await;
    let log = deliveries(&server, "slow").await;
    assert!(
        log.iter().all(|d| d["attempts"] == 1),
        "deferring is no attempt: {log:?}"
    );
}

#[tokio::test]
async fn a_delivery_missed_by_a_crash_is_made_at_the_next_start() {
    let receiver = Receiver::start(200).await;
    let server = server().await;
    create_hook(&server, "kept", &receiver.url, json!({})).await;
    let first = publish(&server, "s", "t").await;
    wait_deliveries(&server, "kept", 1, "delivered").await;
    let dir = server.stop().await.expect("owned data directory");
    // An event stored while no delivery was made for it, as when a node
    // dies between the two.
    let store = streambus_store::SqliteStore::open(streambus_store::SqliteOptions::new(dir.path()))
        .await
        .expect("open store");
    let missed = streambus_core::EventStore::append(
        &store,
        streambus_core::DEFAULT_TENANT,
        vec![streambus_core::testsuite::new_event(
            json!({"stream_id": "s", "type": "t"}),
        )],
    )
    .await
    .expect("append");
    streambus_core::EventStore::close(&store).await;
    let missed_id = missed[0].record.event.id.clone();

    let server = TestServer::start_in(dir.path(), fast_retries).await;
    let log = wait_deliveries(&server, "kept", 2, "delivered").await;
    assert_eq!(log[0]["event_id"], missed_id.as_str());
    assert_eq!(log[1]["event_id"], first["id"]);
    let hits = receiver.wait_hits(2).await;
    let events: Vec<&str> = hits.iter().map(Hit::event_id).collect();
    assert_eq!(
        events,
        [first["id"].as_str().unwrap(), missed_id.as_str()],
        "each once"
    );
    drop(server);
    drop(dir);
}

#[tokio::test]
async fn a_restart_does_not_deliver_again() {
    let receiver = Receiver::start(200).await;
    let server = server().await;
    create_hook(&server, "once", &receiver.url, json!({})).await;
    let first = publish(&server, "s", "t").await;
    wait_deliveries(&server, "once", 1, "delivered").await;
    let dir = server.stop().await.expect("owned data directory");

    let server = TestServer::start_in(dir.path(), fast_retries).await;
    let second = publish(&server, "s", "t").await;
    let log = wait_deliveries(&server, "once", 2, "delivered").await;
    assert_eq!(log[0]["event_id"], second["id"]);
    assert_eq!(log[1]["event_id"], first["id"]);
    assert!(log.iter().all(|d| d["attempts"] == 1), "{log:?}");
    // The replay after the restart made no new delivery of the first
    // event (it would be due before the second one's).
    let hits = receiver.wait_hits(2).await;
    let events: Vec<&str> = hits.iter().map(Hit::event_id).collect();
    assert_eq!(
        events,
        [
            first["id"].as_str().unwrap(),
            second["id"].as_str().unwrap()
        ]
    );
    drop(dir);
}

#[tokio::test]
async fn deleting_a_webhook_stops_its_deliveries() {
    let server = server().await;
    let receiver = Receiver::start(500).await;
    create(
        &server,
        json!({"id": "gone", "url": receiver.url, "secret": SECRET, "max_attempts": 50}),
    )
    .await;
    let witness = Receiver::start(200).await;
    create_hook(&server, "witness", &witness.url, json!({})).await;
    publish(&server, "s", "t").await;
    receiver.wait_hits(2).await;

    let r = server.delete("/api/v1/webhooks/gone").await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(&server.get("/api/v1/webhooks/gone").await, 404, None);
    assert_problem(
        &server.get("/api/v1/webhooks/gone/deliveries").await,
        404,
        None,
    );
    let after_delete = receiver.hits().len();
    // New events reach the remaining webhook only; by the time the
    // witness has them, the deleted webhook's retries (due every few ms)
    // would have come too, but for at most one attempt already in flight.
    let last = publish(&server, "s", "t").await;
    eventually("the witness gets the last event", || async {
        witness
            .hits()
            .iter()
            .any(|h| h.event_id() == last["id"])
            .then_some(())
    })
    .await;
    let late = witness.hits().len();
    assert_eq!(late, 2);
    assert!(
        receiver.hits().len() <= after_delete + 1,
        "deliveries went on after the delete: {} then {}",
        after_delete,
        receiver.hits().len()
    );
    let r = server.get("/api/v1/webhooks").await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
}
