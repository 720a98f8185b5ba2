//! The fold behind [`Requests`]: folds records into the tables, keeps a
//! deadline index, proposes timeouts and moves stored `:requested` events
//! through their statuses (see the parent module).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use streambus_core::event::{Record, Status};
use streambus_core::request::{self, State, Step, Table};
use streambus_core::validate::{NewEvent, new_event_id};
use streambus_core::{Event, time};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Requests, is_internal};
use crate::follow::Fold;
use crate::publish::{ItemResult, publish_batch, publish_one};
use crate::state::AppState;

/// How long a proposed timeout is left to come back through the log before
/// it is proposed again.
const RETRY_MS: i64 = 3_000;
/// Status writes queued for the writer; beyond it they are dropped (the
/// tables, not the stored status, are what the API shows).
const STATUS_QUEUE: usize = 4096;

/// A change of a stored `:requested` event's status.
struct StatusWrite {
    tenant: String,
    id: String,
    /// In order: `active` first when the request skipped it.
    statuses: Vec<Status>,
    at_ms: i64,
}

/// The fold behind [`Requests`], with its own deadline index.
pub struct Follower {
    requests: Arc<Requests>,
    /// `(wake at ms, tenant, id)` of every open request: its deadline, or
    /// once its timeout was proposed, when to propose it again.
    queue: BTreeSet<(i64, String, String)>,
    /// The key of each request in `queue`.
    wake: HashMap<(String, String), i64>,
    statuses: mpsc::Sender<StatusWrite>,
    statuses_rx: Option<mpsc::Receiver<StatusWrite>>,
}

impl Follower {
    /// The fold feeding `state.requests`.
    pub fn new(state: &AppState) -> Self {
        let (statuses, rx) = mpsc::channel(STATUS_QUEUE);
        Self {
            requests: Arc::clone(&state.requests),
            queue: BTreeSet::new(),
            wake: HashMap::new(),
            statuses,
            statuses_rx: Some(rx),
        }
    }

    /// Files the request under `at` (`None`: it is no longer open).
    fn schedule(&mut self, tenant: &str, id: &str, at: Option<i64>) {
        let key = (tenant.to_owned(), id.to_owned());
        if let Some(old) = self.wake.remove(&key) {
            self.queue.remove(&(old, key.0.clone(), key.1.clone()));
        }
        if let Some(at) = at {
            self.queue.insert((at, key.0.clone(), key.1.clone()));
            self.wake.insert(key, at);
        }
    }

    /// Publishes the timeout failures of `tenant` as one batch.
    async fn publish_timeouts(&self, state: &AppState, tenant: &str, events: Vec<Event>) {
        let ids: Vec<String> = events
            .iter()
            .filter_map(|e| e.metadata.correlation_id.clone())
            .collect();
        let items = events
            .into_iter()
            .map(|event| {
                Ok(NewEvent {
                    event,
                    supplied_id: true,
                })
            })
            .collect();
        let results = match publish_batch(state, tenant, items).await {
            Ok(r) => r,
            Err(e) => {
                warn!(tenant, error = %e, count = ids.len(), "cannot publish request timeouts; proposed again later");
                return;
            }
        };
        for (id, result) in ids.iter().zip(results) {
            match result {
                ItemResult::Stored(a) if a.duplicate && !fails(&a.record.event, id) => {
                    self.publish_under_fresh_id(state, tenant, id).await;
                }
                ItemResult::Stored(a) if a.duplicate => {
                    debug!(tenant, request = %id, "timeout already stored (another node, or an earlier proposal)");
                }
                ItemResult::Stored(a) => {
                    info!(tenant, request = %id, event = %a.record.event.id, "request timed out");
                }
                ItemResult::Rejected(e) => {
                    debug!(tenant, request = %id, error = %e, "timeout not published; proposed again later");
                }
            }
        }
    }

    /// A producer's event already holds the timeout's id (ids are the
    /// tenant's, and producers may choose theirs): the failure goes out under
    /// a fresh id rather than not at all — then once per node proposing it.
    async fn publish_under_fresh_id(&self, state: &AppState, tenant: &str, id: &str) {
        warn!(tenant, request = %id, "timeout id taken by another event; publishing under a fresh id");
        let Some(r) = self.requests.get(tenant, id) else {
            return;
        };
        let mut event = r.timeout_event(time::now_ms());
        event.id = new_event_id();
        let new = NewEvent {
            event,
            supplied_id: false,
        };
        if let Err(e) = publish_one(state, tenant, new).await {
            debug!(tenant, request = %id, error = %e, "timeout not published; proposed again later");
        }
    }
}

/// Is `event` the failure of request `id`?
fn fails(event: &Event, id: &str) -> bool {
    matches!(
        request::parse_type(&event.event_type),
        Some((_, Step::Failed))
    ) && (event
        .data
        .get(request::REQUEST_ID_FIELD)
        .and_then(Value::as_str)
        == Some(id)
        || event.metadata.correlation_id.as_deref() == Some(id))
}

/// The stored statuses a change of state takes the `:requested` event
/// through.
fn statuses(before: Option<State>, after: State) -> Vec<Status> {
    let started = before == Some(State::Running);
    let mut out = Vec::new();
    if !started && after != State::Requested && before.is_some() {
        out.push(Status::Active);
    }
    match after {
        State::Succeeded => out.push(Status::Completed),
        State::Failed => out.push(Status::Failed),
        State::Requested | State::Running => {}
    }
    out
}

#[async_trait]
impl Fold for Follower {
    fn name(&self) -> &'static str {
        "requests"
    }

    async fn apply(&mut self, _state: &AppState, records: &[Arc<Record>], replay: bool) {
        let now = time::now_ms();
        let default = self.requests.config.heartbeat_timeout_ms;
        let keep = self.requests.config.keep_finished;
        let mut changes = Vec::new();
        {
            let mut tables = self.requests.lock();
            for record in records {
                let e = &record.event;
                if is_internal(&e.stream_id) || request::parse_type(&e.event_type).is_none() {
                    continue;
                }
                let table = tables
                    .entry(record.tenant.clone())
                    .or_insert_with(|| Table::new(keep));
                let Some(change) = table.fold(e, default, now) else {
                    continue;
                };
                let at = table.get(&change.id).map_or(now, |r| r.updated_ms);
                changes.push((record.tenant.clone(), change, at));
            }
        }
        for (tenant, change, at_ms) in changes {
            self.schedule(&tenant, &change.id, change.deadline_ms);
            debug!(%tenant, request = %change.id, state = change.after.as_str(), "request folded");
            if replay || change.animated {
                continue;
            }
            // Empty for a report that leaves the state as it was.
            let statuses = statuses(change.before, change.after);
            if statuses.is_empty() {
                continue;
            }
            let write = StatusWrite {
                tenant,
                id: change.id,
                statuses,
                at_ms,
            };
            if self.statuses.try_send(write).is_err() {
                debug!("request status writes are backed up; one not stored");
            }
        }
        if let Some(last) = records.last() {
            self.requests.mark_folded(last.offset());
        }
    }

    async fn live(&mut self, state: &AppState, _folded: u64) {
        if let Some(rx) = self.statuses_rx.take() {
            state.tasks.spawn(write_statuses(state.clone(), rx));
        }
        info!(open = self.wake.len(), "request tables live");
        self.requests.live.send_replace(true);
    }

    fn next_tick(&self) -> Option<Instant> {
        let (at, _, _) = self.queue.first()?;
        let wait = u64::try_from(at.saturating_sub(time::now_ms())).unwrap_or(0);
        Some(Instant::now() + Duration::from_millis(wait))
    }

    async fn tick(&mut self, state: &AppState) {
        let now = time::now_ms();
        let mut due: HashMap<String, Vec<Event>> = HashMap::new();
        let mut again = Vec::new();
        {
            let tables = self.requests.lock();
            while self.queue.first().is_some_and(|(at, _, _)| *at <= now) {
                // Refiled below.
                let Some((_, tenant, id)) = self.queue.pop_first() else {
                    break;
                };
                let r = tables.get(&tenant).and_then(|t| t.get(&id));
                match r.and_then(|r| Some((r, r.deadline_ms()?))) {
                    Some((r, deadline)) if deadline <= now => {
                        due.entry(tenant.clone())
                            .or_default()
                            .push(r.timeout_event(now));
                        again.push((tenant, id, Some(now + RETRY_MS)));
                    }
                    Some((_, deadline)) => again.push((tenant, id, Some(deadline))),
                    None => again.push((tenant, id, None)),
                }
            }
        }
        for (tenant, id, at) in again {
            self.schedule(&tenant, &id, at);
        }
        for (tenant, events) in due {
            debug!(%tenant, count = events.len(), "proposing request timeouts");
            self.publish_timeouts(state, &tenant, events).await;
        }
    }
}

/// Moves stored `:requested` events through their statuses, in order, off
/// the fold's path. A status already set, or a transition the store refuses
/// (another node wrote it first), changes nothing.
async fn write_statuses(state: AppState, mut rx: mpsc::Receiver<StatusWrite>) {
    loop {
        let w = tokio::select! {
            biased;
            w = rx.recv() => match w {
                Some(w) => w,
                None => break,
            },
            _ = state.shutdown.cancelled() => break,
        };
        for status in w.statuses {
            if let Err(e) = state
                .store
                .set_event_status(&w.tenant, &w.id, status, w.at_ms)
                .await
            {
                debug!(tenant = %w.tenant, request = %w.id, error = %e, "request status not changed");
            }
        }
    }
}
