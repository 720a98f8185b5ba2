//! Reads of [`SqliteStore`](super::SqliteStore), on the read-only pool.
//!
//! WAL lets these run while the writer commits, so history queries and
//! catch-up reads never queue behind publishers. Every statement is scoped by
//! tenant (SPEC §5). Rows are turned back into records with
//! `Record::from_body`, which splices the offset into the stored JSON instead
//! of re-serialising it.

use std::sync::Arc;

use sqlx::sqlite::{Sqlite, SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row};
use streambus_core::StoreError;
use streambus_core::event::Record;
use streambus_core::store::{EventQuery, Page, StreamInfo};

use crate::sql_error;

/// Offsets and counts are `u64` in the model and `INTEGER` (i64) in SQLite.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Builds a record from the `seq` and `body` columns at the given indexes.
///
/// # Errors
/// `Corrupt` when the body is not a stored event.
pub(crate) fn record_from_row(
    tenant: &str,
    row: &SqliteRow,
    seq_at: usize,
    body_at: usize,
) -> Result<Arc<Record>, StoreError> {
    let seq: i64 = row.try_get(seq_at).map_err(sql_error)?;
    let body: &str = row.try_get(body_at).map_err(sql_error)?;
    Record::from_body(tenant, to_u64(seq), body)
        .map(Arc::new)
        .map_err(|e| StoreError::Corrupt(format!("event at offset {seq}: {e}")))
}

/// One event by id.
pub(crate) async fn get(
    pool: &SqlitePool,
    tenant: &str,
    id: &str,
) -> Result<Option<Arc<Record>>, StoreError> {
    let row = sqlx::query("SELECT seq, body FROM events WHERE tenant = ?1 AND id = ?2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(sql_error)?;
    row.map(|r| record_from_row(tenant, &r, 0, 1)).transpose()
}

/// Above this many streams a query scans by offset instead of merging one
/// index scan per stream.
const MAX_MERGED_STREAMS: usize = 32;

/// Which rows of the tenant a query reads, and so which access path it takes.
enum Scope<'a> {
    /// One stream: a range of the `(tenant, stream, seq)` index.
    Stream(&'a str),
    /// Every stream (`None`) or a long list: a walk of the table in offset
    /// order from the cursor, filtering as it goes. The unary `+` keeps SQLite
    /// from choosing the `(tenant, id)` index and sorting the whole tenant —
    /// the right trade for the embedded, mostly single-tenant, store.
    Scan(Option<&'a [String]>),
}

/// A history page: filters become a dynamic WHERE, the cursor is an offset
/// bound in the direction of the order.
///
/// A short list of streams becomes a `UNION ALL` of one index scan per stream,
/// each stopping after `limit` rows, merged by offset: a page costs about
/// `streams x limit` rows whatever the history holds.
pub(crate) async fn query(
    pool: &SqlitePool,
    tenant: &str,
    q: &EventQuery,
) -> Result<Page, StoreError> {
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
    let mut b = QueryBuilder::<Sqlite>::new("");
    match streams.as_deref() {
        Some([one]) => push_select(&mut b, tenant, q, Scope::Stream(one)),
        Some(list) if list.len() <= MAX_MERGED_STREAMS => {
            for (i, s) in list.iter().enumerate() {
                if i > 0 {
                    b.push(" UNION ALL ");
                }
                b.push("SELECT seq, body FROM (");
                push_select(&mut b, tenant, q, Scope::Stream(s));
                b.push(order).push_bind(limit).push(")");
            }
        }
        list => push_select(&mut b, tenant, q, Scope::Scan(list)),
    }
    b.push(order).push_bind(limit);

    let rows = b.build().fetch_all(pool).await.map_err(sql_error)?;
    let records = rows
        .iter()
        .map(|r| record_from_row(tenant, r, 0, 1))
        .collect::<Result<Vec<_>, _>>()?;
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

/// `SELECT seq, body FROM events WHERE <scope> <filters> <cursor>`.
fn push_select(b: &mut QueryBuilder<Sqlite>, tenant: &str, q: &EventQuery, scope: Scope<'_>) {
    b.push("SELECT seq, body FROM events WHERE ");
    match scope {
        Scope::Stream(s) => {
            b.push("tenant = ").push_bind(tenant.to_owned());
            b.push(" AND stream = ").push_bind(s.to_owned());
        }
        Scope::Scan(list) => {
            b.push("+tenant = ").push_bind(tenant.to_owned());
            if let Some(list) = list {
                b.push(" AND +stream IN (");
                let mut sep = b.separated(", ");
                for s in list {
                    sep.push_bind(s.clone());
                }
                b.push(")");
            }
        }
    }
    crate::query::push_filters(b, q);
}

/// Every stream of a tenant, by name.
pub(crate) async fn list_streams(
    pool: &SqlitePool,
    tenant: &str,
) -> Result<Vec<StreamInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, state, created_ms, last_seq, event_count, pruned_through, held_after
         FROM streams WHERE tenant = ?1 ORDER BY name",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter().map(crate::query::stream_info).collect()
}

/// Every (tenant, stream) pair, for retention.
pub(crate) async fn all_streams(pool: &SqlitePool) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query("SELECT tenant, name FROM streams ORDER BY tenant, name")
        .fetch_all(pool)
        .await
        .map_err(sql_error)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(sql_error)?,
                r.try_get(1).map_err(sql_error)?,
            ))
        })
        .collect()
}

/// The offset of the `(n+1)`-th newest event of a stream: keeping `n` events
/// means removing it and everything older. `None` when the stream holds `n` or
/// fewer.
pub(crate) async fn nth_newest(
    pool: &SqlitePool,
    tenant: &str,
    stream: &str,
    n: u64,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT seq FROM events WHERE tenant = ?1 AND stream = ?2
         ORDER BY seq DESC LIMIT 1 OFFSET ?3",
    )
    .bind(tenant)
    .bind(stream)
    .bind(to_i64(n))
    .fetch_optional(pool)
    .await
    .map_err(sql_error)?;
    row.map(|r| r.try_get(0).map_err(sql_error)).transpose()
}

/// Up to `limit` offsets after `after` that retention removes: at or below
/// `seq_cut`, or with an event time before `time_cut`.
pub(crate) async fn prune_candidates(
    pool: &SqlitePool,
    tenant: &str,
    stream: &str,
    after: i64,
    seq_cut: Option<i64>,
    time_cut: Option<i64>,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    // Without an age limit nothing above the count cut-off qualifies, so the
    // scan stops there instead of walking the whole stream.
    let upper = if time_cut.is_some() {
        i64::MAX
    } else {
        seq_cut.unwrap_or(0)
    };
    let rows = sqlx::query(
        "SELECT seq FROM events
         WHERE tenant = ?1 AND stream = ?2 AND seq > ?3 AND seq <= ?4
           AND (seq <= ?5 OR time_ms < ?6)
         ORDER BY seq LIMIT ?7",
    )
    .bind(tenant)
    .bind(stream)
    .bind(after)
    .bind(upper)
    .bind(seq_cut.unwrap_or(0))
    .bind(time_cut.unwrap_or(i64::MIN))
    .bind(to_i64(limit as u64))
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(sql_error))
        .collect()
}
