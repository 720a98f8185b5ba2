//! Overlay playout queues (issue 4, docs/OVERLAYS.md): order, reports and
//! the timeout fallback, cancel and replay over REST and WebSocket, queue
//! controls, reconnects, restarts, and bad input.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

/// An overlay connection: subscribed as `id` with no filter fields.
async fn overlay(server: &TestServer, id: &str) -> WsClient {
    let mut ws = WsClient::connect(server).await;
    ws.subscribe(json!({"overlayId": id})).await;
    ws
}

/// An admin connection receiving queue updates (and no events).
async fn admin(server: &TestServer) -> WsClient {
    let mut ws = WsClient::connect(server).await;
    ws.subscribe(json!({"overlayUpdates": true, "streams": ["nothing-here"]}))
        .await;
    ws
}

fn animated(id: &str, priority: &str) -> Value {
    json!({"id": id, "type": "high_score", "class": "animated", "message": format!("event {id}"),
        "duration_ms": 60000, "metadata": {"priority": priority}})
}

/// The next queue item sent to an overlay: `(event id, play)`.
async fn next_play(ws: &mut WsClient) -> (String, u64) {
    loop {
        let v = ws.recv().await;
        if v["type"] == "EVENT_BROADCAST" && v["event"]["class"] == "animated" {
            return (
                v["event"]["id"].as_str().expect("id").to_owned(),
                v["play"].as_u64().expect("a queue item carries its play"),
            );
        }
    }
}

/// The next frame of `kind`, skipping others.
async fn next_of(ws: &mut WsClient, kind: &str) -> Value {
    loop {
        let v = ws.recv().await;
        if v["type"] == kind {
            return v;
        }
    }
}

async fn report(ws: &mut WsClient, kind: &str, id: &str, play: u64) {
    ws.send(json!({"type": kind, "eventId": id, "play": play}))
        .await;
}

async fn view(server: &TestServer, id: &str) -> Value {
    let r = server.get(&format!("/api/v1/overlays/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn post(server: &TestServer, path: &str) -> Resp {
    server.post_json(path, &json!({})).await
}

/// Waits until the overlay's view passes `check`.
async fn overlay_until(
    server: &TestServer,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, || async {
        let v = view(server, id).await;
        check(&v).then_some(v)
    })
    .await
}

fn queue_ids(v: &Value) -> Vec<String> {
    v["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .map(|i| i["event_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn plays_one_at_a_time_in_priority_order_and_passes_other_classes_at_once() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    assert_eq!(
        post(&server, "/api/v1/overlays/main/pause").await.status,
        200
    );
    for (id, p) in [
        ("low1", "low"),
        ("norm1", "normal"),
        ("crit1", "critical"),
        ("high1", "high"),
    ] {
        server.publish(animated(id, p)).await;
    }
    let v = overlay_until(&server, "main", "four queued", |v| {
        v["queue"].as_array().is_some_and(|q| q.len() == 4)
    })
    .await;
    assert_eq!(queue_ids(&v), ["crit1", "high1", "norm1", "low1"]);
    assert_eq!(v["paused"], true);
    assert_eq!(v["connected"], true);
    assert_eq!(
        post(&server, "/api/v1/overlays/main/resume").await.status,
        200
    );

    let mut order = Vec::new();
    for _ in 0..4 {
        let (id, play) = next_play(&mut ov).await;
        assert_eq!(play, 0);
        report(&mut ov, "ANIMATION_STARTED", &id, 0).await;
        // While one plays, nothing else is sent but other classes.
        server
            .publish(json!({"type": "score", "data": {"n": order.len()}}))
            .await;
        let data = ov.expect("EVENT_BROADCAST").await;
        assert_eq!(data["event"]["class"], "data", "{data}");
        let playing = view(&server, "main").await;
        assert_eq!(playing["now_playing"]["event_id"], id.as_str());
        assert_eq!(playing["now_playing"]["status"], "active");
        report(&mut ov, "ANIMATION_ENDED", &id, 0).await;
        order.push(id);
    }
    assert_eq!(order, ["crit1", "high1", "norm1", "low1"]);

    let v = overlay_until(&server, "main", "all completed", |v| {
        v["history"].as_array().is_some_and(|h| h.len() == 4)
    })
    .await;
    assert!(v["now_playing"].is_null());
    for item in v["history"].as_array().unwrap() {
        assert_eq!(item["status"], "completed", "{item}");
        assert!(
            item["started_at"].is_string() && item["ended_at"].is_string(),
            "{item}"
        );
    }
    // The event's own lifecycle and its per-overlay row.
    let e = eventually("event completed", || async {
        let e = server.get("/api/v1/events/crit1").await.body;
        (e["status"] == "completed").then_some(e)
    })
    .await;
    assert!(
        e["started_at"].is_string() && e["completed_at"].is_string(),
        "{e}"
    );
    let rows = server.get("/api/v1/events/crit1/overlays").await;
    assert_eq!(rows.status, 200, "{}", rows.text);
    assert_eq!(rows.body["overlays"][0]["overlay_id"], "main");
    assert_eq!(rows.body["overlays"][0]["status"], "completed");
    let analytics = server.get("/api/v1/analytics/overlays").await.body;
    assert_eq!(
        analytics["overlays"][0]["plays"]["completed"], 4,
        "{analytics}"
    );
}

#[tokio::test]
async fn a_play_without_an_end_report_times_out_and_the_next_goes() {
    let server = TestServer::start_with(|c| c.overlays.grace_ms = 100).await;
    let mut ov = overlay(&server, "main").await;
    for id in ["t1", "t2"] {
        let mut e = animated(id, "normal");
        e["duration_ms"] = 200.into();
        server.publish(e).await;
    }
    assert_eq!(next_play(&mut ov).await.0, "t1");
    // No report at all: after 200 + 100 ms the next one goes.
    let started = std::time::Instant::now();
    assert_eq!(next_play(&mut ov).await.0, "t2");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the deadline"
    );
    let v = view(&server, "main").await;
    assert_eq!(v["history"][0]["event_id"], "t1");
    assert_eq!(v["history"][0]["status"], "completed");
    assert_eq!(v["history"][0]["reason"], "timeout");
}

#[tokio::test]
async fn cancel_over_rest_stops_the_playing_item_and_admins_see_it() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    let mut adm = admin(&server).await;
    server.publish(animated("c1", "normal")).await;
    server.publish(animated("c2", "normal")).await;
    assert_eq!(next_play(&mut ov).await.0, "c1");
    assert_eq!(
        next_of(&mut adm, "ANIMATION_STARTED").await["eventId"],
        "c1"
    );

    let r = server
        .put_json("/api/v1/events/c1/cancel", &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled", "{}", r.text);
    let stop = next_of(&mut ov, "ANIMATION_CANCEL").await;
    assert_eq!(
        (stop["eventId"].as_str(), stop["play"].as_u64()),
        (Some("c1"), Some(0))
    );
    report(&mut ov, "ANIMATION_CANCELLED", "c1", 0).await;
    let update = next_of(&mut adm, "ANIMATION_CANCELLED").await;
    assert_eq!(
        (update["eventId"].as_str(), update["overlay"].as_str()),
        (Some("c1"), Some("main"))
    );
    let state = next_of(&mut adm, "OVERLAY_STATE").await;
    assert_eq!(state["overlay"]["overlay_id"], "main");
    // The next one plays.
    assert_eq!(next_play(&mut ov).await.0, "c2");

    // Cancelling a queued item removes it; it is never sent.
    server.publish(animated("c3", "normal")).await;
    overlay_until(&server, "main", "c3 queued", |v| queue_ids(v) == ["c3"]).await;
    let r = server
        .put_json(
            "/api/v1/events/c3/cancel",
            &json!({"target_overlay": "main"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = view(&server, "main").await;
    assert!(queue_ids(&v).is_empty());
    assert_eq!(v["history"][0]["event_id"], "c3");
    assert_eq!(v["history"][0]["status"], "cancelled");
    report(&mut ov, "ANIMATION_ENDED", "c2", 0).await;
    assert!(
        ov.quiet_for(Duration::from_millis(300)).await,
        "c3 must not be sent"
    );

    // Cancelling again: the transition is refused.
    let r = server
        .put_json("/api/v1/events/c1/cancel", &json!({}))
        .await;
    assert_problem(&r, 409, None);
    assert!(r.text.contains("cancelled"), "{}", r.text);
    let e = eventually("c1 cancelled in storage", || async {
        let e = server.get("/api/v1/events/c1").await.body;
        (e["status"] == "cancelled").then_some(e)
    })
    .await;
    assert!(e["completed_at"].is_string());
}

#[tokio::test]
async fn cancel_and_replay_over_websocket() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    let mut adm = admin(&server).await;
    server.publish(animated("w1", "normal")).await;
    assert_eq!(next_play(&mut ov).await, ("w1".into(), 0));

    adm.send(
        json!({"type": "ANIMATION_CANCEL", "eventId": "w1", "targetOverlay": "main", "ref": "c"}),
    )
    .await;
    let ok = next_of(&mut adm, "CONTROL_OK").await;
    assert_eq!(
        (
            ok["action"].as_str(),
            ok["eventId"].as_str(),
            ok["ref"].as_str()
        ),
        (Some("cancel"), Some("w1"), Some("c"))
    );
    assert_eq!(next_of(&mut ov, "ANIMATION_CANCEL").await["eventId"], "w1");

    adm.send(json!({"type": "ANIMATION_REPLAY", "eventId": "w1", "ref": "r"}))
        .await;
    let ok = next_of(&mut adm, "CONTROL_OK").await;
    assert_eq!(ok["action"], "replay");
    // Played again as play 1; a late report of play 0 is ignored.
    assert_eq!(next_play(&mut ov).await, ("w1".into(), 1));
    report(&mut ov, "ANIMATION_ENDED", "w1", 0).await;
    let v = view(&server, "main").await;
    assert_eq!(v["now_playing"]["play"], 1, "{v}");
    report(&mut ov, "ANIMATION_ENDED", "w1", 1).await;
    overlay_until(&server, "main", "replay completed", |v| {
        v["now_playing"].is_null()
    })
    .await;

    // Over REST too; replaying what is still queued is refused.
    let r = post(&server, "/api/v1/events/w1/replay").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(next_play(&mut ov).await, ("w1".into(), 2));
    assert_problem(&post(&server, "/api/v1/events/w1/replay").await, 409, None);
    adm.send(json!({"type": "ANIMATION_REPLAY", "eventId": "w1", "ref": "again"}))
        .await;
    let e = next_of(&mut adm, "ERROR").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("conflict"), Some("again"))
    );
    adm.assert_alive().await;
}

#[tokio::test]
async fn bad_control_input_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    let _side = overlay(&server, "side").await;
    server
        .put_json(
            "/api/v1/subscriptions/side",
            &json!({"eventTypes": ["other"]}),
        )
        .await;
    let mut fixed = animated("fixed", "normal");
    fixed["cancelable"] = false.into();
    fixed["replayable"] = false.into();
    server.publish(fixed).await;
    assert_eq!(next_play(&mut ov).await.0, "fixed");
    server
        .publish(json!({"id": "plain", "type": "score"}))
        .await;
    assert_eq!(ov.expect("EVENT_BROADCAST").await["event"]["id"], "plain");

    let cases: [(&str, &str, Value, u16); 9] = [
        ("PUT", "/api/v1/events/nope/cancel", json!({}), 404),
        ("POST", "/api/v1/events/nope/replay", json!({}), 404),
        ("PUT", "/api/v1/events/fixed/cancel", json!({}), 409),
        ("POST", "/api/v1/events/fixed/replay", json!({}), 409),
        ("PUT", "/api/v1/events/plain/cancel", json!({}), 409),
        ("POST", "/api/v1/events/plain/replay", json!({}), 409),
        (
            "PUT",
            "/api/v1/events/fixed/cancel",
            json!({"target_overlay": "ghost"}),
            404,
        ),
        (
            "PUT",
            "/api/v1/events/fixed/cancel",
            json!({"target_overlay": "bad id!"}),
            400,
        ),
        (
            "PUT",
            "/api/v1/events/fixed/cancel",
            json!({"bogus": 1}),
            400,
        ),
    ];
    for (method, path, body, status) in cases {
        let r = match method {
            "PUT" => server.put_json(path, &body).await,
            _ => server.post_json(path, &body).await,
        };
        assert_problem(&r, status, None);
        let _ = r.text;
    }
    // A target overlay that does not have the event.
    let mut other = animated("other1", "normal");
    other["type"] = "high_score".into();
    server.publish(other).await;
    let r = server
        .put_json(
            "/api/v1/events/other1/cancel",
            &json!({"target_overlay": "side"}),
        )
        .await;
    assert_problem(&r, 404, None);
    assert!(r.text.contains("not on overlay"), "{}", r.text);
    // Unknown overlays and actions.
    assert_problem(&server.get("/api/v1/overlays/ghost").await, 404, None);
    assert_problem(
        &post(&server, "/api/v1/overlays/ghost/skip").await,
        404,
        None,
    );
    assert_problem(
        &post(&server, "/api/v1/overlays/main/dance").await,
        404,
        None,
    );
    assert_problem(
        &server
            .post_json("/api/v1/overlays/main/pause", &json!({"type": "x"}))
            .await,
        400,
        Some("type"),
    );
    assert_problem(
        &server
            .put_json("/api/v1/overlays/main/settings", &json!({"min_gap_ms": -1}))
            .await,
        400,
        None,
    );
    assert_problem(
        &server
            .put_json("/api/v1/overlays/main/settings", &json!({"colour": 1}))
            .await,
        400,
        None,
    );

    // WebSocket: errors name the problem and keep the connection.
    let mut adm = admin(&server).await;
    adm.expect_error(
        r#"{"type":"ANIMATION_CANCEL","eventId":"nope"}"#,
        "not_found",
    )
    .await;
    adm.expect_error(r#"{"type":"ANIMATION_CANCEL"}"#, "invalid")
        .await;
    adm.expect_error(
        r#"{"type":"ANIMATION_CANCEL","eventId":"fixed"}"#,
        "conflict",
    )
    .await;
    adm.expect_error(r#"{"type":"ANIMATION_ENDED","eventId":"fixed"}"#, "invalid")
        .await;
    adm.expect_error(
        r#"{"type":"OVERLAY_CONTROL","overlay":"main","action":"dance"}"#,
        "invalid",
    )
    .await;
    adm.expect_error(
        r#"{"type":"OVERLAY_CONTROL","overlay":"ghost","action":"skip"}"#,
        "not_found",
    )
    .await;
    adm.expect_error(r#"{"type":"OVERLAY_VISIBILITY","visible":"no"}"#, "invalid")
        .await;
    adm.assert_alive().await;
    ov.expect_error(
        r#"{"type":"ANIMATION_ENDED","eventId":"fixed","overlay":"side"}"#,
        "invalid",
    )
    .await;
    ov.expect_error(
        r#"{"type":"ANIMATION_ENDED","eventId":"fixed","play":-1}"#,
        "invalid",
    )
    .await;
    ov.assert_alive().await;

    // Nothing changed: `fixed` still plays on main.
    let v = view(&server, "main").await;
    assert_eq!(v["now_playing"]["event_id"], "fixed", "{v}");
    assert_eq!(v["history"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn skip_pause_clear_and_the_minimum_gap() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    assert_problem(
        &post(&server, "/api/v1/overlays/main/skip").await,
        409,
        None,
    );
    let r = server
        .put_json(
            "/api/v1/overlays/main/settings",
            &json!({"min_gap_ms": 400}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["settings"]["min_gap_ms"], 400);
    server.publish(animated("s1", "normal")).await;
    server.publish(animated("s2", "normal")).await;
    assert_eq!(next_play(&mut ov).await.0, "s1");
    // Skip cancels what plays; the next waits for the gap.
    let r = post(&server, "/api/v1/overlays/main/skip").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let skipped = std::time::Instant::now();
    assert_eq!(next_of(&mut ov, "ANIMATION_CANCEL").await["eventId"], "s1");
    assert_eq!(next_play(&mut ov).await.0, "s2");
    assert!(
        skipped.elapsed() >= Duration::from_millis(350),
        "the gap holds the next one"
    );
    assert_eq!(
        view(&server, "main").await["history"][0]["reason"],
        "skipped"
    );

    // Clear by type, then all; over WebSocket as well as REST.
    assert_eq!(
        post(&server, "/api/v1/overlays/main/pause").await.status,
        200
    );
    report(&mut ov, "ANIMATION_ENDED", "s2", 0).await;
    for (id, ty) in [
        ("k1", "high_score"),
        ("k2", "win_streak"),
        ("k3", "win_streak"),
        ("k4", "goal"),
    ] {
        let mut e = animated(id, "normal");
        e["type"] = ty.into();
        server.publish(e).await;
    }
    overlay_until(&server, "main", "four queued", |v| queue_ids(v).len() == 4).await;
    let r = server
        .post_json("/api/v1/overlays/main/clear", &json!({"type": "win_*"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["cleared"], 2);
    assert_eq!(queue_ids(&r.body["overlay"]), ["k1", "k4"]);
    let mut adm = admin(&server).await;
    adm.send(json!({"type": "OVERLAY_CONTROL", "overlay": "main", "action": "clear", "ref": 1}))
        .await;
    assert_eq!(next_of(&mut adm, "CONTROL_OK").await["action"], "clear");
    assert!(queue_ids(&view(&server, "main").await).is_empty());
    // Paused: a new one waits; resume over WebSocket plays it.
    server.publish(animated("k5", "normal")).await;
    assert!(ov.quiet_for(Duration::from_millis(300)).await, "paused");
    adm.send(json!({"type": "OVERLAY_CONTROL", "overlay": "main", "action": "resume"}))
        .await;
    assert_eq!(next_play(&mut ov).await.0, "k5");
}

#[tokio::test]
async fn waiting_too_long_expires_and_hidden_overlays_hold_when_configured() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    let r = server
        .put_json(
            "/api/v1/overlays/main/settings",
            &json!({"max_wait_ms": 300, "hold_while_hidden": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    ov.send(json!({"type": "OVERLAY_VISIBILITY", "visible": false}))
        .await;
    overlay_until(&server, "main", "hidden", |v| {
        v["visible"] == false && v["held"] == true
    })
    .await;
    server.publish(animated("x1", "normal")).await;
    let v = overlay_until(&server, "main", "x1 expired", |v| {
        v["history"][0]["status"] == "expired"
    })
    .await;
    assert!(v["queue"].as_array().unwrap().is_empty());
    assert_eq!(
        server.get("/api/v1/analytics/overlays").await.body["overlays"][0]["plays"]["expired"],
        1
    );
    // Shown again, with a longer wait: it plays.
    server
        .put_json(
            "/api/v1/overlays/main/settings",
            &json!({"max_wait_ms": 60000}),
        )
        .await;
    server.publish(animated("x2", "normal")).await;
    assert!(
        ov.quiet_for(Duration::from_millis(300)).await,
        "held while hidden"
    );
    ov.send(json!({"type": "OVERLAY_VISIBILITY", "visible": true}))
        .await;
    assert_eq!(next_play(&mut ov).await.0, "x2");
}

#[tokio::test]
async fn connections_share_a_queue_and_a_reconnect_gets_the_playing_item_again() {
    let server = TestServer::start().await;
    let mut a = overlay(&server, "main").await;
    let mut b = overlay(&server, "main").await;
    server.publish(animated("r1", "normal")).await;
    server.publish(animated("r2", "normal")).await;
    assert_eq!(next_play(&mut a).await.0, "r1");
    assert_eq!(next_play(&mut b).await.0, "r1");
    assert_eq!(view(&server, "main").await["connections"], 2);
    // Both go away mid-play; a new page gets r1 again, then r2.
    drop(a);
    drop(b);
    overlay_until(&server, "main", "disconnected", |v| v["connected"] == false).await;
    let mut c = overlay(&server, "main").await;
    assert_eq!(next_play(&mut c).await, ("r1".into(), 0));
    report(&mut c, "ANIMATION_ENDED", "r1", 0).await;
    assert_eq!(next_play(&mut c).await.0, "r2");
}

#[tokio::test]
async fn queues_survive_a_restart() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    server.publish(animated("p1", "normal")).await;
    assert_eq!(next_play(&mut ov).await.0, "p1");
    server.publish(animated("p2", "high")).await;
    server.publish(animated("p3", "normal")).await;
    overlay_until(&server, "main", "two queued", |v| queue_ids(v).len() == 2).await;
    drop(ov);
    let dir = server.stop().await.expect("data dir");
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let v = view(&server, "main").await;
    assert_eq!(v["now_playing"]["event_id"], "p1", "{v}");
    assert_eq!(queue_ids(&v), ["p2", "p3"]);
    let mut ov = overlay(&server, "main").await;
    assert_eq!(next_play(&mut ov).await.0, "p1");
    report(&mut ov, "ANIMATION_ENDED", "p1", 0).await;
    assert_eq!(next_play(&mut ov).await.0, "p2");
    drop(dir);
}

#[tokio::test]
async fn stored_subscriptions_choose_what_an_overlay_queues_and_test_events_are_marked() {
    let server = TestServer::start().await;
    let r = server
        .put_json(
            "/api/v1/subscriptions/scores",
            &json!({"eventTypes": ["high_*"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut ov = overlay(&server, "scores").await;
    let mut streak = animated("ws1", "critical");
    streak["type"] = "win_streak".into();
    server.publish(streak).await;
    let mut test = animated("hs1", "normal");
    test["metadata"]["test"] = true.into();
    server.publish(test).await;
    let (id, _) = next_play(&mut ov).await;
    assert_eq!(id, "hs1", "win_streak is not for this overlay");
    let v = view(&server, "scores").await;
    assert_eq!(v["now_playing"]["test"], true);
    report(&mut ov, "ANIMATION_ENDED", "hs1", 0).await;
    let v = overlay_until(&server, "scores", "done", |v| v["now_playing"].is_null()).await;
    assert_eq!(v["history"][0]["test"], true);
    let a = server.get("/api/v1/analytics/overlays").await.body;
    assert_eq!(
        a["overlays"][0]["plays"]["completed"], 0,
        "test events are left out: {a}"
    );
    let list = server.get("/api/v1/overlays").await.body;
    assert_eq!(list["overlays"][0]["overlay_id"], "scores");
}

#[tokio::test]
async fn scheduled_events_are_held_over_websocket_and_withdrawn_by_cancel() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.send(
        json!({"type": "PUBLISH", "ref": "s", "event": {"id": "later", "type": "high_score",
        "class": "animated", "scheduled_at": "2099-01-01T00:00:00Z"}}),
    )
    .await;
    let ack = ws.expect("ACK").await;
    assert_eq!(
        (
            ack["id"].as_str(),
            ack["scheduled"].as_bool(),
            ack["offset"].as_u64()
        ),
        (Some("later"), Some(true), Some(0)),
        "{ack}"
    );
    assert_eq!(
        server.get("/api/v1/events/later").await.body["scheduled"],
        true
    );
    let r = server
        .put_json("/api/v1/events/later/cancel", &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["status"].as_str(), r.body["scheduled"].as_bool()),
        (Some("cancelled"), Some(true))
    );
    assert_problem(&server.get("/api/v1/events/later").await, 404, None);
    assert_problem(
        &server
            .put_json("/api/v1/events/later/cancel", &json!({}))
            .await,
        404,
        None,
    );
}

#[tokio::test]
async fn a_failed_report_ends_the_play_as_failed_and_the_next_goes() {
    let server = TestServer::start().await;
    let mut ov = overlay(&server, "main").await;
    let mut adm = admin(&server).await;
    server.publish(animated("f1", "normal")).await;
    server.publish(animated("f2", "normal")).await;
    assert_eq!(next_play(&mut ov).await.0, "f1");
    ov.send(
        json!({"type": "ANIMATION_FAILED", "eventId": "f1", "play": 0, "reason": "asset missing"}),
    )
    .await;
    assert_eq!(next_play(&mut ov).await.0, "f2");
    let update = next_of(&mut adm, "ANIMATION_FAILED").await;
    assert_eq!(update["eventId"], "f1");
    let v = view(&server, "main").await;
    assert_eq!(v["history"][0]["status"], "failed");
    assert_eq!(v["history"][0]["reason"], "asset missing");
    assert_eq!(
        server.get("/api/v1/analytics/overlays").await.body["overlays"][0]["plays"]["failed"],
        1
    );
    // A failed event can be replayed.
    let r = post(&server, "/api/v1/events/f1/replay").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["overlays"][0]["status"], "pending", "{}", r.text);
}
