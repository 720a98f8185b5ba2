//! Held scheduled events in [`SqliteStore`] (SPEC §4): the
//! `scheduled_events` table, `(tenant, id) → due_ms, body`.
//!
//! Writes run on the writer task like the catalog's (`catalog.rs`); the
//! insert is `ON CONFLICT DO NOTHING`, so a repeated id keeps the row held
//! first. Reads use the read-only pool; `due` walks the `due_ms` index.

use sqlx::Row as _;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use streambus_core::StoreError;
use streambus_core::event::Event;

use super::SqliteStore;
use crate::catalog::{decode, scheduled_row};
use crate::sql_error;

impl SqliteStore {
    /// See [`EventStore::put_scheduled`](streambus_core::EventStore::put_scheduled).
    pub(super) async fn hold(&self, tenant: &str, event: &Event) -> Result<bool, StoreError> {
        let (due, body) = scheduled_row(event)?;
        let (tenant, id) = (tenant.to_owned(), event.id.clone());
        let now = streambus_core::time::now_ms();
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "INSERT INTO scheduled_events (tenant, id, due_ms, body, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )
                .bind(&tenant)
                .bind(&id)
                .bind(due)
                .bind(&body)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// See [`EventStore::delete_scheduled`](streambus_core::EventStore::delete_scheduled).
    pub(super) async fn unhold(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let done =
                    sqlx::query("DELETE FROM scheduled_events WHERE tenant = ?1 AND id = ?2")
                        .bind(&tenant)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_error)?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }
}

/// One held event by id.
pub(super) async fn get(
    reads: &SqlitePool,
    tenant: &str,
    id: &str,
) -> Result<Option<Event>, StoreError> {
    crate::catalog::get_doc(
        reads,
        "scheduled event",
        "SELECT body FROM scheduled_events WHERE tenant = ?1 AND id = ?2",
        tenant,
        id,
    )
    .await
}

/// The tenant's held events, soonest due first.
pub(super) async fn list(
    reads: &SqlitePool,
    tenant: &str,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let rows = sqlx::query(
        "SELECT body FROM scheduled_events WHERE tenant = ?1
         ORDER BY due_ms, id LIMIT ?2",
    )
    .bind(tenant)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(reads)
    .await
    .map_err(sql_error)?;
    rows.iter().map(|r| body(r, 0)).collect()
}

/// Every tenant's held events due at `now_ms`, soonest first.
pub(super) async fn due(
    reads: &SqlitePool,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<(String, Event)>, StoreError> {
    let rows = sqlx::query(
        "SELECT tenant, body FROM scheduled_events WHERE due_ms <= ?1
         ORDER BY due_ms, tenant, id LIMIT ?2",
    )
    .bind(now_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(reads)
    .await
    .map_err(sql_error)?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).map_err(sql_error)?, body(r, 1)?)))
        .collect()
}

/// The event in column `i`.
fn body(row: &SqliteRow, i: usize) -> Result<Event, StoreError> {
    let body: &str = row.try_get(i).map_err(sql_error)?;
    decode("scheduled event", body)
}
