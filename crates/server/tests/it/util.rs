//! Test support: a real server on an ephemeral port with a temporary data
//! directory, and clients that behave like the real ones (a browser
//! `EventSource`, a WebSocket client).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use streambus_server::Config;
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
        let listener = tokio::net::TcpListener::bind(config.server.listen).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = streambus_server::open(config).await.expect("open");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            streambus_server::serve(listener, state, shutdown).await.expect("serve");
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
            tokio::time::timeout(DEADLINE, task).await.expect("server stops in time").expect("server task");
        }
    }

    /// Publishes one event over REST and returns the stored event.
    pub async fn publish(&self, event: Value) -> Value {
        let res = http().post(self.url("/api/v1/events")).json(&event).send().await.expect("publish");
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert!(status.is_success(), "publish failed: {status} {body}");
        body
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
    reqwest::Client::builder().timeout(DEADLINE).build().expect("client")
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
        let mut req = reqwest::Client::new()
            .get(url)
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-cache");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
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
        Self { status, headers, comments, messages, task }
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
        tokio::time::timeout(wait, self.messages.recv()).await.is_err()
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
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connect");
        Self { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.expect("ws send");
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws.send(Message::Text(t.to_owned().into())).await.expect("ws send");
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
