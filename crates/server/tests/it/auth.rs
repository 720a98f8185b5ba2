//! Authentication and roles (issue 5, SPEC §5): a matrix of routes × roles
//! with the exact status, bad tokens, `?token=` on SSE and WebSocket, the
//! `AUTH` frame, frame-level permissions, token expiry on a connection, and
//! the refusal to listen beyond loopback without authentication.

use futures_util::StreamExt;
use serde_json::{Value, json};
use streambus_core::auth::Role;
use streambus_server::Config;
use streambus_server::auth::jwt::{Claims, Minter, unsigned_token};
use tokio_tungstenite::tungstenite::Message;

use crate::util::*;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn now() -> u64 {
    now_secs() as u64
}

fn claims(role: Role, streams: &[&str]) -> Claims {
    let globs: Vec<String> = streams.iter().map(|s| (*s).to_owned()).collect();
    Claims {
        sub: format!("test-{}", role.as_str()),
        tenant: "default".into(),
        role,
        publish: if role == Role::Producer {
            globs.clone()
        } else {
            Vec::new()
        },
        subscribe: globs,
        exp: now() + 600,
        iat: Some(now()),
        nbf: None,
    }
}

fn mint(c: &Claims) -> String {
    Minter::hs256(SECRET.as_bytes()).mint(c).expect("mint")
}

fn token(role: Role) -> String {
    mint(&claims(role, &["scores"]))
}

async fn secured() -> TestServer {
    TestServer::start_with(|c| c.auth.hs256_secret = SECRET.into()).await
}

/// Sends `method path` with `body` and an optional bearer token; the status.
async fn status(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> u16 {
    let mut req = http().request(method.parse().expect("method"), server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("request");
    let code = res.status().as_u16();
    if code >= 400 {
        let ctype = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert_eq!(ctype, "application/problem+json", "{method} {path}");
    }
    code
}

#[tokio::test]
async fn every_route_answers_each_role_with_the_exact_status() {
    let server = secured().await;
    let admin = token(Role::Admin);
    // Something to read, cancel and fire.
    let ev =
        json!({"id": "seed", "type": "high_score", "class": "animated", "stream_id": "scores"});
    assert_eq!(
        status(&server, "POST", "/api/v1/events", Some(&ev), Some(&admin)).await,
        201
    );
    let tpl = json!({"name": "hs", "event": {"type": "high_score", "stream_id": "scores"}});
    assert_eq!(
        status(
            &server,
            "POST",
            "/api/v1/event-templates",
            Some(&tpl),
            Some(&admin)
        )
        .await,
        201
    );

    let to_scores = json!({"type": "t", "stream_id": "scores"});
    let to_other = json!({"type": "t", "stream_id": "other"});
    let new_type = json!({"name": "goal", "schema": {"type": "object"}});
    let sub = json!({"eventTypes": ["high_*"]});
    // (method, path, body, [admin, producer, consumer, overlay, no token])
    let cases: Vec<(&str, &str, Option<Value>, [u16; 5])> = vec![
        (
            "POST",
            "/api/v1/events",
            Some(to_scores.clone()),
            [201, 201, 403, 403, 401],
        ),
        (
            "POST",
            "/api/v1/events",
            Some(to_other.clone()),
            [201, 403, 403, 403, 401],
        ),
        (
            "POST",
            "/api/v1/events/broadcast",
            Some(json!({"stream_id": "scores", "type": "t", "message": "m"})),
            [200, 200, 403, 403, 401],
        ),
        (
            "POST",
            "/api/v1/event-templates/hs/fire",
            Some(json!({})),
            [201, 201, 403, 403, 401],
        ),
        (
            "GET",
            "/api/v1/events?stream_id=scores",
            None,
            [200, 200, 200, 200, 401],
        ),
        (
            "GET",
            "/api/v1/events?stream_id=other",
            None,
            [200, 403, 403, 403, 401],
        ),
        ("GET", "/api/v1/events", None, [200, 403, 403, 403, 401]),
        (
            "GET",
            "/api/v1/events/seed",
            None,
            [200, 403, 403, 403, 401],
        ),
        (
            "GET",
            "/api/v1/events/streams",
            None,
            [200, 200, 200, 200, 401],
        ),
        (
            "GET",
            "/api/v1/event-types",
            None,
            [200, 200, 200, 200, 401],
        ),
        (
            "POST",
            "/api/v1/event-types",
            Some(new_type),
            [201, 403, 403, 403, 401],
        ),
        (
            "PUT",
            "/api/v1/subscriptions/main",
            Some(sub),
            [200, 403, 403, 403, 401],
        ),
        (
            "GET",
            "/api/v1/subscriptions/main",
            None,
            [200, 200, 200, 200, 401],
        ),
        (
            "POST",
            "/api/v1/events/stream/scores/pause",
            None,
            [200, 403, 403, 403, 401],
        ),
        (
            "POST",
            "/api/v1/events/stream/scores/resume",
            None,
            [200, 403, 403, 403, 401],
        ),
        ("GET", "/api/v1/overlays", None, [200, 403, 403, 403, 401]),
        (
            "GET",
            "/api/v1/analytics/overlays",
            None,
            [200, 403, 403, 403, 401],
        ),
        (
            "PUT",
            "/api/v1/events/nope/cancel",
            None,
            [404, 403, 403, 403, 401],
        ),
        (
            "POST",
            "/api/v1/events/nope/replay",
            None,
            [404, 403, 403, 403, 401],
        ),
        ("GET", "/healthz", None, [200, 200, 200, 200, 200]),
        ("GET", "/admin", None, [200, 200, 200, 200, 200]),
    ];
    let tokens = [
        Some(admin.clone()),
        Some(token(Role::Producer)),
        Some(token(Role::Consumer)),
        Some(token(Role::Overlay)),
        None,
    ];
    let mut failures = Vec::new();
    for (method, path, body, want) in &cases {
        for (t, w) in tokens.iter().zip(want) {
            let got = status(&server, method, path, body.as_ref(), t.as_deref()).await;
            if got != *w {
                failures.push(format!(
                    "{method} {path} as #{}: {got}, want {w}",
                    tokens.iter().position(|x| x == t).unwrap_or(9)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_other_tenants_with_403() {
    let server = secured().await;
    let path = "/api/v1/events?stream_id=scores";
    let mut expired = claims(Role::Admin, &["*"]);
    expired.exp = now() - 3600;
    let mut early = claims(Role::Admin, &["*"]);
    early.nbf = Some(now() + 3600);
    let forged = Minter::hs256(b"some-other-secret-that-is-long-enough")
        .mint(&claims(Role::Admin, &["*"]))
        .expect("mint");
    let none = unsigned_token(&claims(Role::Admin, &["*"]));
    for (what, t) in [
        ("expired", mint(&expired)),
        ("not yet valid", mint(&early)),
        ("wrongly signed", forged),
        ("alg none", none),
        ("garbage", "x.y.z".into()),
    ] {
        let res = http()
            .get(server.url(path))
            .bearer_auth(&t)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status().as_u16(), 401, "{what}");
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{what}"
        );
    }
    let mut acme = claims(Role::Admin, &["*"]);
    acme.tenant = "acme".into();
    assert_eq!(
        status(&server, "GET", path, None, Some(&mint(&acme))).await,
        403
    );
}

#[tokio::test]
async fn tokens_in_the_query_work_for_sse_and_websocket() {
    let server = secured().await;
    let consumer = token(Role::Consumer);
    // SSE: the browser EventSource cannot send headers.
    let res = http()
        .get(server.url("/api/v1/events/stream/scores"))
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status().as_u16(), 401);
    let mut sse = SseClient::connect(
        &server.url(&format!("/api/v1/events/stream/scores?token={consumer}")),
        None,
    )
    .await;
    let res = http()
        .get(server.url(&format!("/api/v1/events/stream/other?token={consumer}")))
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status().as_u16(), 403);
    server
        .publish_with(
            &token(Role::Admin),
            json!({"type": "t", "stream_id": "scores"}),
        )
        .await;
    assert_eq!(sse.next().await.json()["stream_id"], "scores");

    // WebSocket with ?token=.
    let mut ws = WsClient::connect_with_token(&server, &consumer).await;
    ws.subscribe(json!({"streams": ["scores"]})).await;
    ws.expect_error(r#"{"type":"SUBSCRIBE","streams":["other"]}"#, "forbidden")
        .await;
    ws.expect_error(
        r#"{"type":"PUBLISH","event":{"type":"t","stream_id":"scores"}}"#,
        "forbidden",
    )
    .await;
    ws.expect_error(r#"{"type":"ANIMATION_CANCEL","eventId":"x"}"#, "forbidden")
        .await;
    ws.expect_error(r#"{"type":"SUBSCRIBE","overlayId":"main"}"#, "forbidden")
        .await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn a_websocket_without_a_token_must_send_auth_first() {
    let server = secured().await;
    let mut ws = WsClient::connect(&server).await;
    ws.expect_error(
        r#"{"type":"SUBSCRIBE","streams":["scores"]}"#,
        "unauthorized",
    )
    .await;
    ws.assert_alive().await;
    ws.send(json!({"type": "AUTH", "token": "not-a-token"}))
        .await;
    assert_eq!(ws.expect("ERROR").await["code"], "unauthorized");
    ws.send(json!({"type": "AUTH", "token": token(Role::Overlay)}))
        .await;
    let ok = ws.expect("AUTHENTICATED").await;
    assert_eq!(ok["role"], "overlay");
    // An overlay may join its queue and report, but not publish or control.
    ws.subscribe(json!({"overlayId": "main", "streams": ["scores"]}))
        .await;
    ws.expect_error(
        r#"{"type":"PUBLISH","event":{"type":"t","stream_id":"scores"}}"#,
        "forbidden",
    )
    .await;
    ws.expect_error(
        r#"{"type":"OVERLAY_CONTROL","overlay":"main","action":"skip"}"#,
        "forbidden",
    )
    .await;
    ws.assert_alive().await;
}

#[tokio::test]
async fn a_connection_whose_token_expires_is_closed_unless_it_renews() {
    let server = TestServer::start_with(|c| {
        c.auth.hs256_secret = SECRET.into();
        c.auth.leeway_secs = 0;
    })
    .await;
    let mut short = claims(Role::Consumer, &["scores"]);
    short.exp = now() + 2;
    let mut ws = WsClient::connect_with_token(&server, &mint(&short)).await;
    ws.subscribe(json!({"streams": ["scores"]})).await;
    let frame = tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time")
    .expect("close frame");
    assert_eq!(u16::from(frame.code), 4001);
    assert!(frame.reason.contains("expired"), "{}", frame.reason);

    // Renewed in time: the connection stays.
    short.exp = now() + 2;
    let mut ws = WsClient::connect_with_token(&server, &mint(&short)).await;
    ws.send(json!({"type": "AUTH", "token": token(Role::Consumer)}))
        .await;
    ws.expect("AUTHENTICATED").await;
    assert!(ws.quiet_for(std::time::Duration::from_secs(3)).await);
    ws.assert_alive().await;
}

#[test]
fn listening_beyond_loopback_without_authentication_is_refused_unless_allowed() {
    let env = |listen: &str, extra: &[(&str, &str)]| {
        let mut v = vec![(
            "STREAMBUS_SERVER__LISTEN".to_owned(),
            format!("\"{listen}\""),
        )];
        v.extend(
            extra
                .iter()
                .map(|(k, val)| ((*k).to_owned(), (*val).to_owned())),
        );
        Config::load_with_env(None, v)
    };
    let e = env("0.0.0.0:8080", &[]).expect_err("refused");
    assert!(
        e.to_string().contains("configuration") || format!("{e:?}").contains("allow-insecure"),
        "{e:?}"
    );
    assert!(format!("{e:?}").contains("--allow-insecure"), "{e:?}");
    assert!(env("127.0.0.1:8080", &[]).is_ok());
    assert!(
        env(
            "0.0.0.0:8080",
            &[("STREAMBUS_AUTH__ALLOW_INSECURE", "true")]
        )
        .is_ok()
    );
    assert!(env("0.0.0.0:8080", &[("STREAMBUS_AUTH__HS256_SECRET", SECRET)]).is_ok());
    let short = env(
        "127.0.0.1:8080",
        &[("STREAMBUS_AUTH__HS256_SECRET", "short")],
    )
    .expect_err("short secret");
    assert!(format!("{short:?}").contains("32 bytes"), "{short:?}");
}

#[tokio::test]
async fn api_keys_are_created_used_listed_and_revoked() {
    let server = secured().await;
    let admin = token(Role::Admin);
    let body = json!({"name": "scoreboard", "role": "producer", "publish": ["scores"], "subscribe": ["scores"]});
    let res = http()
        .post(server.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 201);
    let created: Value = res.json().await.expect("json");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["key"]["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("sbk_"), "{created}");
    assert!(created["key"].get("hash").is_none(), "{created}");

    // The key acts as its role.
    let ok = json!({"type": "t", "stream_id": "scores"});
    assert_eq!(
        status(&server, "POST", "/api/v1/events", Some(&ok), Some(&secret)).await,
        201
    );
    let other = json!({"type": "t", "stream_id": "other"});
    assert_eq!(
        status(
            &server,
            "POST",
            "/api/v1/events",
            Some(&other),
            Some(&secret)
        )
        .await,
        403
    );
    // Only admins manage keys; the list never shows a secret.
    assert_eq!(
        status(&server, "GET", "/api/v1/keys", None, Some(&secret)).await,
        403
    );
    let list = http()
        .get(server.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list");
    let text = list.text().await.expect("text");
    assert!(text.contains(&id) && !text.contains(&secret), "{text}");
    // Bad input.
    let bad = json!({"name": "x", "role": "root"});
    assert_eq!(
        status(&server, "POST", "/api/v1/keys", Some(&bad), Some(&admin)).await,
        400
    );
    let bad = json!({"name": "x", "role": "producer", "publish": ["Bad Stream"]});
    assert_eq!(
        status(&server, "POST", "/api/v1/keys", Some(&bad), Some(&admin)).await,
        400
    );

    // Revoked: refused with 401 everywhere, also on WebSocket.
    assert_eq!(
        status(
            &server,
            "DELETE",
            &format!("/api/v1/keys/{id}"),
            None,
            Some(&admin)
        )
        .await,
        204
    );
    assert_eq!(
        status(
            &server,
            "DELETE",
            &format!("/api/v1/keys/{id}"),
            None,
            Some(&admin)
        )
        .await,
        404
    );
    assert_eq!(
        status(&server, "POST", "/api/v1/events", Some(&ok), Some(&secret)).await,
        401
    );
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({"type": "AUTH", "token": secret})).await;
    let e = ws.expect("ERROR").await;
    assert_eq!(e["code"], "unauthorized");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("revoked")),
        "{e}"
    );
}

async fn audit(server: &TestServer, token: &str, query: &str) -> Value {
    let res = http()
        .get(server.url(&format!("/api/v1/audit{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("audit");
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.expect("json")
}

#[tokio::test]
async fn changes_are_audited_with_who_what_where_and_outcome() {
    let server = secured().await;
    let admin = mint(&Claims {
        sub: "operator-ana".into(),
        ..claims(Role::Admin, &["*"])
    });
    let producer = token(Role::Producer);
    // Publishing is not audited; a control, a catalog change and a refusal are.
    server
        .publish_with(
            &admin,
            json!({"id": "a1", "type": "t", "stream_id": "scores", "class": "animated"}),
        )
        .await;
    assert_eq!(
        status(
            &server,
            "POST",
            "/api/v1/events/stream/scores/pause",
            None,
            Some(&admin)
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &server,
            "PUT",
            "/api/v1/events/a1/cancel",
            None,
            Some(&admin)
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &server,
            "PUT",
            "/api/v1/subscriptions/main",
            Some(&json!({})),
            Some(&admin)
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &server,
            "POST",
            "/api/v1/events/stream/scores/resume",
            None,
            Some(&producer)
        )
        .await,
        403
    );
    // Over WebSocket too.
    let mut ws = WsClient::connect_with_token(&server, &admin).await;
    ws.send(json!({"type": "ANIMATION_REPLAY", "eventId": "nope", "ref": 1}))
        .await;
    assert_eq!(ws.expect("ERROR").await["code"], "not_found");

    let log = eventually("five entries", || async {
        let v = audit(&server, &admin, "").await;
        (v["data"].as_array().map(Vec::len) == Some(5)).then_some(v)
    })
    .await;
    let rows: Vec<(String, String, String, u64)> = log["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").to_owned(),
                e["action"].as_str().unwrap_or("").to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let row = |a: &str, b: &str, c: &str, d: u64| (a.to_owned(), b.to_owned(), c.to_owned(), d);
    assert_eq!(
        rows,
        [
            row("operator-ana", "event.replay", "nope", 404),
            row("test-producer", "stream.resume", "scores", 403),
            row("operator-ana", "subscription.put", "main", 200),
            row("operator-ana", "event.cancel", "a1", 200),
            row("operator-ana", "stream.pause", "scores", 200),
        ],
        "newest first"
    );
    assert_eq!(log["data"][0]["address"], "127.0.0.1");
    assert_eq!(log["data"][0]["role"], "admin");
    // Filters and pages.
    let only = audit(&server, &admin, "?action=event.cancel").await;
    assert_eq!(only["data"].as_array().map(Vec::len), Some(1));
    let page = audit(&server, &admin, "?limit=2").await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"].as_u64().expect("cursor");
    let next = audit(&server, &admin, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(next["data"][0]["action"], "subscription.put");
    // Admin only; bad parameters are 400.
    assert_eq!(
        status(&server, "GET", "/api/v1/audit", None, Some(&producer)).await,
        403
    );
    assert_eq!(
        status(&server, "GET", "/api/v1/audit?limit=0", None, Some(&admin)).await,
        400
    );
    assert_eq!(
        status(
            &server,
            "GET",
            "/api/v1/audit?since=yesterday",
            None,
            Some(&admin)
        )
        .await,
        400
    );
    assert_eq!(
        status(&server, "GET", "/api/v1/audit?bogus=1", None, Some(&admin)).await,
        400
    );
}

#[tokio::test]
async fn cors_origins_are_configurable_and_closed_by_default_with_authentication() {
    let acao = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let get = |server: &TestServer, origin: &str| {
        http()
            .get(server.url("/api/v1/events/streams"))
            .header("Origin", origin)
            .bearer_auth(token(Role::Admin))
            .send()
    };
    // With authentication and no list: same origin only.
    let server = secured().await;
    let r = get(&server, "https://evil.example").await.expect("get");
    assert_eq!(acao(&r), None);
    let sse = http()
        .get(server.url(&format!(
            "/api/v1/events/stream/scores?token={}",
            token(Role::Admin)
        )))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("sse");
    assert_eq!(
        acao(&sse),
        None,
        "no permissive SSE header with authentication"
    );
    // A configured list: those origins only.
    let server = TestServer::start_with(|c| {
        c.auth.hs256_secret = SECRET.into();
        c.server.cors_origins = vec!["https://admin.example".into()];
    })
    .await;
    let r = get(&server, "https://admin.example").await.expect("get");
    assert_eq!(acao(&r).as_deref(), Some("https://admin.example"));
    let r = get(&server, "https://evil.example").await.expect("get");
    assert_eq!(acao(&r), None);
    // Without authentication: any origin, as the seed's SSE clients expect.
    let open = TestServer::start().await;
    let r = http()
        .get(open.url("/api/v1/events/streams"))
        .header("Origin", "https://x.example")
        .send()
        .await
        .expect("get");
    assert_eq!(acao(&r).as_deref(), Some("*"));
}

/// What a frame gets back: the reply's `type`, or for an `ERROR` its code.
async fn frame_outcome(server: &TestServer, token: &str, frame: &Value) -> String {
    let mut ws = WsClient::connect_with_token(server, token).await;
    ws.send(frame.clone()).await;
    // Frames answered with nothing on success are followed by a PING.
    ws.send(json!({"type": "PING", "ref": "after"})).await;
    let reply = ws.recv().await;
    let kind = reply["type"].as_str().unwrap_or("").to_owned();
    if kind == "ERROR" {
        return reply["code"].as_str().unwrap_or("").to_owned();
    }
    if kind == "PONG" && reply["ref"] == "after" {
        return "nothing".into();
    }
    kind
}

#[tokio::test]
async fn every_frame_type_answers_each_role_as_its_permissions_say() {
    let server = secured().await;
    let sub = |extra: Value| {
        let mut f = json!({"type": "SUBSCRIBE", "streams": ["scores"]});
        for (k, v) in extra.as_object().expect("object") {
            f[k] = v.clone();
        }
        f
    };
    let publish =
        |stream: &str| json!({"type": "PUBLISH", "event": {"type": "t", "stream_id": stream}});
    // [admin, producer, consumer, overlay]
    let cases: Vec<(&str, Value, [&str; 4])> = vec![
        ("subscribe own", sub(json!({})), ["SUBSCRIBED"; 4]),
        (
            "subscribe other",
            json!({"type": "SUBSCRIBE", "streams": ["other"]}),
            ["SUBSCRIBED", "forbidden", "forbidden", "forbidden"],
        ),
        (
            "subscribe everything",
            json!({"type": "SUBSCRIBE"}),
            ["SUBSCRIBED", "forbidden", "forbidden", "forbidden"],
        ),
        (
            "join a queue",
            sub(json!({"overlayId": "main"})),
            ["SUBSCRIBED", "forbidden", "forbidden", "SUBSCRIBED"],
        ),
        (
            "queue updates",
            sub(json!({"overlayUpdates": true})),
            ["SUBSCRIBED", "forbidden", "forbidden", "forbidden"],
        ),
        (
            "publish own",
            publish("scores"),
            ["ACK", "ACK", "forbidden", "forbidden"],
        ),
        (
            "publish other",
            publish("other"),
            ["ACK", "forbidden", "forbidden", "forbidden"],
        ),
        (
            "report",
            json!({"type": "ANIMATION_ENDED", "eventId": "x"}),
            ["invalid", "forbidden", "forbidden", "invalid"],
        ),
        (
            "visibility",
            json!({"type": "OVERLAY_VISIBILITY", "visible": false}),
            ["invalid", "forbidden", "forbidden", "invalid"],
        ),
        (
            "cancel",
            json!({"type": "ANIMATION_CANCEL", "eventId": "nope"}),
            ["not_found", "forbidden", "forbidden", "forbidden"],
        ),
        (
            "replay",
            json!({"type": "ANIMATION_REPLAY", "eventId": "nope"}),
            ["not_found", "forbidden", "forbidden", "forbidden"],
        ),
        (
            "queue control",
            json!({"type": "OVERLAY_CONTROL", "overlay": "ghost", "action": "skip"}),
            ["not_found", "forbidden", "forbidden", "forbidden"],
        ),
        (
            "auth",
            json!({"type": "AUTH", "token": "bad"}),
            ["unauthorized"; 4],
        ),
        ("ping", json!({"type": "PING"}), ["PONG"; 4]),
    ];
    let roles = [Role::Admin, Role::Producer, Role::Consumer, Role::Overlay];
    let mut failures = Vec::new();
    for (what, frame, want) in &cases {
        for (role, want) in roles.iter().zip(want) {
            let got = frame_outcome(&server, &token(*role), frame).await;
            if got != *want {
                failures.push(format!("{what} as {}: {got}, want {want}", role.as_str()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn state_deletions_are_audited() {
    let server = secured().await;
    let admin = token(Role::Admin);
    let put = call_status(
        &server,
        "PUT",
        "/api/v1/state/scores/red",
        Some(json!({"score": 1})),
        &admin,
    )
    .await;
    assert_eq!(put, 200);
    assert_eq!(
        call_status(&server, "DELETE", "/api/v1/state/scores/red", None, &admin).await,
        204
    );
    let log = eventually("the deletion is recorded", || async {
        let v = audit(&server, &admin, "?action=state.delete").await;
        (v["data"].as_array().map(Vec::len) == Some(1)).then_some(v)
    })
    .await;
    assert_eq!(log["data"][0]["target"], "scores/red");
    assert_eq!(log["data"][0]["outcome"], 204);
}

async fn call_status(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> u16 {
    status(server, method, path, body.as_ref(), Some(token)).await
}

#[tokio::test]
async fn a_creation_in_a_collection_is_audited_under_the_name_it_made() {
    let server = secured().await;
    let admin = token(Role::Admin);
    let rule =
        json!({"id": "goal-alert", "detect": {"kind": "map"}, "emit": {"type": "alert.goal"}});
    assert_eq!(
        status(&server, "POST", "/api/v1/rules", Some(&rule), Some(&admin)).await,
        201
    );
    let log = eventually("the rule's entry", || async {
        let v = audit(&server, &admin, "?action=rule.create").await;
        (v["data"].as_array().map(Vec::len) == Some(1)).then_some(v)
    })
    .await;
    assert_eq!(log["data"][0]["target"], "goal-alert", "{log}");
    assert_eq!(log["data"][0]["outcome"], 201, "{log}");
}
