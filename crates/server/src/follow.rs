//! Following the log: the one loop behind every engine that folds the bus
//! into its own view (rules, tracked requests, outgoing webhooks).
//!
//! [`run`] replays what storage holds (every tenant, in offset order, with
//! `replay` set), tells the fold it is live ([`Fold::live`]), then folds
//! the live tail record by record. When the tail lags or fails it reads the
//! gap from storage, so a fold sees every record after its start exactly
//! once and in offset order. Between records it calls [`Fold::tick`] when
//! the fold's own deadline ([`Fold::next_tick`]) falls due.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use streambus_core::event::Record;
use streambus_core::log::LogError;
use streambus_core::store::EventQuery;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::api::error::ApiError;
use crate::state::AppState;

/// Records read from storage per page.
const PAGE: usize = 1000;
/// How long a failed read waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// An engine's view of the log.
#[async_trait]
pub trait Fold: Send + 'static {
    /// Names the engine in logs.
    fn name(&self) -> &'static str;

    /// Narrows the storage reads (for example to one stream); by default
    /// every record is read. Records outside it must not matter to the fold.
    fn shape(&self, _query: &mut EventQuery) {}

    /// The offset after which the stored history matters to the fold at
    /// start (by default all of it).
    fn replay_from(&self) -> u64 {
        0
    }

    /// Folds records in offset order. `replay` is true while the history
    /// stored before this node started is read: effects that already
    /// happened then (deliveries, derived events) must not be repeated.
    async fn apply(&mut self, state: &AppState, records: &[Arc<Record>], replay: bool);

    /// Called once the stored history is folded up to `folded`, before the
    /// live tail (which goes on after `folded`).
    async fn live(&mut self, _state: &AppState, _folded: u64) {}

    /// When [`Fold::tick`] should next run, if ever.
    fn next_tick(&self) -> Option<Instant> {
        None
    }

    /// Wakes [`Fold::tick`] out of turn when notified (a change made
    /// through the API that the fold must take in between two records).
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Time-driven work (timeouts, retries), and work asked for by
    /// [`Fold::wake`].
    async fn tick(&mut self, _state: &AppState) {}
}

/// Folds the stored history into `fold`, then the live tail, until shutdown.
pub async fn run<F: Fold>(state: AppState, mut fold: F) {
    // Opened first, so nothing appended during the replay is missed; what
    // the replay already covered is skipped by offset.
    let mut tail = state.log.tail();
    let mut folded = loop {
        let from = fold.replay_from();
        match catch_up(&state, &mut fold, from, true).await {
            Ok(last) => break last,
            Err(e) => {
                warn!(engine = fold.name(), error = %e, "cannot read history; retrying");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    };
    info!(engine = fold.name(), folded, "history folded");
    fold.live(&state, folded).await;
    let wake = fold.wake();
    loop {
        let due = fold.next_tick();
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = sleep_until(due) => fold.tick(&state).await,
            _ = notified(wake.as_deref()) => fold.tick(&state).await,
            next = tail.next() => match next {
                Ok(record) if record.offset() > folded => {
                    folded = record.offset();
                    fold.apply(&state, &[record], false).await;
                }
                Ok(_) => {}
                Err(LogError::Closed) => break,
                Err(e) => {
                    if !matches!(e, LogError::Lagged { .. }) {
                        warn!(engine = fold.name(), error = %e, "tail failed; reopening");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        tail = state.log.tail();
                    }
                    match catch_up(&state, &mut fold, folded, false).await {
                        Ok(last) => folded = last,
                        Err(e) => warn!(engine = fold.name(), error = %e, "cannot catch up"),
                    }
                }
            },
        }
    }
}

async fn notified(wake: Option<&Notify>) {
    match wake {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Folds what storage holds after `from` up to the log's head, tenant by
/// tenant (each in offset order), a page at a time so a long history is
/// never held whole; returns the offset folded to. Folds keep their views
/// per tenant, so the order between tenants does not matter.
async fn catch_up<F: Fold>(
    state: &AppState,
    fold: &mut F,
    from: u64,
    replay: bool,
) -> Result<u64, ApiError> {
    let head = state.log.head().await?;
    let from = from.min(head);
    let mut read = 0;
    for tenant in state.tenants().await? {
        let mut cursor = Some(from);
        while let Some(after) = cursor {
            let (records, next) = page(state, &tenant, after, head, |q| fold.shape(q)).await?;
            read += records.len();
            if !records.is_empty() {
                fold.apply(state, &records, replay).await;
            }
            cursor = next;
        }
    }
    debug!(
        engine = fold.name(),
        from,
        head,
        records = read,
        "read from storage"
    );
    Ok(head.max(from))
}

/// Every record of one tenant after `from` up to `head`, in offset order,
/// narrowed by `shape`.
///
/// # Errors
/// When storage cannot be read.
pub async fn read_range(
    state: &AppState,
    tenant: &str,
    from: u64,
    head: u64,
    shape: impl Fn(&mut EventQuery),
) -> Result<Vec<Arc<Record>>, ApiError> {
    let mut out = Vec::new();
    let mut cursor = Some(from);
    while let Some(after) = cursor {
        let (records, next) = page(state, tenant, after, head, &shape).await?;
        out.extend(records);
        cursor = next;
    }
    Ok(out)
}

/// One page of a tenant's records after `after` up to `head`, narrowed by
/// `shape`, with the cursor of the next page (`None` after the last).
async fn page(
    state: &AppState,
    tenant: &str,
    after: u64,
    head: u64,
    shape: impl Fn(&mut EventQuery),
) -> Result<(Vec<Arc<Record>>, Option<u64>), ApiError> {
    let mut q = EventQuery {
        cursor: Some(after),
        limit: PAGE,
        ..Default::default()
    };
    shape(&mut q);
    let page = state.store.query(tenant, &q).await?;
    let more = page.next_cursor.is_some() && !page.records.is_empty();
    let records: Vec<Arc<Record>> = page
        .records
        .into_iter()
        .take_while(|r| r.offset() <= head)
        .collect();
    let next = records
        .last()
        .map(|r| r.offset())
        .filter(|end| more && *end < head);
    Ok((records, next))
}
