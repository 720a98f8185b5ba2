//! Event templates (SPEC §2, §3.2; issue 4 point 5): the routes, firing with
//! number and string substitution, overrides, and firing through the normal
//! publish path (event types and their schemas apply).

use serde_json::{Value, json};

use crate::util::*;

const TEMPLATES: &str = "/api/v1/event-templates";

fn goal_template() -> Value {
    json!({"name": "goal", "description": "a goal",
        "event": {"type": "goal", "class": "animated", "stream_id": "match-1",
                  "message": "{{player}} scores in minute {{minute}}!",
                  "data": {"player": "{{player}}", "minute": "{{ minute }}", "team": "{{team}}"}},
        "params": {"player": {"required": true}, "minute": {"default": 90},
                   "team": {"default": "home"}}})
}

async fn create(server: &TestServer, template: &Value) {
    let r = server.post_json(TEMPLATES, template).await;
    assert!(r.status == 201 || r.status == 200, "create: {}", r.text);
}

#[tokio::test]
async fn template_routes_create_replace_read_and_delete() {
    let server = TestServer::start().await;
    let r = server.post_json(TEMPLATES, &goal_template()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location"), "/api/v1/event-templates/goal");
    assert_eq!(r.body, goal_template(), "the stored template is returned");

    let card = json!({"name": "card", "event": {"type": "card", "message": "{{who}}"}});
    create(&server, &card).await;
    let r = server.get(TEMPLATES).await;
    assert_eq!(
        r.body,
        json!({"data": [card, goal_template()]}),
        "{}",
        r.text
    );

    let smaller = json!({"name": "goal", "event": {"type": "goal"}});
    let r = server.post_json(TEMPLATES, &smaller).await;
    assert_eq!(r.status, 200, "a second POST replaces: {}", r.text);
    let r = server.get("/api/v1/event-templates/goal").await;
    assert_eq!((r.status, r.body.clone()), (200, smaller), "{}", r.text);
    assert_eq!(server.get("/api/event-templates/card").await.status, 200);

    assert_eq!(
        server.delete("/api/v1/event-templates/goal").await.status,
        204
    );
    assert_problem(&server.get("/api/v1/event-templates/goal").await, 404, None);
    assert_problem(
        &server.delete("/api/v1/event-templates/goal").await,
        404,
        None,
    );
    assert_problem(
        &server.get("/api/v1/event-templates/a%20b").await,
        400,
        Some("name"),
    );
}

#[tokio::test]
async fn invalid_templates_are_refused_naming_the_field_and_store_nothing() {
    let server = TestServer::start().await;
    let cases = [
        (json!({"event": {"type": "t"}}), "name"),
        (json!({"name": "a b", "event": {"type": "t"}}), "name"),
        (json!({"name": "n"}), "event"),
        (json!({"name": "n", "event": "goal"}), "event"),
        (
            json!({"name": "n", "event": {"colour": "red"}}),
            "event.colour",
        ),
        (
            json!({"name": "n", "event": {}, "params": {"p": 1}}),
            "params.p",
        ),
        (
            json!({"name": "n", "event": {}, "params": {"p": {"required": true, "default": 1}}}),
            "params.p",
        ),
        (json!({"name": "n", "event": {}, "extra": true}), "extra"),
    ];
    for (body, field) in cases {
        assert_problem(&server.post_json(TEMPLATES, &body).await, 422, Some(field));
    }
    assert_eq!(server.get(TEMPLATES).await.body, json!({"data": []}));
}

#[tokio::test]
async fn fire_substitutes_numbers_as_numbers_and_text_as_text() {
    let server = TestServer::start().await;
    create(&server, &goal_template()).await;
    let r = server
        .post_json(
            "/api/v1/event-templates/goal/fire",
            &json!({"params": {"player": "ana", "minute": 42}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let e = &r.body;
    assert_eq!(
        e["data"]["minute"], 42,
        "a whole placeholder keeps the number: {e}"
    );
    assert_eq!(e["data"]["player"], "ana", "{e}");
    assert_eq!(e["data"]["team"], "home", "defaults fill the rest: {e}");
    assert_eq!(e["message"], "ana scores in minute 42!", "{e}");
    assert_eq!(e["stream_id"], "match-1", "{e}");
    assert_eq!(e["class"], "animated", "{e}");
    assert_eq!(e["source"], "template:goal", "{e}");
    assert!(e["offset"].as_u64().is_some_and(|o| o > 0), "{e}");
    let id = e["id"].as_str().expect("id");
    assert_eq!(r.header("location"), format!("/api/v1/events/{id}"));
    let stored = server.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(&stored.body, e, "stored as returned");
}

#[tokio::test]
async fn fire_overrides_fields_and_a_given_id_is_idempotent() {
    let server = TestServer::start().await;
    create(&server, &goal_template()).await;
    let body = json!({"params": {"player": "bo"}, "stream_id": "match-2", "id": "goal-7",
                      "priority": "critical"});
    let r = server
        .post_json("/api/v1/event-templates/goal/fire", &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["stream_id"], "match-2");
    assert_eq!(r.body["id"], "goal-7");
    assert_eq!(r.body["metadata"]["priority"], "critical");
    assert_eq!(r.body["data"]["minute"], 90);
    let again = server
        .post_json("/api/v1/event-templates/goal/fire", &body)
        .await;
    assert_eq!(again.status, 200, "the same id again: {}", again.text);
    assert_eq!(again.body["offset"], r.body["offset"]);
    assert_eq!(server.history("stream_id=match-2").await.len(), 1);
}

#[tokio::test]
async fn fire_refusals_name_the_parameter_and_store_nothing() {
    let server = TestServer::start().await;
    create(&server, &goal_template()).await;
    let fire = "/api/v1/event-templates/goal/fire";
    let r = server
        .post_json(fire, &json!({"params": {"minute": 3}}))
        .await;
    assert_problem(&r, 422, Some("params.player"));
    let r = server
        .post_json(fire, &json!({"params": {"player": "a", "minit": 3}}))
        .await;
    assert_problem(&r, 422, Some("params.minit"));
    let r = server.post_json(fire, &json!({"params": [1]})).await;
    assert_problem(&r, 422, Some("params"));
    let r = server
        .post_json(fire, &json!({"params": {"player": "a"}, "colour": "red"}))
        .await;
    assert_problem(&r, 422, Some("colour"));
    let r = server
        .post_json(
            fire,
            &json!({"params": {"player": "a"}, "stream_id": "Bad Name"}),
        )
        .await;
    assert_problem(&r, 422, Some("stream_id"));
    let r = server
        .post_raw(fire, Some("application/json"), "{nope")
        .await;
    assert_problem(&r, 400, None);
    let r = server
        .post_json("/api/v1/event-templates/nope/fire", &json!({"params": {}}))
        .await;
    assert_problem(&r, 404, None);
    assert!(server.history("").await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn fire_goes_through_event_types() {
    let server = TestServer::start().await;
    let r = server
        .post_json(
            "/api/v1/event-types",
            &json!({"name": "goal", "priority": "high", "duration_ms": 2500,
                    "schema": {"type": "object",
                               "properties": {"minute": {"type": "integer", "maximum": 120}}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    create(&server, &goal_template()).await;
    let fire = "/api/v1/event-templates/goal/fire";
    let r = server
        .post_json(fire, &json!({"params": {"player": "a", "minute": 500}}))
        .await;
    assert_problem(&r, 422, Some("data/minute"));
    assert!(server.history("").await.is_empty());
    let r = server
        .post_json(fire, &json!({"params": {"player": "a", "minute": "late"}}))
        .await;
    assert_problem(&r, 422, Some("data/minute"));
    let r = server
        .post_json(fire, &json!({"params": {"player": "a", "minute": 12}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.body["metadata"]["priority"], "high",
        "type defaults apply"
    );
    assert_eq!(r.body["duration_ms"], 2500);
}

#[tokio::test]
async fn a_template_without_required_parameters_fires_with_an_empty_body() {
    let server = TestServer::start().await;
    create(
        &server,
        &json!({"name": "break", "event": {"type": "announcement", "message": "Back in {{mins}} minutes"},
                "params": {"mins": {"default": 5}}}),
    )
    .await;
    let r = server
        .post_raw("/api/v1/event-templates/break/fire", None, "")
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["message"], "Back in 5 minutes");
    assert_eq!(r.body["source"], "template:break");
}
