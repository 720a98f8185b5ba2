//! Tenants (issue 5 point 3): created by the system tenant's admins; no API,
//! filter, id guess or resume offset shows one tenant another's data.

use serde_json::{Value, json};
use streambus_core::auth::Role;

use crate::util::*;

fn admin_of(tenant: &str) -> String {
    mint(tenant, &format!("admin-{tenant}"), Role::Admin, &[], &[])
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Resp {
    let mut req = http()
        .request(method.parse().expect("method"), server.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Resp::from(req.send().await.expect("request")).await
}

#[tokio::test]
async fn tenants_see_only_their_own_data() {
    let server = TestServer::start_with(|c| c.auth.hs256_secret = AUTH_SECRET.into()).await;
    let root = admin_of("default");
    let (acme, globex) = (admin_of("acme"), admin_of("globex"));
    // A token for a tenant that does not exist yet is refused.
    assert_eq!(
        call(&server, "GET", "/api/v1/events", &acme, None)
            .await
            .status,
        403
    );
    for name in ["acme", "globex"] {
        let r = call(
            &server,
            "POST",
            "/api/v1/tenants",
            &root,
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    assert_eq!(
        call(&server, "GET", "/api/v1/tenants", &root, None)
            .await
            .body["tenants"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Only the system tenant's admins manage tenants; bad names are 400.
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/v1/tenants",
            &acme,
            Some(json!({"name": "evil"}))
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(&server, "GET", "/api/v1/tenants", &acme, None)
            .await
            .status,
        403
    );
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/v1/tenants",
            &root,
            Some(json!({"name": "Bad Name"}))
        )
        .await
        .status,
        400
    );

    // Both publish to a stream of the same name, one with the same id.
    for (t, id) in [
        (&acme, "a-1"),
        (&acme, "same"),
        (&globex, "g-1"),
        (&globex, "same"),
    ] {
        let r = call(&server, "POST", "/api/v1/events", t, Some(json!({"id": id, "type": "high_score", "class": "animated", "stream_id": "scores", "message": id}))).await;
        assert_eq!(r.status, 201, "{id}: {}", r.text);
    }
    let ids = |r: &Resp| -> Vec<String> {
        r.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let r = call(
        &server,
        "GET",
        "/api/v1/events?stream_id=scores&order=asc",
        &globex,
        None,
    )
    .await;
    assert_eq!(ids(&r), ["g-1", "same"]);
    let r = call(&server, "GET", "/api/v1/events?order=asc", &acme, None).await;
    assert_eq!(ids(&r), ["a-1", "same"]);
    assert_eq!(
        call(&server, "GET", "/api/v1/events/same", &globex, None)
            .await
            .body["message"],
        "same"
    );
    assert_eq!(
        call(&server, "GET", "/api/v1/events/same", &globex, None)
            .await
            .body["offset"],
        call(
            &server,
            "GET",
            "/api/v1/events?stream_id=scores",
            &globex,
            None
        )
        .await
        .body["data"][0]["offset"]
    );
    // Id guesses across tenants find nothing.
    assert_eq!(
        call(&server, "GET", "/api/v1/events/a-1", &globex, None)
            .await
            .status,
        404
    );
    assert_eq!(
        call(&server, "PUT", "/api/v1/events/a-1/cancel", &globex, None)
            .await
            .status,
        404
    );
    assert_eq!(
        call(&server, "GET", "/api/v1/events/g-1", &root, None)
            .await
            .status,
        404
    );

    // Resume from offset 0 over SSE and WebSocket: only the tenant's own.
    let mut sse = SseClient::connect(
        &server.url(&format!(
            "/api/v1/events/stream/scores?since=0&token={globex}"
        )),
        None,
    )
    .await;
    let got: Vec<String> = sse
        .take(2)
        .await
        .iter()
        .map(|m| m.json()["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(got, ["g-1", "same"]);
    assert!(sse.quiet_for(std::time::Duration::from_millis(300)).await);
    let mut ws = WsClient::connect_with_token(&server, &acme).await;
    ws.subscribe(json!({"since": 0})).await;
    let got: Vec<String> = ws
        .events(2)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(got, ["a-1", "same"]);
    assert!(ws.quiet_for(std::time::Duration::from_millis(300)).await);

    // Overlays, catalog, keys and the audit log are per tenant.
    let mut ov = WsClient::connect_with_token(&server, &acme).await;
    ov.subscribe(json!({"overlayId": "main"})).await;
    assert_eq!(
        call(&server, "GET", "/api/v1/overlays", &acme, None)
            .await
            .body["overlays"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        call(&server, "GET", "/api/v1/overlays", &globex, None)
            .await
            .body["overlays"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        call(&server, "GET", "/api/v1/overlays/main", &globex, None)
            .await
            .status,
        404
    );
    let t = json!({"name": "goal", "schema": {"type": "object"}});
    assert_eq!(
        call(&server, "POST", "/api/v1/event-types", &acme, Some(t))
            .await
            .status,
        201
    );
    assert_eq!(
        call(&server, "GET", "/api/v1/event-types/goal", &globex, None)
            .await
            .status,
        404
    );
    let key = json!({"name": "bot", "role": "producer", "publish": ["*"]});
    let made = call(&server, "POST", "/api/v1/keys", &acme, Some(key)).await;
    assert_eq!(made.status, 201);
    let key_id = made.body["key"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        call(&server, "GET", "/api/v1/keys", &globex, None)
            .await
            .body["keys"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        call(
            &server,
            "DELETE",
            &format!("/api/v1/keys/{key_id}"),
            &globex,
            None
        )
        .await
        .status,
        404
    );
    let secret = made.body["secret"].as_str().expect("secret").to_owned();
    let r = call(
        &server,
        "GET",
        "/api/v1/events?stream_id=scores",
        &secret,
        None,
    )
    .await;
    assert_eq!(
        r.status, 403,
        "a producer key reads only its subscribe globs"
    );
    let audit = call(&server, "GET", "/api/v1/audit", &globex, None).await;
    assert!(
        audit.body["data"]
            .as_array()
            .is_some_and(|d| d.iter().all(|e| e["tenant"] == "globex")),
        "{}",
        audit.text
    );
    let audit = call(&server, "GET", "/api/v1/audit", &acme, None).await;
    assert!(
        audit.body["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["action"] == "key.create")),
        "{}",
        audit.text
    );
}

#[tokio::test]
async fn a_tenant_can_have_its_own_limits() {
    let server = TestServer::start_with(|c| c.auth.hs256_secret = AUTH_SECRET.into()).await;
    let root = admin_of("default");
    let bad = call(
        &server,
        "POST",
        "/api/v1/tenants",
        &root,
        Some(json!({"name": "small", "limits": {"publish_rate": 1}})),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let r = call(
        &server,
        "POST",
        "/api/v1/tenants",
        &root,
        Some(json!({"name": "small",
        "limits": {"publish_rate_per_key": 2, "publish_burst_per_key": 2}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let small = admin_of("small");
    let ev = json!({"type": "t", "stream_id": "s"});
    for want in [201, 201, 429] {
        assert_eq!(
            call(&server, "POST", "/api/v1/events", &small, Some(ev.clone()))
                .await
                .status,
            want
        );
    }
    // The default tenant keeps the configured (unlimited) rate.
    for _ in 0..5 {
        assert_eq!(
            call(&server, "POST", "/api/v1/events", &root, Some(ev.clone()))
                .await
                .status,
            201
        );
    }
}

#[tokio::test]
async fn deleting_a_tenant_removes_its_rules_webhooks_and_pollers() {
    let server = TestServer::start_with(|c| c.auth.hs256_secret = AUTH_SECRET.into()).await;
    let root = admin_of("default");
    let acme = admin_of("acme");
    let made = |path: &'static str, body: Value| {
        let (server, acme) = (&server, acme.clone());
        async move {
            let r = call(server, "POST", path, &acme, Some(body)).await;
            assert_eq!(r.status, 201, "{path}: {}", r.text);
        }
    };
    let new_tenant = || {
        call(
            &server,
            "POST",
            "/api/v1/tenants",
            &root,
            Some(json!({"name": "acme"})),
        )
    };
    assert_eq!(new_tenant().await.status, 201);
    made(
        "/api/v1/rules",
        json!({"id": "m", "detect": {"kind": "map"}, "emit": {"type": "x"}}),
    )
    .await;
    made(
        "/api/v1/webhooks",
        json!({"id": "w", "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}),
    )
    .await;
    made(
        "/api/v1/pollers",
        json!({"name": "p", "url": "http://127.0.0.1:9/now", "interval_ms": 1000,
               "stream": "s", "type": "t"}),
    )
    .await;
    let r = call(&server, "DELETE", "/api/v1/tenants/acme", &root, None).await;
    assert_eq!(r.status, 204, "{}", r.text);

    // Made again under the same name: it starts with none of them.
    assert_eq!(new_tenant().await.status, 201);
    for path in ["/api/v1/rules", "/api/v1/webhooks", "/api/v1/pollers"] {
        let r = call(&server, "GET", path, &acme, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.body["data"], json!([]), "{path}: {}", r.text);
    }
}
