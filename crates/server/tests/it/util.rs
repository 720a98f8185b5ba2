//! Test support: a real server on an ephemeral port with a temporary data
//! directory, and clients that behave like the real ones (a browser
//! `EventSource`, a WebSocket client).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use streambus_core::auth::Role;
use streambus_server::Config;
use streambus_server::auth::jwt::{Claims, Minter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running server; shut down (gracefully) on drop or [`TestServer::stop`].
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server on a fresh data directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server on a fresh data directory, with the configuration adjusted.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in(&dir, adjust).await;
        s._tmp = Some(tmp);
        s
    }

    /// A server on `dir` (reused across restarts).
    pub async fn start_in(dir: &Path, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::load_with_env(None, []).expect("default config");
        config.server.data_dir = dir.to_owned();
        config.server.listen = "127.0.0.1:0".parse().expect("addr");
        config.server.shutdown_grace_secs = 2;
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = streambus_server::open(config).await.expect("open");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            streambus_server::serve(listener, state, shutdown)
                .await
                .expect("serve");
        });
        Self {
            addr,
            base: format!("http://{addr}"),
            dir: dir.to_owned(),
            _tmp: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Graceful shutdown; returns when storage is flushed. Keeps the data
    /// directory alive when it is owned by this server.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown().await;
        self._tmp.take()
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
    }

    /// Publishes one event over REST and returns the stored event.
    pub async fn publish(&self, event: Value) -> Value {
        let res = http()
            .post(self.url("/api/v1/events"))
            .json(&event)
            .send()
            .await
            .expect("publish");
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert!(status.is_success(), "publish failed: {status} {body}");
        body
    }

    /// Publishes one event over REST with a bearer token.
    pub async fn publish_with(&self, token: &str, event: Value) -> Value {
        let res = http()
            .post(self.url("/api/v1/events"))
            .bearer_auth(token)
            .json(&event)
            .send()
            .await
            .expect("publish");
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert!(status.is_success(), "publish failed: {status} {body}");
        body
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        Resp::from(http().get(self.url(path)).send().await.expect("GET")).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        Resp::from(
            http()
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Resp {
        Resp::from(
            http()
                .put(self.url(path))
                .json(body)
                .send()
                .await
                .expect("PUT"),
        )
        .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Resp {
        Resp::from(http().delete(self.url(path)).send().await.expect("DELETE")).await
    }

    /// `POST path` with a raw body and an optional content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let mut req = http().post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        Resp::from(req.send().await.expect("POST")).await
    }

    /// Publishes `events` as one JSON array and returns the stored events,
    /// asserting that every item was stored.
    pub async fn publish_batch(&self, events: &[Value]) -> Vec<Value> {
        let r = self
            .post_json("/api/v1/events", &Value::from(events.to_vec()))
            .await;
        assert_eq!(r.status, 200, "batch publish: {}", r.text);
        r.body["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|item| {
                assert_eq!(item["status"], 201, "batch item: {item}");
                item["event"].clone()
            })
            .collect()
    }

    /// Every stored event matching `query` (extra `GET /api/v1/events`
    /// parameters), oldest first, following the cursor through all pages.
    pub async fn history(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/events?order=asc&limit=1000&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&path).await;
            assert_eq!(r.status, 200, "history {path}: {}", r.text);
            out.extend(r.body["data"].as_array().expect("data").iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

/// A buffered HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl Resp {
    pub async fn from(res: reqwest::Response) -> Self {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Asserts an RFC 9457 problem: the exact status, the content type, the
/// members every problem has, and the offending field when one is named.
pub fn assert_problem(r: &Resp, status: u16, field: Option<&str>) {
    assert_eq!(r.status, status, "status of {}", r.text);
    assert_eq!(
        r.header("content-type"),
        "application/problem+json",
        "content type of {}",
        r.text
    );
    let p = &r.body;
    assert!(
        p["type"].as_str().is_some_and(|t| !t.is_empty()),
        "problem type: {p}"
    );
    assert!(
        p["title"].as_str().is_some_and(|t| !t.is_empty()),
        "problem title: {p}"
    );
    assert_eq!(p["status"], status, "problem status: {p}");
    assert!(
        p["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "problem detail: {p}"
    );
    if let Some(f) = field {
        assert_eq!(p["field"], f, "problem field: {p}");
    }
}

/// The offsets of `events`, in order.
pub fn offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["offset"].as_u64().expect("offset"))
        .collect()
}

/// Asserts that `got` is exactly `want` (each once, in order), reporting a
/// difference concisely: lengths, the first divergence, what is missing and
/// what is repeated.
pub fn assert_same_offsets(got: &[u64], want: &[u64], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let have: std::collections::HashSet<u64> = got.iter().copied().collect();
    let missing: Vec<u64> = want.iter().copied().filter(|o| !have.contains(o)).collect();
    let repeated = got.len() - have.len();
    panic!(
        "{what}: got {} offsets, want {}; first difference at index {first} (got {:?}, want {:?}); \
         {} missing (first: {:?}); {repeated} repeated",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first),
        missing.len(),
        &missing[..missing.len().min(10)],
    );
}

/// Asserts that `offsets` strictly increase.
pub fn assert_increasing(offsets: &[u64]) {
    for w in offsets.windows(2) {
        assert!(
            w[0] < w[1],
            "offsets not strictly increasing: {} then {} in {offsets:?}",
            w[0],
            w[1]
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A shared HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

/// One dispatched SSE message, as `EventSource` would hand it to `onmessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    /// The `event:` field; `None` means `onmessage` receives it.
    pub event: Option<String>,
    pub data: String,
    pub last_event_id: String,
}

impl SseMessage {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("SSE data is JSON")
    }
}

/// An SSE client following the HTML standard's parsing rules: lines end in
/// LF, CR or CRLF; `:` starts a comment; `data` lines join with LF; a blank
/// line dispatches; `id` sets the last event id (kept across messages).
pub struct SseClient {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub comments: mpsc::UnboundedReceiver<String>,
    messages: mpsc::UnboundedReceiver<SseMessage>,
    task: tokio::task::JoinHandle<()>,
}

impl SseClient {
    /// Opens `url` as `EventSource` does, optionally with `Last-Event-ID`.
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> Self {
        match last_event_id {
            Some(id) => Self::connect_with(url, &[("Last-Event-ID", id)]).await,
            None => Self::connect_with(url, &[]).await,
        }
    }

    /// Opens `url` with the seed's headers (`Accept: text/event-stream`,
    /// `Cache-Control: no-cache`) plus `extra`.
    pub async fn connect_with(url: &str, extra: &[(&str, &str)]) -> Self {
        let mut req = reqwest::Client::new()
            .get(url)
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-cache");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("SSE connect");
        let status = res.status();
        let headers = res.headers().clone();
        let (msg_tx, messages) = mpsc::unbounded_channel();
        let (com_tx, comments) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut body = res.bytes_stream();
            let mut parser = SseParser::default();
            while let Some(Ok(chunk)) = body.next().await {
                for out in parser.feed(&chunk) {
                    match out {
                        Parsed::Message(m) => {
                            let _ = msg_tx.send(m);
                        }
                        Parsed::Comment(c) => {
                            let _ = com_tx.send(c);
                        }
                    }
                }
            }
        });
        Self {
            status,
            headers,
            comments,
            messages,
            task,
        }
    }

    /// The next message, failing the test after [`DEADLINE`].
    pub async fn next(&mut self) -> SseMessage {
        tokio::time::timeout(DEADLINE, self.messages.recv())
            .await
            .expect("SSE message in time")
            .expect("SSE stream open")
    }

    /// The next `n` messages.
    pub async fn take(&mut self, n: usize) -> Vec<SseMessage> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// True if no message arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.messages.recv())
            .await
            .is_err()
    }

    /// Waits until the server ends the stream, discarding what arrives;
    /// false if it is still open after [`DEADLINE`].
    pub async fn ended(&mut self) -> bool {
        tokio::time::timeout(DEADLINE, async {
            while self.messages.recv().await.is_some() {}
        })
        .await
        .is_ok()
    }

    /// Up to `n` messages' offsets (`id:` lines), stopping early when none
    /// arrives for `idle` (for reporting what is missing instead of timing out).
    pub async fn offsets_until_idle(&mut self, n: usize, idle: Duration) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match tokio::time::timeout(idle, self.messages.recv()).await {
                Ok(Some(m)) => out.push(m.last_event_id.parse().expect("numeric id")),
                _ => break,
            }
        }
        out
    }

    /// The next comment line, failing the test after [`DEADLINE`].
    pub async fn next_comment(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.comments.recv())
            .await
            .expect("SSE comment in time")
            .expect("SSE stream open")
    }

    /// A response header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub enum Parsed {
    Message(SseMessage),
    Comment(String),
}

#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
    event: Option<String>,
    last_event_id: String,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Parsed> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            let ended_cr = line.pop() == Some(b'\r');
            if ended_cr && self.buf.first() == Some(&b'\n') {
                self.buf.remove(0);
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(Parsed::Message(SseMessage {
                        event: self.event.take(),
                        data: self.data.join("\n"),
                        last_event_id: self.last_event_id.clone(),
                    }));
                }
                self.data.clear();
                self.event = None;
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                out.push(Parsed::Comment(comment.trim_start().to_owned()));
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "data" => self.data.push(value),
                "event" => self.event = Some(value),
                "id" if !value.contains('\0') => self.last_event_id = value,
                _ => {}
            }
        }
        out
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking the JSON protocol.
pub struct WsClient {
    pub ws: Ws,
}

impl WsClient {
    pub async fn connect(server: &TestServer) -> Self {
        let url = format!("ws://{}/api/v1/ws", server.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Self { ws }
    }

    /// Connects with `?token=`.
    pub async fn connect_with_token(server: &TestServer, token: &str) -> Self {
        let url = format!("ws://{}/api/v1/ws?token={token}", server.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Self { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    /// A client whose socket has a tiny receive buffer, so that a client
    /// that stops reading stalls the server's writes almost at once.
    pub async fn connect_small_buffer(server: &TestServer) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(server.addr).await.expect("tcp connect");
        let url = format!("ws://{}/api/v1/ws", server.addr);
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("ws handshake");
        Self { ws }
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_owned().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_binary(&mut self, b: &[u8]) {
        self.ws
            .send(Message::Binary(b.to_vec().into()))
            .await
            .expect("ws send");
    }

    /// True if no text message arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.recv()).await.is_err()
    }

    /// Sends `PING` and asserts that the next message is its `PONG`: the
    /// connection still works.
    pub async fn assert_alive(&mut self) {
        self.send(serde_json::json!({"type": "PING", "ref": "alive"}))
            .await;
        let pong = self.recv().await;
        assert_eq!(pong["type"], "PONG", "expected PONG, got {pong}");
        assert_eq!(pong["ref"], "alive", "{pong}");
    }

    /// Sends `frame` and returns the `ERROR` it must provoke, after checking
    /// its `code` and that it has a message.
    pub async fn expect_error(&mut self, frame: &str, code: &str) -> Value {
        self.send_text(frame).await;
        let e = self.expect("ERROR").await;
        assert_eq!(e["code"], code, "for {frame}: {e}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "for {frame}: {e}"
        );
        e
    }

    /// The next JSON text message (pings skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("ws message in time")
                .expect("ws open")
                .expect("ws ok");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("ws JSON"),
                Message::Close(f) => panic!("ws closed: {f:?}"),
                _ => continue,
            }
        }
    }

    /// The next message of `kind`, failing on anything else.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "expected {kind}, got {v}");
        v
    }

    /// Subscribes and returns the `SUBSCRIBED` reply.
    pub async fn subscribe(&mut self, req: Value) -> Value {
        let mut req = req;
        req["type"] = "SUBSCRIBE".into();
        self.send(req).await;
        self.expect("SUBSCRIBED").await
    }

    /// Up to `n` events' offsets, stopping early when none arrives for
    /// `idle` (for reporting what is missing instead of timing out).
    pub async fn offsets_until_idle(&mut self, n: usize, idle: Duration) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match tokio::time::timeout(idle, self.expect("EVENT_BROADCAST")).await {
                Ok(v) => out.push(v["event"]["offset"].as_u64().expect("offset")),
                Err(_) => break,
            }
        }
        out
    }

    /// The next `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let v = self.expect("EVENT_BROADCAST").await;
            out.push(v["event"].clone());
        }
        out
    }
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Unix seconds, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Asserts that `v` is an integer Unix-seconds timestamp close to now (not
/// milliseconds, not a string).
pub fn assert_unix_seconds_now(v: &Value) {
    let ts = v
        .as_i64()
        .unwrap_or_else(|| panic!("timestamp must be an integer, got {v}"));
    assert!(
        (ts - now_secs()).abs() < 120,
        "timestamp {ts} is not Unix seconds near now"
    );
}

/// Asserts `s` is RFC 3339 UTC with exactly three fraction digits:
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn assert_rfc3339_ms(s: &str) {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    assert_eq!(b.len(), shape.len(), "not RFC 3339 with ms: {s}");
    for (c, want) in b.iter().zip(shape) {
        let ok = if *want == b'd' {
            c.is_ascii_digit()
        } else {
            c == want
        };
        assert!(ok, "not RFC 3339 with ms: {s}");
    }
}

/// A stream's entry in `GET /api/v1/events/streams` (`Null` when absent).
pub async fn stream_info(server: &TestServer, stream: &str) -> Value {
    let r = server.get("/api/v1/events/streams").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"][stream].clone()
}

/// A quiet window for "nothing else arrives" checks.
pub const QUIET: Duration = Duration::from_millis(300);

/// The HS256 secret of the tests that turn authentication on.
pub const AUTH_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// A token signed with [`AUTH_SECRET`], valid for ten minutes.
pub fn mint(tenant: &str, sub: &str, role: Role, publish: &[&str], subscribe: &[&str]) -> String {
    let now = now_secs() as u64;
    let globs = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect();
    let claims = Claims {
        sub: sub.into(),
        tenant: tenant.into(),
        role,
        publish: globs(publish),
        subscribe: globs(subscribe),
        exp: now + 600,
        iat: Some(now),
        nbf: None,
    };
    Minter::hs256(AUTH_SECRET.as_bytes())
        .mint(&claims)
        .expect("mint")
}
