//! Outgoing webhooks (issue 6 point 4, docs/WEBHOOKS.md), against a
//! receiver played by a local HTTP server on loopback ([`Receiver`]).
//!
//! - `delivery`: signing, retries with backoff, dead and redeliver,
//!   filters, a slow endpoint beside a fast one, restart, delete.
//! - `api`: validation (422/404/409 problems, nothing stored), the secret
//!   never shown, replace.
//! - `cluster`: three nodes on PostgreSQL and NATS deliver each event once
//!   per webhook (needs `STREAMBUS_TEST_POSTGRES_URL` and
//!   `STREAMBUS_TEST_NATS_URL`).
//!
//! Test servers retry fast (tens of ms) so retries take no real time;
//! tests wait by polling with a deadline, never by sleeping.

mod api;
mod cluster;
mod delivery;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use streambus_server::Config;
use tokio::sync::watch;

use crate::util::*;

/// The secret every test webhook signs with.
pub const SECRET: &str = "receiver-secret-0123456789";

/// Settings that make retries take tens of milliseconds.
pub fn fast_retries(c: &mut Config) {
    c.webhooks.backoff_ms = 10;
    c.webhooks.backoff_max_ms = 40;
    c.webhooks.poll_ms = 50;
    c.webhooks.timeout_ms = 5000;
    c.webhooks.lease_ms = 10_000;
}

/// A server with [`fast_retries`].
pub async fn server() -> TestServer {
    TestServer::start_with(fast_retries).await
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn delivery(&self) -> &str {
        self.header("x-streambus-delivery")
    }

    pub fn event_id(&self) -> &str {
        self.header("x-streambus-event")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }

    /// Checks the signature with HMAC-SHA256 over `timestamp.body`, as a
    /// receiver would (not with the server's own code).
    pub fn signed_with(&self, secret: &str) -> bool {
        let ts = self.header("x-streambus-timestamp");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.header("x-streambus-signature") == format!("sha256={hex}")
    }
}

type Policy = Box<dyn FnMut(usize) -> u16 + Send>;

struct Shared {
    hits: Mutex<Vec<Hit>>,
    /// Given the attempt number of the request's delivery id (1 for its
    /// first request), the status to answer.
    policy: Mutex<Policy>,
    /// Closed (false): requests wait for it to open before answering.
    gate: watch::Sender<bool>,
    /// Requests waiting at the gate now.
    waiting: AtomicU16,
}

/// A webhook receiver: records every POST to `/hook` and answers as its
/// policy says, optionally holding answers until the test opens its gate.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// A receiver answering every request with `status`.
    pub async fn start(status: u16) -> Self {
        Self::with_policy(move |_| status).await
    }

    /// A receiver answering by attempt number.
    pub async fn with_policy(policy: impl FnMut(usize) -> u16 + Send + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let shared = Arc::new(Shared {
            hits: Mutex::default(),
            policy: Mutex::new(Box::new(policy)),
            gate: watch::channel(true).0,
            waiting: AtomicU16::new(0),
        });
        let s = Arc::clone(&shared);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let s = Arc::clone(&s);
                async move { s.answer(headers, body).await }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
        Self {
            url: format!("http://{addr}/hook"),
            shared,
        }
    }

    /// Answers every request with `status` from now on.
    pub fn answer(&self, status: u16) {
        *self.shared.policy.lock().expect("policy") = Box::new(move |_| status);
    }

    /// Holds every answer until [`Receiver::open`].
    pub fn close(&self) {
        self.shared.gate.send_replace(false);
    }

    pub fn open(&self) {
        self.shared.gate.send_replace(true);
    }

    /// Requests held at the closed gate now.
    pub fn waiting(&self) -> u16 {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().expect("hits").clone()
    }

    /// Waits until the receiver got `n` requests (at least) and returns them.
    pub async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        eventually(&format!("{n} requests at the receiver"), || async {
            let hits = self.hits();
            (hits.len() >= n).then_some(hits)
        })
        .await
    }
}

impl Shared {
    async fn answer(&self, headers: HeaderMap, body: Bytes) -> StatusCode {
        let hit = Hit { headers, body };
        let attempt = {
            let mut hits = self.hits.lock().expect("hits");
            hits.push(hit.clone());
            hits.iter()
                .filter(|h| h.delivery() == hit.delivery())
                .count()
        };
        let mut gate = self.gate.subscribe();
        if !*gate.borrow() {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        let status = (self.policy.lock().expect("policy"))(attempt);
        StatusCode::from_u16(status).expect("status")
    }
}

/// `POST /webhooks` with `body`, asserting 201; returns the answer.
pub async fn create(server: &TestServer, body: Value) -> Value {
    let r = server.post_json("/api/v1/webhooks", &body).await;
    assert_eq!(r.status, 201, "create webhook: {}", r.text);
    r.body
}

/// A webhook `id` posting to `url` with `filter`.
pub async fn create_hook(server: &TestServer, id: &str, url: &str, filter: Value) -> Value {
    create(
        server,
        json!({"id": id, "url": url, "secret": SECRET, "filter": filter}),
    )
    .await
}

/// The delivery log of webhook `id`, newest first.
pub async fn deliveries(server: &TestServer, id: &str) -> Vec<Value> {
    let r = server
        .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=1000"))
        .await;
    assert_eq!(r.status, 200, "deliveries of {id}: {}", r.text);
    r.body["data"].as_array().expect("data").clone()
}

/// Waits until webhook `id` has `n` deliveries, all in `state`.
pub async fn wait_deliveries(server: &TestServer, id: &str, n: usize, state: &str) -> Vec<Value> {
    eventually(&format!("{n} {state} deliveries of {id}"), || async {
        let list = deliveries(server, id).await;
        (list.len() == n && list.iter().all(|d| d["state"] == state)).then_some(list)
    })
    .await
}

/// Publishes an event of `type` on `stream`; returns the stored event.
pub async fn publish(server: &TestServer, stream: &str, ty: &str) -> Value {
    server
        .publish(json!({"stream_id": stream, "type": ty, "data": {"n": 1}}))
        .await
}
