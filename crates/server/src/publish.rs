//! The one publish path, shared by REST, WebSocket, the seed 004 broadcast,
//! template fires and the demo generators: validate each item (honouring the
//! event-type registry), append the valid ones as one batch (one group
//! commit), and report per item. A bad item never costs a good neighbour its
//! place (SPEC §3).

use std::sync::Arc;

use serde_json::Value;
use streambus_core::ValidationError;
use streambus_core::store::Appended;
use streambus_core::validate::{self, NewEvent, PublishContext};

use crate::api::error::ApiError;
use crate::state::AppState;

/// The outcome of one item of a batch.
#[derive(Debug)]
pub enum ItemResult {
    /// Stored (or found stored, for a repeated id).
    Stored(Appended),
    /// Refused; nothing of it was stored.
    Rejected(ApiError),
}

/// Validates one JSON item whose encoded size is `len`: the size limit,
/// then [`prepare`].
///
/// # Errors
/// 413 for an oversized item, 422 naming the field otherwise.
pub fn validate_item(
    state: &AppState,
    tenant: &str,
    value: Value,
    len: usize,
    ctx: &PublishContext<'_>,
) -> Result<NewEvent, ApiError> {
    validate::check_size(len, &state.limits)?;
    Ok(prepare(state, tenant, value, ctx)?)
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
