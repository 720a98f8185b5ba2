//! The lifecycle in [`PgStore`](super::PgStore): per-(event, overlay) status
//! rows and the status inside stored event bodies (issue 4 point 1).
//!
//! Several nodes may write at once, so each compare-and-set runs in one
//! transaction holding the row (`SELECT … FOR UPDATE`); a row that does not
//! exist yet is claimed with `INSERT … ON CONFLICT DO NOTHING` first, so two
//! first writers cannot both insert.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row as _, Transaction};
use streambus_core::StoreError;
use streambus_core::event::{Record, Status};
use streambus_core::lifecycle::{AnimationStatus, RowWrite, decide_row_write, transition_error};

use super::read::record_from_row;
use super::rows::clean_body;
use crate::catalog::{StatusChange, change_status, play_column, status_column};
use crate::sql_error;

/// The columns [`status_row`] reads, in its order.
macro_rules! columns {
    () => {
        "event_id, overlay_id, status, play, started_ms, ended_ms, updated_ms"
    };
}

/// A row selected as `columns!()`.
fn status_row(row: &PgRow) -> Result<AnimationStatus, StoreError> {
    let status: &str = row.try_get(2).map_err(sql_error)?;
    Ok(AnimationStatus {
        event_id: row.try_get(0).map_err(sql_error)?,
        overlay_id: row.try_get(1).map_err(sql_error)?,
        status: status_column(status)?,
        play: play_column(row.try_get(3).map_err(sql_error)?),
        started_ms: row.try_get(4).map_err(sql_error)?,
        ended_ms: row.try_get(5).map_err(sql_error)?,
        updated_ms: row.try_get(6).map_err(sql_error)?,
    })
}

/// Binds a row's eight columns after the tenant, in table order.
macro_rules! bind_row {
    ($query:expr, $tenant:expr, $row:expr) => {
        $query
            .bind($tenant)
            .bind(&$row.event_id)
            .bind(&$row.overlay_id)
            .bind($row.status.as_str())
            .bind(i64::from($row.play))
            .bind($row.started_ms)
            .bind($row.ended_ms)
            .bind($row.updated_ms)
    };
}

/// See [`EventStore::put_animation_status`](streambus_core::EventStore::put_animation_status).
pub(super) async fn put_row(
    pool: &PgPool,
    tenant: &str,
    row: &AnimationStatus,
) -> Result<AnimationStatus, StoreError> {
    let mut tx = pool.begin().await.map_err(sql_error)?;
    let inserted = bind_row!(
        sqlx::query(
            "INSERT INTO animation_status
               (tenant, event_id, overlay_id, status, play, started_ms, ended_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        ),
        tenant,
        row
    )
    .execute(&mut *tx)
    .await
    .map_err(sql_error)?
    .rows_affected();
    if inserted == 1 {
        tx.commit().await.map_err(sql_error)?;
        return Ok(row.clone());
    }
    let stored = stored_row(&mut tx, tenant, row).await?;
    match decide_row_write(Some((stored.status, stored.play)), row) {
        RowWrite::Keep => Ok(stored),
        RowWrite::Refuse => Err(StoreError::Conflict(transition_error(
            stored.status,
            row.status,
        ))),
        RowWrite::Write => {
            bind_row!(
                sqlx::query(
                    "UPDATE animation_status SET status = $4, play = $5, started_ms = $6,
                       ended_ms = $7, updated_ms = $8
                     WHERE tenant = $1 AND event_id = $2 AND overlay_id = $3",
                ),
                tenant,
                row
            )
            .execute(&mut *tx)
            .await
            .map_err(sql_error)?;
            tx.commit().await.map_err(sql_error)?;
            Ok(row.clone())
        }
    }
}

/// The stored row for `row`'s (event, overlay), locked until the transaction ends.
async fn stored_row(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    row: &AnimationStatus,
) -> Result<AnimationStatus, StoreError> {
    let r = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM animation_status WHERE tenant = $1 AND event_id = $2 AND overlay_id = $3",
        " FOR UPDATE"
    ))
    .bind(tenant)
    .bind(&row.event_id)
    .bind(&row.overlay_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(sql_error)?;
    // Rows are never deleted while a write races, so the conflicting row is there.
    r.map(|r| status_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::Corrupt("status row vanished during its update".into()))
}

/// See [`EventStore::set_event_status`](streambus_core::EventStore::set_event_status).
pub(super) async fn set_event(
    pool: &PgPool,
    tenant: &str,
    id: &str,
    status: Status,
    at_ms: i64,
) -> Result<Arc<Record>, StoreError> {
    let mut tx = pool.begin().await.map_err(sql_error)?;
    let row =
        sqlx::query("SELECT seq, body::text FROM events WHERE tenant = $1 AND id = $2 FOR UPDATE")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql_error)?
            .ok_or(StoreError::NotFound)?;
    let record = record_from_row(tenant, &row, 0, 1).map_err(sql_error)?;
    let seq: i64 = row.try_get(0).map_err(sql_error)?;
    match change_status(record.event.clone(), status, at_ms)? {
        StatusChange::Unchanged => Ok(record),
        StatusChange::Changed(_, body) => {
            let row = sqlx::query(
                "UPDATE events SET body = $1::jsonb WHERE seq = $2 RETURNING seq, body::text",
            )
            .bind(clean_body(&body).as_ref())
            .bind(seq)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_error)?;
            // Rebuilt from PostgreSQL's rendering, as `get` will return it.
            let updated = record_from_row(tenant, &row, 0, 1).map_err(sql_error)?;
            tx.commit().await.map_err(sql_error)?;
            Ok(updated)
        }
    }
}

/// The status rows of one event, by overlay id.
pub(super) async fn by_event(
    pool: &PgPool,
    tenant: &str,
    event_id: &str,
) -> Result<Vec<AnimationStatus>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM animation_status WHERE tenant = $1 AND event_id = $2",
        " ORDER BY overlay_id COLLATE \"C\""
    ))
    .bind(tenant)
    .bind(event_id)
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(status_row).collect()
}

/// The status rows of one overlay, newest first.
pub(super) async fn by_overlay(
    pool: &PgPool,
    tenant: &str,
    overlay_id: &str,
    limit: usize,
) -> Result<Vec<AnimationStatus>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM animation_status WHERE tenant = $1 AND overlay_id = $2",
        " ORDER BY updated_ms DESC, event_id COLLATE \"C\" DESC LIMIT $3"
    ))
    .bind(tenant)
    .bind(overlay_id)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(status_row).collect()
}
