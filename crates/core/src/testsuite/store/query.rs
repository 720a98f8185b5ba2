//! Query checks: filters, time range, cursor pagination in both orders.

use serde_json::json;

use super::{all, append, ev, offsets};
use crate::event::EventClass;
use crate::store::{EventQuery, EventStore};
use crate::testsuite::{fresh_tenant, new_event};

/// Stream, type, class and source filters, alone and combined.
pub async fn query_filters_match(store: &dyn EventStore) {
    let t = fresh_tenant("filter");
    let mk = |s: &str, ty: &str, class: &str, source: &str| {
        new_event(json!({"stream_id": s, "type": ty, "class": class, "source": source}))
    };
    let out = append(
        store,
        &t,
        vec![
            mk("a", "x", "data", "s1"),
            mk("b", "y", "alert", "s2"),
            mk("c", "x", "alert", "s1"),
            mk("a", "y", "data", "s2"),
            mk("b", "x", "data", "s1"),
        ],
    )
    .await;
    let off = |i: &[usize]| {
        i.iter()
            .map(|&i| out[i].record.offset())
            .collect::<Vec<_>>()
    };
    let cases = [
        (
            EventQuery {
                streams: Some(vec!["a".into(), "b".into()]),
                ..Default::default()
            },
            off(&[0, 1, 3, 4]),
        ),
        (
            EventQuery {
                streams: Some(vec![]),
                ..Default::default()
            },
            vec![],
        ),
        (
            EventQuery {
                event_type: Some("x".into()),
                ..Default::default()
            },
            off(&[0, 2, 4]),
        ),
        (
            EventQuery {
                class: Some(EventClass::Alert),
                ..Default::default()
            },
            off(&[1, 2]),
        ),
        (
            EventQuery {
                source: Some("s2".into()),
                ..Default::default()
            },
            off(&[1, 3]),
        ),
        (
            EventQuery {
                streams: Some(vec!["a".into(), "c".into()]),
                event_type: Some("x".into()),
                source: Some("s1".into()),
                ..Default::default()
            },
            off(&[0, 2]),
        ),
        (
            EventQuery {
                class: Some(EventClass::System),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (q, want) in cases {
        assert_eq!(offsets(&all(store, &t, q.clone()).await), want, "{q:?}");
    }
}

/// The time range is on event time: start inclusive, end exclusive.
pub async fn query_time_range_is_start_inclusive_end_exclusive(store: &dyn EventStore) {
    let t = fresh_tenant("time");
    let base = 1_700_000_000_000i64;
    let events = (0..5)
        .map(|i| {
            let time = crate::time::rfc3339_ms(base + i * 1000);
            new_event(json!({"stream_id": "s", "type": "x", "time": time}))
        })
        .collect();
    let out = append(store, &t, events).await;
    let q = EventQuery {
        start_ms: Some(base + 1000),
        end_ms: Some(base + 3000),
        ..Default::default()
    };
    let want = vec![out[1].record.offset(), out[2].record.offset()];
    assert_eq!(offsets(&all(store, &t, q).await), want);
    let q = EventQuery {
        start_ms: Some(base + 3500),
        ..Default::default()
    };
    assert_eq!(
        offsets(&all(store, &t, q).await),
        vec![out[4].record.offset()]
    );
    let q = EventQuery {
        end_ms: Some(base),
        ..Default::default()
    };
    assert!(all(store, &t, q).await.is_empty());
}

/// Cursor pagination in both orders visits every matching record exactly once,
/// in order, for one stream, a few streams, many streams and all streams; a
/// short page has no next cursor.
pub async fn pagination_visits_every_record_once(store: &dyn EventStore) {
    let t = fresh_tenant("page");
    let (mut in_s, mut every) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let out = append(
            store,
            &t,
            (0..10)
                .map(|i| ev(if i % 3 == 0 { "other" } else { "s" }, "x"))
                .collect(),
        )
        .await;
        in_s.extend(
            out.iter()
                .filter(|a| a.record.event.stream_id == "s")
                .map(|a| a.record.offset()),
        );
        every.extend(out.iter().map(|a| a.record.offset()));
    }
    let mut many: Vec<String> = (0..40).map(|i| format!("absent-{i}")).collect();
    many.push("s".into());
    let scopes = [
        (Some(vec!["s".to_owned()]), &in_s),
        (
            Some(vec!["other".to_owned(), "s".to_owned(), "s".to_owned()]),
            &every,
        ),
        (Some(many), &in_s),
        (None, &every),
    ];
    for (streams, want) in scopes {
        for descending in [false, true] {
            for limit in [1, 4, 5, 100] {
                let mut q = EventQuery {
                    streams: streams.clone(),
                    descending,
                    limit,
                    ..Default::default()
                };
                let mut seen = Vec::new();
                for _ in 0..=want.len() + 1 {
                    let page = store.query(&t, &q).await.expect("query");
                    assert!(page.records.len() <= limit);
                    seen.extend(offsets(&page.records));
                    if page.records.len() < limit {
                        assert_eq!(page.next_cursor, None, "a short page ends the walk");
                    }
                    match page.next_cursor {
                        Some(c) => q.cursor = Some(c),
                        None => break,
                    }
                }
                let mut expected = want.clone();
                if descending {
                    expected.reverse();
                }
                let n = streams.as_ref().map(Vec::len);
                assert_eq!(
                    seen, expected,
                    "streams={n:?} descending={descending} limit={limit}"
                );
            }
        }
    }
}
