//! In-process cluster nodes for the tests of engines that must behave once
//! across nodes (webhooks, tracked requests, pollers): nodes sharing
//! PostgreSQL and NATS JetStream in a schema and a stream of their own,
//! removed when the [`Nodes`] drop (also after a failure).
//!
//! Needs `STREAMBUS_TEST_POSTGRES_URL` and `STREAMBUS_TEST_NATS_URL`; without
//! them [`Nodes::start`] prints `skipping` and gives `None`, unless
//! `STREAMBUS_REQUIRE_SERVICES` is set, when it fails.

use std::ops::Deref;
use std::time::Duration;

use streambus_server::Config;

use crate::util::TestServer;

/// Running nodes of one cluster.
pub struct Nodes {
    nodes: Vec<TestServer>,
    _cleanup: Cleanup,
}

impl Deref for Nodes {
    type Target = [TestServer];

    fn deref(&self) -> &[TestServer] {
        &self.nodes
    }
}

impl Nodes {
    /// `n` nodes, each configured with `adjust` after the cluster settings;
    /// `None` (after saying why) when the engines are not given.
    pub async fn start(
        n: usize,
        adjust: impl Fn(&mut Config) + Clone + Send + 'static,
    ) -> Option<Self> {
        let (pg, nats) = engines()?;
        let tag = format!(
            "{:016x}",
            streambus_core::name::fnv1a(
                format!("{}-{:?}", std::process::id(), std::time::SystemTime::now()).as_bytes()
            )
        );
        let cleanup = Cleanup {
            pg: pg.clone(),
            nats: nats.clone(),
            schema: format!("sbt_it_{tag}"),
            stream: format!("SBT_IT_{tag}"),
        };
        let mut nodes = Vec::new();
        for _ in 0..n {
            let (pg, nats, schema, stream, tag) = (
                pg.clone(),
                nats.clone(),
                cleanup.schema.clone(),
                cleanup.stream.clone(),
                tag.clone(),
            );
            let adjust = adjust.clone();
            nodes.push(
                TestServer::start_with(move |c| {
                    c.cluster.postgres_url = Some(pg);
                    c.cluster.nats_url = Some(nats);
                    c.cluster.postgres_schema = schema;
                    c.cluster.stream = stream;
                    c.cluster.subject_prefix = format!("sbtit{tag}");
                    c.cluster.postgres_max_connections = 4;
                    adjust(c);
                })
                .await,
            );
        }
        Some(Self {
            nodes,
            _cleanup: cleanup,
        })
    }

    /// Stops every node gracefully.
    pub async fn stop(mut self) {
        for node in self.nodes.drain(..) {
            node.stop().await;
        }
    }
}

/// The engines, or `None` (printing why) when the variables are not set.
fn engines() -> Option<(String, String)> {
    let pg = std::env::var("STREAMBUS_TEST_POSTGRES_URL").ok();
    let nats = std::env::var("STREAMBUS_TEST_NATS_URL").ok();
    match (pg, nats) {
        (Some(pg), Some(nats)) if !pg.is_empty() && !nats.is_empty() => Some((pg, nats)),
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

/// Removes the schema and stream on drop.
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

/// Drops a schema and a JetStream stream; failures are ignored.
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
