//! The one publish path, shared by REST, WebSocket, the seed 004 broadcast,
//! template fires and the demo generators: validate each item (honouring the
//! event-type registry), append the valid ones as one batch (one group
//! commit), and report per item. A bad item never costs a good neighbour its
//! place (SPEC §3).
//!
//! Scheduled events (SPEC §4): [`publish_or_hold`] and [`publish_one_or_hold`]
//! split off every valid event whose `scheduled_at` lies more than
//! [`HOLD_THRESHOLD_MS`] ahead and hold it in the store instead of appending
//! it; [`crate::schedule`] appends it when it is due. Every producer-facing
//! path (REST, WebSocket `PUBLISH`, template fires) uses them;
//! [`publish_batch`] and [`publish_one`] append at once, for the server's own
//! events (the seed 004 broadcast, the demo generators, the overlay queues'
//! bookkeeping) and for releasing held events.

use std::sync::Arc;

use serde_json::Value;
use streambus_core::auth::Action;
use streambus_core::store::Appended;
use streambus_core::validate::{self, NewEvent, PublishContext};
use streambus_core::{Event, ValidationError};

use crate::api::error::ApiError;
use crate::auth::Identity;
use crate::state::AppState;

/// The outcome of one item of a batch.
#[derive(Debug)]
pub enum ItemResult {
    /// Stored (or found stored, for a repeated id).
    Stored(Appended),
    /// Refused; nothing of it was stored.
    Rejected(ApiError),
}

/// How far ahead `scheduled_at` must lie for an event to be held (SPEC §4).
/// Nearer ones, and past ones, are appended at once: holding them would only
/// add the scheduler's latency.
pub const HOLD_THRESHOLD_MS: i64 = 50;

/// What became of one accepted event.
#[derive(Debug)]
pub enum Published {
    /// Appended (or found stored, for a repeated id).
    Stored(Appended),
    /// Held until its `scheduled_at` (for a repeated id: the event held
    /// first); it has no offset yet.
    Held(Box<Event>),
}

/// When `event` must be held at `now_ms`: its `scheduled_at`, in ms, when
/// that lies more than [`HOLD_THRESHOLD_MS`] ahead; `None` to append now.
pub fn hold_until(event: &Event, now_ms: i64) -> Option<i64> {
    let due = streambus_core::time::parse_rfc3339_ms(event.scheduled_at.as_deref()?)?;
    (due > now_ms.saturating_add(HOLD_THRESHOLD_MS)).then_some(due)
}

/// Validates one JSON item whose encoded size is `len` for `who`: the size
/// limit, then [`prepare`] in `who`'s tenant, whether `who` may publish to
/// the event's stream, and `who`'s publish rate.
///
/// # Errors
/// 413 for an oversized item, 422 naming the field, 403 for a stream `who`
/// may not publish to, 429 over the rate.
pub fn validate_item(
    state: &AppState,
    who: &Identity,
    value: Value,
    len: usize,
    ctx: &PublishContext<'_>,
) -> Result<NewEvent, ApiError> {
    validate::check_size(len, &state.limits)?;
    let event = prepare(state, &who.principal.tenant, value, ctx)?;
    who.principal
        .check(Action::Publish(&event.event.stream_id))?;
    state.limiter.publish(who)?;
    Ok(event)
}

/// Turns one JSON item into an event, honouring the event-type registry
/// (SPEC §2 "Event type"): when its type is registered, the type's defaults
/// fill what the producer left out (before validation, so validation still
/// sees what was given), and then `data` must satisfy the type's schema.
/// Every publish path — REST single, batch and NDJSON, WebSocket `PUBLISH`,
/// the seed 004 broadcast, template fires and the demo generators — comes
/// through here.
///
/// # Errors
/// The offending field; for a schema failure `data` plus the JSON pointer of
/// the failing location (`data/score`), with the schema's message.
pub fn prepare(
    state: &AppState,
    tenant: &str,
    mut value: Value,
    ctx: &PublishContext<'_>,
) -> Result<NewEvent, ValidationError> {
    let registered = match &mut value {
        Value::Object(obj) => {
            let name = ["type", "event_type"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(Value::as_str));
            let registered = name.and_then(|n| state.types.get(tenant, n));
            if let Some(t) = &registered {
                t.apply_defaults(obj);
            }
            registered
        }
        _ => None,
    };
    let event = validate::event_from_json(value, ctx)?;
    if let Some(t) = registered {
        t.check_data(&event.event.data)?;
    }
    Ok(event)
}

/// Appends the valid items in one batch and reports every item in order.
///
/// # Errors
/// Only when the log fails: then nothing of the batch was stored.
pub async fn publish_batch(
    state: &AppState,
    tenant: &str,
    items: Vec<Result<NewEvent, ApiError>>,
) -> Result<Vec<ItemResult>, ApiError> {
    // Move the valid events out (no copy); keep each refusal in its slot.
    let mut valid = Vec::with_capacity(items.len());
    let slots: Vec<Option<ApiError>> = items
        .into_iter()
        .map(|item| match item {
            Ok(event) => {
                valid.push(event);
                None
            }
            Err(e) => Some(e),
        })
        .collect();
    let mut appended = if valid.is_empty() {
        Vec::new().into_iter()
    } else {
        state.log.append(tenant, valid).await?.into_iter()
    };
    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Some(e) => ItemResult::Rejected(e),
            None => match appended.next() {
                Some(a) => ItemResult::Stored(a),
                None => ItemResult::Rejected(ApiError::Internal(
                    "log returned fewer results than events".into(),
                )),
            },
        })
        .collect())
}

/// Like [`publish_batch`], but holds the events scheduled for later
/// ([`hold_until`]) instead of appending them: the others are appended as
/// one batch first, then each held one is stored. Every item is reported in
/// order; a hold that fails is reported on its item (the appended
/// neighbours stay stored).
///
/// # Errors
/// Only when the log fails: then nothing of the batch was stored or held.
pub async fn publish_or_hold(
    state: &AppState,
    tenant: &str,
    items: Vec<Result<NewEvent, ApiError>>,
) -> Result<Vec<Result<Published, ApiError>>, ApiError> {
    let now = streambus_core::time::now_ms();
    let mut to_hold = Vec::new();
    let items: Vec<Result<NewEvent, ApiError>> = items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            Ok(event) if hold_until(&event.event, now).is_some() => {
                to_hold.push((i, event));
                None
            }
            other => Some(other),
        })
        .collect();
    let mut appended = publish_batch(state, tenant, items).await?.into_iter();
    let mut held = Vec::with_capacity(to_hold.len());
    for (i, event) in to_hold {
        held.push((i, hold(state, tenant, event).await));
    }
    let mut held = held.into_iter().peekable();
    let total = appended.len() + held.len();
    Ok((0..total)
        .map(|i| match held.next_if(|(slot, _)| *slot == i) {
            Some((_, result)) => result,
            None => match appended.next() {
                Some(ItemResult::Stored(a)) => Ok(Published::Stored(a)),
                Some(ItemResult::Rejected(e)) => Err(e),
                None => Err(ApiError::Internal(
                    "publish returned fewer results than events".into(),
                )),
            },
        })
        .collect())
}

/// Like [`publish_one`], but holds an event scheduled for later
/// ([`hold_until`]).
///
/// # Errors
/// The log's or the store's failure.
pub async fn publish_one_or_hold(
    state: &AppState,
    tenant: &str,
    event: NewEvent,
) -> Result<Published, ApiError> {
    if hold_until(&event.event, streambus_core::time::now_ms()).is_some() {
        hold(state, tenant, event).await
    } else {
        publish_one(state, tenant, event)
            .await
            .map(Published::Stored)
    }
}

/// Holds one event until it is due. A supplied id keeps its idempotency
/// (SPEC §2): one already in the log is answered with the stored record,
/// one already held with the event held first.
async fn hold(state: &AppState, tenant: &str, new: NewEvent) -> Result<Published, ApiError> {
    let id = &new.event.id;
    if new.supplied_id
        && let Some(record) = state.store.get(tenant, id).await?
    {
        return Ok(Published::Stored(Appended {
            record,
            duplicate: true,
        }));
    }
    if state.store.put_scheduled(tenant, &new.event).await? {
        tracing::debug!(tenant, id, due = ?new.event.scheduled_at, "event held until due");
        return Ok(Published::Held(Box::new(new.event)));
    }
    if let Some(first) = state.store.get_scheduled(tenant, id).await? {
        return Ok(Published::Held(Box::new(first)));
    }
    // Released (or cancelled) between the put and the read.
    match state.store.get(tenant, id).await? {
        Some(record) => Ok(Published::Stored(Appended {
            record,
            duplicate: true,
        })),
        None => Err(ApiError::Conflict(format!(
            "the event held as `{id}` was cancelled while this publish ran; retry"
        ))),
    }
}

/// Appends one event.
///
/// # Errors
/// The log's failure.
pub async fn publish_one(
    state: &AppState,
    tenant: &str,
    event: NewEvent,
) -> Result<Appended, ApiError> {
    let mut out = state.log.append(tenant, vec![event]).await?;
    out.pop()
        .ok_or_else(|| ApiError::Internal("log returned no result".into()))
}

/// The record of an append, for responses.
pub fn stored_json(a: &Appended) -> &[u8] {
    &Arc::as_ref(&a.record).json
}
