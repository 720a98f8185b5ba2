//! Security and tenancy in [`SqliteStore`] (SPEC §5, issue 5): the
//! `api_keys`, `tenants` and `audit_log` tables of migration 0006.
//!
//! Writes run on the writer task like the catalog's (`catalog.rs`), so a
//! tenant's insert-then-update needs no lock to tell "created" from
//! "replaced", and an audit append is ordered with every other write. Reads
//! use the read-only pool. JSON columns (globs, limits, detail) are text,
//! encoded and decoded with the shared catalog helpers.

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row as _, Sqlite};
use streambus_core::StoreError;
use streambus_core::audit::{AuditEntry, AuditQuery};
use streambus_core::auth::Role;
use streambus_core::keys::{ApiKey, Tenant, check_tenant_name};

use super::SqliteStore;
use crate::catalog::{decode, encode};
use crate::sql_error;

/// `SELECT` of the columns [`key_row`] reads, in order.
macro_rules! select_keys {
    () => {
        "SELECT id, tenant, name, role, publish_globs, subscribe_globs, \
         created_ms, revoked_ms, last_used_ms FROM api_keys"
    };
}

/// `SELECT` of the columns [`tenant_row`] reads, in order.
macro_rules! select_tenants {
    () => {
        "SELECT name, display_name, created_ms, limits FROM tenants"
    };
}

impl SqliteStore {
    /// See [`EventStore::put_api_key`](streambus_core::EventStore::put_api_key).
    pub(super) async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError> {
        let publish = encode(&key.publish)?;
        let subscribe = encode(&key.subscribe)?;
        let (key, hash) = (key.clone(), hash.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                // Without a conflict target this skips a repeated id and a
                // repeated hash alike.
                let done = sqlx::query(
                    "INSERT INTO api_keys (id, tenant, name, role, publish_globs,
                     subscribe_globs, hash, created_ms, revoked_ms, last_used_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
                )
                .bind(&key.id)
                .bind(&key.tenant)
                .bind(&key.name)
                .bind(key.role.as_str())
                .bind(&publish)
                .bind(&subscribe)
                .bind(&hash)
                .bind(key.created_ms)
                .bind(key.revoked_ms)
                .bind(key.last_used_ms)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Conflict(format!(
                        "an API key with id `{}` or the same secret already exists",
                        key.id
                    )))
                }
            })
        })
        .await
    }

    /// See [`EventStore::revoke_api_key`](streambus_core::EventStore::revoke_api_key).
    pub(super) async fn revoke_key(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_ms = ?3
                     WHERE tenant = ?1 AND id = ?2 AND revoked_ms IS NULL",
                )
                .bind(&tenant)
                .bind(&id)
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// See [`EventStore::touch_api_key`](streambus_core::EventStore::touch_api_key).
    pub(super) async fn touch_key(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE api_keys SET last_used_ms = ?2
                     WHERE id = ?1 AND (last_used_ms IS NULL OR last_used_ms < ?2)",
                )
                .bind(&id)
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(())
            })
        })
        .await
    }

    /// See [`EventStore::put_tenant`](streambus_core::EventStore::put_tenant).
    pub(super) async fn upsert_tenant(
        &self,
        name: &str,
        display_name: &str,
        limits: &serde_json::Value,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        check_tenant_name(name).map_err(StoreError::Conflict)?;
        let limits = encode(limits)?;
        let (name, display_name) = (name.to_owned(), display_name.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO tenants (name, display_name, created_ms, limits)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .bind(&name)
                .bind(&display_name)
                .bind(now_ms)
                .bind(&limits)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?
                .rows_affected();
                if inserted == 1 {
                    return Ok(true);
                }
                sqlx::query("UPDATE tenants SET display_name = ?2, limits = ?3 WHERE name = ?1")
                    .bind(&name)
                    .bind(&display_name)
                    .bind(&limits)
                    .execute(&mut *conn)
                    .await
                    .map_err(sql_error)?;
                Ok(false)
            })
        })
        .await
    }

    /// See [`EventStore::delete_tenant`](streambus_core::EventStore::delete_tenant).
    pub(super) async fn remove_tenant(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM tenants WHERE name = ?1")
                    .bind(&name)
                    .execute(&mut *conn)
                    .await
                    .map_err(sql_error)?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    /// See [`EventStore::append_audit`](streambus_core::EventStore::append_audit).
    pub(super) async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let detail = encode(&entry.detail)?;
        let entry = entry.clone();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO audit_log (tenant, at_ms, actor, role, action, target,
                     address, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .bind(&entry.tenant)
                .bind(entry.at_ms)
                .bind(&entry.actor)
                .bind(entry.role.map(Role::as_str))
                .bind(&entry.action)
                .bind(&entry.target)
                .bind(&entry.address)
                .bind(i64::from(entry.outcome))
                .bind(&detail)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
                Ok(())
            })
        })
        .await
    }
}

/// The key whose secret hashes to `hash`.
pub(super) async fn key_by_hash(
    reads: &SqlitePool,
    hash: &str,
) -> Result<Option<ApiKey>, StoreError> {
    let row = sqlx::query(concat!(select_keys!(), " WHERE hash = ?1"))
        .bind(hash)
        .fetch_optional(reads)
        .await
        .map_err(sql_error)?;
    row.as_ref().map(key_row).transpose()
}

/// The tenant's keys, newest first.
pub(super) async fn list_keys(reads: &SqlitePool, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
    let rows = sqlx::query(concat!(
        select_keys!(),
        " WHERE tenant = ?1 ORDER BY created_ms DESC, id DESC"
    ))
    .bind(tenant)
    .fetch_all(reads)
    .await
    .map_err(sql_error)?;
    rows.iter().map(key_row).collect()
}

/// One tenant record.
pub(super) async fn get_tenant(
    reads: &SqlitePool,
    name: &str,
) -> Result<Option<Tenant>, StoreError> {
    let row = sqlx::query(concat!(select_tenants!(), " WHERE name = ?1"))
        .bind(name)
        .fetch_optional(reads)
        .await
        .map_err(sql_error)?;
    row.as_ref().map(tenant_row).transpose()
}

/// Every tenant record, by name.
pub(super) async fn list_tenants(reads: &SqlitePool) -> Result<Vec<Tenant>, StoreError> {
    let rows = sqlx::query(concat!(select_tenants!(), " ORDER BY name"))
        .fetch_all(reads)
        .await
        .map_err(sql_error)?;
    rows.iter().map(tenant_row).collect()
}

/// A page of the tenant's audit log, newest first, and the next cursor.
pub(super) async fn query_audit(
    reads: &SqlitePool,
    tenant: &str,
    q: &AuditQuery,
) -> Result<(Vec<AuditEntry>, Option<u64>), StoreError> {
    if q.limit == 0 {
        return Ok((Vec::new(), None));
    }
    let mut b = QueryBuilder::<Sqlite>::new(
        "SELECT seq, tenant, at_ms, actor, role, action, target, address, outcome, detail \
         FROM audit_log WHERE tenant = ",
    );
    b.push_bind(tenant.to_owned());
    if let Some(actor) = &q.actor {
        b.push(" AND actor = ").push_bind(actor.clone());
    }
    if let Some(action) = &q.action {
        b.push(" AND action = ").push_bind(action.clone());
    }
    if let Some(since) = q.since_ms {
        b.push(" AND at_ms >= ").push_bind(since);
    }
    if let Some(until) = q.until_ms {
        b.push(" AND at_ms < ").push_bind(until);
    }
    if let Some(cursor) = q.cursor {
        b.push(" AND seq < ")
            .push_bind(i64::try_from(cursor).unwrap_or(i64::MAX));
    }
    b.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::try_from(q.limit).unwrap_or(i64::MAX));
    let rows = b.build().fetch_all(reads).await.map_err(sql_error)?;
    let entries = rows.iter().map(audit_row).collect::<Result<Vec<_>, _>>()?;
    let next = if entries.len() == q.limit {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok((entries, next))
}

/// A `role` column.
fn role(s: &str) -> Result<Role, StoreError> {
    Role::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown role {s:?}")))
}

/// A row of `select_keys!()`.
fn key_row(r: &SqliteRow) -> Result<ApiKey, StoreError> {
    let text = |i: usize| -> Result<&str, StoreError> { r.try_get(i).map_err(sql_error) };
    Ok(ApiKey {
        id: text(0)?.to_owned(),
        tenant: text(1)?.to_owned(),
        name: text(2)?.to_owned(),
        role: role(text(3)?)?,
        publish: decode("api key publish globs", text(4)?)?,
        subscribe: decode("api key subscribe globs", text(5)?)?,
        created_ms: r.try_get(6).map_err(sql_error)?,
        revoked_ms: r.try_get(7).map_err(sql_error)?,
        last_used_ms: r.try_get(8).map_err(sql_error)?,
    })
}

/// A row of `select_tenants!()`.
fn tenant_row(r: &SqliteRow) -> Result<Tenant, StoreError> {
    let limits: &str = r.try_get(3).map_err(sql_error)?;
    Ok(Tenant {
        name: r.try_get(0).map_err(sql_error)?,
        display_name: r.try_get(1).map_err(sql_error)?,
        created_ms: r.try_get(2).map_err(sql_error)?,
        limits: decode("tenant limits", limits)?,
    })
}

/// An `audit_log` row, selected in column order.
fn audit_row(r: &SqliteRow) -> Result<AuditEntry, StoreError> {
    let seq: i64 = r.try_get(0).map_err(sql_error)?;
    let role_name: Option<&str> = r.try_get(4).map_err(sql_error)?;
    let outcome: i64 = r.try_get(8).map_err(sql_error)?;
    let detail: &str = r.try_get(9).map_err(sql_error)?;
    Ok(AuditEntry {
        seq: u64::try_from(seq).unwrap_or(0),
        tenant: r.try_get(1).map_err(sql_error)?,
        at_ms: r.try_get(2).map_err(sql_error)?,
        actor: r.try_get(3).map_err(sql_error)?,
        role: role_name.map(role).transpose()?,
        action: r.try_get(5).map_err(sql_error)?,
        target: r.try_get(6).map_err(sql_error)?,
        address: r.try_get(7).map_err(sql_error)?,
        outcome: u16::try_from(outcome)
            .map_err(|_| StoreError::Corrupt(format!("audit outcome {outcome} is no status")))?,
        detail: decode("audit detail", detail)?,
    })
}
