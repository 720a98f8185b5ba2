//! A tiny schema-migration runner shared by every SQL backend (SPEC §7:
//! "migrations run at start").
//!
//! Each backend keeps its own SQL under `migrations/<backend>/NNNN_name.sql`,
//! embedded with `include_str!` into a [`MigrationSet`]. The runner records what
//! it applied in a `schema_migrations(version, applied_ms)` ledger and applies
//! each missing migration once, inside its own transaction, in version order.
//!
//! Why not `sqlx::migrate!`: that macro needs sqlx's `macros` feature (a
//! proc-macro crate in every build) and checksums files at build time. The
//! runner here is generic over the sqlx [`Database`], needs only `Executor` and
//! `raw_sql`, and binds nothing (versions and times are integers written into
//! the ledger statement), so the PostgreSQL store can reuse it unchanged with
//! its own set and ledger DDL (`BIGINT` columns there).

use sqlx::{AssertSqlSafe, Connection, Database, Decode, Executor, Row, Type};
use streambus_core::StoreError;
use tracing::info;

use crate::sql_error;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number (`NNNN` of the file name); applied in increasing order.
    pub version: i64,
    /// Its name (the rest of the file name), for logs.
    pub name: &'static str,
    /// The SQL, possibly several statements.
    pub sql: &'static str,
}

/// Every migration of one backend plus the DDL of its ledger table.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    /// Creates `schema_migrations(version, applied_ms)` if missing; the columns
    /// must decode as `i64` in the backend.
    pub ledger_ddl: &'static str,
    /// The migrations, in increasing version order.
    pub migrations: &'static [Migration],
}

/// The embedded (SQLite) schema.
pub const SQLITE: MigrationSet = MigrationSet {
    ledger_ddl: "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    migrations: &[
        Migration {
            version: 1,
            name: "init",
            sql: include_str!("../migrations/sqlite/0001_init.sql"),
        },
        Migration {
            version: 2,
            name: "held_after",
            sql: include_str!("../migrations/sqlite/0002_held_after.sql"),
        },
        Migration {
            version: 3,
            name: "presence",
            sql: include_str!("../migrations/sqlite/0003_presence.sql"),
        },
        Migration {
            version: 4,
            name: "on_air",
            sql: include_str!("../migrations/sqlite/0004_on_air.sql"),
        },
        Migration {
            version: 5,
            name: "scheduled",
            sql: include_str!("../migrations/sqlite/0005_scheduled.sql"),
        },
        Migration {
            version: 6,
            name: "security",
            sql: include_str!("../migrations/sqlite/0006_security.sql"),
        },
        Migration {
            version: 7,
            name: "state",
            sql: include_str!("../migrations/sqlite/0007_state.sql"),
        },
        Migration {
            version: 8,
            name: "automation",
            sql: include_str!("../migrations/sqlite/0008_automation.sql"),
        },
        Migration {
            version: 9,
            name: "webhook_deliveries",
            sql: include_str!("../migrations/sqlite/0009_webhook_deliveries.sql"),
        },
    ],
};

/// The cluster (PostgreSQL) schema: the same tables in PostgreSQL types, the
/// body as `JSONB`. Run under an advisory lock by `PgStore::open`.
pub const POSTGRES: MigrationSet = MigrationSet {
    ledger_ddl: "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    migrations: &[
        Migration {
            version: 1,
            name: "init",
            sql: include_str!("../migrations/postgres/0001_init.sql"),
        },
        Migration {
            version: 2,
            name: "held_after",
            sql: include_str!("../migrations/postgres/0002_held_after.sql"),
        },
        Migration {
            version: 3,
            name: "presence",
            sql: include_str!("../migrations/postgres/0003_presence.sql"),
        },
        Migration {
            version: 4,
            name: "on_air",
            sql: include_str!("../migrations/postgres/0004_on_air.sql"),
        },
        Migration {
            version: 5,
            name: "scheduled",
            sql: include_str!("../migrations/postgres/0005_scheduled.sql"),
        },
        Migration {
            version: 6,
            name: "security",
            sql: include_str!("../migrations/postgres/0006_security.sql"),
        },
        Migration {
            version: 7,
            name: "state",
            sql: include_str!("../migrations/postgres/0007_state.sql"),
        },
        Migration {
            version: 8,
            name: "automation",
            sql: include_str!("../migrations/postgres/0008_automation.sql"),
        },
        Migration {
            version: 9,
            name: "webhook_deliveries",
            sql: include_str!("../migrations/postgres/0009_webhook_deliveries.sql"),
        },
    ],
};

/// Applies every migration of `set` that the ledger does not list yet; returns
/// the versions applied now.
///
/// Concurrent runners against one database are not coordinated here: the
/// embedded store runs it from its single writer connection, and a cluster
/// backend should hold a lock (e.g. a PostgreSQL advisory lock) around it.
///
/// # Errors
/// `Unavailable` when a statement fails; the failing migration is rolled back
/// and later ones are not tried.
pub async fn run<DB>(conn: &mut DB::Connection, set: &MigrationSet) -> Result<Vec<i64>, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    sqlx::raw_sql(set.ledger_ddl)
        .execute(&mut *conn)
        .await
        .map_err(sql_error)?;
    let rows = sqlx::raw_sql("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(sql_error)?;
    let applied = rows
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(sql_error)?;

    let mut done = Vec::new();
    for m in set
        .migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
    {
        let mut tx = conn.begin().await.map_err(sql_error)?;
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        let ledger = format!(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES ({}, {})",
            m.version,
            streambus_core::time::now_ms()
        );
        sqlx::raw_sql(AssertSqlSafe(ledger))
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
        tx.commit().await.map_err(sql_error)?;
        info!(
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
        done.push(m.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_in_version_order() {
        for set in [SQLITE, POSTGRES] {
            let v: Vec<i64> = set.migrations.iter().map(|m| m.version).collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(v, sorted);
        }
    }

    #[test]
    fn postgres_mirrors_every_sqlite_migration() {
        let names = |set: MigrationSet| {
            set.migrations
                .iter()
                .map(|m| (m.version, m.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(SQLITE), names(POSTGRES));
    }
}
