//! Held scheduled events in [`PgStore`](super::PgStore) (SPEC §4): the
//! `scheduled_events` table, `(tenant, id) → due_ms, JSONB body`.
//!
//! A put is one `INSERT … ON CONFLICT DO NOTHING`, so concurrent puts of one
//! id from several nodes keep the first and need no lock. Every node's
//! scheduler reads what is due; the log de-duplicates the ids they append.
//! Ties in due time are ordered by id in byte order (`COLLATE "C"`), as in
//! SQLite.

use sqlx::PgPool;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use streambus_core::StoreError;
use streambus_core::event::Event;

use super::rows::clean_body;
use crate::catalog::{decode, scheduled_row};
use crate::sql_error;

/// See [`EventStore::put_scheduled`](streambus_core::EventStore::put_scheduled).
pub(super) async fn put(pool: &PgPool, tenant: &str, event: &Event) -> Result<bool, StoreError> {
    let (due, body) = scheduled_row(event)?;
    let done = sqlx::query(
        "INSERT INTO scheduled_events (tenant, id, due_ms, body, created_ms)
         VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (tenant, id) DO NOTHING",
    )
    .bind(tenant)
    .bind(&event.id)
    .bind(due)
    .bind(clean_body(&body).as_ref())
    .bind(streambus_core::time::now_ms())
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(done.rows_affected() == 1)
}

/// One held event by id.
pub(super) async fn get(
    pool: &PgPool,
    tenant: &str,
    id: &str,
) -> Result<Option<Event>, StoreError> {
    crate::catalog::get_doc(
        pool,
        "scheduled event",
        "SELECT body::text FROM scheduled_events WHERE tenant = $1 AND id = $2",
        tenant,
        id,
    )
    .await
}

/// The tenant's held events, soonest due first.
pub(super) async fn list(
    pool: &PgPool,
    tenant: &str,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let rows = sqlx::query(
        "SELECT body::text FROM scheduled_events WHERE tenant = $1
         ORDER BY due_ms, id COLLATE \"C\" LIMIT $2",
    )
    .bind(tenant)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(|r| body(r, 0)).collect()
}

/// Every tenant's held events due at `now_ms`, soonest first.
pub(super) async fn due(
    pool: &PgPool,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<(String, Event)>, StoreError> {
    let rows = sqlx::query(
        "SELECT tenant, body::text FROM scheduled_events WHERE due_ms <= $1
         ORDER BY due_ms, tenant COLLATE \"C\", id COLLATE \"C\" LIMIT $2",
    )
    .bind(now_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).map_err(sql_error)?, body(r, 1)?)))
        .collect()
}

/// Removes a held event; true when there was one.
pub(super) async fn delete(pool: &PgPool, tenant: &str, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM scheduled_events WHERE tenant = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(done.rows_affected() > 0)
}

/// The event in column `i` (`body::text`).
fn body(row: &PgRow, i: usize) -> Result<Event, StoreError> {
    let body: &str = row.try_get(i).map_err(sql_error)?;
    decode("scheduled event", body)
}
