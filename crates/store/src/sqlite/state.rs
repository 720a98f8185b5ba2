//! Live keyed state in [`SqliteStore`] (SPEC §2 "State", issue 6): the
//! `state_docs` table of migration 0007, `(tenant, stream, key) → version,
//! value, patch, announced`.
//!
//! A write reads the row and stores the one
//! [`plan_write`](streambus_core::state::plan_write) decides on the writer
//! task, the only connection that writes, so the compare-and-set needs no
//! lock and no explicit transaction (the store is one statement). Reads use
//! the read-only pool and skip tombstones (`value IS NULL`). JSON columns
//! are text.

use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use streambus_core::StoreError;
use streambus_core::state::{StateDoc, StateOutcome, StateRow, StateWrite, plan_write};

use super::SqliteStore;
use crate::catalog::{decode, encode};
use crate::sql_error;

/// The columns [`state_row`] reads, in its order.
macro_rules! columns {
    () => {
        "key, version, value, patch, updated_ms, announced"
    };
}

/// A row selected as `columns!()`, with its key.
fn state_row(row: &SqliteRow) -> Result<(String, StateRow), StoreError> {
    let value: Option<&str> = row.try_get(2).map_err(sql_error)?;
    let patch: &str = row.try_get(3).map_err(sql_error)?;
    let version: i64 = row.try_get(1).map_err(sql_error)?;
    Ok((
        row.try_get(0).map_err(sql_error)?,
        StateRow {
            version: u64::try_from(version)
                .map_err(|_| StoreError::Corrupt(format!("state version {version}")))?,
            value: value.map(|v| decode("state value", v)).transpose()?,
            patch: decode("state patch", patch)?,
            updated_ms: row.try_get(4).map_err(sql_error)?,
            announced: row.try_get::<i64, _>(5).map_err(sql_error)? != 0,
        },
    ))
}

/// The live document of a row.
fn live_doc(row: &SqliteRow) -> Result<Option<StateDoc>, StoreError> {
    let (key, row) = state_row(row)?;
    Ok(row.doc(&key))
}

impl SqliteStore {
    /// See [`EventStore::state_write`](streambus_core::EventStore::state_write).
    pub(super) async fn write_state(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
        write: &StateWrite,
        now_ms: i64,
    ) -> Result<StateOutcome, StoreError> {
        let (tenant, stream, key) = (tenant.to_owned(), stream.to_owned(), key.to_owned());
        let write = write.clone();
        self.write(move |conn| {
            Box::pin(async move {
                let stored = stored_row(conn, &tenant, &stream, &key).await?;
                let plan = plan_write(&key, stored.as_ref(), &write, now_ms)?;
                if let Some(row) = &plan.row {
                    store_row(conn, &tenant, &stream, &key, row).await?;
                }
                Ok(plan.outcome)
            })
        })
        .await
    }

    /// See [`EventStore::state_announced`](streambus_core::EventStore::state_announced).
    pub(super) async fn mark_announced(
        &self,
        tenant: &str,
        stream: &str,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        let (tenant, stream, key) = (tenant.to_owned(), stream.to_owned(), key.to_owned());
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE state_docs SET announced = 1
                     WHERE tenant = ?1 AND stream = ?2 AND key = ?3 AND version = ?4",
                )
                .bind(&tenant)
                .bind(&stream)
                .bind(&key)
                .bind(version)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(())
            })
        })
        .await
    }
}

/// The stored row of a key, tombstones included.
async fn stored_row(
    conn: &mut SqliteConnection,
    tenant: &str,
    stream: &str,
    key: &str,
) -> Result<Option<StateRow>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM state_docs WHERE tenant = ?1 AND stream = ?2 AND key = ?3"
    ))
    .bind(tenant)
    .bind(stream)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_error)?
    .map(|r| state_row(&r).map(|(_, row)| row))
    .transpose()
}

/// Creates or replaces a key's row.
async fn store_row(
    conn: &mut SqliteConnection,
    tenant: &str,
    stream: &str,
    key: &str,
    row: &StateRow,
) -> Result<(), StoreError> {
    let value = row.value.as_ref().map(encode).transpose()?;
    let patch = encode(&row.patch)?;
    sqlx::query(
        "INSERT INTO state_docs
           (tenant, stream, key, version, value, patch, updated_ms, announced)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, stream, key) DO UPDATE SET
           version = excluded.version, value = excluded.value, patch = excluded.patch,
           updated_ms = excluded.updated_ms, announced = excluded.announced",
    )
    .bind(tenant)
    .bind(stream)
    .bind(key)
    .bind(i64::try_from(row.version).unwrap_or(i64::MAX))
    .bind(value)
    .bind(patch)
    .bind(row.updated_ms)
    .bind(i64::from(row.announced))
    .execute(&mut *conn)
    .await
    .map_err(sql_error)?;
    Ok(())
}

/// One live document.
pub(super) async fn get(
    reads: &SqlitePool,
    tenant: &str,
    stream: &str,
    key: &str,
) -> Result<Option<StateDoc>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM state_docs WHERE tenant = ?1 AND stream = ?2 AND key = ?3",
        " AND value IS NOT NULL"
    ))
    .bind(tenant)
    .bind(stream)
    .bind(key)
    .fetch_optional(reads)
    .await
    .map_err(sql_error)?;
    match row {
        Some(r) => live_doc(&r),
        None => Ok(None),
    }
}

/// Every live document of a stream, by key.
pub(super) async fn list(
    reads: &SqlitePool,
    tenant: &str,
    stream: &str,
) -> Result<Vec<StateDoc>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM state_docs WHERE tenant = ?1 AND stream = ?2 AND value IS NOT NULL",
        " ORDER BY key"
    ))
    .bind(tenant)
    .bind(stream)
    .fetch_all(reads)
    .await
    .map_err(sql_error)?;
    let mut docs = Vec::with_capacity(rows.len());
    for r in &rows {
        docs.extend(live_doc(r)?);
    }
    Ok(docs)
}
