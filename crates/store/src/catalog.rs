//! What both SQL backends share for the on-air catalog and lifecycle
//! (issue 4): encoding catalog bodies, decoding status columns, and the
//! event-level status change, so the two stores differ only in their SQL.
//! Held scheduled events (SPEC §4) reuse the body helpers plus
//! [`scheduled_row`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use streambus_core::StoreError;
use streambus_core::event::{Event, Status};
use streambus_core::lifecycle::{apply_status, can_transition, transition_error};

/// The JSON body a catalog row keeps.
///
/// # Errors
/// `Corrupt` when the value does not serialise (it always does for the core
/// types; the error keeps a bug from panicking a writer).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A catalog row's body, decoded.
///
/// # Errors
/// `Corrupt` naming `what` when it does not decode.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The `due_ms` and body of a held scheduled event (the body is the
/// event's canonical JSON without offset, as the log would store it).
///
/// # Errors
/// `Conflict` when `scheduled_at` is missing or not RFC 3339.
pub(crate) fn scheduled_row(event: &Event) -> Result<(i64, String), StoreError> {
    let due = event
        .scheduled_at
        .as_deref()
        .and_then(streambus_core::time::parse_rfc3339_ms)
        .ok_or_else(|| {
            StoreError::Conflict(format!(
                "event `{}` has no valid scheduled_at to hold it until",
                event.id
            ))
        })?;
    Ok((due, event.to_body()))
}

/// A `status` column.
///
/// # Errors
/// `Corrupt` for a name the lifecycle does not know.
pub(crate) fn status_column(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

/// A `play` column (`BIGINT`/`INTEGER`) as the model's `u32`.
pub(crate) fn play_column(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What an event-level status update does to a stored event.
pub(crate) enum StatusChange {
    /// It already has that status: nothing to write.
    Unchanged,
    /// The changed event and its new body (without offset).
    Changed(Box<Event>, String),
}

/// Checks and applies `to` at `at_ms` to a stored event (see
/// [`EventStore::set_event_status`](streambus_core::EventStore::set_event_status)).
///
/// # Errors
/// `Conflict` when the event has no lifecycle or the transition is refused.
pub(crate) fn change_status(
    mut event: Event,
    to: Status,
    at_ms: i64,
) -> Result<StatusChange, StoreError> {
    let Some(from) = event.status else {
        return Err(StoreError::Conflict(format!(
            "event `{}` has no lifecycle (only animated and tracked events have a status)",
            event.id
        )));
    };
    if from == to {
        return Ok(StatusChange::Unchanged);
    }
    if !can_transition(from, to) {
        return Err(StoreError::Conflict(transition_error(from, to)));
    }
    apply_status(&mut event, to, at_ms);
    let body = event.to_body();
    Ok(StatusChange::Changed(Box::new(event), body))
}

/// One document by key, decoded; `get_sql` selects the JSON body as its
/// first column for `(tenant, key)`. Shared by both backends.
pub(crate) async fn get_doc<DB, T>(
    pool: &sqlx::Pool<DB>,
    what: &str,
    get_sql: &'static str,
    tenant: &str,
    key: &str,
) -> Result<Option<T>, StoreError>
where
    DB: sqlx::Database,
    T: DeserializeOwned,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    use sqlx::Row;
    let row = sqlx::query::<DB>(get_sql)
        .bind(tenant)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(crate::sql_error)?;
    match row {
        None => Ok(None),
        Some(r) => {
            let body: &str = r.try_get(0).map_err(crate::sql_error)?;
            decode(what, body).map(Some)
        }
    }
}

/// Every document of the tenant, by key; `list_sql` selects the JSON body as
/// its first column for `tenant`. Shared by both backends.
pub(crate) async fn list_docs<DB, T>(
    pool: &sqlx::Pool<DB>,
    what: &str,
    list_sql: &'static str,
    tenant: &str,
) -> Result<Vec<T>, StoreError>
where
    DB: sqlx::Database,
    T: DeserializeOwned,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    use sqlx::Row;
    let rows = sqlx::query::<DB>(list_sql)
        .bind(tenant)
        .fetch_all(pool)
        .await
        .map_err(crate::sql_error)?;
    rows.iter()
        .map(|r| {
            let body: &str = r.try_get(0).map_err(crate::sql_error)?;
            decode(what, body)
        })
        .collect()
}
