//! The part of an event query both SQL backends write alike: the filters
//! after the tenant/stream scope (which each backend phrases for its own
//! planner) and the cursor.

use sqlx::{Database, Encode, QueryBuilder, Type};
use streambus_core::store::EventQuery;

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
