//! One `JetStreamLog` node: offsets, live tail, idempotency, subject escaping.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use futures_util::StreamExt;
use streambus_core::EventLog;
use streambus_core::log::LogError;
use streambus_core::store::EventQuery;
use streambus_core::testsuite::fresh_tenant;
use streambus_log::subject;

use crate::util::{cluster_or_skip, event, events, next, quiet};

fn all(limit: usize) -> EventQuery {
    EventQuery {
        limit,
        ..Default::default()
    }
}

#[tokio::test]
async fn offsets_are_jetstream_sequences_and_tail_yields_each_once() {
    let cluster = cluster_or_skip!();
    let node = cluster.node().await;
    let tenant = fresh_tenant("one");
    let mut tail = node.log.tail();

    let mut acked = node
        .log
        .append(&tenant, events("s", 5))
        .await
        .expect("append");
    acked.extend(
        node.log
            .append(&tenant, events("s.x", 3))
            .await
            .expect("append"),
    );
    let offsets: Vec<u64> = acked.iter().map(|a| a.record.offset()).collect();
    assert!(acked.iter().all(|a| !a.duplicate));
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert_eq!(
        offsets,
        (1..=8).collect::<Vec<u64>>(),
        "fresh stream numbers from 1"
    );

    // The offset is the JetStream sequence of the same event.
    let js = cluster.jetstream().await;
    let stream = js.get_stream(&cluster.opts.stream).await.expect("stream");
    for a in &acked {
        let msg = stream
            .get_raw_message(a.record.offset())
            .await
            .expect("get");
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("json");
        assert_eq!(v["id"], a.record.event.id.as_str());
        assert!(
            v.get("offset").is_none(),
            "the payload is the body without offset"
        );
    }
    let mut stream = stream;
    assert_eq!(stream.info().await.expect("info").state.last_sequence, 8);

    for a in &acked {
        let r = next(&mut tail).await;
        assert_eq!(r.offset(), a.record.offset());
        assert_eq!(r.event.id, a.record.event.id);
        assert_eq!(r.json, a.record.json);
    }
    assert!(quiet(&mut tail).await, "the tail yields each record once");

    // `append` returned after indexing: head and read already cover it.
    assert_eq!(node.log.head().await.expect("head"), 8);
    let page = node.log.read(&tenant, &all(100)).await.expect("read");
    let read: Vec<u64> = page.records.iter().map(|r| r.offset()).collect();
    assert_eq!(read, offsets);
    assert!(node.log.indexer_status().is_healthy());
    assert_eq!(node.log.indexer_lag().await.expect("lag"), 0);
    node.log.ping().await.expect("ping");

    node.log.close().await;
    assert!(matches!(tail.next().await, Err(LogError::Closed)));
    assert!(!node.log.indexer_status().running);
}

#[tokio::test]
async fn supplied_id_is_stored_once_on_one_node() {
    let cluster = cluster_or_skip!();
    let node = cluster.node().await;
    let tenant = fresh_tenant("idem");
    let mut tail = node.log.tail();

    let first = node
        .log
        .append(&tenant, vec![event("s", "t", Some("order-1"))])
        .await
        .expect("append");
    assert!(!first[0].duplicate);
    // Again: found in the store, nothing published.
    let again = node
        .log
        .append(&tenant, vec![event("s", "t", Some("order-1"))])
        .await
        .expect("append");
    assert!(again[0].duplicate);
    assert_eq!(again[0].record.offset(), first[0].record.offset());
    assert_eq!(again[0].record.json, first[0].record.json);

    // Twice in one batch: JetStream de-duplicates the second; the original comes back.
    let batch = node
        .log
        .append(
            &tenant,
            vec![
                event("s", "t", Some("order-2")),
                event("s", "u", Some("order-2")),
            ],
        )
        .await
        .expect("append");
    assert!(!batch[0].duplicate);
    assert!(batch[1].duplicate);
    assert_eq!(batch[1].record.offset(), batch[0].record.offset());
    assert_eq!(
        batch[1].record.event.event_type, "t",
        "the original, not the retry"
    );

    // The same id in another tenant is another event.
    let other = fresh_tenant("idem");
    let elsewhere = node
        .log
        .append(&other, vec![event("s", "t", Some("order-1"))])
        .await
        .expect("append");
    assert!(!elsewhere[0].duplicate);

    let ids: Vec<String> = [
        next(&mut tail).await,
        next(&mut tail).await,
        next(&mut tail).await,
    ]
    .iter()
    .map(|r| format!("{}/{}", r.tenant == tenant, r.event.id))
    .collect();
    assert_eq!(ids, ["true/order-1", "true/order-2", "false/order-1"]);
    assert!(quiet(&mut tail).await);
    let page = node.log.read(&tenant, &all(100)).await.expect("read");
    assert_eq!(page.records.len(), 2);
}

#[tokio::test]
async fn dotted_names_land_on_distinct_subjects() {
    // SPEC §7: stream `a` + type `b.c` must not share a subject with stream
    // `a.b` + type `c`, and a filter on one must not read the other.
    let cluster = cluster_or_skip!();
    let node = cluster.node().await;
    let tenant = fresh_tenant("esc");
    let acked = node
        .log
        .append(
            &tenant,
            vec![event("a", "b.c", None), event("a.b", "c", None)],
        )
        .await
        .expect("append");

    let js = cluster.jetstream().await;
    let stream = js.get_stream(&cluster.opts.stream).await.expect("stream");
    let one = stream
        .get_raw_message(acked[0].record.offset())
        .await
        .expect("get");
    let two = stream
        .get_raw_message(acked[1].record.offset())
        .await
        .expect("get");
    assert_ne!(one.subject, two.subject);
    let prefix = &cluster.opts.subject_prefix;
    assert_eq!(
        one.subject.as_str(),
        subject::event_subject(prefix, &tenant, "a", "b.c")
    );
    assert_eq!(
        two.subject.as_str(),
        subject::event_subject(prefix, &tenant, "a.b", "c")
    );

    for (stream_name, want) in [("a", &acked[0]), ("a.b", &acked[1])] {
        let filter = subject::stream_filter(prefix, &tenant, stream_name);
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.clone(),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut seen = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(500), messages.next()).await
        {
            seen.push(m.expect("message").info().expect("info").stream_sequence);
        }
        assert_eq!(seen, [want.record.offset()], "filter {filter}");
    }

    let query = EventQuery {
        streams: Some(vec!["a".into()]),
        ..all(10)
    };
    let page = node.log.read(&tenant, &query).await.expect("read");
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].event.event_type, "b.c");
}

#[tokio::test]
async fn foreign_messages_are_skipped() {
    let cluster = cluster_or_skip!();
    let node = cluster.node().await;
    let tenant = fresh_tenant("junk");
    let mut tail = node.log.tail();
    let js = cluster.jetstream().await;
    let prefix = &cluster.opts.subject_prefix;
    for (subject, payload) in [
        (
            subject::event_subject(prefix, &tenant, "s", "t"),
            "not json",
        ),
        (format!("{prefix}.too.few"), "{}"),
    ] {
        js.publish(subject, payload.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let acked = node
        .log
        .append(&tenant, vec![event("s", "t", None)])
        .await
        .expect("append");
    assert_eq!(acked[0].record.offset(), 3);
    assert_eq!(next(&mut tail).await.offset(), 3);
    assert_eq!(
        node.log.head().await.expect("head"),
        3,
        "the watermark passes skipped messages"
    );
}

#[tokio::test]
async fn store_ahead_of_the_stream_refuses_to_start() {
    // History kept but the JetStream stream replaced: new sequences would reuse
    // stored offsets.
    let cluster = cluster_or_skip!();
    let node = cluster.node().await;
    let tenant = fresh_tenant("div");
    node.log
        .append(&tenant, events("s", 3))
        .await
        .expect("append");
    let dir = node.shut_down().await;
    cluster
        .jetstream()
        .await
        .delete_stream(&cluster.opts.stream)
        .await
        .expect("delete stream");
    let store = streambus_store::SqliteStore::open(streambus_store::SqliteOptions::new(dir.path()))
        .await
        .expect("open store");
    let r = streambus_log::JetStreamLog::connect(cluster.opts.clone(), std::sync::Arc::new(store))
        .await;
    let Err(LogError::Unavailable(e)) = r else {
        panic!("expected Unavailable, got {:?}", r.err());
    };
    assert!(e.to_string().contains("ahead"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_span_publish_windows_in_order() {
    let cluster = cluster_or_skip!();
    let node = cluster.node().await;
    let tenant = fresh_tenant("big");
    let mut tail = node.log.tail();
    // Two concurrent appends of several publish windows each.
    let (x, y) = tokio::join!(
        node.log.append(&tenant, events("x", 2500)),
        node.log.append(&tenant, events("y", 2500)),
    );
    for acked in [x.expect("append x"), y.expect("append y")] {
        assert_eq!(acked.len(), 2500);
        assert!(
            acked
                .windows(2)
                .all(|w| w[0].record.offset() < w[1].record.offset())
        );
    }
    for want in 1..=5000 {
        assert_eq!(next(&mut tail).await.offset(), want);
    }
    assert_eq!(node.log.head().await.expect("head"), 5000);
}
