//! Opening a [`PgStore`](super::PgStore): the pool, its schema and migrations.
//!
//! Every pooled connection gets the schema as its `search_path` through the
//! startup packet (no extra round trip per connection), so unqualified table
//! names resolve there. Several nodes may start at once: schema creation and
//! migrations run on one connection holding a session-level advisory lock,
//! keyed by the schema, and that connection is closed afterwards rather than
//! returned to the pool, so no lock can outlive a failure.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use streambus_core::StoreError;
use tracing::info;

use super::{ACQUIRE_TIMEOUT, PgOptions};
use crate::sql_error;

/// `application_name` of our connections unless the URL names one.
pub const APPLICATION_NAME: &str = "streambus";

/// Connects once and runs `SELECT 1`, creating and migrating nothing (for
/// `check-config`).
pub(super) async fn probe(opts: &PgOptions) -> Result<(), StoreError> {
    use sqlx::ConnectOptions;
    let connect = PgConnectOptions::from_str(&opts.url).map_err(sql_error)?;
    let attempt = async {
        let mut conn = connect.connect().await.map_err(sql_error)?;
        sqlx::query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(sql_error)?;
        let _ = sqlx::Connection::close(conn).await;
        Ok(())
    };
    match tokio::time::timeout(ACQUIRE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(elapsed) => Err(StoreError::Unavailable(Box::new(elapsed))),
    }
}

/// Builds the pool, creates the schema if missing and applies migrations;
/// returns the pool and the key of the append lock.
pub(super) async fn open_pool(opts: &PgOptions) -> Result<(PgPool, i64), StoreError> {
    let schema = opts.schema.as_deref().map(checked_schema).transpose()?;
    let mut connect = PgConnectOptions::from_str(&opts.url).map_err(sql_error)?;
    if connect.get_application_name().is_none() {
        connect = connect.application_name(APPLICATION_NAME);
    }
    if let Some(s) = schema {
        connect = connect.options([("search_path", quote_ident(s))]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(connect)
        .await
        .map_err(sql_error)?;
    let applied = match migrate(&pool, schema).await {
        Ok(applied) => applied,
        Err(e) => {
            pool.close().await;
            return Err(e);
        }
    };
    info!(
        schema = schema.unwrap_or("(search_path)"),
        migrations = applied.len(),
        "postgres store open"
    );
    Ok((pool, lock_key("append", schema)))
}

/// Creates the schema if missing and runs the shared migration runner with
/// the PostgreSQL set, under an advisory lock.
async fn migrate(pool: &PgPool, schema: Option<&str>) -> Result<Vec<i64>, StoreError> {
    let mut conn = pool.acquire().await.map_err(sql_error)?;
    // A session lock lives as long as its connection: closing this one
    // instead of pooling it releases the lock whatever happens below.
    conn.close_on_drop();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key("migrate", schema))
        .execute(&mut *conn)
        .await
        .map_err(sql_error)?;
    if let Some(s) = schema {
        // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege
        // on the database even when the schema is there.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(s)
                .fetch_one(&mut *conn)
                .await
                .map_err(sql_error)?;
        if !exists {
            let ddl = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(s));
            sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
        }
    }
    let applied =
        crate::migrate::run::<sqlx::Postgres>(&mut conn, &crate::migrate::POSTGRES).await?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key("migrate", schema))
        .execute(&mut *conn)
        .await
        .map_err(sql_error)?;
    Ok(applied)
}

/// Accepts schema names that need no escaping anywhere: ASCII letters, digits
/// and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit).
fn checked_schema(s: &str) -> Result<&str, StoreError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(s)
    } else {
        Err(StoreError::Unavailable(Box::new(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid postgres schema name {s:?}: use letters, digits and _"),
        ))))
    }
}

/// Double-quotes an identifier (keeps its case; `checked_schema` has already
/// ruled out quotes inside).
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A stable advisory-lock key for `purpose` in `schema` (FNV-1a, so every node
/// computes the same key).
pub(super) fn lock_key(purpose: &str, schema: Option<&str>) -> i64 {
    let text = format!("streambus:{purpose}:{}", schema.unwrap_or(""));
    let h = streambus_core::name::fnv1a(text.as_bytes());
    i64::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["streambus", "sb_test_0193ab", "_x", "A1"] {
            assert!(checked_schema(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "ä", long.as_str()] {
            assert!(checked_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_keys_differ_by_purpose_and_schema() {
        let a = lock_key("append", Some("s1"));
        assert_eq!(a, lock_key("append", Some("s1")));
        assert_ne!(a, lock_key("append", Some("s2")));
        assert_ne!(a, lock_key("migrate", Some("s1")));
        assert_ne!(lock_key("append", None), lock_key("migrate", None));
    }
}
