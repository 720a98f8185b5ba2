//! Outgoing webhook deliveries in [`SqliteStore`] (issue 6 point 4): the
//! `webhook_deliveries` table of migration 0009, `(tenant, id) → webhook,
//! event, state, attempts, due time, lease, last result`.
//!
//! Writes run on the writer task like the catalog's (`catalog.rs`), the
//! only connection that writes, so a claim (select the due rows, stamp
//! their lease) is one `UPDATE … RETURNING` that nothing can interleave
//! with. Inserts are `ON CONFLICT DO NOTHING`, so a repeated id keeps the
//! row stored first. Reads use the read-only pool.

use sqlx::Connection as _;
use sqlx::Row as _;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use streambus_core::StoreError;
use streambus_core::store::{AttemptResult, Delivery, DeliveryState};

use super::SqliteStore;
use crate::sql_error;

/// The columns [`delivery_row`] reads, in its order.
macro_rules! columns {
    () => {
        "id, webhook, event_id, event_offset, state, attempts, next_attempt_ms, \
         lease_until_ms, last_status, last_error, created_ms, updated_ms"
    };
}

/// A row selected as `columns!()` (from column `at` on).
fn delivery_row(row: &SqliteRow, at: usize) -> Result<Delivery, StoreError> {
    let int = |i: usize| row.try_get::<i64, _>(at + i).map_err(sql_error);
    let state: String = row.try_get(at + 4).map_err(sql_error)?;
    let offset = int(3)?;
    let status: Option<i64> = row.try_get(at + 8).map_err(sql_error)?;
    Ok(Delivery {
        id: row.try_get(at).map_err(sql_error)?,
        webhook: row.try_get(at + 1).map_err(sql_error)?,
        event_id: row.try_get(at + 2).map_err(sql_error)?,
        event_offset: u64::try_from(offset)
            .map_err(|_| StoreError::Corrupt(format!("delivery event offset {offset}")))?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state {state:?}")))?,
        attempts: u32::try_from(int(5)?).unwrap_or(u32::MAX),
        next_attempt_ms: int(6)?,
        lease_until_ms: int(7)?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get(at + 9).map_err(sql_error)?,
        created_ms: int(10)?,
        updated_ms: int(11)?,
    })
}

fn to_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// See [`EventStore::put_deliveries`](streambus_core::EventStore::put_deliveries).
    pub(super) async fn insert_deliveries(
        &self,
        tenant: &str,
        deliveries: &[Delivery],
    ) -> Result<usize, StoreError> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let (tenant, rows) = (tenant.to_owned(), deliveries.to_vec());
        self.write(move |conn| {
            Box::pin(async move {
                let mut tx = conn.begin().await.map_err(sql_error)?;
                let mut new = 0;
                for d in &rows {
                    let done = sqlx::query(
                        "INSERT INTO webhook_deliveries (tenant, id, webhook, event_id, \
                         event_offset, state, attempts, next_attempt_ms, lease_until_ms, \
                         last_status, last_error, created_ms, updated_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&tenant)
                    .bind(&d.id)
                    .bind(&d.webhook)
                    .bind(&d.event_id)
                    .bind(to_i64(d.event_offset))
                    .bind(d.state.as_str())
                    .bind(i64::from(d.attempts))
                    .bind(d.next_attempt_ms)
                    .bind(d.lease_until_ms)
                    .bind(d.last_status.map(i64::from))
                    .bind(d.last_error.as_deref())
                    .bind(d.created_ms)
                    .bind(d.updated_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_error)?;
                    new += usize::try_from(done.rows_affected()).unwrap_or(0);
                }
                tx.commit().await.map_err(sql_error)?;
                Ok(new)
            })
        })
        .await
    }

    /// See [`EventStore::claim_deliveries`](streambus_core::EventStore::claim_deliveries).
    pub(super) async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Delivery)>, StoreError> {
        let limit = to_i64(limit);
        self.write(move |conn| {
            Box::pin(async move {
                let rows = sqlx::query(concat!(
                    "UPDATE webhook_deliveries SET lease_until_ms = ?2, updated_ms = ?1 \
                     WHERE (tenant, id) IN (SELECT tenant, id FROM webhook_deliveries \
                       WHERE state = 'pending' AND next_attempt_ms <= ?1 \
                       AND lease_until_ms <= ?1 \
                       ORDER BY next_attempt_ms, tenant, id LIMIT ?3) \
                     RETURNING tenant, ",
                    columns!()
                ))
                .bind(now_ms)
                .bind(lease_until_ms)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
                .map_err(sql_error)?;
                let mut out = rows
                    .iter()
                    .map(|r| Ok((r.try_get(0).map_err(sql_error)?, delivery_row(r, 1)?)))
                    .collect::<Result<Vec<(String, Delivery)>, StoreError>>()?;
                // RETURNING follows no order; hand them out soonest first.
                out.sort_by(|a, b| {
                    (a.1.next_attempt_ms, &a.0, &a.1.id).cmp(&(b.1.next_attempt_ms, &b.0, &b.1.id))
                });
                Ok(out)
            })
        })
        .await
    }

    /// See [`EventStore::finish_delivery`](streambus_core::EventStore::finish_delivery).
    pub(super) async fn finish(
        &self,
        tenant: &str,
        id: &str,
        lease_until_ms: i64,
        result: &AttemptResult,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (tenant, id, result) = (tenant.to_owned(), id.to_owned(), result.clone());
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET state = ?4, attempts = attempts + 1, \
                     next_attempt_ms = ?5, lease_until_ms = 0, last_status = ?6, \
                     last_error = ?7, updated_ms = ?8 \
                     WHERE tenant = ?1 AND id = ?2 AND state = 'pending' \
                     AND lease_until_ms = ?3",
                )
                .bind(&tenant)
                .bind(&id)
                .bind(lease_until_ms)
                .bind(result.state.as_str())
                .bind(result.next_attempt_ms)
                .bind(result.last_status.map(i64::from))
                .bind(result.last_error.as_deref())
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// See [`EventStore::release_delivery`](streambus_core::EventStore::release_delivery).
    pub(super) async fn release(
        &self,
        tenant: &str,
        id: &str,
        lease_until_ms: i64,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET next_attempt_ms = ?4, lease_until_ms = 0, \
                     updated_ms = ?5 \
                     WHERE tenant = ?1 AND id = ?2 AND state = 'pending' \
                     AND lease_until_ms = ?3",
                )
                .bind(&tenant)
                .bind(&id)
                .bind(lease_until_ms)
                .bind(next_attempt_ms)
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// See [`EventStore::redeliver`](streambus_core::EventStore::redeliver).
    pub(super) async fn send_again(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(concat!(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                     next_attempt_ms = ?3, lease_until_ms = 0, updated_ms = ?3 \
                     WHERE tenant = ?1 AND id = ?2 RETURNING ",
                    columns!()
                ))
                .bind(&tenant)
                .bind(&id)
                .bind(now_ms)
                .fetch_optional(&mut *conn)
                .await
                .map_err(sql_error)?;
                row.map(|r| delivery_row(&r, 0)).transpose()
            })
        })
        .await
    }

    /// See [`EventStore::delete_deliveries`](streambus_core::EventStore::delete_deliveries).
    pub(super) async fn remove_deliveries(
        &self,
        tenant: &str,
        webhook: &str,
    ) -> Result<u64, StoreError> {
        let (tenant, webhook) = (tenant.to_owned(), webhook.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE tenant = ?1 AND webhook = ?2",
                )
                .bind(&tenant)
                .bind(&webhook)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}

/// One delivery by id.
pub(super) async fn get(
    reads: &SqlitePool,
    tenant: &str,
    id: &str,
) -> Result<Option<Delivery>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM webhook_deliveries WHERE tenant = ?1 AND id = ?2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(reads)
    .await
    .map_err(sql_error)?;
    row.map(|r| delivery_row(&r, 0)).transpose()
}

/// One webhook's deliveries, newest event first.
pub(super) async fn list(
    reads: &SqlitePool,
    tenant: &str,
    webhook: &str,
    state: Option<DeliveryState>,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM webhook_deliveries WHERE tenant = ?1 AND webhook = ?2 \
         AND (?3 IS NULL OR state = ?3) ORDER BY event_offset DESC, id DESC LIMIT ?4"
    ))
    .bind(tenant)
    .bind(webhook)
    .bind(state.map(DeliveryState::as_str))
    .bind(to_i64(limit))
    .fetch_all(reads)
    .await
    .map_err(sql_error)?;
    rows.iter().map(|r| delivery_row(r, 0)).collect()
}

/// The largest event offset among one webhook's deliveries.
pub(super) async fn last_offset(
    reads: &SqlitePool,
    tenant: &str,
    webhook: &str,
) -> Result<Option<u64>, StoreError> {
    let max: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(event_offset) FROM webhook_deliveries WHERE tenant = ?1 AND webhook = ?2",
    )
    .bind(tenant)
    .bind(webhook)
    .fetch_one(reads)
    .await
    .map_err(sql_error)?;
    Ok(max.and_then(|m| u64::try_from(m).ok()))
}
