//! The delivery worker: claims due deliveries and makes the attempts.
//!
//! One loop per node claims due pending deliveries with a lease
//! (`EventStore::claim_deliveries`), at most as many as it has free
//! permits, and starts each attempt in a task of its own, holding one
//! permit of the `concurrency` semaphore, with the `timeout_ms` limit: a
//! slow or failing endpoint occupies a permit for at most that long. One
//! webhook holds at most `per_webhook` permits; a delivery claimed beyond
//! that is given back, due again after [`DEFER`], so a slow endpoint with
//! many deliveries cannot take every permit and delay the other webhooks'
//! deliveries. The loop wakes when the fold stored new deliveries, a
//! delivery was redelivered, an attempt finished (a permit is free again)
//! or a retry this node scheduled is due, and otherwise every `poll_ms`
//! (retries scheduled by other nodes).
//!
//! An attempt POSTs the event ([`super::send`]); a failure is retried
//! after [`super::backoff`] until the webhook's `max_attempts`, then dead.
//! The result is written under the claim's lease, so a result that arrives
//! after another node took over is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use streambus_core::StoreError;
use streambus_core::store::{AttemptResult, Catalog, Delivery, DeliveryState};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, info, warn};

use super::backoff::delay_ms;
use super::definition::Webhook;
use super::send::{AttemptError, send};
use super::{Webhooks, WebhooksConfig};
use crate::state::AppState;

/// Deliveries taken by one claim at most.
const CLAIM_BATCH: usize = 100;
/// How long a delivery given back because its webhook has `per_webhook`
/// attempts in flight waits before it is claimed again.
pub const DEFER: Duration = Duration::from_millis(250);

/// Claims and dispatches until shutdown; see the module documentation.
pub async fn run(state: AppState, shared: Arc<Webhooks>) {
    let settings = state.config.webhooks.clone();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        // A redirect is the endpoint's answer, not a place to send to.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            error!(error = %e, "cannot build the webhook HTTP client; outgoing webhooks are off");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let in_flight = Arc::new(InFlight::default());
    let poll = Duration::from_millis(settings.poll_ms);
    loop {
        let pool = Pool {
            permits: &permits,
            in_flight: &in_flight,
            client: &client,
        };
        claim_and_start(&state, &shared, &pool, &settings).await;
        let now = streambus_core::time::now_ms();
        let wait = shared
            .take_due_retry(now)
            // A retry that fell due since the claim: at once.
            .map(|at| u64::try_from(at.saturating_sub(now)).unwrap_or(0))
            .map_or(poll, |ms| poll.min(Duration::from_millis(ms)));
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Attempts in flight on this node per (tenant, webhook).
#[derive(Debug, Default)]
struct InFlight(Mutex<HashMap<(String, String), usize>>);

/// One attempt's place in [`InFlight`], given up on drop.
struct Slot {
    in_flight: Arc<InFlight>,
    key: (String, String),
}

impl InFlight {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        // The counts stay consistent even if a holder panicked.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `webhook` of `tenant`, unless it has `cap` already.
    fn take(self: &Arc<Self>, tenant: &str, webhook: &str, cap: usize) -> Option<Slot> {
        let key = (tenant.to_owned(), webhook.to_owned());
        let mut counts = self.counts();
        let n = counts.entry(key.clone()).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            in_flight: Arc::clone(self),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.in_flight.counts();
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// What the attempts of this node share.
struct Pool<'a> {
    permits: &'a Arc<Semaphore>,
    in_flight: &'a Arc<InFlight>,
    client: &'a reqwest::Client,
}

/// Claims due deliveries while permits are free and starts their attempts.
async fn claim_and_start(
    state: &AppState,
    shared: &Arc<Webhooks>,
    pool: &Pool<'_>,
    settings: &WebhooksConfig,
) {
    let lease = i64::try_from(settings.lease_ms).unwrap_or(i64::MAX);
    loop {
        let free = pool.permits.available_permits().min(CLAIM_BATCH);
        if free == 0 || state.shutdown.is_cancelled() {
            // A finishing attempt wakes the loop.
            return;
        }
        let now = streambus_core::time::now_ms();
        let claimed = match state
            .store
            .claim_deliveries(now, now.saturating_add(lease), free)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot claim webhook deliveries");
                return;
            }
        };
        let full = claimed.len() == free;
        // Each webhook's definition is read once per batch, not per attempt.
        let mut hooks: HashMap<(String, String), Option<Arc<Webhook>>> = HashMap::new();
        for (tenant, delivery) in claimed {
            let key = (tenant.clone(), delivery.webhook.clone());
            let hook = match hooks.get(&key) {
                Some(h) => h.clone(),
                None => match definition(state, &tenant, &delivery.webhook).await {
                    Ok(h) => hooks.entry(key).or_insert(h).clone(),
                    Err(e) => {
                        // Nothing can be recorded either; the lease brings it back.
                        warn!(%tenant, delivery = %delivery.id, error = %e, "cannot read a webhook definition");
                        continue;
                    }
                },
            };
            let Some(slot) = pool
                .in_flight
                .take(&tenant, &delivery.webhook, settings.per_webhook)
            else {
                defer(state, shared, &tenant, &delivery).await;
                continue;
            };
            let Ok(permit) = Arc::clone(pool.permits).try_acquire_owned() else {
                // Only this loop takes permits, so it counted them right;
                // should that ever change, the lease brings the row back.
                warn!(delivery = %delivery.id, "no permit for a claimed delivery");
                continue;
            };
            state.tasks.spawn(attempt(
                state.clone(),
                Arc::clone(shared),
                pool.client.clone(),
                tenant,
                delivery,
                hook,
                (permit, slot),
            ));
        }
        if !full {
            return;
        }
    }
}

/// Gives back a delivery whose webhook has `per_webhook` attempts in
/// flight here: due again after [`DEFER`], its attempts unchanged.
async fn defer(state: &AppState, shared: &Webhooks, tenant: &str, d: &Delivery) {
    let now = streambus_core::time::now_ms();
    let at = now.saturating_add(i64::try_from(DEFER.as_millis()).unwrap_or(i64::MAX));
    match state
        .store
        .release_delivery(tenant, &d.id, d.lease_until_ms, at, now)
        .await
    {
        Ok(_) => shared.retry_at(at),
        // The lease brings it back.
        Err(e) => warn!(%tenant, delivery = %d.id, error = %e, "cannot give a delivery back"),
    }
}

/// What to send, or why not.
enum Prepared {
    /// The webhook and the event's canonical JSON.
    Send(Arc<Webhook>, Bytes),
    /// An attempt that fails without a request.
    Fail(Arc<Webhook>, AttemptError),
    /// The webhook no longer exists: its deliveries go with it.
    Orphan,
}

/// A webhook's definition, `None` when it no longer exists.
async fn definition(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<Option<Arc<Webhook>>, StoreError> {
    let Some(body) = state.store.get_entry(Catalog::Webhooks, tenant, id).await? else {
        return Ok(None);
    };
    let hook = Webhook::from_stored(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Some(Arc::new(hook)))
}

/// Reads the event of a claimed delivery of `hook` (`None`: deleted).
async fn prepare(
    state: &AppState,
    tenant: &str,
    d: &Delivery,
    hook: Option<Arc<Webhook>>,
) -> Result<Prepared, StoreError> {
    let Some(hook) = hook else {
        return Ok(Prepared::Orphan);
    };
    if d.event_offset <= hook.created_offset {
        return Ok(Prepared::Fail(hook, AttemptError::Superseded));
    }
    Ok(match state.store.get(tenant, &d.event_id).await? {
        Some(record) => Prepared::Send(hook, record.json.clone()),
        None => Prepared::Fail(hook, AttemptError::EventGone),
    })
}

/// One attempt of one claimed delivery, holding its permit and its slot
/// until done; then the loop looks for more.
async fn attempt(
    state: AppState,
    shared: Arc<Webhooks>,
    client: reqwest::Client,
    tenant: String,
    d: Delivery,
    hook: Option<Arc<Webhook>>,
    held: (OwnedSemaphorePermit, Slot),
) {
    make_attempt(&state, &shared, &client, &tenant, &d, hook).await;
    // Free before waking, so the loop counts this permit as free.
    drop(held);
    shared.wake();
}

/// Prepares, sends and records one attempt.
async fn make_attempt(
    state: &AppState,
    shared: &Webhooks,
    client: &reqwest::Client,
    tenant: &str,
    d: &Delivery,
    hook: Option<Arc<Webhook>>,
) {
    let prepared = match prepare(state, tenant, d, hook).await {
        Ok(p) => p,
        Err(e) => {
            // Nothing can be recorded either; the lease brings it back.
            warn!(%tenant, delivery = %d.id, error = %e, "cannot prepare a webhook delivery");
            return;
        }
    };
    let (hook, outcome) = match prepared {
        Prepared::Orphan => {
            match state.store.delete_deliveries(tenant, &d.webhook).await {
                Ok(n) => debug!(%tenant, webhook = %d.webhook, removed = n,
                                "deliveries of a deleted webhook removed"),
                Err(e) => warn!(%tenant, webhook = %d.webhook, error = %e,
                                "cannot remove deliveries"),
            }
            return;
        }
        Prepared::Fail(hook, e) => (hook, Err(e)),
        Prepared::Send(hook, body) => {
            let timeout = state.config.webhooks.timeout_ms;
            let sent = tokio::select! {
                r = send(client, &hook, d, body, timeout) => r,
                // Left to the lease: another start takes it up again.
                () = state.shutdown.cancelled() => return,
            };
            (hook, sent)
        }
    };
    let result = decide(&state.config.webhooks, shared, &hook, d, outcome);
    let now = streambus_core::time::now_ms();
    let recorded = state
        .store
        .finish_delivery(tenant, &d.id, d.lease_until_ms, &result, now)
        .await;
    let attempts = d.attempts.saturating_add(1);
    let error = result.last_error.as_deref().unwrap_or("");
    match (recorded, result.state) {
        (Ok(true), DeliveryState::Delivered) => {
            debug!(%tenant, webhook = %hook.id, delivery = %d.id, attempts, "webhook delivered");
        }
        (Ok(true), DeliveryState::Pending) => {
            shared.retry_at(result.next_attempt_ms);
            debug!(%tenant, webhook = %hook.id, delivery = %d.id, attempts, error,
                   "webhook attempt failed; will retry");
        }
        (Ok(true), DeliveryState::Dead) => {
            warn!(%tenant, webhook = %hook.id, delivery = %d.id, attempts, error,
                  "webhook delivery dead");
        }
        (Ok(false), _) => {
            info!(%tenant, delivery = %d.id, "attempt result dropped: redelivered or taken over");
        }
        (Err(e), _) => {
            warn!(%tenant, delivery = %d.id, error = %e, "cannot record a webhook attempt");
        }
    }
}

/// The attempt's result: delivered, a retry after the backoff, or dead.
fn decide(
    settings: &WebhooksConfig,
    shared: &Webhooks,
    hook: &Webhook,
    d: &Delivery,
    outcome: Result<u16, AttemptError>,
) -> AttemptResult {
    let now = streambus_core::time::now_ms();
    let attempts = d.attempts.saturating_add(1);
    match outcome {
        Ok(status) => AttemptResult {
            state: DeliveryState::Delivered,
            next_attempt_ms: now,
            last_status: Some(status),
            last_error: None,
        },
        Err(e) => {
            let (state, next_attempt_ms) = if e.is_final() || attempts >= hook.max_attempts {
                (DeliveryState::Dead, now)
            } else {
                let delay = delay_ms(
                    settings.backoff_ms,
                    settings.backoff_max_ms,
                    attempts,
                    shared.jitter.unit(),
                );
                let delay = i64::try_from(delay).unwrap_or(i64::MAX);
                (DeliveryState::Pending, now.saturating_add(delay))
            };
            AttemptResult {
                state,
                next_attempt_ms,
                last_status: e.status(),
                last_error: Some(e.to_string()),
            }
        }
    }
}
