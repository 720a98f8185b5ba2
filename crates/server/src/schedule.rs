//! Scheduled events (SPEC §4: "delivered at that time, also after a
//! restart").
//!
//! The publish path ([`crate::publish::publish_or_hold`]) holds an event whose
//! `scheduled_at` lies ahead in the store (`EventStore::put_scheduled`),
//! apart from the log: it has no offset and reaches no subscriber. [`run`]
//! wakes every [`TICK`] — and once at start, so what fell due while the
//! server was down goes out at once — takes what is due, appends it to the
//! log under its own id, and only then deletes the held row. A crash in
//! between appends it again after the restart; the id is marked supplied, so
//! the log answers that second append with the stored record and delivers
//! nothing new. The same de-duplication lets every node of a cluster run
//! this loop over the shared store.
//!
//! [`cancel`] withdraws a held event. It cannot stop an event the loop has
//! already read for appending, so a cancel within one tick of the due time
//! may come too late (it then finds nothing to cancel, or — in the narrow
//! window between the loop's read and its append — reports a cancel of an
//! event that is delivered all the same).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use streambus_core::validate::NewEvent;
use streambus_core::{Event, Status};
use tracing::{debug, warn};

use crate::api::error::ApiError;
use crate::state::AppState;

/// How often the scheduler looks for due events: the delivery latency of a
/// scheduled event is at most this plus one append.
pub const TICK: Duration = Duration::from_millis(200);

/// Most due events one pass takes; a full pass is followed by another at
/// once rather than after a tick, so a backlog drains at append speed.
pub const BATCH: usize = 500;

/// Releases due events every [`TICK`] until `state.shutdown`.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            // The first tick completes at once: overdue events go out at start.
            _ = tick.tick() => {
                while release_due(&state, streambus_core::time::now_ms()).await == BATCH
                    && !state.shutdown.is_cancelled()
                {}
            }
        }
    }
    debug!("scheduler stopped");
}

/// Appends the events due at `now_ms` (at most [`BATCH`]), one batch per
/// tenant in due order, and deletes each once it is in the log. Returns how
/// many were due; a tenant whose append fails keeps its events held for the
/// next pass.
pub async fn release_due(state: &AppState, now_ms: i64) -> usize {
    let due = match state.store.due_scheduled(now_ms, BATCH).await {
        Ok(due) => due,
        Err(e) => {
            warn!(error = %e, "cannot read due scheduled events");
            return 0;
        }
    };
    let count = due.len();
    // Per tenant, keeping the due order within each.
    let mut order: Vec<String> = Vec::new();
    let mut by_tenant: HashMap<String, Vec<Event>> = HashMap::new();
    for (tenant, event) in due {
        by_tenant
            .entry(tenant)
            .or_insert_with_key(|t| {
                order.push(t.clone());
                Vec::new()
            })
            .push(event);
    }
    for tenant in order {
        let events = by_tenant.remove(&tenant).unwrap_or_default();
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let batch = events
            .into_iter()
            // Supplied, so that a second append (a retry after a crash,
            // another node) is answered with the stored record.
            .map(|event| NewEvent {
                event,
                supplied_id: true,
            })
            .collect();
        let appended = match state.log.append(&tenant, batch).await {
            Ok(appended) => appended,
            Err(e) => {
                warn!(error = %e, tenant, events = ids.len(), "cannot release scheduled events; retrying");
                continue;
            }
        };
        for a in &appended {
            debug!(tenant, id = %a.record.event.id, offset = a.record.offset(), duplicate = a.duplicate, "scheduled event released");
        }
        for id in &ids {
            if let Err(e) = state.store.delete_scheduled(&tenant, id).await {
                // Still held: the next pass appends it again, as a duplicate.
                warn!(error = %e, tenant, id, "cannot delete a released scheduled event");
            }
        }
    }
    count
}

/// Withdraws a held event before it is due: deletes it and returns it with
/// `status` `cancelled`; `None` when no such event is held (unknown, already
/// released, or already cancelled).
///
/// # Errors
/// The store's failure.
pub async fn cancel(state: &AppState, tenant: &str, id: &str) -> Result<Option<Event>, ApiError> {
    let Some(mut event) = state.store.get_scheduled(tenant, id).await? else {
        return Ok(None);
    };
    if !state.store.delete_scheduled(tenant, id).await? {
        // Released or cancelled between the read and the delete.
        return Ok(None);
    }
    debug!(tenant, id, "scheduled event cancelled");
    event.status = Some(Status::Cancelled);
    Ok(Some(event))
}

/// A held event as the API shows it: its canonical JSON (no offset yet),
/// `status` `pending` unless it has one, and `"scheduled": true`.
pub fn held_json(event: &Event) -> Value {
    let mut v = serde_json::to_value(event).expect("an Event always serialises");
    if event.status.is_none() {
        v["status"] = Value::from("pending");
    }
    v["scheduled"] = Value::Bool(true);
    v
}
