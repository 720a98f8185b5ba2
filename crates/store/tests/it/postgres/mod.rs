//! `PgStore` against a real PostgreSQL (STYLE §8).
//!
//! Tests read `STREAMBUS_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without it they print
//! `skipping: …` and pass, unless `STREAMBUS_REQUIRE_SERVICES=1`, which makes a
//! missing URL a failure (CI sets both). Each test works in a fresh schema
//! `sb_test_<uuid>`, dropped when its [`TestDb`] guard drops — also when the
//! test panics.
//!
//! - `suite`: the `EventStore` conformance suite, a fresh schema per check.
//! - `insert`: the cluster path — idempotent, concurrent `insert_records`.
//! - `backend`: reopen, concurrent start, JSONB round trip, failures.

mod backend;
mod insert;
mod suite;

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use streambus_store::{PgOptions, PgStore};

/// The environment variable naming the test server.
pub const URL_VAR: &str = "STREAMBUS_TEST_POSTGRES_URL";

/// The server URL, or `None` (after saying so) when tests should skip.
///
/// # Panics
/// When the URL is missing and `STREAMBUS_REQUIRE_SERVICES=1`.
pub fn postgres_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let required = std::env::var("STREAMBUS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "STREAMBUS_REQUIRE_SERVICES=1 but {URL_VAR} is not set"
            );
            eprintln!("skipping: {URL_VAR} not set");
            None
        }
    }
}

/// A fresh schema on the test server, dropped (with everything in it) when
/// this guard drops.
pub struct TestDb {
    /// The server URL, with this test's own `application_name`.
    pub url: String,
    /// The schema name (`sb_test_<uuid>`), also the `application_name`.
    pub schema: String,
}

impl TestDb {
    /// A fresh schema name on the configured server; `None` to skip the test.
    pub fn new() -> Option<Self> {
        let base = postgres_url()?;
        let tenant = streambus_core::testsuite::fresh_tenant("x");
        let schema = format!("sb_test_{}", &tenant[2..]);
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}application_name={schema}");
        Some(Self { url, schema })
    }

    /// Options for a store in this schema.
    pub fn options(&self) -> PgOptions {
        PgOptions {
            url: self.url.clone(),
            schema: Some(self.schema.clone()),
            // Small: many tests run at once against one server.
            max_connections: 2,
        }
    }

    /// Opens a store in this schema (creating and migrating it the first time).
    pub async fn open(&self) -> PgStore {
        PgStore::open(self.options()).await.expect("open PgStore")
    }

    /// A plain connection without the schema on its search path.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("admin connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any async context we could await in (and maybe
        // while unwinding), so the schema is dropped from a thread with a
        // runtime of its own, waited for here.
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut conn = PgConnection::connect(&url).await?;
                let sql =
                    format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .map_err(|e| std::io::Error::other(e.to_string()))
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("dropping test schema {} failed: {e}", self.schema),
            Err(_) => eprintln!("dropping test schema {} panicked", self.schema),
        }
    }
}

/// Opens a store in a fresh schema, or returns from the test (skipping).
#[macro_export]
macro_rules! pg_store_or_skip {
    () => {{
        let Some(db) = $crate::postgres::TestDb::new() else {
            return;
        };
        let store = db.open().await;
        (store, db)
    }};
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
