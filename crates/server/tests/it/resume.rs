//! Resume (SPEC §4, §3.1, §3.3): from an offset over WebSocket (`since`) and
//! SSE (`Last-Event-ID`, `?since=`), with publishes racing the catch-up;
//! across a restart; behind retention; and `rewind`.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::*;

fn tick(stream: &str, i: usize) -> Value {
    json!({"type": "tick", "stream_id": stream, "message": i.to_string()})
}

#[derive(Clone, Copy, Debug)]
enum Via {
    WsSince,
    SseLastEventId,
    SseSinceQuery,
}

/// Something that yields resumed events' offsets.
enum Resumed {
    Ws(WsClient),
    Sse(SseClient),
}

impl Resumed {
    async fn open(server: &TestServer, via: Via, since: u64) -> Self {
        let url = server.url("/api/v1/events/stream/live");
        match via {
            Via::WsSince => {
                let mut ws = WsClient::connect(server).await;
                let reply = ws
                    .subscribe(json!({"streams": ["live"], "since": since}))
                    .await;
                assert_eq!(reply["recovered"], true, "{reply}");
                Self::Ws(ws)
            }
            Via::SseLastEventId => {
                Self::Sse(SseClient::connect(&url, Some(&since.to_string())).await)
            }
            Via::SseSinceQuery => {
                Self::Sse(SseClient::connect(&format!("{url}?since={since}"), None).await)
            }
        }
    }

    async fn offsets(&mut self, n: usize) -> Vec<u64> {
        match self {
            Self::Ws(ws) => offsets(&ws.events(n).await),
            Self::Sse(sse) => sse
                .take(n)
                .await
                .iter()
                .map(|m| m.json()["offset"].as_u64().unwrap())
                .collect(),
        }
    }

    async fn quiet(&mut self) -> bool {
        match self {
            Self::Ws(ws) => ws.quiet_for(QUIET).await,
            Self::Sse(sse) => sse.quiet_for(QUIET).await,
        }
    }
}

/// Publishes 50 events, then resumes from the 20th while a concurrent task
/// keeps publishing (before, during and after the catch-up), and checks that
/// exactly the events after the resume point arrive, each once, in order.
/// A small `catchup_page` makes the catch-up span several storage reads.
async fn resume_has_no_gap_or_duplicate(via: Via) {
    let server = Arc::new(TestServer::start_with(|c| c.delivery.catchup_page = 8).await);
    let before: Vec<Value> = (0..50).map(|i| tick("live", i)).collect();
    let before = offsets(&server.publish_batch(&before).await);
    // Noise on another stream must not show up.
    server.publish(tick("elsewhere", 0)).await;
    let since = before[19];

    let (tx, mut rx) = mpsc::unbounded_channel();
    let publisher = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            for i in 0..120 {
                let e = server
                    .publish(tick(if i % 10 == 9 { "elsewhere" } else { "live" }, i))
                    .await;
                if e["stream_id"] == "live" {
                    let _ = tx.send(e["offset"].as_u64().unwrap());
                }
            }
        })
    };
    let mut racing = Vec::new();
    while racing.len() < 10 {
        racing.push(rx.recv().await.expect("publisher running"));
    }
    let mut resumed = Resumed::open(&server, via, since).await;
    if let Resumed::Sse(sse) = &resumed {
        assert_eq!(sse.status, 200);
        assert_eq!(sse.header("streambus-recovered"), "true");
    }
    publisher.await.unwrap();
    while let Ok(o) = rx.try_recv() {
        racing.push(o);
    }

    let mut want: Vec<u64> = before[20..].to_vec();
    want.extend(racing);
    let got = resumed.offsets(want.len()).await;
    assert_eq!(
        got, want,
        "{via:?}: exactly the events after {since}, each once, in order"
    );
    assert!(resumed.quiet().await, "{via:?}: nothing more");
    if let Resumed::Sse(sse) = &mut resumed {
        let first = sse.next_comment().await;
        assert!(
            first.starts_with("recovered=true"),
            "first comment: {first}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_resume_since_has_no_gap_or_duplicate() {
    resume_has_no_gap_or_duplicate(Via::WsSince).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resume_from_last_event_id_has_no_gap_or_duplicate() {
    resume_has_no_gap_or_duplicate(Via::SseLastEventId).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resume_from_since_query_has_no_gap_or_duplicate() {
    resume_has_no_gap_or_duplicate(Via::SseSinceQuery).await;
}

#[tokio::test]
async fn sse_reconnect_like_event_source_continues_where_it_stopped() {
    let server = TestServer::start().await;
    let url = server.url("/api/v1/events/stream/default");
    let mut first = SseClient::connect(&url, None).await;
    let stored = offsets(
        &server
            .publish_batch(&[tick("default", 0), tick("default", 1)])
            .await,
    );
    let seen = first.take(2).await;
    let last_id = seen[1].last_event_id.clone();
    drop(first);
    let later = offsets(
        &server
            .publish_batch(&[tick("default", 2), tick("default", 3)])
            .await,
    );
    // What a browser sends on reconnect: the last `id:` it saw.
    let mut again = SseClient::connect(&url, Some(&last_id)).await;
    assert_eq!(last_id, stored[1].to_string());
    let got: Vec<u64> = again
        .take(2)
        .await
        .iter()
        .map(|m| m.json()["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(got, later);
    assert!(again.quiet_for(QUIET).await);
}

#[tokio::test]
async fn resume_across_a_restart_yields_exactly_the_rest() {
    let server = TestServer::start().await;
    let dir = server.dir.clone();
    let events: Vec<Value> = (0..10).map(|i| tick("live", i)).collect();
    let stored = offsets(&server.publish_batch(&events).await);
    // Graceful stop; the returned guard keeps the data directory.
    let _data = server.stop().await;

    let server = TestServer::start_in(&dir, |_| {}).await;
    let mut ws = WsClient::connect(&server).await;
    let reply = ws
        .subscribe(json!({"streams": ["live"], "since": stored[4]}))
        .await;
    assert_eq!(reply["recovered"], true);
    assert_eq!(reply["offset"], stored[9], "the head survives the restart");
    let mut sse = SseClient::connect(
        &server.url("/api/v1/events/stream/live"),
        Some(&stored[4].to_string()),
    )
    .await;
    assert_eq!(offsets(&ws.events(5).await), stored[5..]);
    let sse_got: Vec<u64> = sse
        .take(5)
        .await
        .iter()
        .map(|m| m.json()["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(sse_got, stored[5..]);

    let next = server.publish(tick("live", 10)).await;
    let next = next["offset"].as_u64().unwrap();
    assert!(next > stored[9], "offsets keep increasing after a restart");
    assert_eq!(offsets(&ws.events(1).await), [next]);
    assert!(ws.quiet_for(QUIET).await);
    assert_eq!(server.history("").await.len(), 11);
}

#[tokio::test]
async fn resume_behind_retention_says_not_recovered() {
    let server = TestServer::start_with(|c| {
        c.retention.max_events_per_stream = 5;
        c.retention.interval_secs = 1;
    })
    .await;
    let events: Vec<Value> = (0..20).map(|i| tick("live", i)).collect();
    let stored = offsets(&server.publish_batch(&events).await);
    let kept = eventually("retention to prune the stream to 5 events", || async {
        let h = server.history("stream_id=live").await;
        (h.len() == 5).then_some(h)
    })
    .await;
    assert_eq!(offsets(&kept), stored[15..], "retention keeps the newest");

    let mut ws = WsClient::connect(&server).await;
    let reply = ws
        .subscribe(json!({"streams": ["live"], "since": stored[0]}))
        .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["earliest_offset"], stored[15], "{reply}");
    assert_eq!(
        offsets(&ws.events(5).await),
        stored[15..],
        "then what is still there"
    );

    let mut sse = SseClient::connect(
        &server.url(&format!("/api/v1/events/stream/live?since={}", stored[0])),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("streambus-recovered"), "false");
    let comment = sse.next_comment().await;
    assert!(comment.starts_with("recovered=false"), "{comment}");
    assert!(
        comment.contains(&format!("earliest={}", stored[15])),
        "{comment}"
    );

    // Resuming from inside what is kept is complete.
    let reply = WsClient::connect(&server)
        .await
        .subscribe(json!({"streams": ["live"], "since": stored[16]}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
}

#[tokio::test]
async fn rewind_starts_with_the_last_n_then_live_events() {
    let server = TestServer::start().await;
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"type": if i % 2 == 0 { "goal" } else { "card" }, "stream_id": "live", "message": i.to_string()}))
        .collect();
    let stored = server.publish_batch(&events).await;
    server.publish(tick("elsewhere", 0)).await;
    let all = offsets(&stored);

    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["live"], "rewind": 3}))
        .await;
    assert_eq!(offsets(&ws.events(3).await), all[7..]);

    let mut goals = WsClient::connect(&server).await;
    goals
        .subscribe(json!({"streams": ["live"], "eventTypes": ["goal"], "rewind": 2}))
        .await;
    let goal_offsets: Vec<u64> = stored
        .iter()
        .filter(|e| e["type"] == "goal")
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets(&goals.events(2).await), goal_offsets[3..]);

    let mut sse =
        SseClient::connect(&server.url("/api/v1/events/stream/live?rewind=4"), None).await;
    let got: Vec<u64> = sse
        .take(4)
        .await
        .iter()
        .map(|m| m.json()["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(got, all[6..]);

    let live = server
        .publish(json!({"type": "goal", "stream_id": "live"}))
        .await["offset"]
        .as_u64()
        .unwrap();
    assert_eq!(offsets(&ws.events(1).await), [live]);
    assert_eq!(offsets(&goals.events(1).await), [live]);
    assert_eq!(sse.next().await.json()["offset"], live);
    assert!(ws.quiet_for(QUIET).await);

    // More than there is: everything, then live.
    let mut many =
        SseClient::connect(&server.url("/api/v1/events/stream/live?rewind=1000"), None).await;
    assert_eq!(many.take(11).await.last().unwrap().json()["offset"], live);
    assert!(many.quiet_for(QUIET).await);
}
