//! NATS unreachable, or going away under a running node.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streambus_core::EventLog;
use streambus_core::log::LogError;
use streambus_core::store::EventStore;
use streambus_core::testsuite::fresh_tenant;
use streambus_log::{JetStreamLog, JetStreamOptions};
use streambus_store::{SqliteOptions, SqliteStore};

use crate::util::{Cluster, events, nats_url, next};

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn temp_store() -> (Arc<dyn EventStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteOptions::new(dir.path()))
        .await
        .expect("open store");
    (Arc::new(store), dir)
}

#[tokio::test]
async fn unreachable_nats_fails_fast() {
    let (store, _dir) = temp_store().await;
    for url in [
        format!("nats://127.0.0.1:{}", free_port()),
        // TEST-NET-1: never routed; either refused at once or the connect timeout.
        "nats://192.0.2.1:4222".to_owned(),
    ] {
        let started = Instant::now();
        let r = JetStreamLog::connect(JetStreamOptions::new(&url), Arc::clone(&store)).await;
        assert!(
            matches!(r, Err(LogError::Unavailable(_))),
            "{url}: {:?}",
            r.err()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: took {:?}",
            started.elapsed()
        );
    }
}

/// A nats-server of this test's own, so it can be stopped and restarted.
struct OwnServer {
    child: Child,
    port: u16,
    /// Its JetStream data, kept for a restart.
    dir: Option<tempfile::TempDir>,
}

impl OwnServer {
    fn start(port: u16, dir: tempfile::TempDir) -> Option<Self> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self {
            child,
            port,
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().expect("stopped once")
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn append_fails_fast_while_nats_is_down_and_indexing_resumes() {
    if nats_url().is_none() {
        return;
    }
    let port = free_port();
    let Some(server) = OwnServer::start(port, tempfile::tempdir().expect("dir")) else {
        eprintln!("skipping: no nats-server binary to start and stop");
        return;
    };
    let cluster = Cluster::new(&format!("nats://127.0.0.1:{}", server.port));
    let node = cluster.node().await;
    let tenant = fresh_tenant("down");
    let mut tail = node.log.tail();
    node.log
        .append(&tenant, events("s", 3))
        .await
        .expect("append");

    let dir = server.stop();
    wait_until("the client notices", || {
        !node.log.indexer_status().connected
    })
    .await;
    let started = Instant::now();
    let r = node.log.append(&tenant, events("s", 1)).await;
    assert!(matches!(r, Err(LogError::Unavailable(_))), "{:?}", r.err());
    assert!(matches!(
        node.log.ping().await,
        Err(LogError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!node.log.indexer_status().is_healthy());

    // Back on the same port and data: the client reconnects, the indexer resumes.
    let server = OwnServer::start(port, dir).expect("restart nats-server");
    wait_until("the client reconnects", || {
        node.log.indexer_status().connected
    })
    .await;
    let more = node
        .log
        .append(&tenant, events("s", 2))
        .await
        .expect("append after restart");
    assert_eq!(more[1].record.offset(), 5);
    let offsets: Vec<u64> = [
        next(&mut tail).await,
        next(&mut tail).await,
        next(&mut tail).await,
        next(&mut tail).await,
        next(&mut tail).await,
    ]
    .iter()
    .map(|r| r.offset())
    .collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    assert_eq!(node.log.head().await.expect("head"), 5);
    node.log.close().await;
    drop(cluster);
    drop(server);
}
