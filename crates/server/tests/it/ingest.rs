//! Inbound integrations (issue 6 point 1, docs/INGEST.md): signed webhooks
//! (signature, tolerance, replay, mapping) and pollers (change detection,
//! failure health and back-off, restart), against a partner played by a
//! local HTTP server on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use streambus_server::Config;
use streambus_server::ingest::config::{PollerConfig, SourceConfig};
use streambus_server::ingest::signature::sign;

use crate::util::*;

const SECRET: &str = "partner-secret-0123456789";

fn source(toml_extra: &str) -> SourceConfig {
    toml::from_str(&format!(
        "name = \"shop\"\nsecret = \"{SECRET}\"\nstream = \"orders\"\n{toml_extra}"
    ))
    .expect("source config")
}

/// A server with the source `shop` configured by `extra` TOML lines.
async fn server_with(extra: &str) -> TestServer {
    let s = source(extra);
    TestServer::start_with(move |c: &mut Config| c.ingest.sources = vec![s]).await
}

/// Posts `body` to `shop`, signed with `secret` at `ts`, with `delivery`.
async fn deliver(
    server: &TestServer,
    source: &str,
    body: &str,
    secret: &str,
    ts: i64,
    delivery: Option<&str>,
) -> Resp {
    let ts = ts.to_string();
    let sig = sign(secret.as_bytes(), &ts, body.as_bytes());
    let mut req = http()
        .post(server.url(&format!("/api/v1/ingest/webhook/{source}")))
        .header("content-type", "application/json")
        .header("x-streambus-timestamp", &ts)
        .header("x-streambus-signature", format!("sha256={sig}"))
        .body(body.to_owned());
    if let Some(d) = delivery {
        req = req.header("x-streambus-delivery", d);
    }
    Resp::from(req.send().await.expect("POST webhook")).await
}

#[tokio::test]
async fn signed_delivery_is_stored_and_delivered() {
    let server = server_with("").await;
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["orders"]})).await;
    let body = r#"{"type":"order.paid","amount":5}"#;
    let r = deliver(&server, "shop", body, SECRET, now_secs(), Some("d-1")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["accepted"], 1, "{}", r.text);
    assert_eq!(r.body["duplicates"], 0, "{}", r.text);
    assert_eq!(r.body["events"][0]["id"], "wh:shop:d-1:0", "{}", r.text);
    let got = ws.events(1).await;
    assert_eq!(got[0]["type"], "order.paid");
    assert_eq!(got[0]["source"], "webhook:shop");
    assert_eq!(got[0]["stream_id"], "orders");
    assert_eq!(got[0]["data"], json!({"type": "order.paid", "amount": 5}));
    assert_eq!(got[0]["offset"], r.body["events"][0]["offset"]);
}

#[tokio::test]
async fn bad_missing_or_malformed_signature_is_401_and_stores_nothing() {
    let server = server_with("").await;
    let body = r#"{"type":"order.paid"}"#;
    let r = deliver(
        &server,
        "shop",
        body,
        "not-the-partner-secret",
        now_secs(),
        None,
    )
    .await;
    assert_problem(&r, 401, None);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{}",
        r.text
    );

    let url = server.url("/api/v1/ingest/webhook/shop");
    let ts = now_secs().to_string();
    let cases: [&[(&str, &str)]; 3] = [
        &[("x-streambus-timestamp", &ts)],
        &[
            ("x-streambus-timestamp", &ts),
            ("x-streambus-signature", "sha256=zz"),
        ],
        &[("x-streambus-signature", "sha256=00")],
    ];
    for headers in cases {
        let mut req = http().post(&url).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = Resp::from(req.send().await.expect("POST")).await;
        assert_problem(&r, 401, None);
    }
    assert!(server.history("stream_id=orders").await.is_empty());
}

#[tokio::test]
async fn stale_timestamp_is_401() {
    let server = server_with("tolerance_secs = 60").await;
    let body = r#"{"type":"order.paid"}"#;
    for ts in [now_secs() - 120, now_secs() + 120] {
        let r = deliver(&server, "shop", body, SECRET, ts, None).await;
        assert_problem(&r, 401, None);
        assert!(
            r.body["detail"].as_str().unwrap().contains("stale"),
            "{}",
            r.text
        );
    }
    assert!(server.history("stream_id=orders").await.is_empty());
}

#[tokio::test]
async fn replayed_delivery_is_409_and_stores_nothing_new() {
    let server = server_with("").await;
    let body = r#"{"type":"order.paid"}"#;
    let ts = now_secs();
    let first = deliver(&server, "shop", body, SECRET, ts, None).await;
    assert_eq!(first.status, 202, "{}", first.text);
    // The same request again (the recent-signature check).
    let again = deliver(&server, "shop", body, SECRET, ts, None).await;
    assert_problem(&again, 409, None);
    assert!(
        again.text.contains("delivery already received"),
        "{}",
        again.text
    );

    // A delivery id re-signed with a new timestamp: the deterministic ids.
    let r = deliver(&server, "shop", body, SECRET, ts - 1, Some("d-7")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let resent = deliver(&server, "shop", body, SECRET, ts - 2, Some("d-7")).await;
    assert_problem(&resent, 409, None);
    assert_eq!(server.history("stream_id=orders").await.len(), 2);
}

#[tokio::test]
async fn array_body_maps_to_several_events() {
    let server = server_with(
        "events = \"/items\"\ntype = \"/kind\"\nstream_pointer = \"/where\"\n\
         data = \"/payload\"\nmessage = \"/text\"\nid = \"/uid\"",
    )
    .await;
    let body = json!({"items": [
        {"kind": "cart.add", "where": "carts", "payload": {"sku": "a"}, "text": "one", "uid": 11},
        {"kind": "cart.remove", "where": "carts", "payload": {"sku": "b"}, "text": "two", "uid": 12},
        {"kind": "order.paid", "where": "orders", "payload": 9, "text": "three", "uid": 13},
    ]})
    .to_string();
    let r = deliver(&server, "shop", &body, SECRET, now_secs(), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["accepted"], 3, "{}", r.text);
    let carts = server.history("stream_id=carts").await;
    let types: Vec<&str> = carts.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["cart.add", "cart.remove"]);
    assert_eq!(carts[1]["data"], json!({"sku": "b"}));
    assert_eq!(carts[1]["message"], "two");
    assert_eq!(carts[1]["id"], "wh:shop:12");
    let orders = server.history("stream_id=orders").await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["data"], 9);
}

#[tokio::test]
async fn mapping_error_is_422_naming_the_pointer_and_stores_nothing() {
    let server = server_with("events = \"/items\"\ntype = \"/kind\"").await;
    let missing = json!({"items": [{"kind": "ok"}, {"nokind": 1}]}).to_string();
    let r = deliver(&server, "shop", &missing, SECRET, now_secs(), None).await;
    assert_problem(&r, 422, Some("/kind"));
    assert!(
        r.body["detail"].as_str().unwrap().contains("/items/1"),
        "{}",
        r.text
    );

    let invalid = json!({"items": [{"kind": "ok"}, {"kind": "not a type!"}]}).to_string();
    let r = deliver(&server, "shop", &invalid, SECRET, now_secs(), None).await;
    assert_problem(&r, 422, Some("/kind"));

    let no_array = json!({"item": {}}).to_string();
    let r = deliver(&server, "shop", &no_array, SECRET, now_secs(), None).await;
    assert_problem(&r, 422, Some("/items"));
    assert!(server.history("stream_id=orders").await.is_empty());
}

#[tokio::test]
async fn unknown_source_is_404() {
    let server = server_with("").await;
    let r = deliver(&server, "nobody", "{}", SECRET, now_secs(), None).await;
    assert_problem(&r, 404, None);
}

#[tokio::test]
async fn webhook_needs_no_bearer_token_but_pollers_do() {
    let s = source("");
    let server = TestServer::start_with(move |c: &mut Config| {
        c.ingest.sources = vec![s];
        c.auth.hs256_secret = "an-hs256-secret-of-at-least-32-bytes!".into();
    })
    .await;
    let r = deliver(&server, "shop", r#"{"type":"t"}"#, SECRET, now_secs(), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = deliver(
        &server,
        "shop",
        r#"{"type":"t"}"#,
        "wrong-secret-xxxxxx",
        now_secs(),
        None,
    )
    .await;
    assert_problem(&r, 401, None);
    assert_problem(&server.get("/api/v1/pollers").await, 401, None);
}

/// The partner: answers every GET with the current status and body, and
/// counts requests. Each answer closes its connection, so that while the
/// partner is [`Partner::down`] every poll is refused.
#[derive(Clone)]
pub struct Partner {
    pub url: String,
    addr: std::net::SocketAddr,
    pub reply: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Partner {
    pub async fn start(status: u16, body: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let partner = Self {
            url: format!("http://{addr}/value"),
            addr,
            reply: Arc::new(Mutex::new((status, body.to_string()))),
            hits: Arc::new(AtomicUsize::new(0)),
            task: Arc::default(),
        };
        partner.serve(listener);
        partner
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (r, h) = (Arc::clone(&self.reply), Arc::clone(&self.hits));
        let app = axum::Router::new().route(
            "/value",
            axum::routing::get(move || {
                let (r, h) = (Arc::clone(&r), Arc::clone(&h));
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = r.lock().unwrap().clone();
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [(axum::http::header::CONNECTION, "close")],
                        body,
                    )
                }
            }),
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Stops listening: polls are refused until [`Partner::up`].
    pub async fn down(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same address.
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn set(&self, status: u16, body: Value) {
        *self.reply.lock().unwrap() = (status, body.to_string());
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until the partner has answered `n` more requests.
    pub async fn polled(&self, n: usize) {
        let start = self.hits();
        eventually("the poller to poll again", || async {
            (self.hits() >= start + n).then_some(())
        })
        .await;
    }
}

fn poller(url: &str) -> PollerConfig {
    toml::from_str(&format!(
        "name = \"price\"\nurl = \"{url}\"\ninterval_ms = 100\nstream = \"prices\"\n\
         type = \"price.changed\"\npointer = \"/v\"\ntimeout_ms = 2000"
    ))
    .expect("poller config")
}

async fn poller_events(server: &TestServer, n: usize) -> Vec<Value> {
    eventually(&format!("{n} poller events"), || async {
        let h = server.history("stream_id=prices").await;
        (h.len() >= n).then_some(h)
    })
    .await
}

async fn poller_health(server: &TestServer) -> Value {
    let r = server.get("/api/v1/pollers").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"][0].clone()
}

#[tokio::test]
async fn poller_emits_on_change_reports_failures_and_recovers() {
    let partner = Partner::start(200, json!({"v": 1})).await;
    let p = poller(&partner.url);
    let server = TestServer::start_with(move |c: &mut Config| c.ingest.pollers = vec![p]).await;

    let first = poller_events(&server, 1).await;
    assert_eq!(first[0]["type"], "price.changed");
    assert_eq!(first[0]["source"], "poller:price");
    assert_eq!(first[0]["data"], json!({"value": 1, "previous": null}));
    // Unchanged: polled again, nothing new.
    partner.polled(3).await;
    assert_eq!(server.history("stream_id=prices").await.len(), 1);

    partner.set(200, json!({"v": 2}));
    let two = poller_events(&server, 2).await;
    assert_eq!(two[1]["data"], json!({"value": 2, "previous": 1}));

    partner.set(500, json!({"error": "down"}));
    let failing = eventually("the poller to report failures", || async {
        let h = poller_health(&server).await;
        (h["consecutive_failures"].as_u64() >= Some(2)).then_some(h)
    })
    .await;
    assert_eq!(failing["state"], "failing", "{failing}");
    assert!(
        failing["last_error"].as_str().unwrap().contains("500"),
        "{failing}"
    );
    assert_eq!(failing["name"], "price");
    assert_eq!(failing["origin"], "config");
    assert_eq!(failing["url"], partner.url);
    assert_eq!(failing["interval_ms"], 100);
    assert_eq!(failing["last_value"], 2);
    assert_eq!(failing["emitted"], 2);
    assert!(failing["last_success_at"].is_string(), "{failing}");

    partner.set(200, json!({"v": 3}));
    let three = poller_events(&server, 3).await;
    assert_eq!(three[2]["data"], json!({"value": 3, "previous": 2}));
    let ok = eventually("the poller to report ok", || async {
        let h = poller_health(&server).await;
        (h["state"] == "ok").then_some(h)
    })
    .await;
    assert_eq!(ok["consecutive_failures"], 0, "{ok}");
    assert_eq!(server.history("stream_id=prices").await.len(), 3);
}

#[tokio::test]
async fn poller_reports_bad_json_and_missing_pointer() {
    let partner = Partner::start(200, json!({"other": 1})).await;
    let p = poller(&partner.url);
    let server = TestServer::start_with(move |c: &mut Config| c.ingest.pollers = vec![p]).await;
    eventually("a missing-pointer failure", || async {
        let h = poller_health(&server).await;
        h["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("/v"))
            .then_some(())
    })
    .await;
    *partner.reply.lock().unwrap() = (200, "not json".into());
    eventually("a bad-JSON failure", || async {
        let h = poller_health(&server).await;
        h["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not JSON"))
            .then_some(())
    })
    .await;
    assert!(server.history("stream_id=prices").await.is_empty());
}

#[tokio::test]
async fn restarted_poller_does_not_reemit_an_unchanged_value() {
    let partner = Partner::start(200, json!({"v": "a"})).await;
    let p = poller(&partner.url);
    let server = TestServer::start_with({
        let p = p.clone();
        move |c: &mut Config| c.ingest.pollers = vec![p]
    })
    .await;
    poller_events(&server, 1).await;
    let dir = server.dir.clone();
    let tmp = server.stop().await;

    let server = TestServer::start_in(&dir, {
        let p = p.clone();
        move |c: &mut Config| c.ingest.pollers = vec![p]
    })
    .await;
    partner.polled(3).await;
    let h = poller_health(&server).await;
    assert_eq!(h["last_value"], "a", "{h}");
    assert_eq!(h["emitted"], 0, "{h}");
    assert_eq!(server.history("stream_id=prices").await.len(), 1);

    partner.set(200, json!({"v": "b"}));
    let events = poller_events(&server, 2).await;
    assert_eq!(events[1]["data"], json!({"value": "b", "previous": "a"}));
    drop(server);
    drop(tmp);
}
