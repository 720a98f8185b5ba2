use serde_json::{Value, json};

use super::*;
use crate::validate::{PublishContext, event_from_json};

fn rule(v: Value) -> Rule {
    Rule::from_json(v).unwrap_or_else(|e| panic!("valid rule: {e:?}"))
}

fn event(v: Value) -> (Event, Value) {
    let e = event_from_json(v, &PublishContext::default())
        .expect("valid event")
        .event;
    let doc = serde_json::to_value(&e).expect("serialises");
    (e, doc)
}

/// Folds `events` through `r`; returns the derived events' JSON.
fn run(r: &Rule, events: Vec<Value>) -> Vec<Value> {
    let mut mem = Memory::default();
    let mut out = Vec::new();
    for (i, v) in events.into_iter().enumerate() {
        let (e, doc) = event(v);
        if !r.wants(&e, i as u64 + 1) {
            continue;
        }
        for f in r.apply(&mut mem, &doc) {
            out.push(r.derive(&e, &doc, &f).event);
        }
    }
    out
}

fn score(id: &str, player: &str, s: i64, division: &str) -> Value {
    json!({"id": id, "stream_id": "match", "type": "score.updated",
           "data": {"player": player, "score": s},
           "metadata": {"tournament_id": 7, "division": division}})
}

#[test]
fn high_score_fires_on_a_new_maximum_per_scope() {
    let r = rule(
        json!({"id": "hs", "when": {"eventTypes": ["score.updated"]},
        "detect": {"kind": "high_score", "field": "data.score",
                   "scope": ["metadata.tournament_id", "metadata.division"],
                   "subject": "data.player", "min": 100}}),
    );
    let out = run(
        &r,
        vec![
            score("a", "ana", 50, "east"),  // below min: no first high score
            score("b", "bob", 120, "east"), // first in scope at/above min
            score("c", "ana", 110, "east"), // not a new maximum
            score("d", "ana", 130, "east"), // new maximum
            score("e", "cy", 125, "west"),  // other scope: its own first
            score("f", "cy", 130, "east"),  // equal is not new
        ],
    );
    let got: Vec<(&str, &str, &Value, &Value)> = out
        .iter()
        .map(|e| {
            (
                e["data"]["subject"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or(""),
                &e["data"]["value"],
                &e["data"]["previous"],
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "bob",
                "New high score: bob with 120",
                &json!(120),
                &json!(50)
            ),
            (
                "ana",
                "New high score: ana with 130",
                &json!(130),
                &json!(120)
            ),
            (
                "cy",
                "New high score: cy with 125",
                &json!(125),
                &Value::Null
            ),
        ]
    );
    assert_eq!(out[0]["type"], "high_score");
    assert_eq!(out[0]["class"], "animated");
    assert_eq!(out[0]["source"], "rule:hs");
    assert_eq!(out[0]["metadata"]["rule"], "hs");
    assert_eq!(
        out[0]["metadata"]["tournament_id"], 7,
        "the cause's metadata is kept"
    );
    assert_eq!(out[0]["id"], derived_id("hs", "b", 0));
}

#[test]
fn win_streak_counts_consecutive_wins_and_resets_on_a_loss() {
    let r = rule(
        json!({"id": "ws", "detect": {"kind": "win_streak", "length": 3,
        "winner": "data.winner", "loser": "data.loser"}}),
    );
    let m = |id: &str, w: &str, l: &str| {
        json!({"id": id, "stream_id": "m", "type": "match.ended",
        "data": {"winner": w, "loser": l}})
    };
    let out = run(
        &r,
        vec![
            m("1", "ana", "bob"),
            m("2", "ana", "cy"),
            m("3", "bob", "ana"), // ana's streak resets
            m("4", "ana", "cy"),
            m("5", "ana", "bob"),
            m("6", "ana", "dan"), // 3 in a row
            m("7", "ana", "eve"), // 4: no repeat
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["message"], "ana has won 3 in a row");
    assert_eq!(out[0]["data"]["streak"], 3);
    assert_eq!(out[0]["id"], derived_id("ws", "6", 0));

    let r = rule(
        json!({"id": "ws2", "detect": {"kind": "win_streak", "length": 2, "repeat": true,
        "subject": "data.team", "outcome": "data.result"}}),
    );
    let g = |id: &str, t: &str, res: &str| {
        json!({"id": id, "stream_id": "m", "type": "game",
        "data": {"team": t, "result": res}})
    };
    let out = run(
        &r,
        vec![
            g("1", "red", "win"),
            g("2", "red", "win"),
            g("3", "red", "loss"),
            g("4", "red", "win"),
            g("5", "red", "win"),
            g("6", "red", "win"),
            g("7", "red", "win"),
        ],
    );
    let streaks: Vec<&Value> = out.iter().map(|e| &e["data"]["streak"]).collect();
    assert_eq!(streaks, [&json!(2), &json!(2), &json!(4)]);
}

#[test]
fn threshold_has_hysteresis() {
    let r = rule(
        json!({"id": "viewers", "detect": {"kind": "threshold", "field": "data.viewers",
        "above": 1000, "hysteresis": 100}}),
    );
    let v = |id: &str, n: i64| json!({"id": id, "stream_id": "s", "type": "viewers", "data": {"viewers": n}});
    let out = run(
        &r,
        vec![
            v("1", 900),
            v("2", 1000),
            v("3", 950),
            v("4", 1010),
            v("5", 899),
            v("6", 1200),
        ],
    );
    let values: Vec<&Value> = out.iter().map(|e| &e["data"]["value"]).collect();
    assert_eq!(
        values,
        [&json!(1000), &json!(1200)],
        "950→1010 does not flap; 899 re-arms"
    );
    assert_eq!(out[0]["data"]["direction"], "up");

    let r = rule(
        json!({"id": "low", "detect": {"kind": "threshold", "field": "data.hp",
        "below": 10, "key": "data.player"}}),
    );
    let h = |id: &str, p: &str, n: i64| {
        json!({"id": id, "stream_id": "s", "type": "hp",
        "data": {"hp": n, "player": p}})
    };
    let out = run(
        &r,
        vec![
            h("1", "a", 5),
            h("2", "b", 5),
            h("3", "a", 4),
            h("4", "a", 50),
            h("5", "a", 9),
        ],
    );
    let keys: Vec<&Value> = out.iter().map(|e| &e["data"]["key"]).collect();
    assert_eq!(
        keys,
        [&json!("a"), &json!("b"), &json!("a")],
        "per key, re-armed by 50"
    );
}

#[test]
fn value_change_fires_on_a_different_value() {
    let r = rule(
        json!({"id": "phase", "detect": {"kind": "value_change", "field": "data.phase",
        "key": "data.match"}, "emit": {"type": "phase.changed", "message": "{{key}}: {{previous}} → {{value}}"}}),
    );
    let p = |id: &str, m: i64, ph: &str| {
        json!({"id": id, "stream_id": "s", "type": "tick",
        "data": {"match": m, "phase": ph}})
    };
    let out = run(
        &r,
        vec![
            p("1", 1, "draft"),
            p("2", 1, "draft"),
            p("3", 2, "draft"),
            p("4", 1, "live"),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["message"], "1: draft → live");
    assert_eq!(out[0]["type"], "phase.changed");
}

#[test]
fn links_fire_once_per_distinct_link_and_feed_the_registry() {
    let r = rule(
        json!({"id": "links", "when": {"eventTypes": ["chat.message"]},
        "detect": {"kind": "links", "field": "data.text", "author": "data.user"},
        "state": {"stream": "streams", "key": "{{link.key}}"}}),
    );
    let (e, doc) = event(
        json!({"id": "c1", "stream_id": "chat", "type": "chat.message",
        "data": {"user": "ana", "text": "watch twitch.tv/Bob and https://youtu.be/xyz twitch.tv/bob"}}),
    );
    let mut mem = Memory::default();
    let firings = r.apply(&mut mem, &doc);
    assert_eq!(firings.len(), 2, "one per distinct link");
    let d = r.derive(&e, &doc, &firings[0]);
    assert_eq!(d.event["type"], "link.detected");
    assert_eq!(d.event["data"]["platform"], "twitch");
    assert_eq!(d.event["data"]["channel"], "bob");
    assert_eq!(d.event["data"]["seen_by"], "ana");
    let state = d.state.expect("a state write");
    assert_eq!(
        (state.stream.as_str(), state.key.as_str()),
        ("streams", "twitch:bob")
    );
    assert_eq!(state.patch["mentions"], 1);
    assert_eq!(state.patch["live"], true);
    assert!(state.patch.get("key").is_none());
    let d2 = r.derive(&e, &doc, &firings[1]);
    assert_eq!(d2.state.expect("state").key, "youtube:xyz");
    assert_ne!(d.id, d2.id, "each output of one cause has its own id");
    // A second mention counts, and keeps the first sighting.
    let again = r.apply(&mut mem, &doc);
    let d3 = r.derive(&e, &doc, &again[0]);
    assert_eq!(d3.state.expect("state").patch["mentions"], 2);
}

#[test]
fn map_rules_template_the_output() {
    let r = rule(json!({"id": "announce", "when": {"eventTypes": ["goal"]},
        "detect": {"kind": "map"},
        "emit": {"type": "alert.goal", "stream": "overlay-{{event.data.team}}", "class": "alert",
                 "message": "GOAL {{event.data.player}}!", "data": {"team": "{{event.data.team}}"},
                 "fields": {"priority": "high", "duration_ms": 4000}}}));
    let out = run(
        &r,
        vec![json!({"id": "g", "stream_id": "m", "type": "goal",
        "data": {"team": "red", "player": "ana"}})],
    );
    assert_eq!(out[0]["stream_id"], "overlay-red");
    assert_eq!(out[0]["message"], "GOAL ana!");
    assert_eq!(out[0]["data"], json!({"team": "red", "player": "ana"}));
    assert_eq!(out[0]["priority"], "high");
    assert_eq!(out[0]["duration_ms"], 4000);
    // Its own output does not feed it again, and chains stop at MAX_DEPTH.
    let (own, _) = event(json!({"stream_id": "m", "type": "goal", "source": "rule:announce"}));
    assert!(!r.wants(&own, 10));
    let (deep, _) = event(json!({"stream_id": "m", "type": "goal",
        "metadata": {"rule_depth": MAX_DEPTH}}));
    assert!(!r.wants(&deep, 10));
}

#[test]
fn since_gates_the_rule() {
    let mut r =
        rule(json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x"}, "since": 5}));
    let (e, _) = event(json!({"stream_id": "s", "type": "t"}));
    assert!(!r.wants(&e, 5), "not the events before its creation");
    assert!(r.wants(&e, 6));
    r.def.enabled = false;
    assert!(
        r.wants(&e, 6),
        "a disabled rule still folds (the engine emits nothing)"
    );
    let (internal, _) = event(json!({"stream_id": "s", "type": "t"}));
    let mut internal = internal;
    internal.stream_id = "_overlays".into();
    assert!(
        !rule(json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x"}}))
            .wants(&internal, 1)
    );
}

#[test]
fn bad_definitions_name_the_field() {
    let cases = [
        (
            json!({"id": "Bad", "detect": {"kind": "map"}, "emit": {"type": "x"}}),
            "id",
        ),
        (json!({"id": "m", "detect": {"kind": "map"}}), "emit.type"),
        (
            json!({"id": "m", "detect": {"kind": "nope"}}),
            "detect.kind",
        ),
        (
            json!({"id": "m", "detect": {"kind": "high_score"}}),
            "detect.field",
        ),
        (
            json!({"id": "m", "detect": {"kind": "high_score", "field": "data..x"}}),
            "detect.field",
        ),
        (
            json!({"id": "m", "detect": {"kind": "win_streak", "length": 0, "winner": "data.w"}}),
            "detect.length",
        ),
        (
            json!({"id": "m", "detect": {"kind": "win_streak", "length": 2}}),
            "detect",
        ),
        (
            json!({"id": "m", "detect": {"kind": "threshold", "field": "data.v"}}),
            "detect",
        ),
        (
            json!({"id": "m", "detect": {"kind": "threshold", "field": "data.v", "above": 1, "hysteresis": -1}}),
            "detect.hysteresis",
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "bad type!"}}),
            "emit.type",
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x", "stream": "_overlays"}}),
            "emit.stream",
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x", "class": "loud"}}),
            "emit.class",
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x", "fields": {"source": "me"}}}),
            "emit.fields.source",
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x"}, "when": {"bogus": 1}}),
            "when.bogus",
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x"}, "extra": 1}),
            "extra",
        ),
        (
            json!({"id": "m", "detect": {"kind": "map"}, "emit": {"typ": "x"}}),
            "emit.typ",
        ),
        (
            json!({"id": "m", "detect": {"kind": "links"}, "state": {"stream": "streams", "key": ""}}),
            "state.key",
        ),
    ];
    for (def, field) in cases {
        let err = Rule::from_json(def.clone()).expect_err(&def.to_string());
        assert_eq!(err.field, field, "{def}: {err:?}");
    }
}

#[test]
fn derived_ids_are_stable_and_distinct() {
    assert_eq!(derived_id("r", "evt_1", 0), derived_id("r", "evt_1", 0));
    assert_ne!(derived_id("r", "evt_1", 0), derived_id("r", "evt_1", 1));
    assert_ne!(derived_id("r", "evt_1", 0), derived_id("s", "evt_1", 0));
    assert!(crate::name::is_event_id(&derived_id("r", "evt_1", 0)));
}
