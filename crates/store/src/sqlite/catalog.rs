//! The on-air catalog of [`SqliteStore`]: event types, templates and overlay
//! subscriptions, each a table of `(tenant, key) → JSON body`.
//!
//! Writes run on the writer task ([`SqliteStore::write`]), the only
//! connection that writes, so an insert-then-update pair needs no lock to
//! tell "created" from "replaced". Reads use the read-only pool.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use streambus_core::StoreError;

use super::SqliteStore;
use super::writer::{BoxFuture, Request};
use crate::catalog::encode;
use crate::sql_error;

/// The statements of one catalog table.
pub(super) struct Table {
    /// What a decode error calls a row.
    what: &'static str,
    insert: &'static str,
    update: &'static str,
    get: &'static str,
    list: &'static str,
    delete: &'static str,
}

macro_rules! table {
    ($what:literal, $table:literal, $key:literal) => {
        Table {
            what: $what,
            insert: concat!(
                "INSERT INTO ",
                $table,
                " (tenant, ",
                $key,
                ", body, updated_ms) ",
                "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING"
            ),
            update: concat!(
                "UPDATE ",
                $table,
                " SET body = ?3, updated_ms = ?4 ",
                "WHERE tenant = ?1 AND ",
                $key,
                " = ?2"
            ),
            get: concat!(
                "SELECT body FROM ",
                $table,
                " WHERE tenant = ?1 AND ",
                $key,
                " = ?2"
            ),
            list: concat!(
                "SELECT body FROM ",
                $table,
                " WHERE tenant = ?1 ORDER BY ",
                $key
            ),
            delete: concat!(
                "DELETE FROM ",
                $table,
                " WHERE tenant = ?1 AND ",
                $key,
                " = ?2"
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

impl SqliteStore {
    /// Runs `job` on the writer's connection, between group commits, and
    /// returns its answer.
    ///
    /// # Errors
    /// The job's own error; `Closed` when the store is closing.
    pub(super) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.call(move |reply| {
            Request::Exec(Box::new(move |conn| {
                Box::pin(async move {
                    let _ = reply.send(job(conn).await);
                })
            }))
        })
        .await
    }

    /// Creates or replaces `key`'s row; true when it was new.
    pub(super) async fn put_doc<T: Serialize>(
        &self,
        table: &'static Table,
        tenant: &str,
        key: &str,
        value: &T,
    ) -> Result<bool, StoreError> {
        let body = encode(value)?;
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        let now = streambus_core::time::now_ms();
        self.write(move |conn| {
            Box::pin(async move {
                let inserted = sqlx::query(table.insert)
                    .bind(&tenant)
                    .bind(&key)
                    .bind(&body)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(sql_error)?
                    .rows_affected();
                if inserted == 1 {
                    return Ok(true);
                }
                sqlx::query(table.update)
                    .bind(&tenant)
                    .bind(&key)
                    .bind(&body)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(sql_error)?;
                Ok(false)
            })
        })
        .await
    }

    /// Removes `key`'s row; true when there was one.
    pub(super) async fn delete_doc(
        &self,
        table: &'static Table,
        tenant: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(table.delete)
                    .bind(&tenant)
                    .bind(&key)
                    .execute(&mut *conn)
                    .await
                    .map_err(sql_error)?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }
}

/// `key`'s row, decoded.
pub(super) async fn get_doc<T: DeserializeOwned>(
    reads: &SqlitePool,
    table: &Table,
    tenant: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    crate::catalog::get_doc(reads, table.what, table.get, tenant, key).await
}

/// Every row of the tenant, by key.
pub(super) async fn list_docs<T: DeserializeOwned>(
    reads: &SqlitePool,
    table: &Table,
    tenant: &str,
) -> Result<Vec<T>, StoreError> {
    crate::catalog::list_docs(reads, table.what, table.list, tenant).await
}
