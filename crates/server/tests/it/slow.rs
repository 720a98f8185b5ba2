//! Slow consumers (SPEC §4, STYLE §7): a connection that stops reading never
//! slows the others and never grows the server's memory; it falls back to
//! catching up from storage, and is closed with a clear code only when it
//! falls behind retention.
//!
//! The stalled client has a 4 KiB socket receive buffer and never reads, so
//! the server's writes to it block after a few KiB (plus the server's own
//! send buffer, at most `tcp_wmem` max = 4 MiB on Linux). Each test publishes
//! several times what those buffers hold, so the stalled connection is
//! overrun by the ring and must catch up from storage.

use serde_json::{Value, json};

use crate::util::*;

/// The ring size the slow-consumer tests run with.
const RING: usize = 64;

fn bulk(i: usize) -> Value {
    json!({"type": "bulk", "stream_id": "bulk", "message": i.to_string(), "data": {"pad": "x".repeat(3000)}})
}

/// Publishes `total` ~3 KiB events to `bulk` in batches of 250 (a batch stays
/// under the 1 MiB body limit) and returns their offsets.
async fn publish_bulk(server: &TestServer, from: usize, total: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(total);
    for start in (from..from + total).step_by(250) {
        let batch: Vec<Value> = (start..(start + 250).min(from + total)).map(bulk).collect();
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
        fast_sse
            .take(total)
            .await
            .iter()
            .map(|m| m.json()["offset"].as_u64().unwrap())
            .collect::<Vec<_>>()
    });
    let published = publish_bulk(&server, 0, total).await;
    // The fast consumers get everything, in order, while the stalled one
    // has not read a single event.
    assert_eq!(
        fast_reader.await.unwrap(),
        published,
        "fast WebSocket consumer"
    );
    assert_eq!(sse_reader.await.unwrap(), published, "fast SSE consumer");

    // Now the stalled one reads: every event exactly once, in order (the
    // ring overran it long ago, so most of these came from storage).
    assert_eq!(
        offsets(&stalled.events(total).await),
        published,
        "stalled consumer"
    );
    assert!(stalled.quiet_for(QUIET).await, "no duplicate");
    // And it is live again.
    let next = server.publish(bulk(total)).await;
    assert_eq!(stalled.events(1).await[0]["offset"], next["offset"]);
}

/// A live consumer that stalls while a ring of 16 is overrun, and whose
/// position retention then removes, is closed with 4008 after whatever was
/// already in flight — never resumed over a gap.
///
/// Published one ~60 KiB event per request, so the connection keeps up with
/// the ring (it is live, not catching up) until its socket blocks after a
/// few MB; the 130+ events published after that overrun the ring, and
/// retention (50 per stream) removes its position before it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_behind_retention_is_closed_with_a_clear_code() {
    let server = TestServer::start_with(|c| {
        c.delivery.hub_capacity = 16;
        c.retention.max_events_per_stream = 50;
        c.retention.interval_secs = 1;
    })
    .await;
    let mut stalled = WsClient::connect_small_buffer(&server).await;
    stalled.subscribe(json!({"streams": ["bulk"]})).await;
    let mut published = Vec::new();
    for i in 0..200 {
        published.push(server.publish(huge(i)).await["offset"].as_u64().unwrap());
    }
    eventually("retention to prune all but the newest 50", || async {
        let r = server
            .get("/api/v1/events?stream_id=bulk&order=asc&limit=1")
            .await;
        (r.body["data"][0]["offset"].as_u64() == Some(published[150])).then_some(())
    })
    .await;

    let mut got: Vec<u64> = Vec::new();
    let close = loop {
        let msg = tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut stalled.ws))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no close after {} events, the last {:?}",
                    got.len(),
                    got.last()
                )
            })
            .expect("a close frame before the stream ends")
            .expect("ws ok");
        match msg {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "EVENT_BROADCAST", "{v}");
                got.push(v["event"]["offset"].as_u64().unwrap());
            }
            tokio_tungstenite::tungstenite::Message::Close(frame) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_same_offsets(
        &got,
        &published[..got.len()],
        "what was in flight before the close",
    );
    assert!(
        got.len() < 150,
        "it was behind retention: {} events",
        got.len()
    );
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 4008, "{frame:?}");
    assert!(frame.reason.contains("retention"), "{frame:?}");
}

const PROBE_ENV: &str = "STREAMBUS_IT_MEMORY_PROBE";

/// Runs [`memory_probe`] twice, each in a process of its own (`VmRSS` is per
/// process, and the other tests of this binary allocate concurrently): once
/// with a stalled subscriber and once with no subscriber at all, publishing
/// the same ~50 MB. The difference is what the stalled subscriber costs.
///
/// Why a comparison and not an absolute bound: the store's SQLite writer has
/// a page cache of up to 64 MiB, which fills while this much data is written
/// whether or not anyone subscribes; that is bounded and not the consumer's
/// doing. What must not happen is memory that grows with what the stalled
/// consumer has not read. What the server may hold for it is the ring (64
/// deliveries of ~8 KiB plus their encoded frames, ~1.5 MiB), one write
/// batch in its connection task, and the log's tail buffer, which drops each
/// record once the hub has read it; its socket buffers live in the kernel,
/// not in `VmRSS`. So the difference stays a few MiB, and a bound of 16 MiB
/// for ~50 MB published fails any design that queues per connection.
#[test]
fn stalled_consumer_does_not_grow_server_memory() {
    let exe = std::env::current_exe().expect("test binary");
    let spawn = |mode: &str| {
        std::process::Command::new(&exe)
            .args([
                "--exact",
                "slow::memory_probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, mode)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the probe")
    };
    let (stalled, control) = (spawn("stalled"), spawn("none"));
    let growth = |child: std::process::Child| {
        let out = child.wait_with_output().expect("probe output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "memory probe failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kib: i64 = stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("growth_kib="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("the probe reports its growth:\n{stdout}"));
        kib
    };
    let (stalled, control) = (growth(stalled), growth(control));
    println!("VmRSS growth: {stalled} KiB with a stalled subscriber, {control} KiB with none");
    assert!(
        stalled - control < 16 * 1024,
        "a stalled subscriber cost {} KiB of server memory for ~50 MB published",
        stalled - control
    );
}

fn vm_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value")
}

/// ~8 KiB events: the volume that matters, at a fraction of the per-event
/// cost of a debug build.
fn big(i: usize) -> Value {
    json!({"type": "bulk", "stream_id": "bulk", "message": i.to_string(), "data": {"pad": "x".repeat(8000)}})
}

/// Only does its work when started by [`stalled_consumer_does_not_grow_server_memory`];
/// prints `growth_kib=N`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_probe() {
    let Some(mode) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    let server = TestServer::start_with(|c| c.delivery.hub_capacity = RING).await;
    let mut stalled = None;
    if mode == "stalled" {
        let mut ws = WsClient::connect_small_buffer(&server).await;
        ws.subscribe(json!({"streams": ["bulk"]})).await;
        stalled = Some(ws);
    }
    // One body of 120 events (under the 1 MiB limit), encoded once and sent
    // again and again: the server still stores 120 new events each time.
    let body = bytes::Bytes::from(Value::from((0..120).map(big).collect::<Vec<_>>()).to_string());
    let publish = |batches: usize| {
        let (server, body) = (&server, body.clone());
        async move {
            for _ in 0..batches {
                let r = server
                    .post_raw("/api/v1/events", Some("application/json"), body.clone())
                    .await;
                assert_eq!(r.status, 200);
            }
        }
    };
    // Warm up: the stalled socket fills, the runtime and allocator settle.
    publish(5).await;
    let before = vm_rss_kib();
    let n = 54 * 120;
    publish(54).await;
    let after = vm_rss_kib();
    let volume = n * big(0).to_string().len();
    assert!(volume > 50_000_000);
    println!(
        "growth_kib={} before_kib={before} after_kib={after} published_bytes={volume}",
        after - before
    );
    // The stalled subscriber stayed connected, not reading, all along.
    drop(stalled);
}

/// ~60 KiB events: a few of them fill any socket buffer.
fn huge(i: usize) -> Value {
    json!({"type": "huge", "stream_id": "bulk", "message": i.to_string(), "data": {"pad": "x".repeat(60_000)}})
}

async fn publish_huge(server: &TestServer, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for start in (0..n).step_by(16) {
        let batch: Vec<Value> = (start..(start + 16).min(n)).map(huge).collect();
        out.extend(offsets(&server.publish_batch(&batch).await));
    }
    out
}

/// A consumer resuming from storage stalls in the middle of its catch-up
/// (one page of 50 ~60 KiB events is more than the socket buffers hold);
/// retention then removes the events its next page would read. When it reads
/// again it must get every event in order up to where it can, then a close
/// with the retention code — never a silent jump over what retention removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_overtaken_by_retention_is_closed_not_gapped() {
    let server = TestServer::start_with(|c| {
        c.delivery.catchup_page = 50;
        c.retention.max_events_per_stream = 100;
        c.retention.interval_secs = 1;
    })
    .await;
    let first = publish_huge(&server, 100).await;
    let mut stalled = WsClient::connect_small_buffer(&server).await;
    let reply = stalled
        .subscribe(json!({"streams": ["bulk"], "since": 0}))
        .await;
    assert_eq!(reply["recovered"], true, "nothing was pruned yet: {reply}");
    let more = publish_huge(&server, 150).await;
    let pruned_through = more[49];
    eventually("retention to prune the first 150 events", || async {
        let r = server
            .get("/api/v1/events?stream_id=bulk&order=asc&limit=1")
            .await;
        (r.body["data"][0]["offset"].as_u64() > Some(pruned_through)).then_some(())
    })
    .await;

    let mut got = Vec::new();
    let close = loop {
        let msg = tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut stalled.ws))
            .await
            .expect("a message in time")
            .expect("a close frame before the stream ends")
            .expect("ws ok");
        match msg {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                got.push(v["event"]["offset"].as_u64().expect("an event"));
                let n = got.len();
                assert!(
                    n == 1 || got[n - 1] == got[n - 2] + 1,
                    "jumped from {} to {} over events retention removed, without closing",
                    got[n - 2],
                    got[n - 1]
                );
            }
            tokio_tungstenite::tungstenite::Message::Close(frame) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(got.first(), Some(&first[0]));
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 4008, "{frame:?}");
}
