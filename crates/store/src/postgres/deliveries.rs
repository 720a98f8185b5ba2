//! Outgoing webhook deliveries in [`PgStore`](super::PgStore) (issue 6
//! point 4): the `webhook_deliveries` table of migration 0009.
//!
//! Every node folds the whole log and inserts the same rows: one
//! `INSERT … SELECT FROM UNNEST … ON CONFLICT DO NOTHING`, rows in id order
//! so that nodes inserting overlapping batches at once wait for each other
//! but never deadlock. A claim is one `UPDATE` over the due rows selected
//! `FOR UPDATE SKIP LOCKED`: concurrent claims from several nodes take
//! disjoint rows, and a row another node just leased fails the re-checked
//! `lease_until_ms` condition. Results are written only while the row
//! still carries the claim's lease (its token). Text is cleaned of U+0000,
//! which PostgreSQL refuses (an endpoint's error text may hold it).

use sqlx::PgPool;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use streambus_core::StoreError;
use streambus_core::store::{AttemptResult, Delivery, DeliveryState};

use super::{to_i64, to_u64};
use crate::sql_error;

/// The columns [`delivery_row`] reads, in its order.
macro_rules! columns {
    () => {
        "id, webhook, event_id, event_offset, state, attempts, next_attempt_ms, \
         lease_until_ms, last_status, last_error, created_ms, updated_ms"
    };
}

/// A row selected as `columns!()` (from column `at` on).
fn delivery_row(row: &PgRow, at: usize) -> Result<Delivery, StoreError> {
    let big = |i: usize| row.try_get::<i64, _>(at + i).map_err(sql_error);
    let state: String = row.try_get(at + 4).map_err(sql_error)?;
    let attempts: i32 = row.try_get(at + 5).map_err(sql_error)?;
    let status: Option<i32> = row.try_get(at + 8).map_err(sql_error)?;
    Ok(Delivery {
        id: row.try_get(at).map_err(sql_error)?,
        webhook: row.try_get(at + 1).map_err(sql_error)?,
        event_id: row.try_get(at + 2).map_err(sql_error)?,
        event_offset: to_u64(big(3)?),
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state {state:?}")))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_ms: big(6)?,
        lease_until_ms: big(7)?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get(at + 9).map_err(sql_error)?,
        created_ms: big(10)?,
        updated_ms: big(11)?,
    })
}

/// `s` with U+0000 (which PostgreSQL text cannot hold) as U+FFFD.
fn clean(s: Option<&str>) -> Option<String> {
    s.map(|s| s.replace('\0', "\u{FFFD}"))
}

/// See [`EventStore::put_deliveries`](streambus_core::EventStore::put_deliveries).
pub(super) async fn put(
    pool: &PgPool,
    tenant: &str,
    deliveries: &[Delivery],
) -> Result<usize, StoreError> {
    if deliveries.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&Delivery) -> String| deliveries.iter().map(f).collect::<Vec<_>>();
    let big = |f: fn(&Delivery) -> i64| deliveries.iter().map(f).collect::<Vec<_>>();
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (tenant, id, webhook, event_id, event_offset, state, \
         attempts, next_attempt_ms, lease_until_ms, last_status, last_error, created_ms, \
         updated_ms) \
         SELECT $1, id, webhook, event_id, event_offset, state, attempts, next_attempt_ms, \
                lease_until_ms, last_status, last_error, created_ms, updated_ms \
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
                     $7::int[], $8::bigint[], $9::bigint[], $10::int[], $11::text[], \
                     $12::bigint[], $13::bigint[]) \
           AS t(id, webhook, event_id, event_offset, state, attempts, next_attempt_ms, \
                lease_until_ms, last_status, last_error, created_ms, updated_ms) \
         ORDER BY id COLLATE \"C\" \
         ON CONFLICT (tenant, id) DO NOTHING",
    )
    .bind(tenant)
    .bind(col(|d| d.id.clone()))
    .bind(col(|d| d.webhook.clone()))
    .bind(col(|d| d.event_id.clone()))
    .bind(big(|d| to_i64(d.event_offset)))
    .bind(col(|d| d.state.as_str().to_owned()))
    .bind(
        deliveries
            .iter()
            .map(|d| i32::try_from(d.attempts).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
    )
    .bind(big(|d| d.next_attempt_ms))
    .bind(big(|d| d.lease_until_ms))
    .bind(
        deliveries
            .iter()
            .map(|d| d.last_status.map(i32::from))
            .collect::<Vec<_>>(),
    )
    .bind(
        deliveries
            .iter()
            .map(|d| clean(d.last_error.as_deref()))
            .collect::<Vec<_>>(),
    )
    .bind(big(|d| d.created_ms))
    .bind(big(|d| d.updated_ms))
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}

/// One delivery by id.
pub(super) async fn get(
    pool: &PgPool,
    tenant: &str,
    id: &str,
) -> Result<Option<Delivery>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM webhook_deliveries WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.map(|r| delivery_row(&r, 0)).transpose()
}

/// One webhook's deliveries, newest event first (ties by id in byte order).
pub(super) async fn list(
    pool: &PgPool,
    tenant: &str,
    webhook: &str,
    state: Option<DeliveryState>,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM webhook_deliveries WHERE tenant = $1 AND webhook = $2 \
         AND ($3::text IS NULL OR state = $3) \
         ORDER BY event_offset DESC, id COLLATE \"C\" DESC LIMIT $4"
    ))
    .bind(tenant)
    .bind(webhook)
    .bind(state.map(DeliveryState::as_str))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(|r| delivery_row(r, 0)).collect()
}

/// The largest event offset among one webhook's deliveries.
pub(super) async fn last_offset(
    pool: &PgPool,
    tenant: &str,
    webhook: &str,
) -> Result<Option<u64>, StoreError> {
    let max: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(event_offset) FROM webhook_deliveries WHERE tenant = $1 AND webhook = $2",
    )
    .bind(tenant)
    .bind(webhook)
    .fetch_one(pool)
    .await
    .map_err(sql_error)?;
    Ok(max.map(to_u64))
}

/// See [`EventStore::claim_deliveries`](streambus_core::EventStore::claim_deliveries).
pub(super) async fn claim(
    pool: &PgPool,
    now_ms: i64,
    lease_until_ms: i64,
    limit: usize,
) -> Result<Vec<(String, Delivery)>, StoreError> {
    let rows = sqlx::query(concat!(
        "UPDATE webhook_deliveries d SET lease_until_ms = $2, updated_ms = $1 \
         FROM (SELECT tenant AS due_tenant, id AS due_id FROM webhook_deliveries \
               WHERE state = 'pending' AND next_attempt_ms <= $1 AND lease_until_ms <= $1 \
               ORDER BY next_attempt_ms LIMIT $3 FOR UPDATE SKIP LOCKED) due \
         WHERE d.tenant = due.due_tenant AND d.id = due.due_id \
         RETURNING d.tenant, ",
        columns!()
    ))
    .bind(now_ms)
    .bind(lease_until_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
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
}

/// See [`EventStore::finish_delivery`](streambus_core::EventStore::finish_delivery).
pub(super) async fn finish(
    pool: &PgPool,
    tenant: &str,
    id: &str,
    lease_until_ms: i64,
    result: &AttemptResult,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET state = $4, attempts = attempts + 1, \
         next_attempt_ms = $5, lease_until_ms = 0, last_status = $6, last_error = $7, \
         updated_ms = $8 \
         WHERE tenant = $1 AND id = $2 AND state = 'pending' AND lease_until_ms = $3",
    )
    .bind(tenant)
    .bind(id)
    .bind(lease_until_ms)
    .bind(result.state.as_str())
    .bind(result.next_attempt_ms)
    .bind(result.last_status.map(i32::from))
    .bind(clean(result.last_error.as_deref()))
    .bind(now_ms)
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(done.rows_affected() == 1)
}

/// See [`EventStore::release_delivery`](streambus_core::EventStore::release_delivery).
pub(super) async fn release(
    pool: &PgPool,
    tenant: &str,
    id: &str,
    lease_until_ms: i64,
    next_attempt_ms: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_ms = $4, lease_until_ms = 0, updated_ms = $5 \
         WHERE tenant = $1 AND id = $2 AND state = 'pending' AND lease_until_ms = $3",
    )
    .bind(tenant)
    .bind(id)
    .bind(lease_until_ms)
    .bind(next_attempt_ms)
    .bind(now_ms)
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(done.rows_affected() == 1)
}

/// See [`EventStore::redeliver`](streambus_core::EventStore::redeliver).
pub(super) async fn redeliver(
    pool: &PgPool,
    tenant: &str,
    id: &str,
    now_ms: i64,
) -> Result<Option<Delivery>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
         next_attempt_ms = $3, lease_until_ms = 0, updated_ms = $3 \
         WHERE tenant = $1 AND id = $2 RETURNING ",
        columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(now_ms)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.map(|r| delivery_row(&r, 0)).transpose()
}

/// Removes one webhook's deliveries; returns how many.
pub(super) async fn delete(pool: &PgPool, tenant: &str, webhook: &str) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM webhook_deliveries WHERE tenant = $1 AND webhook = $2")
        .bind(tenant)
        .bind(webhook)
        .execute(pool)
        .await
        .map_err(sql_error)?;
    Ok(done.rows_affected())
}
