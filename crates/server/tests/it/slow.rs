//! Slow consumers (SPEC §4, STYLE §7): a connection that stops reading never
//! slows the others and never grows the server's memory; it falls back to
//! catching up from storage, and is closed with a clear code only when it
//! falls behind retention.
//!
//! The stalled client has a 4 KiB socket receive buffer and never reads, so
//! the server's writes to it block after a few KiB (plus the server's own
//! send buffer, at most `tcp_wmem` max = 4 MiB on Linux). Each test publishes
//! several MB of ~1 KiB events, far more than those buffers and the 64-event
//! ring, so the stalled connection is overrun by the ring and must catch up.

use serde_json::{Value, json};

use crate::util::*;

/// The ring size the slow-consumer tests run with.
const RING: usize = 64;

fn bulk(i: usize) -> Value {
    json!({"type": "bulk", "stream_id": "bulk", "message": i.to_string(), "data": {"pad": "x".repeat(1000)}})
}

/// Publishes `total` ~1 KiB events to `bulk` in batches of 500 (a batch stays
/// under the 1 MiB body limit) and returns their offsets.
async fn publish_bulk(server: &TestServer, from: usize, total: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(total);
    for start in (from..from + total).step_by(500) {
        let batch: Vec<Value> = (start..(start + 500).min(from + total)).map(bulk).collect();
        out.extend(offsets(&server.publish_batch(&batch).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_consumer_does_not_delay_others_and_catches_up_from_storage() {
    let server = TestServer::start_with(|c| c.delivery.hub_capacity = RING).await;
    let mut stalled = WsClient::connect_small_buffer(&server).await;
    stalled.subscribe(json!({"streams": ["bulk"]})).await;
    let mut fast = WsClient::connect(&server).await;
    fast.subscribe(json!({"streams": ["bulk"]})).await;
    let mut fast_sse = SseClient::connect(&server.url("/api/v1/events/stream/bulk"), None).await;

    let total = 5000;
    let fast_reader = tokio::spawn(async move { offsets(&fast.events(total).await) });
    let sse_reader = tokio::spawn(async move {
        fast_sse.take(total).await.iter().map(|m| m.json()["offset"].as_u64().unwrap()).collect::<Vec<_>>()
    });
    let published = publish_bulk(&server, 0, total).await;
    // The fast consumers get everything, in order, while the stalled one
    // has not read a single event.
    assert_eq!(fast_reader.await.unwrap(), published, "fast WebSocket consumer");
    assert_eq!(sse_reader.await.unwrap(), published, "fast SSE consumer");

    // Now the stalled one reads: every event exactly once, in order (the
    // ring overran it long ago, so most of these came from storage).
    assert_eq!(offsets(&stalled.events(total).await), published, "stalled consumer");
    assert!(stalled.quiet_for(QUIET).await, "no duplicate");
    // And it is live again.
    let next = server.publish(bulk(total)).await;
    assert_eq!(stalled.events(1).await[0]["offset"], next["offset"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_behind_retention_is_closed_with_a_clear_code() {
    let server = TestServer::start_with(|c| {
        c.delivery.hub_capacity = 16;
        c.retention.max_events_per_stream = 100;
        c.retention.interval_secs = 1;
    })
    .await;
    let mut stalled = WsClient::connect_small_buffer(&server).await;
    stalled.subscribe(json!({"streams": ["bulk"]})).await;
    let published = publish_bulk(&server, 0, 5000).await;
    eventually("retention to prune", || async {
        let h = server.history("stream_id=bulk&limit=1").await;
        (h.first().and_then(|e| e["offset"].as_u64()) > Some(published[0] + 1000)).then_some(())
    })
    .await;

    // Reading now: whatever was already in flight, then a close frame with
    // the retention code, never a gap.
    let mut last = 0;
    loop {
        let msg = tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut stalled.ws))
            .await
            .expect("a message in time")
            .expect("a close frame before the stream ends")
            .expect("ws ok");
        match msg {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "EVENT_BROADCAST", "{v}");
                let o = v["event"]["offset"].as_u64().unwrap();
                assert!(o > last, "in order");
                if last > 0 {
                    assert_eq!(o, last + 1, "no gap before the close");
                }
                last = o;
            }
            tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4008, "{frame:?}");
                assert!(frame.reason.contains("retention"), "{frame:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(last < published[4999], "it could not have received everything");
}

const PROBE_ENV: &str = "STREAMBUS_IT_MEMORY_PROBE";

/// Runs [`memory_probe`] in a process of its own: `VmRSS` is per process, and
/// the other tests of this binary run (and allocate) concurrently.
#[test]
fn stalled_consumer_does_not_grow_server_memory() {
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", "slow::memory_probe", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, "1")
        .output()
        .expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "memory probe failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("VmRSS growth"), "the probe ran:\n{stdout}");
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

/// Only does its work when started by [`stalled_consumer_does_not_grow_server_memory`].
///
/// The bound: what the server may hold for a stalled subscriber is the ring
/// (64 deliveries of ~1.1 KiB, plus their encoded frames), one write batch in
/// the connection task (256 frames), and the log's tail buffer, which drops
/// each record once the hub has read it. Socket buffers live in the kernel,
/// not in `VmRSS`. Add SQLite's page cache (2 MiB per connection) and
/// allocator slack, and growth stays a few MiB; 30 MiB for ~55 MB published
/// fails any design that queues per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_probe() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    let server = TestServer::start_with(|c| c.delivery.hub_capacity = RING).await;
    let mut stalled = WsClient::connect_small_buffer(&server).await;
    stalled.subscribe(json!({"streams": ["bulk"]})).await;
    // Warm up: the stalled socket fills, caches and allocator arenas settle.
    publish_bulk(&server, 0, 5000).await;
    let before = vm_rss_kib();
    let n = 50_000;
    let published = publish_bulk(&server, 5000, n).await;
    assert_eq!(published.len(), n);
    let after = vm_rss_kib();
    let volume = n * bulk(0).to_string().len();
    let growth = after.saturating_sub(before);
    println!("VmRSS growth {growth} KiB ({before} -> {after}) while publishing {volume} bytes to a stalled subscriber");
    assert!(volume > 50_000_000);
    assert!(growth < 30 * 1024, "server memory grew {growth} KiB for {volume} bytes published");
    // The stalled subscriber was connected (and not reading) all along.
    drop(stalled);
}
