//! Overlay subscriptions stored server-side (SPEC §2 "Consumer", §3.2;
//! issue 4 point 4): the routes, their validation (the `SUBSCRIBE` rules),
//! and a WebSocket `SUBSCRIBE` with `overlayId` and no filter using the
//! stored one.

use serde_json::{Value, json};

use crate::util::*;

const MAIN: &str = "/api/v1/subscriptions/main";

#[tokio::test]
async fn subscription_routes_store_read_replace_and_delete() {
    let server = TestServer::start().await;
    assert_problem(&server.get(MAIN).await, 404, None);
    let r = server
        .put_json(
            MAIN,
            &json!({"stream": "scores", "eventTypes": ["high_*", "goal"], "classes": "animated",
                    "tags": ["finals"], "minPriority": "high", "teams": ["red"],
                    "filter": {"metadata.tournament_id": 7}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let canonical = json!({"overlayId": "main", "streams": ["scores"],
        "eventTypes": ["high_*", "goal"], "classes": ["animated"], "tags": ["finals"],
        "minPriority": "high",
        "filter": {"metadata.tournament_id": [7], "data.team": ["red"]}});
    assert_eq!(r.body, canonical, "stored in canonical form");
    let r = server.get(MAIN).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (200, canonical.clone()),
        "{}",
        r.text
    );
    assert_eq!(server.get("/api/subscriptions/main").await.body, canonical);

    // What GET returns can be PUT back unchanged; a PUT replaces whole.
    let r = server.put_json(MAIN, &canonical).await;
    assert_eq!(r.body, canonical, "{}", r.text);
    let r = server.put_json(MAIN, &json!({"classes": ["alert"]})).await;
    assert_eq!(r.body, json!({"overlayId": "main", "classes": ["alert"]}));
    let r = server
        .put_json("/api/v1/subscriptions/all", &json!({}))
        .await;
    assert_eq!(r.body, json!({"overlayId": "all"}), "empty: everything");

    assert_eq!(server.delete(MAIN).await.status, 204);
    assert_problem(&server.get(MAIN).await, 404, None);
    assert_problem(&server.delete(MAIN).await, 404, None);
}

#[tokio::test]
async fn bad_subscriptions_are_refused_naming_the_field_and_store_nothing() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"streams": ["Bad Name"]}), Some("streams")),
        (json!({"eventTypes": 5}), Some("eventTypes")),
        (json!({"classes": ["loud"]}), Some("classes")),
        (json!({"tags": [""]}), Some("tags")),
        (json!({"minPriority": "urgent"}), Some("minPriority")),
        (json!({"filter": {"team": "x"}}), Some("filter")),
        (json!({"since": 4}), Some("since")),
        (json!({"colour": "red"}), Some("colour")),
        (json!({"overlayId": "other"}), Some("overlayId")),
        (json!(["scores"]), None),
    ];
    for (body, field) in cases {
        let r = server.put_json(MAIN, &body).await;
        assert_problem(&r, 422, field);
        if field.is_none() {
            assert!(r.body.get("field").is_none(), "{}", r.text);
        }
    }
    let r = server
        .put_json("/api/v1/subscriptions/a%20b", &json!({}))
        .await;
    assert_problem(&r, 400, Some("overlay_id"));
    let r = server
        .post_raw("/api/v1/subscriptions/main", Some("application/json"), "{}")
        .await;
    assert_problem(&r, 405, None);
    assert_problem(&server.get(MAIN).await, 404, None);
}

/// The events published by the overlay checks, in order, and which of them
/// `{"eventTypes": ["goal"], "classes": ["animated", "system"]}` lets through.
fn cases() -> Vec<(Value, bool)> {
    vec![
        (json!({"type": "tick"}), false),
        (json!({"type": "goal", "class": "data"}), false),
        (json!({"type": "goal", "class": "system"}), true),
        (json!({"type": "card", "class": "animated"}), false),
        (json!({"type": "goal", "class": "animated"}), true),
    ]
}

async fn expect_exactly(server: &TestServer, ws: &mut WsClient, cases: &[(Value, bool)]) {
    let events: Vec<Value> = cases.iter().map(|c| c.0.clone()).collect();
    let stored = server.publish_batch(&events).await;
    let want: Vec<u64> = stored
        .iter()
        .zip(cases)
        .filter(|(_, c)| c.1)
        .map(|(e, _)| e["offset"].as_u64().expect("offset"))
        .collect();
    // Animated events reach an overlay through its playout queue, beside the
    // ordinary delivery: compare as sets, then make sure nothing else comes.
    let mut got = offsets(&ws.events(want.len()).await);
    got.sort_unstable();
    assert_eq!(got, want);
    assert!(ws.quiet_for(QUIET).await, "nothing else arrives");
}

#[tokio::test]
async fn subscribe_with_overlay_id_and_no_filter_uses_the_stored_one() {
    let server = TestServer::start().await;
    let r = server
        .put_json(
            MAIN,
            &json!({"eventTypes": ["goal"], "classes": ["animated", "system"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"overlayId": "main"})).await;
    expect_exactly(&server, &mut ws, &cases()).await;
    // The animated goal now plays on `main`; end it, so that a second page of
    // the overlay is not sent it again.
    let playing = server.get("/api/v1/overlays/main").await.body["now_playing"]["event_id"].clone();
    ws.send(json!({"type": "ANIMATION_ENDED", "eventId": playing, "play": 0}))
        .await;
    eventually("the play ended", || async {
        let v = server.get("/api/v1/overlays/main").await.body;
        v["now_playing"].is_null().then_some(())
    })
    .await;

    // Filter fields in the frame win over the stored filter.
    let mut explicit = WsClient::connect(&server).await;
    explicit
        .subscribe(json!({"overlayId": "main", "eventTypes": ["card"]}))
        .await;
    let cases = [
        (json!({"type": "goal", "class": "animated"}), false),
        (json!({"type": "card", "class": "system"}), false),
        (json!({"type": "card", "class": "animated"}), true),
    ];
    expect_exactly(&server, &mut explicit, &cases).await;
}

#[tokio::test]
async fn a_changed_subscription_applies_at_the_next_subscribe() {
    let server = TestServer::start().await;
    server
        .put_json(MAIN, &json!({"eventTypes": ["card"]}))
        .await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"overlayId": "main"})).await;
    server
        .put_json(
            MAIN,
            &json!({"eventTypes": ["goal"], "classes": ["animated", "system"]}),
        )
        .await;
    ws.subscribe(json!({"overlayId": "main"})).await;
    expect_exactly(&server, &mut ws, &cases()).await;
}

#[tokio::test]
async fn an_overlay_without_a_stored_subscription_gets_everything_but_system() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"overlayId": "fresh"})).await;
    let cases = [
        (json!({"type": "tick"}), true),
        (json!({"type": "cpu", "class": "system"}), false),
        (json!({"type": "goal", "class": "animated"}), true),
    ];
    expect_exactly(&server, &mut ws, &cases).await;
}
