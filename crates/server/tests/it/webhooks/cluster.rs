//! Three nodes sharing PostgreSQL and NATS JetStream: every node folds the
//! whole log into deliveries, yet each event is delivered once per webhook
//! and each attempt is made by one node.
//!
//! Needs `STREAMBUS_TEST_POSTGRES_URL` and `STREAMBUS_TEST_NATS_URL` (else
//! it prints `skipping` and passes). The test works in its own schema and
//! JetStream stream and removes both at the end.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::*;

/// The engines, or `None` (after saying so) when the variables are unset.
fn engines() -> Option<(String, String)> {
    let pg = std::env::var("STREAMBUS_TEST_POSTGRES_URL").ok();
    let nats = std::env::var("STREAMBUS_TEST_NATS_URL").ok();
    match (pg, nats) {
        (Some(pg), Some(nats)) if !pg.is_empty() && !nats.is_empty() => Some((pg, nats)),
        _ => {
            assert!(
                std::env::var("STREAMBUS_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "STREAMBUS_TEST_POSTGRES_URL and STREAMBUS_TEST_NATS_URL are required"
            );
            eprintln!("skipping: STREAMBUS_TEST_POSTGRES_URL or STREAMBUS_TEST_NATS_URL not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_deliver_each_event_once_per_webhook() {
    let Some((pg, nats)) = engines() else {
        return;
    };
    let tag = format!(
        "{:016x}",
        streambus_core::name::fnv1a(format!("{}-{}", std::process::id(), now_ms_test()).as_bytes(),)
    );
    let (schema, stream) = (format!("sbt_wh_{tag}"), format!("SBT_WH_{tag}"));
    let _cleanup = Cleanup {
        pg: pg.clone(),
        nats: nats.clone(),
        schema: schema.clone(),
        stream: stream.clone(),
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let (pg, nats, schema, stream, tag) = (
            pg.clone(),
            nats.clone(),
            schema.clone(),
            stream.clone(),
            tag.clone(),
        );
        nodes.push(
            TestServer::start_with(move |c| {
                fast_retries(c);
                c.cluster.postgres_url = Some(pg);
                c.cluster.nats_url = Some(nats);
                c.cluster.postgres_schema = schema;
                c.cluster.stream = stream;
                c.cluster.subject_prefix = format!("sbtwh{tag}");
                c.cluster.postgres_max_connections = 4;
            })
            .await,
        );
    }
    // Every delivery fails once: its retry may be any node's.
    let receiver = Receiver::with_policy(|attempt| if attempt == 1 { 500 } else { 200 }).await;
    let body = json!({"id": "all", "url": receiver.url, "secret": SECRET,
                      "filter": {"streams": ["orders"]}});
    create(&nodes[0], body.clone()).await;
    // Replacing it unchanged on the other nodes makes them reload at once
    // (instead of within `fold::RELOAD`), so every node stores every
    // delivery: the store must keep each once.
    for node in &nodes[1..] {
        let r = node.put_json("/api/v1/webhooks/all", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    let mut events = Vec::new();
    for i in 0..12 {
        events.push(publish(&nodes[i % 3], "orders", "order.paid").await);
        publish(&nodes[(i + 1) % 3], "elsewhere", "order.paid").await;
    }
    let log = wait_deliveries(&nodes[2], "all", 12, "delivered").await;
    assert!(log.iter().all(|d| d["attempts"] == 2), "{log:?}");
    for node in &nodes[..2] {
        assert_eq!(deliveries(node, "all").await, log, "one log on every node");
    }
    // Settled: nothing is pending, so any duplicate attempt would already
    // be under way; give it a moment to land.
    tokio::time::sleep(QUIET).await;
    let mut per_delivery: HashMap<String, Vec<String>> = HashMap::new();
    for hit in receiver.hits() {
        assert!(hit.signed_with(SECRET));
        per_delivery
            .entry(hit.delivery().to_owned())
            .or_default()
            .push(hit.event_id().to_owned());
    }
    assert_eq!(per_delivery.len(), 12, "one delivery id per event");
    for e in &events {
        let id = e["id"].as_str().expect("id");
        let attempts: Vec<_> = per_delivery.values().filter(|v| v[0] == id).collect();
        assert_eq!(attempts.len(), 1, "event {id}: {per_delivery:?}");
        assert_eq!(attempts[0].len(), 2, "event {id}: one failure, one success");
    }
    for node in nodes {
        node.stop().await;
    }
}

fn now_ms_test() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Removes the test's schema and stream on drop (also after a failure).
struct Cleanup {
    pg: String,
    nats: String,
    schema: String,
    stream: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (pg, nats, schema, stream) = (
            self.pg.clone(),
            self.nats.clone(),
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
                let limit = Duration::from_secs(5);
                if tokio::time::timeout(limit, remove(&pg, &nats, &schema, &stream))
                    .await
                    .is_err()
                {
                    eprintln!("could not remove schema {schema} or stream {stream}");
                }
            });
        })
        .join();
    }
}

/// Drops the test's schema and JetStream stream; failures are ignored.
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
