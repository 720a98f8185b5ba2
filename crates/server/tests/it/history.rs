//! `GET /api/v1/events` and `/api/v1/events/history` (SPEC §3.2; seed 001's
//! history query): filters, time range, order, limit, cursor pagination, and
//! `GET /api/v1/events/{id}`.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::util::*;

fn messages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

async fn page(server: &TestServer, path: &str) -> (Vec<Value>, Option<String>) {
    let r = server.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    assert!(r.header("content-type").starts_with("application/json"));
    let data = r.body["data"].as_array().expect("data").clone();
    (data, r.body["next_cursor"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn filters_select_by_stream_type_class_and_source() {
    let server = TestServer::start().await;
    server
        .publish_batch(&[
            json!({"message": "a", "stream_id": "s1", "type": "goal", "class": "data", "source": "feed-a"}),
            json!({"message": "b", "stream_id": "s2", "type": "goal", "class": "alert", "source": "feed-b"}),
            json!({"message": "c", "stream_id": "s1", "type": "card", "class": "data", "source": "feed-b"}),
            json!({"message": "d", "stream_id": "s1", "type": "goal", "class": "animated", "source": "feed-a"}),
            json!({"message": "e", "stream_id": "s2", "type": "card", "class": "system", "source": "feed-a"}),
        ])
        .await;
    let cases = [
        ("stream_id=s1", vec!["a", "c", "d"]),
        ("stream=s2", vec!["b", "e"]),
        ("type=goal", vec!["a", "b", "d"]),
        ("event_type=card", vec!["c", "e"]),
        ("class=alert", vec!["b"]),
        ("class=system", vec!["e"]),
        ("source=feed-b", vec!["b", "c"]),
        ("stream_id=s1&type=goal&source=feed-a", vec!["a", "d"]),
        ("stream_id=s3", vec![]),
    ];
    for (query, want) in cases {
        for base in ["/api/v1/events", "/api/v1/events/history"] {
            let (data, _) = page(&server, &format!("{base}?order=asc&{query}")).await;
            assert_eq!(messages(&data), want, "{base}?{query}");
        }
    }
}

#[tokio::test]
async fn time_range_accepts_unix_seconds_and_rfc3339() {
    let server = TestServer::start().await;
    // 2024-01-01T00:00:00Z = 1704067200; one event per hour.
    let t0 = 1_704_067_200_i64;
    let events: Vec<Value> = (0..4)
        .map(|h| json!({"type": "t", "message": format!("h{h}"), "timestamp": t0 + h * 3600}))
        .collect();
    server.publish_batch(&events).await;
    let cases = [
        (format!("start_time={}", t0 + 3600), vec!["h1", "h2", "h3"]),
        (format!("end_time={}", t0 + 5400), vec!["h0", "h1"]),
        (
            format!("start_time={}&end_time={}", t0 + 3600, t0 + 9000),
            vec!["h1", "h2"],
        ),
        (
            "start_time=2024-01-01T01:00:00Z&end_time=2024-01-01T02:30:00Z".to_owned(),
            vec!["h1", "h2"],
        ),
        (
            "start_time=2024-01-01T02:00:00.000%2B01:00".to_owned(),
            vec!["h1", "h2", "h3"],
        ),
        ("start_time=2025-01-01T00:00:00Z".to_owned(), vec![]),
    ];
    for (query, want) in cases {
        let (data, _) = page(&server, &format!("/api/v1/events?order=asc&{query}")).await;
        assert_eq!(messages(&data), want, "{query}");
    }
    let (data, _) = page(&server, "/api/v1/events?order=asc&limit=1").await;
    assert_eq!(data[0]["time"], "2024-01-01T00:00:00.000Z");
    assert_eq!(data[0]["timestamp"], t0);
}

#[tokio::test]
async fn order_and_limit() {
    let server = TestServer::start().await;
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"type": "t", "message": format!("m{i}")}))
        .collect();
    let stored = offsets(&server.publish_batch(&events).await);

    let (asc, _) = page(&server, "/api/v1/events?order=asc").await;
    assert_eq!(offsets(&asc), stored);
    let (desc, _) = page(&server, "/api/v1/events?order=desc").await;
    let mut reversed = stored.clone();
    reversed.reverse();
    assert_eq!(offsets(&desc), reversed);
    let (newest, next) = page(&server, "/api/v1/events?order=desc&limit=2").await;
    assert_eq!(offsets(&newest), reversed[..2]);
    assert!(next.is_some(), "a full page has a next cursor");
    let (oldest, _) = page(&server, "/api/v1/events?order=asc&limit=2").await;
    assert_eq!(offsets(&oldest), stored[..2]);
    let (all, next) = page(&server, "/api/v1/events?order=asc&limit=1000").await;
    assert_eq!(all.len(), 5);
    assert_eq!(next, None, "a short page is the last");
}

async fn walk(server: &TestServer, query: &str) -> (Vec<u64>, Vec<usize>) {
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/events?{query}&cursor={c}"),
            None => format!("/api/v1/events?{query}"),
        };
        let (data, next) = page(server, &path).await;
        sizes.push(data.len());
        seen.extend(offsets(&data));
        match next {
            Some(c) => cursor = Some(c),
            None => return (seen, sizes),
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn cursor_pagination_visits_every_event_exactly_once() {
    let server = TestServer::start().await;
    // 25 on `s1` interleaved with 10 on `s2`.
    let events: Vec<Value> = (0..35)
        .map(|i| {
            let stream = if i % 7 < 5 { "s1" } else { "s2" };
            json!({"type": "t", "stream_id": stream, "message": i.to_string()})
        })
        .collect();
    let stored = server.publish_batch(&events).await;
    let s1: Vec<u64> = stored
        .iter()
        .filter(|e| e["stream_id"] == "s1")
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(s1.len(), 25);

    let (seen, sizes) = walk(&server, "stream_id=s1&order=asc&limit=7").await;
    assert_eq!(seen, s1, "every event once, in order");
    assert_eq!(sizes[..4], [7, 7, 7, 4]);

    let (seen, _) = walk(&server, "stream_id=s1&order=desc&limit=7").await;
    let mut rev = s1.clone();
    rev.reverse();
    assert_eq!(seen, rev);

    let (seen, _) = walk(&server, "order=asc&limit=7").await;
    assert_eq!(seen.len(), 35);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 35);
    assert_increasing(&seen);
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_the_field() {
    let server = TestServer::start().await;
    server.publish(json!({"type": "t"})).await;
    let cases = [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=1001", "limit"),
        ("cursor=abc", "cursor"),
        ("class=loud", "class"),
        ("start_time=yesterday", "start_time"),
        ("end_time=2024-13-01T00:00:00Z", "end_time"),
        ("order=sideways", "order"),
        ("stream_id=Bad%20Name", "stream_id"),
        ("type=a%20b", "type"),
    ];
    for (query, field) in cases {
        for base in ["/api/v1/events", "/api/v1/events/history"] {
            let r = server.get(&format!("{base}?{query}")).await;
            assert_problem(&r, 400, Some(field));
        }
    }
    assert_eq!(server.history("").await.len(), 1);
}

#[tokio::test]
async fn unknown_query_parameter_is_400() {
    let server = TestServer::start().await;
    let r = server.get("/api/v1/events?colour=red").await;
    assert_problem(&r, 400, None);
    assert!(
        r.body["detail"].as_str().unwrap().contains("colour"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn unknown_query_parameter_problem_names_the_field() {
    let server = TestServer::start().await;
    let r = server.get("/api/v1/events?colour=red").await;
    assert_problem(&r, 400, Some("colour"));
}

#[tokio::test]
async fn get_event_by_id() {
    let server = TestServer::start().await;
    let stored = server
        .publish(json!({"type": "t", "message": "find me"}))
        .await;
    let id = stored["id"].as_str().unwrap();
    let r = server.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, stored);
    let r = server.get("/api/v1/events/evt_nope").await;
    assert_problem(&r, 404, None);
    assert!(r.body["detail"].as_str().unwrap().contains("evt_nope"));
    let r = server.get("/api/v1/events/has%20space").await;
    assert_problem(&r, 400, Some("id"));
}
