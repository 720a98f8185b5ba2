//! Rules (SPEC §2 "Rule", issue 6 point 3): each detector through the API,
//! derived events with `derived_from` and deterministic ids, exactly once
//! per cause — when the same events are published again, across a restart
//! between a cause and its derived event, and across restarts that replay
//! the history — plus testing, disabling, fire counts, the live-streams
//! registry fed by link detection, configured rules and bad input.

use std::time::Duration;

use serde_json::{Value, json};
use streambus_core::EventStore;
use streambus_core::rule::derived_id;
use streambus_core::validate::{PublishContext, event_from_json};
use streambus_store::{SqliteOptions, SqliteStore};

use crate::util::*;

/// Polls history for `query` until it holds `n` events; returns them.
async fn wait_for(server: &TestServer, query: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = server.history(query).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited for {n} events of `{query}`, have {}: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create(server: &TestServer, rule: Value) -> Value {
    let r = server.post_json("/api/v1/rules", &rule).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

fn score(id: &str, player: &str, points: i64) -> Value {
    json!({"id": id, "stream_id": "match", "type": "score.updated",
           "data": {"player": player, "score": points},
           "metadata": {"tournament_id": 7}})
}

fn high_score_rule() -> Value {
    json!({"id": "hs", "description": "new tournament high score",
           "when": {"streams": ["match"], "eventTypes": ["score.updated"]},
           "detect": {"kind": "high_score", "field": "data.score",
                      "scope": ["metadata.tournament_id"], "subject": "data.player"}})
}

#[tokio::test]
async fn high_score_derives_once_per_cause_even_when_the_causes_are_published_again() {
    let server = TestServer::start().await;
    let created = create(&server, high_score_rule()).await;
    assert_eq!(created["origin"], "api");
    assert_eq!(created["stats"]["fired"], 0);

    let causes = [
        score("s1", "ana", 100),
        score("s2", "bob", 90),
        score("s3", "bob", 120),
    ];
    for c in &causes {
        server.publish(c.clone()).await;
    }
    let derived = wait_for(&server, "type=high_score", 2).await;
    let summary: Vec<(&Value, &Value, &Value)> = derived
        .iter()
        .map(|e| {
            (
                &e["derived_from"],
                &e["data"]["subject"],
                &e["data"]["value"],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (&json!("s1"), &json!("ana"), &json!(100)),
            (&json!("s3"), &json!("bob"), &json!(120))
        ]
    );
    assert_eq!(derived[0]["id"], derived_id("hs", "s1", 0));
    assert_eq!(derived[0]["source"], "rule:hs");
    assert_eq!(derived[0]["class"], "animated");
    assert_eq!(derived[0]["message"], "New high score: ana with 100");
    assert_eq!(derived[1]["data"]["previous"], 100);
    assert!(derived[0]["offset"].as_u64() > Some(0));

    // The same causes again (same ids): stored once, nothing new derived.
    for c in &causes {
        server.publish(c.clone()).await;
    }
    // A later cause proves the engine has passed the repeats.
    server.publish(score("s4", "cy", 130)).await;
    let derived = wait_for(&server, "type=high_score", 3).await;
    assert_eq!(derived.len(), 3, "{derived:?}");
    assert_eq!(derived[2]["derived_from"], "s4");

    let rule = server.get("/api/v1/rules/hs").await;
    assert_eq!(rule.status, 200, "{}", rule.text);
    assert_eq!(rule.body["stats"]["fired"], 3);
    assert!(rule.body["stats"]["last_fired_at"].is_string());
}

#[tokio::test]
async fn win_streak_fires_at_the_length_and_resets_on_a_loss() {
    let server = TestServer::start().await;
    create(
        &server,
        json!({"id": "streak", "when": {"eventTypes": ["match.ended"]},
               "detect": {"kind": "win_streak", "length": 3, "winner": "data.winner",
                          "loser": "data.loser", "scope": ["data.division"]},
               "emit": {"stream": "alerts", "fields": {"duration_ms": 4000}}}),
    )
    .await;
    let result = |id: &str, w: &str, l: &str| {
        json!({"id": id, "stream_id": "match", "type": "match.ended",
               "data": {"winner": w, "loser": l, "division": "east"}})
    };
    for (id, w, l) in [
        ("m1", "ana", "bob"),
        ("m2", "ana", "cy"),
        ("m3", "bob", "ana"),
        ("m4", "ana", "bob"),
        ("m5", "ana", "cy"),
        ("m6", "ana", "dan"),
    ] {
        server.publish(result(id, w, l)).await;
    }
    let derived = wait_for(&server, "type=win_streak", 1).await;
    assert_eq!(derived.len(), 1);
    let e = &derived[0];
    assert_eq!(e["derived_from"], "m6");
    assert_eq!(e["stream_id"], "alerts");
    assert_eq!(e["message"], "ana has won 3 in a row");
    assert_eq!(e["duration_ms"], 4000);
    assert_eq!(e["status"], "pending", "animated events get a lifecycle");
}

#[tokio::test]
async fn threshold_with_hysteresis_and_value_change() {
    let server = TestServer::start().await;
    create(
        &server,
        json!({"id": "viewers", "when": {"eventTypes": ["viewers"]},
               "detect": {"kind": "threshold", "field": "data.count", "above": 1000,
                          "hysteresis": 100}}),
    )
    .await;
    create(
        &server,
        json!({"id": "phase", "when": {"eventTypes": ["match.phase"]},
               "detect": {"kind": "value_change", "field": "data.phase", "key": "data.match"},
               "emit": {"type": "phase.changed", "message": "match {{key}}: {{previous}} → {{value}}"}}),
    )
    .await;
    for (i, n) in [900, 1000, 950, 1010, 899, 1200].into_iter().enumerate() {
        server
            .publish(
                json!({"id": format!("v{i}"), "stream_id": "stats", "type": "viewers",
                            "data": {"count": n}}),
            )
            .await;
    }
    for (i, (m, p)) in [(1, "draft"), (1, "draft"), (2, "draft"), (1, "live")]
        .into_iter()
        .enumerate()
    {
        server
            .publish(
                json!({"id": format!("p{i}"), "stream_id": "stats", "type": "match.phase",
                            "data": {"match": m, "phase": p}}),
            )
            .await;
    }
    let crossed = wait_for(&server, "type=threshold.crossed", 2).await;
    let values: Vec<&Value> = crossed.iter().map(|e| &e["data"]["value"]).collect();
    assert_eq!(
        values,
        [&json!(1000), &json!(1200)],
        "no flapping at 950/1010"
    );
    let changed = wait_for(&server, "type=phase.changed", 1).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["message"], "match 1: draft → live");
    assert_eq!(changed[0]["derived_from"], "p3");
}

#[tokio::test]
async fn link_detection_feeds_the_live_streams_registry() {
    let server = TestServer::start().await;
    create(
        &server,
        json!({"id": "links", "when": {"streams": ["chat"]},
               "detect": {"kind": "links", "field": "data.text", "author": "data.user"},
               "state": {"stream": "streams", "key": "{{link.key}}"}}),
    )
    .await;
    let chat = |id: &str, user: &str, text: &str| {
        json!({"id": id, "stream_id": "chat", "type": "chat.message",
               "data": {"user": user, "text": text}})
    };
    server
        .publish(chat(
            "c1",
            "ana",
            "live now at twitch.tv/Ana_Plays and https://youtu.be/abc123",
        ))
        .await;
    server.publish(chat("c2", "bob", "no links here")).await;
    server
        .publish(chat(
            "c3",
            "bob",
            "go watch https://www.twitch.tv/ana_plays!",
        ))
        .await;
    let links = wait_for(&server, "type=link.detected", 3).await;
    let keys: Vec<(&Value, &Value)> = links
        .iter()
        .map(|e| (&e["data"]["platform"], &e["derived_from"]))
        .collect();
    assert_eq!(
        keys,
        [
            (&json!("twitch"), &json!("c1")),
            (&json!("youtube"), &json!("c1")),
            (&json!("twitch"), &json!("c3"))
        ]
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let doc = loop {
        let r = server.get("/api/v1/state/streams/twitch:ana_plays").await;
        if r.status == 200 && r.body["value"]["mentions"] == 2 {
            break r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "registry: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let v = &doc["value"];
    assert_eq!(v["platform"], "twitch");
    assert_eq!(v["channel"], "ana_plays");
    assert_eq!(v["seen_by"], "bob");
    assert_eq!(v["live"], true);
    assert_eq!(v["url"], "https://www.twitch.tv/ana_plays");
    let all = server.get("/api/v1/state/streams").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert!(all.text.contains("youtube:abc123"), "{}", all.text);

    // A handle's `@` is not a key character: the key drops it, the
    // document keeps it.
    server
        .publish(chat("c4", "cy", "https://www.tiktok.com/@dee.streams/live"))
        .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = server.get("/api/v1/state/streams/tiktok:dee.streams").await;
        if r.status == 200 {
            assert_eq!(r.body["value"]["channel"], "@dee.streams", "{}", r.text);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "registry: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rule = server.get("/api/v1/rules/links").await;
    assert_eq!(
        rule.body["stats"]["last_error"],
        Value::Null,
        "{}",
        rule.text
    );
}

#[tokio::test]
async fn map_rule_test_disable_and_fire_counts() {
    let server = TestServer::start().await;
    create(
        &server,
        json!({"id": "goal-alert", "when": {"eventTypes": ["goal"]}, "detect": {"kind": "map"},
               "emit": {"type": "alert.goal", "class": "alert", "stream": "overlay-{{event.data.team}}",
                        "message": "GOAL {{event.data.player}}!", "fields": {"level": "info"}}}),
    )
    .await;
    let goal =
        json!({"stream_id": "match", "type": "goal", "data": {"team": "red", "player": "ana"}});

    // Testing publishes and remembers nothing.
    let t = server
        .post_json("/api/v1/rules/goal-alert/test", &goal)
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["matched"], true);
    assert_eq!(t.body["derived"][0]["message"], "GOAL ana!");
    assert_eq!(t.body["derived"][0]["stream_id"], "overlay-red");
    let other = json!({"stream_id": "match", "type": "corner"});
    let t = server
        .post_json("/api/v1/rules/goal-alert/test", &other)
        .await;
    assert_eq!(t.body["matched"], false, "{}", t.text);
    assert!(server.history("type=alert.goal").await.is_empty());

    server.publish(goal.clone()).await;
    let alerts = wait_for(&server, "type=alert.goal", 1).await;
    assert_eq!(alerts[0]["class"], "alert");
    assert_eq!(alerts[0]["level"], "info");

    // Disabled: nothing derived; enabled again: derives for later events.
    let mut def = server.get("/api/v1/rules/goal-alert").await.body;
    def["enabled"] = json!(false);
    let obj = def.as_object_mut().expect("object");
    obj.remove("stats");
    obj.remove("origin");
    let r = server.put_json("/api/v1/rules/goal-alert", &def).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["enabled"], false);
    server.publish(goal.clone()).await;
    def["enabled"] = json!(true);
    let r = server.put_json("/api/v1/rules/goal-alert", &def).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let last = server
        .publish(
            json!({"stream_id": "match", "type": "goal", "data": {"team": "blue", "player": "bo"}}),
        )
        .await;
    let alerts = wait_for(&server, "type=alert.goal", 2).await;
    assert_eq!(alerts.len(), 2, "the goal while disabled derived nothing");
    assert_eq!(alerts[1]["derived_from"], last["id"]);
    let r = server.get("/api/v1/rules").await;
    assert_eq!(r.body["data"][0]["stats"]["fired"], 2, "{}", r.text);

    let r = server.delete("/api/v1/rules/goal-alert").await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(&server.delete("/api/v1/rules/goal-alert").await, 404, None);
    assert_eq!(server.get("/api/v1/rules").await.body["data"], json!([]));
}

/// Appends `events` straight to the store in `dir`, as if the server had
/// stopped after storing them and before deriving anything.
async fn append_offline(dir: &std::path::Path, events: Vec<Value>) {
    let store = SqliteStore::open(SqliteOptions::new(dir))
        .await
        .expect("open store");
    let events = events
        .into_iter()
        .map(|v| event_from_json(v, &PublishContext::default()).expect("valid event"))
        .collect();
    store.append("default", events).await.expect("append");
    store.close().await;
}

#[tokio::test]
async fn a_restart_between_cause_and_derived_event_derives_it_once() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    create(&server, high_score_rule()).await;
    server.publish(score("a1", "ana", 100)).await;
    wait_for(&server, "type=high_score", 1).await;
    server.stop().await;

    // Stored, never derived: the node stopped in between.
    append_offline(
        dir.path(),
        vec![score("a2", "bob", 90), score("a3", "bob", 150)],
    )
    .await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let derived = wait_for(&server, "type=high_score", 2).await;
    let causes: Vec<&Value> = derived.iter().map(|e| &e["derived_from"]).collect();
    assert_eq!(causes, [&json!("a1"), &json!("a3")]);
    assert_eq!(
        derived[1]["data"]["previous"], 100,
        "memory rebuilt from history"
    );
    server.stop().await;

    // Again: the history is replayed, nothing is derived twice.
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.publish(score("a4", "cy", 200)).await;
    let derived = wait_for(&server, "type=high_score", 3).await;
    let causes: Vec<&Value> = derived.iter().map(|e| &e["derived_from"]).collect();
    assert_eq!(causes, [&json!("a1"), &json!("a3"), &json!("a4")]);
    let rule = server.get("/api/v1/rules/hs").await;
    assert_eq!(rule.body["stats"]["fired"], 3, "{}", rule.text);
}

#[tokio::test]
async fn a_rule_applies_only_after_it_was_made() {
    let server = TestServer::start().await;
    server.publish(score("old", "ana", 500)).await;
    create(&server, high_score_rule()).await;
    server.publish(score("new", "bob", 10)).await;
    let derived = wait_for(&server, "type=high_score", 1).await;
    assert_eq!(derived.len(), 1);
    assert_eq!(
        derived[0]["derived_from"], "new",
        "the older event is not looked at"
    );
}

#[tokio::test]
async fn configured_rules_are_listed_and_read_only() {
    let server = TestServer::start_with(|c| {
        c.rules = vec![high_score_rule()];
    })
    .await;
    let r = server.get("/api/v1/rules/hs").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["origin"], "config");
    let r = server
        .put_json("/api/v1/rules/hs", &high_score_rule())
        .await;
    assert_problem(&r, 409, None);
    assert_problem(&server.delete("/api/v1/rules/hs").await, 409, None);
    server.publish(score("c1", "ana", 10)).await;
    wait_for(&server, "type=high_score", 1).await;
}

#[tokio::test]
async fn bad_rules_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    create(&server, high_score_rule()).await;
    let cases = [
        (
            json!({"id": "Bad!", "detect": {"kind": "map"}, "emit": {"type": "x"}}),
            422,
            Some("id"),
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}}),
            422,
            Some("emit.type"),
        ),
        (
            json!({"id": "m", "detect": {"kind": "sideways"}}),
            422,
            Some("detect.kind"),
        ),
        (
            json!({"id": "m", "detect": {"kind": "high_score"}}),
            422,
            Some("detect.field"),
        ),
        (
            json!({"id": "m", "detect": {"kind": "threshold", "field": "data.v"}}),
            422,
            Some("detect"),
        ),
        (
            json!({"id": "m", "detect": {"kind": "win_streak", "length": 0, "winner": "data.w"}}),
            422,
            Some("detect.length"),
        ),
        (
            json!({"id": "m", "when": {"bogus": 1}, "detect": {"kind": "map"}, "emit": {"type": "x"}}),
            422,
            Some("when.bogus"),
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x", "stream": "_overlays"}}),
            422,
            Some("emit.stream"),
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x"}, "secret": 1}),
            422,
            Some("secret"),
        ),
        (json!(["not", "an", "object"]), 422, None),
        (high_score_rule(), 409, None),
    ];
    for (body, status, field) in cases {
        let r = server.post_json("/api/v1/rules", &body).await;
        assert_problem(&r, status, field);
    }
    let r = server
        .put_json(
            "/api/v1/rules/other",
            &json!({"id": "hs", "detect": {"kind": "map"}, "emit": {"type": "x"}}),
        )
        .await;
    assert_problem(&r, 422, Some("id"));
    assert_problem(&server.get("/api/v1/rules/none").await, 404, None);
    let r = server
        .post_json("/api/v1/rules/none/test", &json!({"type": "x"}))
        .await;
    assert_problem(&r, 404, None);
    let r = server
        .post_json("/api/v1/rules/hs/test", &json!({"type": "bad type!"}))
        .await;
    assert_problem(&r, 422, Some("type"));
    let list = server.get("/api/v1/rules").await;
    let ids: Vec<&Value> = list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!("hs")], "only the good rule is stored");
    // The server still works after all that.
    server.publish(score("ok", "ana", 1)).await;
    wait_for(&server, "type=high_score", 1).await;
}

#[tokio::test]
async fn a_disabled_rule_derives_nothing_but_keeps_its_memory() {
    let server = TestServer::start().await;
    create(&server, high_score_rule()).await;
    server.publish(score("d1", "ana", 100)).await;
    wait_for(&server, "type=high_score", 1).await;

    let mut def = high_score_rule();
    def["enabled"] = json!(false);
    let r = server.put_json("/api/v1/rules/hs", &def).await;
    assert_eq!(r.status, 200, "{}", r.text);
    server.publish(score("d2", "bob", 500)).await;

    def["enabled"] = json!(true);
    let r = server.put_json("/api/v1/rules/hs", &def).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 400 is below the 500 seen while disabled: not a high score.
    server.publish(score("d3", "cy", 400)).await;
    server.publish(score("d4", "dee", 600)).await;
    let derived = wait_for(&server, "type=high_score", 2).await;
    let causes: Vec<&Value> = derived.iter().map(|e| &e["derived_from"]).collect();
    assert_eq!(causes, [&json!("d1"), &json!("d4")]);
    assert_eq!(derived[1]["data"]["previous"], 500);
}

#[tokio::test]
async fn a_restart_rebuilds_memory_across_many_pages_of_history() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    create(&server, high_score_rule()).await;
    // 2,100 scores (more than two pages of the replay); the best comes last.
    for chunk in 0..3 {
        let batch: Vec<Value> = (0..700)
            .map(|i| {
                let n = chunk * 700 + i;
                let points = if n == 2099 { 2100 } else { 1 };
                score(&format!("p{n}"), "ana", points)
            })
            .collect();
        server.publish_batch(&batch).await;
    }
    wait_for(&server, "type=high_score", 2).await;
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.publish(score("after-1", "bob", 2050)).await;
    server.publish(score("after-2", "bob", 2200)).await;
    let derived = wait_for(&server, "type=high_score", 3).await;
    let causes: Vec<&Value> = derived.iter().map(|e| &e["derived_from"]).collect();
    assert_eq!(causes, [&json!("p0"), &json!("p2099"), &json!("after-2")]);
    assert_eq!(
        derived[2]["data"]["previous"], 2100,
        "the last page was folded"
    );
    let rule = server.get("/api/v1/rules/hs").await;
    assert_eq!(rule.body["stats"]["fired"], 3, "{}", rule.text);
}
