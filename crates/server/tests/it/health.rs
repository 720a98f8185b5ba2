//! Health endpoints (SPEC §3.4) and the router's own problems: unknown
//! routes, wrong methods, CORS preflight.

use serde_json::json;

use crate::util::*;

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let server = TestServer::start().await;
    let h = server.get("/healthz").await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.body["status"], "ok");
    let r = server.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.body["checks"], json!({"store": "ok", "log": "ok"}));
}

#[tokio::test]
async fn unknown_route_is_404_problem() {
    let server = TestServer::start().await;
    for path in [
        "/nope",
        "/api/v1/nope",
        "/api/v2/events",
        "/api/v1/events/stream/default/extra/deeper",
    ] {
        let r = server.get(path).await;
        assert_problem(&r, 404, None);
    }
    let r = server
        .post_json("/api/v1/event", &json!({"type": "t"}))
        .await;
    assert_problem(&r, 404, None);
    assert!(server.history("").await.is_empty());
}

#[tokio::test]
async fn wrong_method_is_405_problem_with_allow() {
    let server = TestServer::start().await;
    let client = http();
    let cases = [
        (reqwest::Method::DELETE, "/api/v1/events", "POST"),
        (reqwest::Method::PUT, "/api/v1/events/broadcast", "POST"),
        (reqwest::Method::POST, "/api/v1/events/streams", "GET"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (
            reqwest::Method::GET,
            "/api/v1/events/stream/default/start",
            "POST",
        ),
    ];
    for (method, path, allowed) in cases {
        let r = Resp::from(
            client
                .request(method.clone(), server.url(path))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_problem(&r, 405, None);
        assert!(
            r.header("allow").contains(allowed),
            "{method} {path}: Allow = {:?}",
            r.header("allow")
        );
    }
    assert!(server.history("").await.is_empty());
}

#[tokio::test]
async fn cors_preflight_is_answered_for_browsers() {
    let server = TestServer::start().await;
    let res = http()
        .request(
            reqwest::Method::OPTIONS,
            server.url("/api/v1/events/broadcast"),
        )
        .header("Origin", "http://overlay.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    let r = Resp::from(res).await;
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    assert_eq!(r.header("access-control-allow-origin"), "*");
    let methods = r.header("access-control-allow-methods");
    assert!(methods.contains("POST") || methods == "*", "{methods}");
}
