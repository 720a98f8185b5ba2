//! Outgoing webhook deliveries (issue 6 point 4): one row per (webhook,
//! event), kept by the store so that every node of a cluster sees the same
//! delivery log and each attempt is made by one node.
//!
//! # Shape
//! - A delivery's id is derived from the webhook and the event
//!   ([`delivery_id`]), so every node that folds the same event inserts the
//!   same row, and the store keeps it once (insert-or-ignore on
//!   `(tenant, id)`).
//! - A node takes due pending rows with a *lease*
//!   ([`EventStore::claim_deliveries`](super::EventStore::claim_deliveries)):
//!   the claim stamps `lease_until_ms`, so no other node takes the row
//!   until the lease lapses (a node that died mid-attempt is thereby
//!   replaced). The stamp is also the claim's token: the attempt's result is
//!   written only while the row still carries it
//!   ([`EventStore::finish_delivery`](super::EventStore::finish_delivery)).
//! - What to do after an attempt (retry when, give up) is the server's
//!   decision; the store records it ([`AttemptResult`]).

use serde::{Deserialize, Serialize};

use crate::name::fnv1a;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet; attempted when `next_attempt_ms` is due.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every allowed attempt failed; only a manual redeliver tries again.
    Dead,
}

impl DeliveryState {
    /// The lowercase name (also the stored column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One event's delivery to one webhook, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// [`delivery_id`] of the webhook and the event.
    pub id: String,
    /// The webhook's id.
    pub webhook: String,
    /// The delivered event's id.
    pub event_id: String,
    /// The delivered event's offset.
    pub event_offset: u64,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made since it was created or last redelivered.
    pub attempts: u32,
    /// When the next attempt is due, ms since the epoch (meaningful while
    /// pending).
    pub next_attempt_ms: i64,
    /// Until when a node holds it for an attempt (0: nobody); also the
    /// token that node writes its result with.
    pub lease_until_ms: i64,
    /// The HTTP status of the last attempt, when one was received.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// When the row was created, ms since the epoch.
    pub created_ms: i64,
    /// When the row last changed, ms since the epoch.
    pub updated_ms: i64,
}

impl Delivery {
    /// A new pending delivery of `event_id` to `webhook`, due at `now_ms`.
    pub fn new(webhook: &str, event_id: &str, event_offset: u64, now_ms: i64) -> Self {
        Self {
            id: delivery_id(webhook, event_id),
            webhook: webhook.to_owned(),
            event_id: event_id.to_owned(),
            event_offset,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_ms: now_ms,
            lease_until_ms: 0,
            last_status: None,
            last_error: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }
}

/// What one attempt leads to, written by
/// [`EventStore::finish_delivery`](super::EventStore::finish_delivery)
/// (which also counts the attempt and releases the lease).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// `Delivered`, `Pending` (to retry) or `Dead`.
    pub state: DeliveryState,
    /// When to try again (while pending).
    pub next_attempt_ms: i64,
    /// The HTTP status received, if any.
    pub last_status: Option<u16>,
    /// Why it failed, if it did.
    pub last_error: Option<String>,
}

/// The deterministic id of `event_id`'s delivery to `webhook`:
/// `dlv_` and 32 hex digits (two FNV-1a hashes, of the pair in both
/// orders), the same on every node.
pub fn delivery_id(webhook: &str, event_id: &str) -> String {
    let forward = [webhook.as_bytes(), b"\0", event_id.as_bytes()].concat();
    let backward = [event_id.as_bytes(), b"\0", webhook.as_bytes()].concat();
    format!("dlv_{:016x}{:016x}", fnv1a(&forward), fnv1a(&backward))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = delivery_id("orders", "evt_1");
        assert_eq!(a, delivery_id("orders", "evt_1"));
        assert_eq!(a.len(), 4 + 32);
        assert!(a.starts_with("dlv_"));
        assert_ne!(a, delivery_id("orders", "evt_2"));
        assert_ne!(a, delivery_id("orders2", "evt_1"));
        // The separator keeps the split between the two names.
        assert_ne!(delivery_id("ab", "c"), delivery_id("a", "bc"));
    }

    #[test]
    fn states_round_trip() {
        for s in [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Dead,
        ] {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryState::parse("Pending"), None);
    }
}
