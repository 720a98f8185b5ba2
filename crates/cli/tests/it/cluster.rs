//! Three nodes on loopback sharing PostgreSQL and NATS JetStream (issue 3):
//! cross-node delivery and order, failover without loss, idempotency across
//! nodes, and engine outages answered with 503 and recovered from.
//!
//! Needs `STREAMBUS_TEST_POSTGRES_URL` and `STREAMBUS_TEST_NATS_URL`; each
//! test uses its own PostgreSQL schema and JetStream stream and removes them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::proc::{DEADLINE, Proc, free_port};
use crate::proxy::Proxy;

/// The engines, or `None` (printing why) when the variables are not set.
pub(crate) fn engines() -> Option<(String, String)> {
    let pg = std::env::var("STREAMBUS_TEST_POSTGRES_URL").ok();
    let nats = std::env::var("STREAMBUS_TEST_NATS_URL").ok();
    match (pg, nats) {
        (Some(pg), Some(nats)) => Some((pg, nats)),
        _ => {
            assert!(
                std::env::var_os("STREAMBUS_REQUIRE_SERVICES").is_none(),
                "STREAMBUS_TEST_POSTGRES_URL and STREAMBUS_TEST_NATS_URL are required"
            );
            eprintln!("skipping: STREAMBUS_TEST_POSTGRES_URL or STREAMBUS_TEST_NATS_URL not set");
            None
        }
    }
}

/// Nodes sharing one schema and one JetStream stream, removed on drop.
pub(crate) struct Cluster {
    nodes: Vec<Option<Proc>>,
    pub(crate) ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    env: Vec<(String, String)>,
    pg_url: String,
    nats_url: String,
    schema: String,
    stream: String,
}

impl Cluster {
    pub(crate) async fn start(n: usize, pg_url: &str, nats_url: &str) -> Self {
        let tag = format!("{:08x}", rand_u32());
        let schema = format!("sbt_{tag}");
        let stream = format!("SBT_{tag}");
        let env = vec![
            ("STREAMBUS_POSTGRES_URL".to_owned(), pg_url.to_owned()),
            ("STREAMBUS_NATS_URL".to_owned(), nats_url.to_owned()),
            (
                "STREAMBUS_CLUSTER__POSTGRES_SCHEMA".to_owned(),
                schema.clone(),
            ),
            ("STREAMBUS_CLUSTER__STREAM".to_owned(), stream.clone()),
            (
                "STREAMBUS_CLUSTER__SUBJECT_PREFIX".to_owned(),
                format!("sbt{tag}"),
            ),
        ];
        let mut c = Self {
            nodes: Vec::new(),
            ports: Vec::new(),
            dirs: Vec::new(),
            env,
            pg_url: pg_url.to_owned(),
            nats_url: nats_url.to_owned(),
            schema,
            stream,
        };
        for _ in 0..n {
            let port = free_port();
            let dir = tempfile::tempdir().expect("tmp");
            let node = Proc::spawn_with(port, dir.path(), &[], &c.env).await;
            c.nodes.push(Some(node));
            c.ports.push(port);
            c.dirs.push(dir);
        }
        c
    }

    pub(crate) fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.ports[i], path)
    }

    async fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            p.kill9().await;
        }
    }

    pub(crate) async fn cleanup(&self) {
        remove(&self.pg_url, &self.nats_url, &self.schema, &self.stream).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(p) = n.as_mut() {
                let _ = p.child.start_kill();
            }
        }
        let (pg, nats, schema, stream) = (
            self.pg_url.clone(),
            self.nats_url.clone(),
            self.schema.clone(),
            self.stream.clone(),
        );
        // Drop cannot await: clean up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    remove(&pg, &nats, &schema, &stream),
                )
                .await;
            });
        })
        .join();
    }
}

/// Drops a test's schema and JetStream stream.
async fn remove(pg_url: &str, nats_url: &str, schema: &str, stream: &str) {
    if let Ok(pool) = sqlx::PgPool::connect(pg_url).await {
        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
    }
    if let Ok(client) = async_nats::connect(nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(stream)
            .await;
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
}

pub(crate) async fn publish(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> reqwest::Response {
    client.post(url).json(body).send().await.expect("publish")
}

/// Reads a stream's whole history from one node, oldest first.
async fn history(client: &reqwest::Client, base: &str, stream: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!("{base}/api/v1/events?stream_id={stream}&order=asc&limit=1000{cursor}");
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        out.extend(page["data"].as_array().expect("data").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

pub(crate) async fn ws_subscribe(port: u16, req: Value) -> crate::browser::WsStream {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/ws"))
        .await
        .expect("ws");
    let mut req = req;
    req["type"] = json!("SUBSCRIBE");
    ws.send(Message::Text(req.to_string().into()))
        .await
        .expect("send");
    loop {
        let m = ws_next(&mut ws).await;
        if m["type"] == "SUBSCRIBED" {
            return ws;
        }
    }
}

pub(crate) async fn ws_next(ws: &mut crate::browser::WsStream) -> Value {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("ws in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

pub(crate) async fn ws_events(ws: &mut crate::browser::WsStream, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = ws_next(ws).await;
        assert_ne!(m["type"], "ERROR", "{m}");
        if m["type"] == "EVENT_BROADCAST" {
            out.push(m["event"].clone());
        }
    }
    out
}

fn offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_event_in_the_same_order() {
    let Some((pg, nats)) = engines() else { return };
    let cluster = Cluster::start(3, &pg, &nats).await;
    let client = reqwest::Client::new();
    let mut on_b = ws_subscribe(cluster.ports[1], json!({"streams": ["orders"]})).await;
    let mut on_c = ws_subscribe(cluster.ports[2], json!({"streams": ["orders"]})).await;

    // 300 events from three concurrent publishers, all through node A.
    let mut tasks = Vec::new();
    for w in 0..3 {
        let (client, url) = (client.clone(), cluster.url(0, "/api/v1/events"));
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let batch: Vec<Value> =
                    (0..10).map(|j| json!({"type": "order", "stream_id": "orders", "data": {"w": w, "i": i, "j": j}})).collect();
                let r = publish(&client, &url, &json!(batch)).await;
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    let b = offsets(&ws_events(&mut on_b, 300).await);
    let c = offsets(&ws_events(&mut on_c, 300).await);
    assert!(b.windows(2).all(|w| w[0] < w[1]), "increasing on B");
    assert_eq!(b, c, "same order on every node");
    for i in 0..3 {
        let h = offsets(&history(&client, &cluster.url(i, ""), "orders").await);
        assert_eq!(h, b, "history on node {i} holds every event in order");
    }
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_resumes_on_another_node_after_its_node_is_killed() {
    let Some((pg, nats)) = engines() else { return };
    let mut cluster = Cluster::start(3, &pg, &nats).await;
    let client = reqwest::Client::new();
    let mut ws = ws_subscribe(cluster.ports[1], json!({"streams": ["scores"]})).await;
    let on_a = cluster.url(0, "/api/v1/events");
    let publish_n = |from: usize, n: usize| {
        let (client, url) = (client.clone(), on_a.clone());
        async move {
            let batch: Vec<Value> = (from..from + n)
                .map(|i| json!({"type": "score", "stream_id": "scores", "data": {"i": i}}))
                .collect();
            assert_eq!(publish(&client, &url, &json!(batch)).await.status(), 200);
        }
    };
    publish_n(0, 50).await;
    let first = ws_events(&mut ws, 50).await;
    let last = *offsets(&first).last().expect("some");
    cluster.kill9(1).await;
    drop(ws);
    publish_n(50, 50).await;
    let mut ws = ws_subscribe(
        cluster.ports[2],
        json!({"streams": ["scores"], "since": last}),
    )
    .await;
    publish_n(100, 50).await;
    let rest = ws_events(&mut ws, 100).await;
    let is: Vec<u64> = rest
        .iter()
        .map(|e| e["data"]["i"].as_u64().expect("i"))
        .collect();
    assert_eq!(
        is,
        (50..150).collect::<Vec<_>>(),
        "every later event exactly once, in order"
    );
    assert!(offsets(&rest)[0] > last);
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_when_the_publishers_node_dies() {
    let Some((pg, nats)) = engines() else { return };
    let mut cluster = Cluster::start(2, &pg, &nats).await;
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut loops = Vec::new();
    for w in 0..3 {
        let (acked, client, url) = (
            Arc::clone(&acked),
            client.clone(),
            cluster.url(0, "/api/v1/events"),
        );
        loops.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!([{"type": "tick", "stream_id": "durable", "data": {"w": w, "i": i}},
                                  {"type": "tick", "stream_id": "durable", "data": {"w": w, "i": i, "b": 1}}]);
                let Ok(r) = client.post(&url).json(&body).send().await else { break };
                let Ok(v) = r.json::<Value>().await else { break };
                let mut a = acked.lock().expect("lock");
                for item in v["results"].as_array().into_iter().flatten() {
                    if item["status"] == 201 {
                        a.push(item["event"]["id"].as_str().expect("id").to_owned());
                    }
                }
            }
        }));
    }
    let start = tokio::time::Instant::now();
    while acked.lock().expect("lock").len() < 600 {
        assert!(start.elapsed() < DEADLINE * 2, "publishers too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.kill9(0).await;
    for l in loops {
        let _ = l.await;
    }
    let acked = acked.lock().expect("lock").clone();
    let start = tokio::time::Instant::now();
    loop {
        let stored: HashSet<String> = history(&client, &cluster.url(1, ""), "durable")
            .await
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect();
        let missing = acked.iter().filter(|id| !stored.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{missing} of {} acknowledged events missing on node B",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_published_on_two_nodes_is_stored_once() {
    let Some((pg, nats)) = engines() else { return };
    let cluster = Cluster::start(2, &pg, &nats).await;
    let client = reqwest::Client::new();
    let body = json!({"id": "once-only", "type": "goal", "stream_id": "ids"});
    let (url_a, url_b) = (
        cluster.url(0, "/api/v1/events"),
        cluster.url(1, "/api/v1/events"),
    );
    let (a, b) = tokio::join!(
        publish(&client, &url_a, &body),
        publish(&client, &url_b, &body)
    );
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    let (ea, eb): (Value, Value) = (a.json().await.expect("json"), b.json().await.expect("json"));
    assert_eq!(
        ea["offset"], eb["offset"],
        "both answers name the one stored event"
    );
    assert_eq!(statuses, vec![200, 201], "one stored, one found stored");
    assert_eq!(history(&client, &cluster.url(1, ""), "ids").await.len(), 1);
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_outage_answers_503_and_the_node_recovers() {
    let Some((pg, nats)) = engines() else { return };
    let pg_target = pg
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
        .expect("pg host:port")
        .to_owned();
    let nats_target = nats.trim_start_matches("nats://").to_owned();
    let mut pg_proxy = Proxy::start(&pg_target).await;
    let mut nats_proxy = Proxy::start(&nats_target).await;
    let pg_via = pg.replacen(&pg_target, &pg_proxy.addr(), 1);
    let nats_via = format!("nats://{}", nats_proxy.addr());
    let mut cluster = Cluster::start(1, &pg_via, &nats_via).await;
    cluster.pg_url = pg.clone();
    cluster.nats_url = nats.clone();
    let client = reqwest::Client::new();
    let url = cluster.url(0, "/api/v1/events");
    let body = json!({"type": "probe", "stream_id": "outage"});
    assert_eq!(publish(&client, &url, &body).await.status(), 201);

    for (engine, check) in [("nats", "log"), ("postgres", "store")] {
        let proxy = if engine == "nats" {
            &mut nats_proxy
        } else {
            &mut pg_proxy
        };
        proxy.cut();
        let start = tokio::time::Instant::now();
        let r = publish(&client, &url, &body).await;
        assert_eq!(r.status(), 503, "{engine} down: publish refused");
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{engine} down: refused fast ({:?})",
            start.elapsed()
        );
        assert!(r.headers().contains_key("retry-after"));
        let ready = client
            .get(cluster.url(0, "/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 503);
        let v: Value = ready.json().await.expect("json");
        assert_eq!(v["checks"][check], "unreachable", "{engine}: {v}");

        proxy.restore().await;
        let start = tokio::time::Instant::now();
        loop {
            let r = publish(&client, &url, &body).await;
            if r.status() == 201 {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE * 2,
                "{engine} back: node did not recover ({})",
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ready = client
            .get(cluster.url(0, "/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200, "{engine} back: ready again");
    }
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_list_and_pause_behave_as_on_one_node() {
    let Some((pg, nats)) = engines() else { return };
    let cluster = Cluster::start(3, &pg, &nats).await;
    let client = reqwest::Client::new();

    // Clients summed across nodes: one subscriber on A, one on C, asked on B.
    let _on_a = ws_subscribe(cluster.ports[0], json!({"streams": ["watch"]})).await;
    let mut on_c = ws_subscribe(cluster.ports[2], json!({"streams": ["watch"]})).await;
    stream_info_until(&client, &cluster.url(1, ""), "watch", |s| s["clients"] == 2).await;

    // Pause on A, publish on B: C holds; resume on B: C gets them in order.
    let r = client
        .post(cluster.url(0, "/api/v1/events/stream/watch/pause"))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), 200);
    // Let the other nodes see the pause (they check every 500 ms).
    stream_info_until(&client, &cluster.url(2, ""), "watch", |s| {
        s["state"] == "paused"
    })
    .await;
    tokio::time::sleep(crate::cluster::SYNC_GRACE).await;
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"type": "held", "stream_id": "watch", "data": {"i": i}}))
        .collect();
    assert_eq!(
        publish(&client, &cluster.url(1, "/api/v1/events"), &json!(batch))
            .await
            .status(),
        200
    );
    let quiet = tokio::time::timeout(Duration::from_millis(700), ws_next(&mut on_c)).await;
    assert!(
        quiet.is_err(),
        "a paused stream delivered on another node: {quiet:?}"
    );
    let r = client
        .post(cluster.url(1, "/api/v1/events/stream/watch/resume"))
        .send()
        .await
        .expect("resume");
    assert_eq!(r.status(), 200);
    let got = ws_events(&mut on_c, 5).await;
    let is: Vec<u64> = got
        .iter()
        .map(|e| e["data"]["i"].as_u64().expect("i"))
        .collect();
    assert_eq!(
        is,
        vec![0, 1, 2, 3, 4],
        "held events released in order on C"
    );
    cluster.cleanup().await;
}

/// Polls one node's streams list until `stream`'s entry satisfies `done`.
async fn stream_info_until(
    client: &reqwest::Client,
    base: &str,
    stream: &str,
    done: impl Fn(&Value) -> bool,
) {
    let start = tokio::time::Instant::now();
    loop {
        let url = format!("{base}/api/v1/events/streams");
        let v: Value = client
            .get(url)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        if done(&v["data"][stream]) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "streams list never matched: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node takes up to one sync interval (500 ms) to see a pause made elsewhere.
const SYNC_GRACE: Duration = Duration::from_millis(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_whether_each_engine_is_reachable() {
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_streambus"))
            .arg("check-config")
            .args(args)
            .output()
            .await
            .expect("run check-config");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let dir = tempfile::tempdir().expect("tmp");
    let (ok, text) = run(vec!["--data-dir".into(), dir.path().display().to_string()]).await;
    assert!(ok && text.contains("sqlite: reachable"), "{text}");

    let dead = format!("127.0.0.1:{}", free_port());
    let (ok, text) = run(vec![
        "--postgres-url".into(),
        format!("postgres://u:secret@{dead}/db"),
        "--nats-url".into(),
        format!("nats://{dead}"),
    ])
    .await;
    assert!(!ok, "unreachable engines fail the check: {text}");
    assert!(
        text.contains("postgresql: UNREACHABLE") && text.contains("nats-jetstream: UNREACHABLE"),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "passwords are not printed: {text}"
    );

    let Some((pg, nats)) = engines() else { return };
    let (ok, text) = run(vec!["--postgres-url".into(), pg, "--nats-url".into(), nats]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("postgresql: reachable") && text.contains("nats-jetstream: reachable"),
        "{text}"
    );
}
