//! A real browser's `EventSource` (headless Chromium through chromedriver's
//! W3C WebDriver API): the seed's JavaScript receives every event through
//! `onmessage`, text stays text, and a dropped connection resumes from
//! `Last-Event-ID` with no gap and no duplicate after the server restarts.
//!
//! [`Browser`] is the small WebDriver client the page tests share
//! (pages_browser.rs): navigate, run a script, poll, click, read an alert,
//! size the viewport, take a screenshot.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::proc::{DEADLINE, Proc, free_port};

/// A WebSocket client stream, as the cluster tests use it.
pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium session. On drop the session is deleted (which ends
/// the browser; killing only the driver would leave it running) and the
/// driver is killed.
pub(crate) struct Browser {
    _driver: Child,
    port: u16,
    session: String,
    base: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a session, or `None` when they are missing
    /// (a failure under `STREAMBUS_REQUIRE_SERVICES`).
    pub(crate) async fn start() -> Option<Self> {
        let have = |p: &str| std::path::Path::new(p).exists();
        if !(have("/usr/bin/chromium") && have("/usr/bin/chromedriver")) {
            assert!(
                std::env::var_os("STREAMBUS_REQUIRE_SERVICES").is_none(),
                "chromium and chromedriver are required"
            );
            eprintln!("skipping: chromium or chromedriver not installed");
            return None;
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver");
        let profile = tempfile::tempdir().expect("profile");
        let client = reqwest::Client::builder()
            .timeout(DEADLINE)
            .build()
            .expect("client");
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--no-first-run", "--disable-sync",
                     format!("--user-data-dir={}", profile.path().display())]}}}});
        let start = tokio::time::Instant::now();
        let session = loop {
            match client
                .post(format!("http://127.0.0.1:{port}/session"))
                .json(&caps)
                .send()
                .await
            {
                Ok(r) => break r.json::<Value>().await.expect("session json"),
                Err(_) if start.elapsed() < DEADLINE => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("chromedriver did not answer: {e}"),
            }
        };
        let id = session["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Some(Self {
            _driver: driver,
            port,
            base: format!("http://127.0.0.1:{port}/session/{id}"),
            session: id,
            client,
            _profile: profile,
        })
    }

    pub(crate) async fn open(&self, url: &str) {
        let r = self
            .client
            .post(format!("{}/url", self.base))
            .json(&json!({"url": url}))
            .send()
            .await
            .expect("navigate");
        assert!(
            r.status().is_success(),
            "navigate: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Runs `script` (a function body) in the page and returns its value;
    /// a WebDriver error (a script error, an open alert …) fails the test.
    pub(crate) async fn eval(&self, script: &str) -> Value {
        self.eval_with(script, json!([])).await
    }

    /// As [`Browser::eval`], with `arguments` for the script.
    pub(crate) async fn eval_with(&self, script: &str, args: Value) -> Value {
        match self
            .command(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": script, "args": args})),
            )
            .await
        {
            Ok(v) => v,
            Err((code, message)) => panic!("script failed ({code}): {message}\n{script}"),
        }
    }

    /// One WebDriver command on this session: the `value` of the answer, or
    /// the error's `(error code, message)`.
    pub(crate) async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, String)> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("webdriver request");
        let ok = r.status().is_success();
        let v: Value = r.json().await.expect("webdriver json");
        let value = v["value"].clone();
        if ok {
            Ok(value)
        } else {
            Err((
                value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
                value["message"].as_str().unwrap_or_default().to_owned(),
            ))
        }
    }

    /// Polls `script` until it returns something other than `null`,
    /// `false`, `0` or `""`, and returns that; fails after `deadline`.
    pub(crate) async fn wait_for(&self, what: &str, deadline: Duration, script: &str) -> Value {
        let start = tokio::time::Instant::now();
        loop {
            let v = self.eval(script).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(start.elapsed() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element matching `css` as a user would (WebDriver
    /// Element Click: scrolled into view, hit-tested). A page that re-renders
    /// may replace the element between finding and clicking it, so a stale
    /// or not yet clickable element is looked up again until the deadline.
    pub(crate) async fn click(&self, css: &str) {
        let start = tokio::time::Instant::now();
        loop {
            let found = self
                .command(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            let err = match found {
                Ok(el) => {
                    let id = el
                        .as_object()
                        .and_then(|o| o.values().next())
                        .and_then(Value::as_str)
                        .expect("element reference")
                        .to_owned();
                    match self
                        .command(
                            reqwest::Method::POST,
                            &format!("/element/{id}/click"),
                            Some(json!({})),
                        )
                        .await
                    {
                        Ok(_) => return,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            assert!(
                start.elapsed() < DEADLINE,
                "could not click {css}: {} {}",
                err.0,
                err.1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the open user prompt (`alert()`), or the WebDriver error
    /// code (`no such alert` when none is open).
    pub(crate) async fn alert_text(&self) -> Result<String, String> {
        self.command(reqwest::Method::GET, "/alert/text", None)
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .map_err(|(code, _)| code)
    }

    /// Resizes the window so that the page's viewport is `width`×`height`
    /// CSS pixels.
    pub(crate) async fn set_viewport(&self, width: i64, height: i64) {
        let (mut w, mut h) = (width, height);
        for _ in 0..3 {
            self.command(
                reqwest::Method::POST,
                "/window/rect",
                Some(json!({"width": w, "height": h})),
            )
            .await
            .expect("set window rect");
            let inner = self
                .eval("return [window.innerWidth, window.innerHeight]")
                .await;
            let (iw, ih) = (
                inner[0].as_i64().expect("width"),
                inner[1].as_i64().expect("height"),
            );
            if (iw, ih) == (width, height) {
                return;
            }
            w += width - iw;
            h += height - ih;
        }
        panic!("could not size the viewport to {width}x{height}");
    }

    /// A screenshot of the viewport, as PNG bytes.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let v = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .expect("screenshot");
        base64_decode(v.as_str().expect("base64 screenshot"))
    }

    /// Polls the page's received list until it has `n` entries.
    async fn received(&self, n: usize) -> Vec<Value> {
        let start = tokio::time::Instant::now();
        loop {
            let v = self.eval("return window.received || []").await;
            let items = v.as_array().cloned().unwrap_or_default();
            if items.len() >= n {
                return items;
            }
            assert!(
                start.elapsed() < DEADLINE * 2,
                "browser received {} of {n}: {v}",
                items.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Drop cannot await: a plain blocking HTTP/1.1 DELETE on a thread.
        let (port, session) = (self.port, self.session.clone());
        let done = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!(
                "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if s.write_all(req.as_bytes()).is_err() {
                return;
            }
            // Read the whole answer (it comes once the browser has quit),
            // but not to EOF: chromedriver may keep the socket open.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if http_response_complete(&buf) {
                    break;
                }
            }
        });
        let _ = done.join();
    }
}

/// Whether `buf` holds a whole HTTP/1.1 response with a `Content-Length`.
fn http_response_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + len
}

/// Decodes standard base64 (as WebDriver sends screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' => continue,
            _ => panic!("not base64: {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The width and height of a PNG, from its header.
pub(crate) fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

/// The seed's "Notification System" example with its handler recording what
/// `onmessage` receives (and rendering it as text, as a page should).
fn page(stream_url: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><ul id="out"></ul><script>
window.received = [];
const notificationStream = new EventSource('{stream_url}');
notificationStream.onmessage = function(event) {{
    const notification = JSON.parse(event.data);
    window.received.push({{id: notification.id, offset: notification.offset, message: notification.message,
                          timestamp: notification.timestamp, lastEventId: event.lastEventId}});
    const li = document.createElement('li');
    li.textContent = notification.message;
    document.getElementById('out').appendChild(li);
}};
</script>"#
    )
}

async fn publish(server: &Proc, message: &str) -> Value {
    reqwest::Client::new()
        .post(server.url("/api/v1/events"))
        .json(&json!({"stream_id": "notifications", "type": "notification", "message": message}))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_event_source_receives_resumes_and_keeps_text_as_text() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut server = Proc::spawn_on(port, dir.path(), &[]).await;
    let html = dir.path().join("page.html");
    std::fs::write(
        &html,
        page(&server.url("/api/v1/events/stream/notifications")),
    )
    .expect("page");
    browser.open(&format!("file://{}", html.display())).await;

    // The page is live once it has seen a first event; keep publishing until then.
    let start = tokio::time::Instant::now();
    let mut published = vec![publish(&server, "warm-up").await];
    while browser.eval("return (window.received || []).length").await == 0 {
        assert!(start.elapsed() < DEADLINE, "EventSource never connected");
        published.push(publish(&server, "warm-up").await);
    }
    let xss = "<img src=x onerror=alert(1)>";
    published.push(publish(&server, xss).await);
    published.push(publish(&server, "third").await);
    let first_id = browser.received(1).await[0]["id"].clone();
    let from = published
        .iter()
        .position(|e| e["id"] == first_id)
        .expect("first seen was published");
    let expected: Vec<&Value> = published[from..].iter().collect();
    let got = browser.received(expected.len()).await;
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["id"], e["id"]);
        assert_eq!(
            g["lastEventId"],
            e["offset"].to_string(),
            "SSE id is the offset"
        );
        assert!(g["timestamp"].is_i64(), "timestamp is Unix seconds: {g}");
    }
    // Text stays text: the markup shows as characters and creates no element.
    let shown = browser
        .eval("return Array.from(document.querySelectorAll('li')).map(l => l.textContent)")
        .await;
    assert!(
        shown.as_array().expect("list").iter().any(|t| t == xss),
        "{shown}"
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('img').length")
            .await,
        0
    );

    // Kill the server, publish nothing while it is down, restart it in place:
    // the browser reconnects with Last-Event-ID and receives only what is new.
    server.kill9().await;
    let server = Proc::spawn_on(port, dir.path(), &[]).await;
    let after = publish(&server, "after restart").await;
    let start = tokio::time::Instant::now();
    let got = loop {
        let got = browser.received(expected.len()).await;
        if got.iter().any(|g| g["id"] == after["id"]) {
            break got;
        }
        assert!(start.elapsed() < DEADLINE * 2, "no event after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<&Value> = got.iter().map(|g| &g["id"]).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(
        ids.len(),
        unique.len(),
        "no duplicate after reconnect: {ids:?}"
    );
    assert_eq!(
        got.len(),
        expected.len() + 1,
        "exactly the new event after reconnect"
    );
}
