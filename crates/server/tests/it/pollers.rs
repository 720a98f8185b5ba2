//! Pollers over the API (issue 6 point 1, docs/INGEST.md "Pollers over the
//! API"): created, replaced and deleted per tenant, running at once and after
//! a restart, refused with a problem when bad, against a partner played by a
//! local HTTP server on loopback.

use std::time::Duration;

use serde_json::{Value, json};
use streambus_core::auth::Role;
use streambus_server::Config;
use streambus_server::ingest::config::PollerConfig;
use streambus_server::ingest::registry::MAX_POLLERS_PER_TENANT;

use crate::ingest::Partner;
use crate::util::*;

const POLLERS: &str = "/api/v1/pollers";
/// The pollers' interval in these tests, ms.
const INTERVAL_MS: u64 = 100;
/// How long a stopped poller is watched for requests: ten intervals.
const STOPPED_WINDOW: Duration = Duration::from_millis(10 * INTERVAL_MS);

fn body(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url, "interval_ms": INTERVAL_MS, "stream": "prices",
           "type": "price.changed", "pointer": "/v", "timeout_ms": 2000})
}

fn path(name: &str) -> String {
    format!("{POLLERS}/{name}")
}

async fn prices(server: &TestServer, n: usize) -> Vec<Value> {
    eventually(&format!("{n} poller events"), || async {
        let h = server.history("stream_id=prices").await;
        (h.len() >= n).then_some(h)
    })
    .await
}

async fn health(server: &TestServer, name: &str) -> Value {
    let r = server.get(&path(name)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Asserts that `partner` gets no request for ten poll intervals (one that
/// was already on the wire when the poller stopped is tolerated).
async fn assert_not_polled(partner: &Partner) {
    let before = partner.hits();
    let end = tokio::time::Instant::now() + STOPPED_WINDOW;
    while tokio::time::Instant::now() < end {
        let hits = partner.hits();
        assert!(
            hits <= before + 1,
            "{} requests after the stop",
            hits - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn api_poller_emits_only_when_the_value_changes() {
    let partner = Partner::start(200, json!({"v": 1})).await;
    let server = TestServer::start().await;
    let r = server
        .post_json(POLLERS, &body("price", &partner.url))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location"), "/api/v1/pollers/price");
    assert_eq!(r.body["origin"], "api", "{}", r.text);
    assert_eq!(r.body["tenant"], "default", "{}", r.text);
    assert_eq!(r.body["url"], partner.url, "{}", r.text);

    let first = prices(&server, 1).await;
    assert_eq!(first[0]["source"], "poller:price");
    assert_eq!(first[0]["data"], json!({"value": 1, "previous": null}));
    // The same value, served several times: nothing new.
    partner.polled(5).await;
    assert_eq!(server.history("stream_id=prices").await.len(), 1);

    partner.set(200, json!({"v": 2}));
    let two = prices(&server, 2).await;
    assert_eq!(two[1]["data"], json!({"value": 2, "previous": 1}));
    partner.polled(5).await;
    let all = server.history("stream_id=prices").await;
    assert_eq!(all.len(), 2, "{all:?}");
    // Deterministic ids, so that the nodes of a cluster store a change once.
    for e in &all {
        assert!(e["id"].as_str().unwrap().starts_with("poll:price:"), "{e}");
    }
    assert_ne!(all[0]["id"], all[1]["id"]);

    let h = health(&server, "price").await;
    assert_eq!(h["emitted"], 2, "{h}");
    assert_eq!(h["last_value"], 2, "{h}");
    assert_eq!(h["state"], "ok", "{h}");
    let list = server.get(POLLERS).await;
    assert_eq!(
        list.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.text
    );
    assert_eq!(list.body["data"][0]["origin"], "api");
}

#[tokio::test]
async fn api_poller_backs_off_on_failures_and_recovers() {
    let partner = Partner::start(200, json!({"v": "a"})).await;
    let server = TestServer::start().await;
    let r = server
        .post_json(POLLERS, &body("price", &partner.url))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    prices(&server, 1).await;

    // 500s.
    partner.set(500, json!({"error": "down"}));
    let failing = eventually("failures to be reported", || async {
        let h = health(&server, "price").await;
        (h["consecutive_failures"].as_u64() >= Some(2)).then_some(h)
    })
    .await;
    assert_eq!(failing["state"], "failing", "{failing}");
    assert!(
        failing["last_error"].as_str().unwrap().contains("500"),
        "{failing}"
    );
    let n = failing["consecutive_failures"].as_u64().unwrap();
    assert_eq!(failing["backoff_ms"], INTERVAL_MS << n, "{failing}");
    assert!(failing["next_poll_at"].is_string(), "{failing}");
    partner.set(200, json!({"v": "b"}));
    let events = prices(&server, 2).await;
    assert_eq!(events[1]["data"], json!({"value": "b", "previous": "a"}));
    let ok = eventually("the poller to recover", || async {
        let h = health(&server, "price").await;
        (h["state"] == "ok").then_some(h)
    })
    .await;
    assert_eq!(ok["consecutive_failures"], 0, "{ok}");
    assert_eq!(ok["backoff_ms"], INTERVAL_MS, "{ok}");

    // Connection refused.
    partner.down().await;
    let refused = eventually("refusals to be reported", || async {
        let h = health(&server, "price").await;
        (h["consecutive_failures"].as_u64() >= Some(2)).then_some(h)
    })
    .await;
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap()
            .contains("request failed"),
        "{refused}"
    );
    assert!(
        refused["backoff_ms"].as_u64() > Some(INTERVAL_MS),
        "{refused}"
    );
    partner.set(200, json!({"v": "c"}));
    partner.up().await;
    let events = prices(&server, 3).await;
    assert_eq!(events[2]["data"], json!({"value": "c", "previous": "b"}));
    assert_eq!(server.history("stream_id=prices").await.len(), 3);
}

#[tokio::test]
async fn put_replaces_and_delete_stops() {
    let old = Partner::start(200, json!({"v": "old"})).await;
    let new = Partner::start(200, json!({"v": "new"})).await;
    let server = TestServer::start().await;
    let r = server
        .put_json(&path("price"), &body("price", &old.url))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    prices(&server, 1).await;

    // The name may be left out of a PUT body: the path has it.
    let mut replacement = body("price", &new.url);
    replacement.as_object_mut().unwrap().remove("name");
    let r = server.put_json(&path("price"), &replacement).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["url"], new.url, "{}", r.text);
    let events = prices(&server, 2).await;
    assert_eq!(
        events[1]["data"],
        json!({"value": "new", "previous": "old"})
    );
    assert_not_polled(&old).await;
    assert_eq!(health(&server, "price").await["url"], new.url);

    let r = server.delete(&path("price")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_not_polled(&new).await;
    assert_problem(&server.get(&path("price")).await, 404, None);
    assert_problem(&server.delete(&path("price")).await, 404, None);
    let list = server.get(POLLERS).await;
    assert_eq!(list.body["data"], json!([]), "{}", list.text);
    assert_eq!(server.history("stream_id=prices").await.len(), 2);
}

#[tokio::test]
async fn api_pollers_survive_a_restart() {
    let partner = Partner::start(200, json!({"v": 1})).await;
    let server = TestServer::start().await;
    let r = server
        .post_json(POLLERS, &body("price", &partner.url))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    prices(&server, 1).await;
    let dir = server.dir.clone();
    let tmp = server.stop().await;

    let server = TestServer::start_in(&dir, |_| {}).await;
    partner.polled(3).await;
    let h = health(&server, "price").await;
    assert_eq!(h["origin"], "api", "{h}");
    assert_eq!(h["last_value"], 1, "{h}");
    assert_eq!(h["emitted"], 0, "{h}");
    assert_eq!(server.history("stream_id=prices").await.len(), 1);
    partner.set(200, json!({"v": 2}));
    let events = prices(&server, 2).await;
    assert_eq!(events[1]["data"], json!({"value": 2, "previous": 1}));
    drop(server);
    drop(tmp);
}

fn token(tenant: &str, role: Role) -> String {
    mint(tenant, &format!("{role:?}-{tenant}"), role, &["*"], &["*"])
}

/// Requests made with one token.
struct As<'a>(&'a TestServer, String);

impl As<'_> {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let mut req = http()
            .request(method.parse().expect("method"), self.0.url(path))
            .bearer_auth(&self.1);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::from(req.send().await.expect("request")).await
    }
}

#[tokio::test]
async fn a_tenant_sees_and_changes_only_its_own_pollers() {
    let partner = Partner::start(200, json!({"v": 1})).await;
    let server = TestServer::start_with(|c| c.auth.hs256_secret = AUTH_SECRET.into()).await;
    let root = As(&server, token("default", Role::Admin));
    let acme = As(&server, token("acme", Role::Admin));
    let tenant = Some(json!({"name": "acme"}));
    let r = root.send("POST", "/api/v1/tenants", tenant).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let price = || Some(body("price", &partner.url));
    let r = root.send("POST", POLLERS, price()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Writes need an administrator.
    let producer = As(&server, token("default", Role::Producer));
    assert_problem(&producer.send("POST", POLLERS, price()).await, 403, None);
    assert_problem(
        &producer.send("DELETE", &path("price"), None).await,
        403,
        None,
    );

    let list = acme.send("GET", POLLERS, None).await;
    assert_eq!(list.body["data"], json!([]), "{}", list.text);
    assert_problem(&acme.send("GET", &path("price"), None).await, 404, None);
    assert_problem(&acme.send("DELETE", &path("price"), None).await, 404, None);
    // The same name in another tenant is another poller, publishing there.
    let mut own = body("price", &partner.url);
    own["stream"] = "acme-prices".into();
    let r = acme.send("PUT", &path("price"), Some(own)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["tenant"], "acme", "{}", r.text);
    let history = "/api/v1/events?stream_id=acme-prices";
    eventually("acme's poller event", || async {
        let r = acme.send("GET", history, None).await;
        (r.body["data"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let r = root.send("GET", history, None).await;
    assert_eq!(r.body["data"], json!([]), "{}", r.text);

    let r = acme.send("DELETE", &path("price"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let mine = root.send("GET", &path("price"), None).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(mine.body["tenant"], "default");
    assert_eq!(mine.body["stream"], "prices");
}

#[tokio::test]
async fn bad_poller_input_is_a_problem_and_stores_nothing() {
    let partner = Partner::start(200, json!({"v": 1})).await;
    let feed = Partner::start(200, json!({"v": 1})).await;
    let configured: PollerConfig = toml::from_str(&format!(
        "name = \"feed\"\nurl = \"{}\"\ntype = \"feed.changed\"\ninterval_ms = 60000",
        feed.url
    ))
    .expect("poller config");
    let server =
        TestServer::start_with(move |c: &mut Config| c.ingest.pollers = vec![configured]).await;
    let url = partner.url.as_str();
    let with = |field: &str, value: Value| {
        let mut b = body("price", url);
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = body("price", url);
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let (bad_path, price_path) = (path("Bad"), path("price"));
    let cases: Vec<(&str, Value, &str)> = vec![
        (POLLERS, with("name", "Bad Name".into()), "name"),
        (POLLERS, with("name", "x".repeat(65).into()), "name"),
        (POLLERS, without("name"), "name"),
        (POLLERS, with("url", "ftp://example.com/x".into()), "url"),
        (POLLERS, with("url", "not a url".into()), "url"),
        (POLLERS, with("url", "http://".into()), "url"),
        (POLLERS, without("url"), "url"),
        (POLLERS, with("interval_ms", 99.into()), "interval_ms"),
        (POLLERS, with("interval_ms", "fast".into()), "interval_ms"),
        (POLLERS, with("interval_ms", (-5).into()), "interval_ms"),
        (POLLERS, with("timeout_ms", 0.into()), "timeout_ms"),
        (POLLERS, with("pointer", "v".into()), "pointer"),
        (POLLERS, with("pointer", 3.into()), "pointer"),
        (POLLERS, with("type", "not a type!".into()), "type"),
        (POLLERS, without("type"), "type"),
        (POLLERS, with("stream", "bad stream!".into()), "stream"),
        (POLLERS, with("tenant", "other".into()), "tenant"),
        (POLLERS, with("every", 5.into()), "every"),
        (&bad_path, without("name"), "name"),
        (&price_path, with("name", "other".into()), "name"),
    ];
    for (at, b, field) in &cases {
        let r = if *at == POLLERS {
            server.post_json(at, b).await
        } else {
            server.put_json(at, b).await
        };
        assert_problem(&r, 422, Some(field));
    }
    assert_problem(
        &server.post_json(POLLERS, &json!(["price"])).await,
        422,
        None,
    );
    let r = server
        .post_raw(POLLERS, Some("application/json"), "{not json")
        .await;
    assert_problem(&r, 400, None);

    // The configuration file's poller is not changed over the API.
    let r = server.put_json(&path("feed"), &body("feed", url)).await;
    assert_problem(&r, 409, None);
    assert!(
        r.body["detail"].as_str().unwrap().contains("configuration"),
        "{}",
        r.text
    );
    assert_problem(&server.delete(&path("feed")).await, 409, None);
    assert_problem(
        &server.post_json(POLLERS, &body("feed", url)).await,
        409,
        None,
    );

    let list = server.get(POLLERS).await;
    assert_eq!(
        list.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.text
    );
    assert_eq!(list.body["data"][0]["origin"], "config");
    assert_eq!(list.body["data"][0]["url"], feed.url);
    assert_eq!(partner.hits(), 0, "a refused poller ran");

    // A duplicate name: the first stays as it was.
    let r = server.post_json(POLLERS, &body("price", url)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.post_json(POLLERS, &body("price", &feed.url)).await;
    assert_problem(&r, 409, None);
    assert_eq!(health(&server, "price").await["url"], partner.url);
}

#[tokio::test]
async fn a_tenant_has_a_bounded_number_of_pollers() {
    let partner = Partner::start(200, json!({"v": 1})).await;
    let server = TestServer::start().await;
    for i in 0..MAX_POLLERS_PER_TENANT {
        let mut b = body(&format!("p{i}"), &partner.url);
        b["interval_ms"] = 60_000.into();
        let r = server.post_json(POLLERS, &b).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = server
        .post_json(POLLERS, &body("one-more", &partner.url))
        .await;
    assert_problem(&r, 409, None);
    let r = server
        .put_json(&path("one-more"), &body("one-more", &partner.url))
        .await;
    assert_problem(&r, 409, None);
    // Replacing one that exists is still allowed.
    let r = server
        .put_json(&path("p0"), &body("p0", &partner.url))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = server.get(POLLERS).await;
    assert_eq!(
        list.body["data"].as_array().map(Vec::len),
        Some(MAX_POLLERS_PER_TENANT)
    );
    assert_problem(&server.get(&path("one-more")).await, 404, None);
}

/// Two nodes run the same API poller; each change of the partner's value is
/// stored once, and the value coming back (1 → 2 → 1) is a change again.
#[tokio::test]
async fn two_nodes_store_each_change_once() {
    let Some(nodes) = crate::cluster::Nodes::start(2, |_| {}).await else {
        return;
    };
    let partner = Partner::start(200, json!({"v": 1})).await;
    let r = nodes[0]
        .post_json(POLLERS, &body("price", &partner.url))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The other node picks it up from the catalog.
    eventually("the second node runs the poller", || async {
        let r = nodes[1].get(&path("price")).await;
        (r.status == 200 && r.body["state"] == "ok").then_some(())
    })
    .await;
    prices(&nodes[1], 1).await;
    for (n, v) in [(2, 2), (3, 1)] {
        partner.polled(4).await;
        partner.set(200, json!({"v": v}));
        prices(&nodes[0], n).await;
    }
    // Both nodes poll several more times: still one event per change.
    partner.polled(10).await;
    for node in nodes.iter() {
        let values: Vec<Value> = node
            .history("stream_id=prices")
            .await
            .iter()
            .map(|e| e["data"]["value"].clone())
            .collect();
        assert_eq!(values, [json!(1), json!(2), json!(1)]);
    }
    nodes.stop().await;
}
