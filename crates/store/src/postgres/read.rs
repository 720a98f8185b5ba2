//! Reads of [`PgStore`](super::PgStore): `get`, `query`, `head`, `list_streams`.
//!
//! Every statement is scoped by tenant (SPEC §5). Bodies come back as
//! `body::text` (PostgreSQL's rendering of the JSONB) and become records with
//! `Record::from_body`, which splices the offset in front. The query shapes
//! mirror the SQLite store's (`sqlite/read.rs`): one stream is a range of the
//! `(tenant, stream, seq)` index; a short list of streams is a `UNION ALL` of
//! such ranges, each cut at the page size, merged by offset.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use streambus_core::StoreError;
use streambus_core::event::Record;
use streambus_core::store::{EventQuery, Page, StreamInfo};

use super::{MAX_MERGED_STREAMS, to_i64, to_u64};
use crate::sql_error;

/// Builds a record from a `seq` and a `body::text` column.
///
/// # Errors
/// `sqlx::Error::Decode` (mapped to `Corrupt`) when the body is not an event.
pub(super) fn record_from_row(
    tenant: &str,
    row: &PgRow,
    seq_at: usize,
    body_at: usize,
) -> Result<Arc<Record>, sqlx::Error> {
    let seq: i64 = row.try_get(seq_at)?;
    let body: &str = row.try_get(body_at)?;
    Record::from_body(tenant, to_u64(seq), body)
        .map(Arc::new)
        .map_err(|e| sqlx::Error::Decode(format!("event at offset {seq}: {e}").into()))
}

/// One event by id.
pub(super) async fn get(
    pool: &PgPool,
    tenant: &str,
    id: &str,
) -> Result<Option<Arc<Record>>, StoreError> {
    let row = sqlx::query("SELECT seq, body::text FROM events WHERE tenant = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(sql_error)?;
    row.map(|r| record_from_row(tenant, &r, 0, 1))
        .transpose()
        .map_err(sql_error)
}

/// The highest offset ever stored. Retention may have deleted the newest
/// events, so the streams' `last_seq` and `pruned_through` count too, as in
/// the SQLite store: an offset is never handed out twice. Costs a primary-key
/// probe and a scan of `streams` (a few thousand rows at most in practice).
pub(super) async fn head<'e, E>(conn: E) -> Result<u64, StoreError>
where
    E: sqlx::PgExecutor<'e>,
{
    head_raw(conn).await.map(to_u64).map_err(sql_error)
}

/// [`head`] as an `i64`, for use inside a transaction.
pub(super) async fn head_raw<'e, E>(conn: E) -> Result<i64, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar(
        "SELECT COALESCE(GREATEST(
            (SELECT max(seq) FROM events),
            (SELECT max(last_seq) FROM streams),
            (SELECT max(pruned_through) FROM streams)), 0)::bigint",
    )
    .fetch_one(conn)
    .await
}

/// A history page: filters become a dynamic WHERE, the cursor is an offset
/// bound in the direction of the order; see the module docs for the shapes.
pub(super) async fn query(pool: &PgPool, tenant: &str, q: &EventQuery) -> Result<Page, StoreError> {
    let mut streams = q.streams.clone();
    if let Some(list) = &mut streams {
        list.sort_unstable();
        list.dedup();
    }
    if q.limit == 0 || streams.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Page::default());
    }
    let limit = to_i64(q.limit as u64);
    let order = if q.descending {
        " ORDER BY seq DESC LIMIT "
    } else {
        " ORDER BY seq ASC LIMIT "
    };
    let mut b = QueryBuilder::<Postgres>::new("");
    match streams.as_deref() {
        Some([one]) => {
            push_select(&mut b, tenant, q, Scope::Stream(one), "body::text");
        }
        Some(list) if list.len() <= MAX_MERGED_STREAMS => {
            b.push("SELECT seq, body::text FROM (");
            for (i, s) in list.iter().enumerate() {
                if i > 0 {
                    b.push(" UNION ALL ");
                }
                b.push("(");
                push_select(&mut b, tenant, q, Scope::Stream(s), "body");
                b.push(order).push_bind(limit).push(")");
            }
            b.push(") AS merged");
        }
        list => {
            push_select(&mut b, tenant, q, Scope::Scan(list), "body::text");
        }
    }
    b.push(order).push_bind(limit);

    let rows = b.build().fetch_all(pool).await.map_err(sql_error)?;
    let records = rows
        .iter()
        .map(|r| record_from_row(tenant, r, 0, 1))
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    let next_cursor = if records.len() == q.limit {
        records.last().map(|r| r.offset())
    } else {
        None
    };
    Ok(Page {
        records,
        next_cursor,
    })
}

/// Which rows of the tenant a query reads.
enum Scope<'a> {
    /// One stream: a range of the `(tenant, stream, seq)` index.
    Stream(&'a str),
    /// Every stream (`None`) or a long list: one filtered scan, the planner's
    /// choice of path.
    Scan(Option<&'a [String]>),
}

/// `SELECT seq, <body> FROM events WHERE <scope> <filters> <cursor>`.
fn push_select(
    b: &mut QueryBuilder<Postgres>,
    tenant: &str,
    q: &EventQuery,
    scope: Scope<'_>,
    body: &str,
) {
    b.push("SELECT seq, ")
        .push(body)
        .push(" FROM events WHERE tenant = ")
        .push_bind(tenant.to_owned());
    match scope {
        Scope::Stream(s) => {
            b.push(" AND stream = ").push_bind(s.to_owned());
        }
        Scope::Scan(None) => {}
        Scope::Scan(Some(list)) => {
            b.push(" AND stream = ANY(")
                .push_bind(list.to_vec())
                .push(")");
        }
    }
    crate::query::push_filters(b, q);
}

/// Every stream of a tenant, by name in byte order (as SQLite sorts).
pub(super) async fn list_streams(
    pool: &PgPool,
    tenant: &str,
) -> Result<Vec<StreamInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, state, created_ms, last_seq, event_count, pruned_through, held_after
         FROM streams WHERE tenant = $1 ORDER BY name COLLATE \"C\"",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(crate::query::stream_info).collect()
}
