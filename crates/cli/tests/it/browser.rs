//! A real browser's `EventSource` (headless Chromium through chromedriver's
//! W3C WebDriver API): the seed's JavaScript receives every event through
//! `onmessage`, text stays text, and a dropped connection resumes from
//! `Last-Event-ID` with no gap and no duplicate after the server restarts.

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
struct Browser {
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
    async fn start() -> Option<Self> {
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

    async fn open(&self, url: &str) {
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

    async fn eval(&self, script: &str) -> Value {
        let r: Value = self
            .client
            .post(format!("{}/execute/sync", self.base))
            .json(&json!({"script": script, "args": []}))
            .send()
            .await
            .expect("execute")
            .json()
            .await
            .expect("execute json");
        r["value"].clone()
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
            if s.write_all(req.as_bytes()).is_ok() {
                let _ = s.read_to_end(&mut Vec::new());
            }
        });
        let _ = done.join();
    }
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
