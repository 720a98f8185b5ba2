//! Several `JetStreamLog` nodes on one JetStream stream, each with its own store.

use std::sync::Arc;

use streambus_core::store::EventQuery;
use streambus_core::testsuite::fresh_tenant;
use streambus_core::{EventLog, Record};

use crate::util::{Node, cluster_or_skip, event, events, next, quiet};

/// Every record of `tenant` in `node`'s store, by offset.
async fn history(node: &Node, tenant: &str) -> Vec<Arc<Record>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let query = EventQuery {
            cursor,
            limit: 500,
            ..Default::default()
        };
        let page = node.log.read(tenant, &query).await.expect("read");
        out.extend(page.records);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_every_node_in_the_same_order() {
    let cluster = cluster_or_skip!();
    let (a, b) = (cluster.node().await, cluster.node().await);
    let tenant = fresh_tenant("fan");
    let (mut tail_a, mut tail_b) = (a.log.tail(), b.log.tail());

    // Both nodes publish at once; JetStream orders them.
    let (ra, rb) = tokio::join!(
        async {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.extend(
                    a.log
                        .append(&tenant, events("s", 4))
                        .await
                        .expect("append a"),
                );
            }
            out
        },
        async {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.extend(
                    b.log
                        .append(&tenant, events("t", 4))
                        .await
                        .expect("append b"),
                );
            }
            out
        },
    );
    assert_eq!(ra.len() + rb.len(), 40);

    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..40 {
        seen_a.push(next(&mut tail_a).await);
        seen_b.push(next(&mut tail_b).await);
    }
    assert!(quiet(&mut tail_a).await && quiet(&mut tail_b).await);
    let key = |v: &[Arc<Record>]| -> Vec<(u64, String)> {
        v.iter().map(|r| (r.offset(), r.event.id.clone())).collect()
    };
    assert_eq!(
        key(&seen_a),
        key(&seen_b),
        "same records, same order, same offsets"
    );
    assert!(seen_a.windows(2).all(|w| w[0].offset() < w[1].offset()));
    let mut acked: Vec<(u64, String)> = ra
        .iter()
        .chain(&rb)
        .map(|x| (x.record.offset(), x.record.event.id.clone()))
        .collect();
    acked.sort();
    assert_eq!(
        key(&seen_a),
        acked,
        "the tail yields what the appends acknowledged"
    );

    // What a node's tail yielded, its own history has.
    assert_eq!(key(&history(&a, &tenant).await), acked);
    assert_eq!(key(&history(&b, &tenant).await), acked);
    assert_eq!(
        a.log.head().await.expect("head"),
        b.log.head().await.expect("head")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_supplied_id_across_nodes_is_stored_once() {
    let cluster = cluster_or_skip!();
    let (a, b) = (cluster.node().await, cluster.node().await);
    let tenant = fresh_tenant("race");
    let mut tail_b = b.log.tail();

    for i in 0..10 {
        let id = format!("pay-{i}");
        let (ra, rb) = tokio::join!(
            a.log.append(&tenant, vec![event("s", "from_a", Some(&id))]),
            b.log.append(&tenant, vec![event("s", "from_b", Some(&id))]),
        );
        let (ra, rb) = (ra.expect("append a"), rb.expect("append b"));
        assert_eq!(ra[0].record.offset(), rb[0].record.offset(), "{id}");
        assert_eq!(
            ra[0].record.json, rb[0].record.json,
            "{id}: both return the winner"
        );
        assert_eq!(
            u8::from(ra[0].duplicate) + u8::from(rb[0].duplicate),
            1,
            "{id}: exactly one call is the duplicate"
        );
    }

    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(next(&mut tail_b).await.event.id.clone());
    }
    assert!(quiet(&mut tail_b).await, "one record per id");
    assert_eq!(ids, (0..10).map(|i| format!("pay-{i}")).collect::<Vec<_>>());
    assert_eq!(history(&a, &tenant).await.len(), 10);
    assert_eq!(history(&b, &tenant).await.len(), 10);
    let mut stream = cluster
        .jetstream()
        .await
        .get_stream(&cluster.opts.stream)
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 10);
}

#[tokio::test]
async fn late_node_catches_up_from_its_store_head() {
    let cluster = cluster_or_skip!();
    let a = cluster.node().await;
    let tenant = fresh_tenant("late");
    for _ in 0..4 {
        a.log
            .append(&tenant, events("s", 25))
            .await
            .expect("append");
    }

    // A fresh node indexes everything before it, then tails what comes next.
    let c = cluster.node().await;
    c.wait_head(100).await;
    assert_eq!(history(&c, &tenant).await.len(), 100);
    let mut tail = c.log.tail();
    let more = a.log.append(&tenant, events("s", 1)).await.expect("append");
    assert_eq!(more[0].record.offset(), 101);
    assert_eq!(next(&mut tail).await.offset(), 101);
    assert!(quiet(&mut tail).await);
    c.wait_head(101).await;

    // Restarted on the same store, it resumes after its head, not from the start.
    let dir = c.shut_down().await;
    a.log.append(&tenant, events("s", 5)).await.expect("append");
    let c = cluster.node_in(dir).await;
    assert!(c.log.head().await.expect("head") >= 101);
    let mut tail = c.log.tail();
    c.wait_head(106).await;
    let extra = a.log.append(&tenant, events("s", 1)).await.expect("append");
    assert_eq!(extra[0].record.offset(), 107);
    loop {
        let r = next(&mut tail).await;
        assert!(
            r.offset() > 101,
            "offset {} was indexed before the restart",
            r.offset()
        );
        if r.offset() == 107 {
            break;
        }
    }
    let all = history(&c, &tenant).await;
    assert_eq!(all.len(), 107);
    assert!(all.windows(2).all(|w| w[0].offset() + 1 == w[1].offset()));
}
