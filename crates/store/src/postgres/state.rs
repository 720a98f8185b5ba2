//! Live keyed state in [`PgStore`](super::PgStore) (SPEC §2 "State",
//! issue 6): the `state_docs` table, `(tenant, stream, key) → version,
//! JSONB value, patch, announced`.
//!
//! Several nodes may write one key at once, so a write is one transaction
//! holding the key's row (`SELECT … FOR UPDATE`). A key without a row is
//! claimed first with `INSERT … ON CONFLICT DO NOTHING` of a placeholder
//! (version 0, no value — what [`plan_write`] reads as "no document"), so
//! two first writers queue on one row instead of both inserting; a write
//! that stores nothing rolls the placeholder back. Reads rebuild values
//! from `value::text`; JSONB normalises number spelling, which is why
//! writes compare values with [`same`] rather than `==`.
//!
//! [`same`]: streambus_core::state::same

use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Transaction};
use streambus_core::StoreError;
use streambus_core::state::{StateDoc, StateOutcome, StateRow, StateWrite, plan_write};

use super::{to_i64, to_u64};
use crate::catalog::{decode, encode};
use crate::sql_error;

/// The columns [`state_row`] reads, in its order.
macro_rules! columns {
    () => {
        "key, version, value::text, patch::text, updated_ms, announced"
    };
}

/// A row selected as `columns!()`, with its key.
fn state_row(row: &PgRow) -> Result<(String, StateRow), StoreError> {
    let value: Option<&str> = row.try_get(2).map_err(sql_error)?;
    let patch: &str = row.try_get(3).map_err(sql_error)?;
    Ok((
        row.try_get(0).map_err(sql_error)?,
        StateRow {
            version: to_u64(row.try_get(1).map_err(sql_error)?),
            value: value.map(|v| decode("state value", v)).transpose()?,
            patch: decode("state patch", patch)?,
            updated_ms: row.try_get(4).map_err(sql_error)?,
            announced: row.try_get(5).map_err(sql_error)?,
        },
    ))
}

/// The live document of a row.
fn live_doc(row: &PgRow) -> Result<Option<StateDoc>, StoreError> {
    let (key, row) = state_row(row)?;
    Ok(row.doc(&key))
}

/// See [`EventStore::state_write`](streambus_core::EventStore::state_write).
pub(super) async fn write(
    pool: &PgPool,
    tenant: &str,
    stream: &str,
    key: &str,
    write: &StateWrite,
    now_ms: i64,
) -> Result<StateOutcome, StoreError> {
    let mut tx = pool.begin().await.map_err(sql_error)?;
    sqlx::query(
        "INSERT INTO state_docs
           (tenant, stream, key, version, value, patch, updated_ms, announced)
         VALUES ($1, $2, $3, 0, NULL, 'null'::jsonb, $4, TRUE) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(stream)
    .bind(key)
    .bind(now_ms)
    .execute(&mut *tx)
    .await
    .map_err(sql_error)?;
    let stored = locked_row(&mut tx, tenant, stream, key).await?;
    // A refusal or a write that changes nothing drops `tx`: rolled back.
    let plan = plan_write(key, Some(&stored), write, now_ms)?;
    if let Some(row) = &plan.row {
        let value = row.value.as_ref().map(encode).transpose()?;
        sqlx::query(
            "UPDATE state_docs SET version = $4, value = $5::jsonb, patch = $6::jsonb,
               updated_ms = $7, announced = $8
             WHERE tenant = $1 AND stream = $2 AND key = $3",
        )
        .bind(tenant)
        .bind(stream)
        .bind(key)
        .bind(to_i64(row.version))
        .bind(value)
        .bind(encode(&row.patch)?)
        .bind(row.updated_ms)
        .bind(row.announced)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
        tx.commit().await.map_err(sql_error)?;
    }
    Ok(plan.outcome)
}

/// The key's row, locked until the transaction ends (claimed just before,
/// so it is there).
async fn locked_row(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    stream: &str,
    key: &str,
) -> Result<StateRow, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM state_docs WHERE tenant = $1 AND stream = $2 AND key = $3 FOR UPDATE"
    ))
    .bind(tenant)
    .bind(stream)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await
    .map_err(sql_error)?
    .ok_or_else(|| StoreError::Corrupt("state row vanished during its write".into()))?;
    state_row(&row).map(|(_, row)| row)
}

/// See [`EventStore::state_announced`](streambus_core::EventStore::state_announced).
pub(super) async fn mark_announced(
    pool: &PgPool,
    tenant: &str,
    stream: &str,
    key: &str,
    version: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE state_docs SET announced = TRUE
         WHERE tenant = $1 AND stream = $2 AND key = $3 AND version = $4",
    )
    .bind(tenant)
    .bind(stream)
    .bind(key)
    .bind(to_i64(version))
    .execute(pool)
    .await
    .map_err(sql_error)?;
    Ok(())
}

/// One live document.
pub(super) async fn get(
    pool: &PgPool,
    tenant: &str,
    stream: &str,
    key: &str,
) -> Result<Option<StateDoc>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM state_docs WHERE tenant = $1 AND stream = $2 AND key = $3",
        " AND value IS NOT NULL"
    ))
    .bind(tenant)
    .bind(stream)
    .bind(key)
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    match row {
        Some(r) => live_doc(&r),
        None => Ok(None),
    }
}

/// Every live document of a stream, by key in byte order.
pub(super) async fn list(
    pool: &PgPool,
    tenant: &str,
    stream: &str,
) -> Result<Vec<StateDoc>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM state_docs WHERE tenant = $1 AND stream = $2 AND value IS NOT NULL",
        " ORDER BY key COLLATE \"C\""
    ))
    .bind(tenant)
    .bind(stream)
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    let mut docs = Vec::with_capacity(rows.len());
    for r in &rows {
        docs.extend(live_doc(r)?);
    }
    Ok(docs)
}
