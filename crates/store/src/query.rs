//! What both SQL backends read and write alike: the event-query filters
//! after the tenant/stream scope (which each backend phrases for its own
//! planner), the cursor, and the decoding of a `streams` row.

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use streambus_core::StoreError;
use streambus_core::store::{EventQuery, StreamInfo, StreamState};

use crate::sql_error;

/// Appends ` AND …` for type, class, source, time range and cursor.
pub(crate) fn push_filters<DB>(b: &mut QueryBuilder<DB>, q: &EventQuery)
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'static str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    if let Some(t) = &q.event_type {
        b.push(" AND type = ").push_bind(t.clone());
    }
    if let Some(c) = q.class {
        b.push(" AND class = ").push_bind(c.as_str());
    }
    if let Some(s) = &q.source {
        b.push(" AND source = ").push_bind(s.clone());
    }
    if let Some(start) = q.start_ms {
        b.push(" AND time_ms >= ").push_bind(start);
    }
    if let Some(end) = q.end_ms {
        b.push(" AND time_ms < ").push_bind(end);
    }
    if let Some(c) = q.cursor {
        b.push(if q.descending {
            " AND seq < "
        } else {
            " AND seq > "
        });
        b.push_bind(i64::try_from(c).unwrap_or(i64::MAX));
    }
}

/// A `streams` row selected as
/// `name, state, created_ms, last_seq, event_count, pruned_through, held_after`.
///
/// # Errors
/// `Corrupt` when the state is unknown or a column does not decode.
pub(crate) fn stream_info<R>(row: &R) -> Result<StreamInfo, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let count = |i: usize| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(i).map_err(sql_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let state: &str = row.try_get(1).map_err(sql_error)?;
    Ok(StreamInfo {
        name: row.try_get(0).map_err(sql_error)?,
        state: StreamState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown stream state {state:?}")))?,
        created_ms: row.try_get(2).map_err(sql_error)?,
        last_offset: count(3)?,
        events: count(4)?,
        pruned_through: count(5)?,
        held_after: count(6)?,
    })
}
