//! The lifecycle in [`SqliteStore`]: per-(event, overlay) status rows and the
//! status inside stored event bodies (issue 4 point 1).
//!
//! Both writes read the stored state and write the new one on the writer
//! task, the only writing connection, so the compare-and-set of
//! `streambus_core::lifecycle` needs no lock.

use std::sync::Arc;

use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use streambus_core::StoreError;
use streambus_core::event::{Record, Status};
use streambus_core::lifecycle::{AnimationStatus, RowWrite, decide_row_write, transition_error};

use super::{SqliteStore, read};
use crate::catalog::{StatusChange, change_status, play_column, status_column};
use crate::sql_error;

/// The columns [`status_row`] reads, in its order.
macro_rules! columns {
    () => {
        "event_id, overlay_id, status, play, started_ms, ended_ms, updated_ms"
    };
}

/// A row selected as `columns!()`.
fn status_row(row: &SqliteRow) -> Result<AnimationStatus, StoreError> {
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

impl SqliteStore {
    /// See [`EventStore::put_animation_status`](streambus_core::EventStore::put_animation_status).
    pub(super) async fn put_status_row(
        &self,
        tenant: &str,
        row: &AnimationStatus,
    ) -> Result<AnimationStatus, StoreError> {
        let (tenant, row) = (tenant.to_owned(), row.clone());
        self.write(move |conn| Box::pin(async move { put_row(conn, &tenant, row).await }))
            .await
    }

    /// See [`EventStore::set_event_status`](streambus_core::EventStore::set_event_status).
    pub(super) async fn set_status(
        &self,
        tenant: &str,
        event_id: &str,
        status: Status,
        at_ms: i64,
    ) -> Result<Arc<Record>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), event_id.to_owned());
        self.write(move |conn| {
            Box::pin(async move { set_event(conn, &tenant, &id, status, at_ms).await })
        })
        .await
    }
}

async fn put_row(
    conn: &mut SqliteConnection,
    tenant: &str,
    row: AnimationStatus,
) -> Result<AnimationStatus, StoreError> {
    let stored = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM animation_status WHERE tenant = ?1 AND event_id = ?2 AND overlay_id = ?3"
    ))
    .bind(tenant)
    .bind(&row.event_id)
    .bind(&row.overlay_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_error)?
    .map(|r| status_row(&r))
    .transpose()?;
    match decide_row_write(stored.as_ref().map(|s| (s.status, s.play)), &row) {
        RowWrite::Keep => return stored.ok_or_else(|| StoreError::Corrupt("no row".into())),
        RowWrite::Refuse => {
            let from = stored.map_or(row.status, |s| s.status);
            return Err(StoreError::Conflict(transition_error(from, row.status)));
        }
        RowWrite::Write => {}
    }
    sqlx::query(
        "INSERT INTO animation_status
           (tenant, event_id, overlay_id, status, play, started_ms, ended_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, event_id, overlay_id) DO UPDATE SET
           status = excluded.status, play = excluded.play, started_ms = excluded.started_ms,
           ended_ms = excluded.ended_ms, updated_ms = excluded.updated_ms",
    )
    .bind(tenant)
    .bind(&row.event_id)
    .bind(&row.overlay_id)
    .bind(row.status.as_str())
    .bind(i64::from(row.play))
    .bind(row.started_ms)
    .bind(row.ended_ms)
    .bind(row.updated_ms)
    .execute(&mut *conn)
    .await
    .map_err(sql_error)?;
    Ok(row)
}

async fn set_event(
    conn: &mut SqliteConnection,
    tenant: &str,
    id: &str,
    status: Status,
    at_ms: i64,
) -> Result<Arc<Record>, StoreError> {
    let row = sqlx::query("SELECT seq, body FROM events WHERE tenant = ?1 AND id = ?2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_error)?
        .ok_or(StoreError::NotFound)?;
    let record = read::record_from_row(tenant, &row, 0, 1)?;
    let seq: i64 = row.try_get(0).map_err(sql_error)?;
    match change_status(record.event.clone(), status, at_ms)? {
        StatusChange::Unchanged => Ok(record),
        StatusChange::Changed(event, body) => {
            sqlx::query("UPDATE events SET body = ?1 WHERE seq = ?2")
                .bind(&body)
                .bind(seq)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
            Ok(Arc::new(Record::with_body(tenant, *event, &body)))
        }
    }
}

/// The status rows of one event, by overlay id.
pub(super) async fn by_event(
    reads: &SqlitePool,
    tenant: &str,
    event_id: &str,
) -> Result<Vec<AnimationStatus>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM animation_status WHERE tenant = ?1 AND event_id = ?2 ORDER BY overlay_id"
    ))
    .bind(tenant)
    .bind(event_id)
    .fetch_all(reads)
    .await
    .map_err(sql_error)?;
    rows.iter().map(status_row).collect()
}

/// The status rows of one overlay, newest first.
pub(super) async fn by_overlay(
    reads: &SqlitePool,
    tenant: &str,
    overlay_id: &str,
    limit: usize,
) -> Result<Vec<AnimationStatus>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM animation_status WHERE tenant = ?1 AND overlay_id = ?2",
        " ORDER BY updated_ms DESC, event_id DESC LIMIT ?3"
    ))
    .bind(tenant)
    .bind(overlay_id)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(reads)
    .await
    .map_err(sql_error)?;
    rows.iter().map(status_row).collect()
}
