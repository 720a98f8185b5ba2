//! The on-air catalog of [`PgStore`](super::PgStore): event types, templates
//! and overlay subscriptions, each a table of `(tenant, key) → JSONB body`.
//!
//! A put is one upsert; `RETURNING (xmax = 0)` tells an insert from an
//! update without a second statement, so concurrent puts from several nodes
//! need no lock. Lists are ordered by key in byte order (`COLLATE "C"`), as
//! in SQLite, whatever the database's collation.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use sqlx::Row as _;
use streambus_core::StoreError;

use super::rows::clean_body;
use crate::catalog::encode;
use crate::sql_error;

/// The statements of one catalog table.
pub(super) struct Table {
    /// What a decode error calls a row.
    what: &'static str,
    upsert: &'static str,
    get: &'static str,
    list: &'static str,
    delete: &'static str,
}

macro_rules! table {
    ($what:literal, $table:literal, $key:literal) => {
        Table {
            what: $what,
            upsert: concat!(
                "INSERT INTO ",
                $table,
                " (tenant, ",
                $key,
                ", body, updated_ms) ",
                "VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (tenant, ",
                $key,
                ") ",
                "DO UPDATE SET body = EXCLUDED.body, updated_ms = EXCLUDED.updated_ms ",
                "RETURNING (xmax = 0) AS inserted"
            ),
            get: concat!(
                "SELECT body::text FROM ",
                $table,
                " WHERE tenant = $1 AND ",
                $key,
                " = $2"
            ),
            list: concat!(
                "SELECT body::text FROM ",
                $table,
                " WHERE tenant = $1 ORDER BY ",
                $key,
                " COLLATE \"C\""
            ),
            delete: concat!(
                "DELETE FROM ",
                $table,
                " WHERE tenant = $1 AND ",
                $key,
                " = $2"
            ),
        }
    };
}

/// `event_types`, keyed by type name.
pub(super) static EVENT_TYPES: Table = table!("event type", "event_types", "name");
/// `event_templates`, keyed by template name.
pub(super) static TEMPLATES: Table = table!("template", "event_templates", "name");
/// The automation catalogs (migration 0008), keyed by entry name.
pub(super) static RULES: Table = table!("rule", "rules", "name");
pub(super) static WEBHOOKS: Table = table!("webhook", "webhooks", "name");
pub(super) static POLLERS: Table = table!("poller", "pollers", "name");

/// The table of `catalog`.
pub(super) fn table_of(catalog: streambus_core::store::Catalog) -> &'static Table {
    use streambus_core::store::Catalog;
    match catalog {
        Catalog::Rules => &RULES,
        Catalog::Webhooks => &WEBHOOKS,
        Catalog::Pollers => &POLLERS,
    }
}

/// `event_subscriptions`, keyed by overlay id.
pub(super) static SUBSCRIPTIONS: Table =
    table!("subscription", "event_subscriptions", "overlay_id");

/// Creates or replaces `key`'s row; true when it was new.
pub(super) async fn put<T: Serialize>(
    pool: &PgPool,
    table: &Table,
    tenant: &str,
    key: &str,
    value: &T,
) -> Result<bool, StoreError> {
    let body = encode(value)?;
    let row = sqlx::query(table.upsert)
        .bind(tenant)
        .bind(key)
        .bind(clean_body(&body).as_ref())
        .bind(streambus_core::time::now_ms())
        .fetch_one(pool)
        .await
        .map_err(sql_error)?;
    row.try_get::<bool, _>(0).map_err(sql_error)
}

/// `key`'s row, decoded.
pub(super) async fn get<T: DeserializeOwned>(
    pool: &PgPool,
    table: &Table,
    tenant: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    crate::catalog::get_doc(pool, table.what, table.get, tenant, key).await
}

/// Every row of the tenant, by key.
pub(super) async fn list<T: DeserializeOwned>(
    pool: &PgPool,
    table: &Table,
    tenant: &str,
) -> Result<Vec<T>, StoreError> {
    crate::catalog::list_docs(pool, table.what, table.list, tenant).await
}

/// Removes `key`'s row; true when there was one.
pub(super) async fn delete(
    pool: &PgPool,
    table: &Table,
    tenant: &str,
    key: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(table.delete)
        .bind(tenant)
        .bind(key)
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(done.rows_affected() > 0)
}
