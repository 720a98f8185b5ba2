//! Live keyed state (SPEC §2 "State", issue 6 point 2): the REST routes with
//! versions and `If-Match`, the `state.changed` events (none for a write that
//! changes nothing), `STATE_SET`/`STATE_PATCH` frames, `SUBSCRIBE` with
//! `snapshot: true` under concurrent writers, bad input, permissions and a
//! restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use streambus_core::EventStore;
use streambus_core::auth::Role;
use streambus_core::state::{StateChange, StateOutcome, StateWrite, merge_patch};
use streambus_store::{SqliteOptions, SqliteStore};

use crate::util::*;

const MERGE: &str = "application/merge-patch+json";

/// `method path` with a raw body, a content type and extra headers.
async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<(&str, String)>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = http().request(method.parse().expect("method"), server.url(path));
    if let Some((ctype, body)) = body {
        req = req.header("Content-Type", ctype).body(body);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Resp::from(req.send().await.expect("request")).await
}

async fn put(server: &TestServer, path: &str, value: Value) -> Resp {
    let body = Some(("application/json", value.to_string()));
    send(server, "PUT", path, body, &[]).await
}

async fn patch(server: &TestServer, path: &str, patch: Value) -> Resp {
    send(server, "PATCH", path, Some((MERGE, patch.to_string())), &[]).await
}

/// Asserts a `200` document at `version` with its `ETag`; returns it.
fn doc(r: &Resp, version: u64, unchanged: bool) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version"], version, "{}", r.text);
    assert_eq!(r.header("etag"), format!("\"{version}\""), "{}", r.text);
    let flag = if unchanged { "true" } else { "" };
    assert_eq!(r.header("streambus-unchanged"), flag, "{}", r.text);
    assert_rfc3339_ms(r.body["updated_at"].as_str().expect("updated_at"));
    r.body.clone()
}

/// The `state.changed` events stored on `stream`, oldest first.
async fn changes(server: &TestServer, stream: &str) -> Vec<Value> {
    server
        .history(&format!("stream_id={stream}&type=state.changed"))
        .await
}

#[tokio::test]
async fn put_get_patch_delete_keep_versions() {
    let server = TestServer::start().await;
    let path = "/api/v1/state/board/team:red";
    assert_problem(&server.get(path).await, 404, None);

    let r = put(
        &server,
        path,
        json!({"score": 1, "name": "Red", "coach": null}),
    )
    .await;
    let d = doc(&r, 1, false);
    assert_eq!(
        (d["stream"].clone(), d["key"].clone()),
        (json!("board"), json!("team:red"))
    );
    assert_eq!(
        d["value"],
        json!({"score": 1, "name": "Red"}),
        "null members dropped"
    );
    assert_eq!(doc(&server.get(path).await, 1, false), d);

    let r = patch(&server, path, json!({"score": 2, "players": ["ana", "bo"]})).await;
    let d = doc(&r, 2, false);
    assert_eq!(
        d["value"],
        json!({"score": 2, "name": "Red", "players": ["ana", "bo"]})
    );
    // `application/json` is accepted for a merge patch too, and the seed
    // alias path serves the same document.
    let r = send(
        &server,
        "PATCH",
        "/api/state/board/team:red",
        Some(("application/json", r#"{"name":null}"#.into())),
        &[],
    )
    .await;
    assert_eq!(
        doc(&r, 3, false)["value"],
        json!({"score": 2, "players": ["ana", "bo"]})
    );
    put(&server, "/api/v1/state/board/team:blue", json!(0)).await;

    let r = server.get("/api/v1/state/board").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["stream"], "board");
    let data = r.body["data"].as_object().expect("data");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["team:blue", "team:red"],
        "by key"
    );
    assert_eq!(data["team:red"]["version"], 3);
    assert_eq!(
        data["team:red"]["value"],
        json!({"score": 2, "players": ["ana", "bo"]})
    );
    assert_rfc3339_ms(data["team:blue"]["updated_at"].as_str().expect("time"));
    let last = changes(&server, "board").await;
    let head = last.last().expect("changes")["offset"]
        .as_u64()
        .expect("offset");
    assert!(
        r.body["offset"].as_u64().expect("offset") >= head,
        "{}",
        r.text
    );
    let empty = server.get("/api/v1/state/nothing-here").await;
    assert_eq!(empty.body["data"], json!({}), "{}", empty.text);

    let r = server.delete(path).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(&server.get(path).await, 404, None);
    assert_problem(&server.delete(path).await, 404, None);
    let r = put(&server, path, json!({"score": 0})).await;
    doc(&r, 5, false);
    let versions: Vec<u64> = changes(&server, "board")
        .await
        .iter()
        .filter(|e| e["data"]["key"] == "team:red")
        .map(|e| e["data"]["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5],
        "a deleted key goes on from the delete's version"
    );
}

#[tokio::test]
async fn a_write_that_changes_nothing_emits_nothing_and_keeps_the_version() {
    let server = TestServer::start().await;
    let path = "/api/v1/state/flags/overlay";
    doc(
        &put(&server, path, json!({"dark": true, "size": 1.5})).await,
        1,
        false,
    );
    assert_eq!(changes(&server, "flags").await.len(), 1);

    // The same value (members reordered, a number spelled differently, a
    // null member that is dropped anyway), and patches that change nothing.
    doc(
        &put(
            &server,
            path,
            json!({"size": 1.50, "dark": true, "x": null}),
        )
        .await,
        1,
        true,
    );
    doc(&patch(&server, path, json!({"dark": true})).await, 1, true);
    doc(&patch(&server, path, json!({"gone": null})).await, 1, true);
    doc(&patch(&server, path, json!({})).await, 1, true);
    assert_eq!(
        changes(&server, "flags").await.len(),
        1,
        "no event for a write that changes nothing"
    );
    assert_eq!(
        server.history("stream_id=flags").await.len(),
        1,
        "nothing else either"
    );

    doc(
        &patch(&server, path, json!({"dark": false})).await,
        2,
        false,
    );
    assert_eq!(changes(&server, "flags").await.len(), 2);
}

#[tokio::test]
async fn if_match_makes_a_write_compare_and_set() {
    let server = TestServer::start().await;
    let path = "/api/v1/state/board/score";
    let create = |v: i64| Some(("application/json", json!({"v": v}).to_string()));
    let r = send(&server, "PUT", path, create(1), &[("If-None-Match", "*")]).await;
    doc(&r, 1, false);
    let r = send(&server, "PUT", path, create(2), &[("If-None-Match", "*")]).await;
    assert_problem(&r, 412, None);

    let stale = [
        ("PUT", create(9), "\"5\""),
        ("PATCH", Some((MERGE, r#"{"v":9}"#.to_owned())), "\"0\""),
        ("DELETE", None, "\"2\""),
    ];
    for (method, body, tag) in stale {
        let r = send(&server, method, path, body, &[("If-Match", tag)]).await;
        assert_problem(&r, 412, None);
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("version 1")),
            "{}",
            r.text
        );
    }
    let r = server.get(path).await;
    assert_eq!(
        doc(&r, 1, false)["value"],
        json!({"v": 1}),
        "nothing changed"
    );
    assert_eq!(
        changes(&server, "board").await.len(),
        1,
        "nothing announced"
    );

    let r = send(
        &server,
        "PATCH",
        path,
        Some((MERGE, r#"{"v":2}"#.into())),
        &[("If-Match", "\"1\"")],
    )
    .await;
    doc(&r, 2, false);
    let r = send(&server, "DELETE", path, None, &[("If-Match", "2")]).await;
    assert_eq!(r.status, 204, "a bare version is accepted too: {}", r.text);
    let r = send(
        &server,
        "PUT",
        "/api/v1/state/board/new",
        create(1),
        &[("If-Match", "\"1\"")],
    )
    .await;
    assert_problem(&r, 412, None);
    assert_problem(&server.get("/api/v1/state/board/new").await, 404, None);
}

#[tokio::test]
async fn state_changed_events_carry_key_version_patch_and_a_deterministic_id() {
    let server = TestServer::start().await;
    let path = "/api/v1/state/match-1/score";
    put(&server, path, json!({"red": 0, "blue": 0})).await;
    patch(&server, path, json!({"red": 1, "blue": null})).await;
    server.delete(path).await;
    let events = changes(&server, "match-1").await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let want = [
        (
            "state:match-1:score:1",
            json!({"key": "score", "version": 1, "patch": {"red": 0, "blue": 0},
                   "value": {"red": 0, "blue": 0}}),
        ),
        (
            "state:match-1:score:2",
            json!({"key": "score", "version": 2, "patch": {"red": 1, "blue": null},
                   "value": {"red": 1}}),
        ),
        (
            "state:match-1:score:3",
            json!({"key": "score", "version": 3, "patch": null, "value": null,
                   "deleted": true}),
        ),
    ];
    for (e, (id, data)) in events.iter().zip(want) {
        assert_eq!(e["id"], id, "{e}");
        assert_eq!(e["data"], data, "{e}");
        assert_eq!(
            (&e["type"], &e["class"], &e["stream_id"], &e["source"]),
            (
                &json!("state.changed"),
                &json!("data"),
                &json!("match-1"),
                &json!("state")
            )
        );
        assert_unix_seconds_now(&e["timestamp"]);
    }
    assert_increasing(&offsets(&events));
    let by_id = server.get("/api/v1/events/state:match-1:score:2").await;
    assert_eq!(by_id.body["data"]["version"], 2, "{}", by_id.text);

    // A key too long for the plain id gets a hashed one, still per version.
    let key = "k".repeat(128);
    put(&server, &format!("/api/v1/state/match-1/{key}"), json!(1)).await;
    let events = changes(&server, "match-1").await;
    let id = events.last().expect("event")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        id.starts_with("state:") && id.ends_with(":1") && id.len() <= 128,
        "{id}"
    );
}

/// The per-key state a snapshot subscriber rebuilds: value and version.
type Rebuilt = HashMap<String, (Value, u64)>;

/// Takes the `STATE_SNAPSHOT` of `stream` that must follow `SUBSCRIBED`.
async fn take_snapshot(ws: &mut WsClient, stream: &str) -> Rebuilt {
    let snap = ws.expect("STATE_SNAPSHOT").await;
    assert_eq!(snap["stream"], stream, "{snap}");
    assert!(snap["offset"].as_u64().is_some(), "{snap}");
    snap["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, d)| {
            let version = d["version"].as_u64().expect("version");
            (k.clone(), (d["value"].clone(), version))
        })
        .collect()
}

/// Applies delivered `state.changed` events to `held` until every key is
/// at `want`; each change must be exactly the next version of its key (no
/// gap, no duplicate), its patch must lead to its value. Returns how many
/// changes arrived.
async fn follow(ws: &mut WsClient, held: &mut Rebuilt, want: &BTreeMap<String, u64>) -> usize {
    let mut applied = 0;
    let at_target = |held: &Rebuilt| {
        want.iter()
            .all(|(k, v)| held.get(k).is_some_and(|(_, h)| h == v))
    };
    while !at_target(held) {
        let e = ws.expect("EVENT_BROADCAST").await["event"].clone();
        if e["type"] != "state.changed" {
            continue;
        }
        let key = e["data"]["key"].as_str().expect("key").to_owned();
        let version = e["data"]["version"].as_u64().expect("version");
        let (value, have) = held.entry(key.clone()).or_insert((Value::Null, 0));
        assert_eq!(
            version,
            *have + 1,
            "key {key}: version {version} after {have} (a gap or a repeat)"
        );
        merge_patch(value, &e["data"]["patch"]);
        assert_eq!(
            value, &e["data"]["value"],
            "key {key} v{version}: the patch leads to the value"
        );
        *have = version;
        applied += 1;
    }
    applied
}

#[tokio::test]
async fn snapshot_then_changes_has_no_gap_or_duplicate_under_concurrent_writers() {
    let server = Arc::new(TestServer::start().await);
    const KEYS: usize = 5;
    const PATCHES: usize = 200;
    for k in 0..KEYS {
        put(
            &server,
            &format!("/api/v1/state/live/k{k}"),
            json!({"n": 0}),
        )
        .await;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (server, done) = (server.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..PATCHES {
                let body = if i % 2 == 0 {
                    json!({"n": i, "odd": null, "trail": {format!("t{}", i % 7): i}})
                } else {
                    json!({"n": i, "odd": true})
                };
                let r = patch(&server, &format!("/api/v1/state/live/k{}", i % KEYS), body).await;
                assert_eq!(r.status, 200, "{}", r.text);
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Three clients join at different points of the writes: two name the
    // stream, one subscribes by glob.
    let mut clients = Vec::new();
    for (at, streams) in [(30, "live"), (90, "li*"), (150, "live")] {
        eventually("writes under way", || {
            let n = done.load(Ordering::SeqCst);
            async move { (n >= at).then_some(()) }
        })
        .await;
        let mut ws = WsClient::connect(&server).await;
        ws.subscribe(json!({"streams": [streams], "snapshot": true}))
            .await;
        assert!(
            done.load(Ordering::SeqCst) < PATCHES,
            "the snapshot is taken while writes run"
        );
        let held = take_snapshot(&mut ws, "live").await;
        assert_eq!(held.len(), KEYS);
        clients.push((ws, held));
    }
    writer.await.expect("writer");

    let fin = server.get("/api/v1/state/live").await;
    let want: BTreeMap<String, u64> = fin.body["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, d)| (k.clone(), d["version"].as_u64().expect("version")))
        .collect();
    assert_eq!(want.values().sum::<u64>(), (KEYS + PATCHES) as u64);
    for (ws, held) in &mut clients {
        let applied = follow(ws, held, &want).await;
        assert!(applied > 0, "changes after the snapshot arrived");
        for (k, d) in fin.body["data"].as_object().expect("data") {
            assert_eq!(
                held[k].0, d["value"],
                "key {k} rebuilt from snapshot + changes"
            );
        }
        assert!(
            ws.quiet_for(Duration::from_millis(200)).await,
            "nothing more (no duplicate after the last change)"
        );
    }
}

#[tokio::test]
async fn state_frames_set_and_patch_with_versions_and_conflicts() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({"type": "STATE_SET", "stream": "board", "key": "red",
                   "value": {"score": 1}, "ref": "a"}))
        .await;
    let ok = ws.expect("STATE_OK").await;
    assert_eq!(
        ok,
        json!({"type": "STATE_OK", "stream": "board", "key": "red", "version": 1,
               "changed": true, "ref": "a"})
    );
    ws.send(json!({"type": "STATE_SET", "stream": "board", "key": "red",
                   "value": {"score": 1}}))
        .await;
    let ok = ws.expect("STATE_OK").await;
    assert_eq!(
        (ok["version"].clone(), ok["changed"].clone()),
        (json!(1), json!(false))
    );
    ws.send(
        json!({"type": "state_patch", "stream": "board", "key": "red",
                   "patch": {"score": 2}, "ifVersion": 1, "ref": 7}),
    )
    .await;
    let ok = ws.expect("STATE_OK").await;
    assert_eq!(
        (
            ok["version"].clone(),
            ok["changed"].clone(),
            ok["ref"].clone()
        ),
        (json!(2), json!(true), json!("7"))
    );
    let e = ws
        .expect_error(
            r#"{"type":"STATE_PATCH","stream":"board","key":"red","patch":{"score":3},"ifVersion":1,"ref":"c"}"#,
            "conflict",
        )
        .await;
    assert_eq!(e["ref"], "c");
    for (frame, field) in [
        (r#"{"type":"STATE_SET","key":"red","value":1}"#, "stream"),
        (
            r#"{"type":"STATE_SET","stream":"Board","key":"red","value":1}"#,
            "stream",
        ),
        (
            r#"{"type":"STATE_SET","stream":"board","key":"a b","value":1}"#,
            "key",
        ),
        (
            r#"{"type":"STATE_SET","stream":"board","key":"red"}"#,
            "value",
        ),
        (
            r#"{"type":"STATE_PATCH","stream":"board","key":"red","value":{}}"#,
            "patch",
        ),
    ] {
        let e = ws.expect_error(frame, "invalid").await;
        assert_eq!(e["field"], field, "{frame}: {e}");
    }
    ws.assert_alive().await;
    let r = server.get("/api/v1/state/board/red").await;
    assert_eq!(doc(&r, 2, false)["value"], json!({"score": 2}));
    assert_eq!(changes(&server, "board").await.len(), 2);
}

/// One refused request: what is sent, and the problem it must get.
struct Refused {
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: String,
    header: Option<(&'static str, &'static str)>,
    status: u16,
    field: Option<&'static str>,
}

fn refused(method: &'static str, path: &'static str, body: &str, status: u16) -> Refused {
    Refused {
        method,
        path,
        content_type: "application/json",
        body: body.to_owned(),
        header: None,
        status,
        field: None,
    }
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_stores_nothing() {
    let server = TestServer::start_with(|c| c.limits.max_event_bytes = 1024).await;
    let typed = |method, content_type, body: &str| Refused {
        content_type,
        ..refused(method, "/api/v1/state/s/k", body, 415)
    };
    let named = |method, path, field| Refused {
        field: Some(field),
        ..refused(method, path, "1", 400)
    };
    let headed = |header: (&'static str, &'static str)| Refused {
        header: Some(header),
        field: Some(header.0),
        ..refused("PUT", "/api/v1/state/s/k", "1", 400)
    };
    let cases = [
        named("PUT", "/api/v1/state/Bad%20Name/k", "stream"),
        named("GET", "/api/v1/state/Bad%20Name", "stream"),
        named("PUT", "/api/v1/state/s/a%20b", "key"),
        named("GET", "/api/v1/state/s/a%20b", "key"),
        refused("PUT", "/api/v1/state/s/k", "{not json", 400),
        refused("PUT", "/api/v1/state/s/k", "", 400),
        typed("PATCH", "text/plain", "{}"),
        typed("PUT", MERGE, "{}"),
        typed(
            "PATCH",
            "application/json-patch+json",
            r#"[{"op":"add","path":"/a","value":1}]"#,
        ),
        typed("PUT", "application/x-www-form-urlencoded", "a=1"),
        headed(("If-Match", "\"x\"")),
        headed(("If-None-Match", "\"1\"")),
        refused(
            "PUT",
            "/api/v1/state/s/k",
            &json!({"blob": "x".repeat(2000)}).to_string(),
            413,
        ),
        refused("POST", "/api/v1/state/s/k", "1", 405),
    ];
    for c in cases {
        let body = (c.method != "GET").then(|| (c.content_type, c.body.clone()));
        let headers: Vec<(&str, &str)> = c.header.into_iter().collect();
        let r = send(&server, c.method, c.path, body, &headers).await;
        assert_problem(&r, c.status, c.field);
        assert!(
            r.body["detail"].as_str().is_some_and(|d| d.len() > 10),
            "{} {}: {}",
            c.method,
            c.path,
            r.text
        );
    }
    // A value that patches grow past the limit is refused as well.
    doc(
        &put(
            &server,
            "/api/v1/state/s/grow",
            json!({"a": "x".repeat(600)}),
        )
        .await,
        1,
        false,
    );
    let r = patch(
        &server,
        "/api/v1/state/s/grow",
        json!({"b": "y".repeat(600)}),
    )
    .await;
    assert_problem(&r, 413, None);
    assert_eq!(
        doc(&server.get("/api/v1/state/s/grow").await, 1, false)["value"]["b"],
        Value::Null
    );
    assert_problem(&server.get("/api/v1/state/s/k").await, 404, None);
    let all = server.get("/api/v1/state/s").await;
    assert_eq!(
        all.body["data"].as_object().map(|d| d.len()),
        Some(1),
        "{}",
        all.text
    );
    assert_eq!(
        changes(&server, "s").await.len(),
        1,
        "only the one good write"
    );

    // RFC 7396: a patch that is not an object replaces the whole value.
    doc(
        &patch(&server, "/api/v1/state/s/k", json!({"a": 1})).await,
        1,
        false,
    );
    let r = send(
        &server,
        "PATCH",
        "/api/v1/state/s/k",
        Some((MERGE, "[1,2]".into())),
        &[],
    )
    .await;
    assert_eq!(doc(&r, 2, false)["value"], json!([1, 2]));
    let r = send(
        &server,
        "PATCH",
        "/api/v1/state/s/k",
        Some((MERGE, "null".into())),
        &[],
    )
    .await;
    assert_eq!(doc(&r, 3, false)["value"], Value::Null);
    let r = patch(&server, "/api/v1/state/s/k", json!({"back": true})).await;
    assert_eq!(doc(&r, 4, false)["value"], json!({"back": true}));
}

fn token(role: Role, streams: &[&str]) -> String {
    let publish: &[&str] = if role == Role::Producer { streams } else { &[] };
    mint(
        "default",
        &format!("state-{}", role.as_str()),
        role,
        publish,
        streams,
    )
}

/// The status of `method path` with a bearer token (a `PUT` sends `1`).
async fn status(server: &TestServer, method: &str, path: &str, token: &str) -> u16 {
    let mut req = http()
        .request(method.parse().expect("method"), server.url(path))
        .bearer_auth(token);
    if method == "PUT" {
        req = req.header("Content-Type", "application/json").body("1");
    }
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn writing_state_is_publishing_and_reading_it_is_reading_the_stream() {
    let server = TestServer::start_with(|c| c.auth.hs256_secret = AUTH_SECRET.into()).await;
    let admin = token(Role::Admin, &[]);
    let producer = token(Role::Producer, &["board"]);
    let consumer = token(Role::Consumer, &["board"]);
    assert_eq!(
        status(&server, "PUT", "/api/v1/state/board/k", &producer).await,
        200
    );
    assert_eq!(
        status(&server, "PUT", "/api/v1/state/other/k", &producer).await,
        403
    );
    assert_eq!(
        status(&server, "PUT", "/api/v1/state/board/k", &consumer).await,
        403
    );
    assert_eq!(
        status(&server, "DELETE", "/api/v1/state/board/k", &consumer).await,
        403
    );
    assert_eq!(
        status(&server, "GET", "/api/v1/state/board/k", &consumer).await,
        200
    );
    assert_eq!(
        status(&server, "GET", "/api/v1/state/board", &consumer).await,
        200
    );
    assert_eq!(
        status(&server, "GET", "/api/v1/state/other", &consumer).await,
        403
    );
    assert_eq!(
        status(&server, "PUT", "/api/v1/state/other/k", &admin).await,
        200
    );
    let r = http()
        .get(server.url("/api/v1/state/board"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);

    let mut ws = WsClient::connect_with_token(&server, &consumer).await;
    ws.expect_error(
        r#"{"type":"STATE_SET","stream":"board","key":"k","value":2}"#,
        "forbidden",
    )
    .await;
    let mut ws = WsClient::connect_with_token(&server, &producer).await;
    ws.expect_error(
        r#"{"type":"STATE_SET","stream":"other","key":"k","value":2}"#,
        "forbidden",
    )
    .await;
    ws.send(json!({"type": "STATE_SET", "stream": "board", "key": "k", "value": 2}))
        .await;
    assert_eq!(ws.expect("STATE_OK").await["version"], 2);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let server = TestServer::start().await;
    let path = "/api/v1/state/board/red";
    put(&server, path, json!({"score": 1})).await;
    patch(&server, path, json!({"score": 2})).await;
    put(&server, "/api/v1/state/board/gone", json!(1)).await;
    server.delete("/api/v1/state/board/gone").await;
    let dir = server.stop().await.expect("owned data dir");

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let r = server.get(path).await;
    assert_eq!(doc(&r, 2, false)["value"], json!({"score": 2}));
    assert_problem(&server.get("/api/v1/state/board/gone").await, 404, None);
    doc(&patch(&server, path, json!({"score": 2})).await, 2, true);
    doc(&patch(&server, path, json!({"score": 3})).await, 3, false);
    let r = put(&server, "/api/v1/state/board/gone", json!(2)).await;
    doc(&r, 3, false);
    let ids: Vec<String> = changes(&server, "board")
        .await
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "state:board:red:1",
            "state:board:red:2",
            "state:board:gone:1",
            "state:board:gone:2",
            "state:board:red:3",
            "state:board:gone:3",
        ]
    );
    drop(server);
    drop(dir);
}

#[tokio::test]
async fn a_change_stored_but_never_announced_is_announced_by_the_next_write() {
    let server = TestServer::start().await;
    let path = "/api/v1/state/board/red";
    put(&server, path, json!({"score": 1})).await;
    let dir = server.stop().await.expect("owned data dir");

    // As if the server had stopped between storing version 2 and
    // publishing its event.
    let store = SqliteStore::open(SqliteOptions::new(dir.path()))
        .await
        .expect("open store");
    let write = StateWrite::new(StateChange::Patch(json!({"score": 2})));
    let stored = store
        .state_write("default", "board", "red", &write, 1_700_000_000_000)
        .await
        .expect("state_write");
    assert!(matches!(stored, StateOutcome::Changed { .. }), "{stored:?}");
    store.close().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    doc(&server.get(path).await, 2, false);
    assert_eq!(
        changes(&server, "board").await.len(),
        1,
        "not announced yet"
    );
    // The client retries the write that failed: it changes nothing, and
    // version 2 is announced first.
    doc(&patch(&server, path, json!({"score": 2})).await, 2, true);
    let events = changes(&server, "board").await;
    let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["state:board:red:1", "state:board:red:2"]);
    assert_eq!(
        events[1]["data"],
        json!({"key": "red", "version": 2, "patch": {"score": 2}, "value": {"score": 2}})
    );
    assert_eq!(
        events[1]["time"], "2023-11-14T22:13:20.000Z",
        "the time of the change"
    );
    // Marked announced: later writes announce only their own changes.
    doc(&patch(&server, path, json!({"score": 3})).await, 3, false);
    doc(&patch(&server, path, json!({"score": 3})).await, 3, true);
    assert_eq!(changes(&server, "board").await.len(), 3);
    drop(server);
    drop(dir);
}
