//! This node's side of the overlay playout queues (issue 4;
//! `docs/design/overlay-queues.md`, `docs/OVERLAYS.md`).
//!
//! One task folds the log into [`Queues`] per tenant (rebuilt from storage at
//! start), carries out the fold's [`Effect`]s — frames to this node's overlay
//! connections, status rows to the store, updates to admin connections — and
//! proposes the decisions that are due ([`Queues::decide`]) by publishing
//! them into the log with their deterministic ids. Connections are the only
//! node-local part: which overlays have a page open here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};
use streambus_core::event::{Event, EventClass, Record, Status};
use streambus_core::lifecycle::AnimationStatus;
use streambus_core::log::LogError;
use streambus_core::overlay::{Effect, Op, Queues, STREAM, Settings, status_frame};
use streambus_core::store::Appended;
use streambus_core::time;
use streambus_core::validate::{NewEvent, new_event_id};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use crate::api::error::ApiError;
use crate::publish::publish_one;
use crate::state::AppState;

/// Frames buffered per overlay or admin channel.
const CHANNEL: usize = 256;
/// How long a decision is left to come back through the log before it is
/// proposed again.
const DECISION_RETRY: Duration = Duration::from_secs(3);
/// Longest a request waits for this node to fold a record.
const FOLD_WAIT: Duration = Duration::from_secs(5);
/// Longest the decision loop sleeps.
const TICK: Duration = Duration::from_millis(250);

/// A store write the fold asked for.
struct Write {
    tenant: String,
    row: AnimationStatus,
    /// The event-level status after the change.
    event_status: Option<Status>,
}

/// One overlay's connections on this node.
struct Local {
    count: usize,
    frames: broadcast::Sender<Utf8Bytes>,
}

/// One tenant's queues and connections.
struct Tenant {
    queues: Queues,
    local: HashMap<String, Local>,
    admin: broadcast::Sender<Utf8Bytes>,
}

impl Tenant {
    fn new(defaults: Settings) -> Self {
        Self {
            queues: Queues::new(defaults),
            local: HashMap::new(),
            admin: broadcast::channel(CHANNEL).0,
        }
    }

    fn connections(&self, overlay: &str) -> usize {
        self.local.get(overlay).map_or(0, |l| l.count)
    }
}

/// The node's overlay engine. Shared behind an `Arc`.
pub struct Overlays {
    defaults: Settings,
    tenants: Mutex<HashMap<String, Tenant>>,
    folded: watch::Sender<u64>,
    wake: Notify,
    writes: mpsc::Sender<Write>,
    writes_rx: Mutex<Option<mpsc::Receiver<Write>>>,
}

impl Overlays {
    /// An engine whose overlays start with `defaults`.
    pub fn new(defaults: Settings) -> Self {
        let (writes, rx) = mpsc::channel(4096);
        Self {
            defaults,
            tenants: Mutex::new(HashMap::new()),
            folded: watch::channel(0).0,
            wake: Notify::new(),
            writes,
            writes_rx: Mutex::new(Some(rx)),
        }
    }

    fn with<R>(&self, tenant: &str, f: impl FnOnce(&mut Tenant) -> R) -> R {
        let mut tenants = self.tenants.lock().expect("overlay lock poisoned");
        let defaults = self.defaults;
        f(tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| Tenant::new(defaults)))
    }

    /// Reads the fold of `tenant`.
    pub fn read<R>(&self, tenant: &str, f: impl FnOnce(&Queues) -> R) -> R {
        self.with(tenant, |t| f(&t.queues))
    }

    /// One overlay as the API shows it, `None` when unknown.
    pub fn view(&self, tenant: &str, overlay: &str, remote: usize) -> Option<Value> {
        self.with(tenant, |t| {
            let o = t.queues.get(overlay)?;
            Some(o.view(t.connections(overlay) + remote))
        })
    }

    /// Every overlay as the API shows it; `remote` gives connections on other
    /// nodes.
    pub fn list(&self, tenant: &str, remote: impl Fn(&str) -> usize) -> Vec<Value> {
        self.with(tenant, |t| {
            t.queues
                .overlays()
                .map(|o| o.view(t.connections(&o.id) + remote(&o.id)))
                .collect()
        })
    }

    /// Connections per overlay on this node (for cluster presence).
    pub fn local_counts(&self, tenant: &str) -> Vec<(String, usize)> {
        self.with(tenant, |t| {
            t.local
                .iter()
                .map(|(id, l)| (id.clone(), l.count))
                .collect()
        })
    }

    /// Registers an overlay connection: it receives the overlay's frames
    /// until the returned guard drops, starting with what plays now. Called
    /// once this node has folded the connection's [`Op::Attach`], so the
    /// play's deadline has started again before this connection lets the
    /// node decide about the overlay.
    pub fn attach(self: &Arc<Self>, tenant: &str, overlay: &str) -> Attachment {
        let (first, frames) = self.with(tenant, |t| {
            let first = t
                .queues
                .get(overlay)
                .and_then(|o| o.playing.as_ref())
                .map(|(item, _)| play_frame(&item.record, item.play));
            let l = t.local.entry(overlay.to_owned()).or_insert_with(|| Local {
                count: 0,
                frames: broadcast::channel(CHANNEL).0,
            });
            l.count += 1;
            (first, l.frames.subscribe())
        });
        self.wake.notify_one();
        Attachment {
            engine: Arc::clone(self),
            tenant: tenant.to_owned(),
            overlay: overlay.to_owned(),
            first,
            frames: Some(frames),
        }
    }

    /// Queue updates for admin connections of `tenant`.
    pub fn admin_updates(&self, tenant: &str) -> broadcast::Receiver<Utf8Bytes> {
        self.with(tenant, |t| t.admin.subscribe())
    }

    /// Waits until this node has folded `offset` (read-your-writes for the
    /// control routes).
    ///
    /// # Errors
    /// 503 when the fold does not get there in time.
    pub async fn wait_folded(&self, offset: u64) -> Result<(), ApiError> {
        let mut rx = self.folded.subscribe();
        match tokio::time::timeout(FOLD_WAIT, rx.wait_for(|f| *f >= offset)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::Unavailable(
                format!("the overlay queues have not caught up with offset {offset}").into(),
            )),
        }
    }

    /// Folds `records` and carries out the effects (unless `quiet`, when
    /// rebuilding from storage: then nothing is sent or written again).
    /// Returns true when any record concerned the queues.
    fn fold(&self, records: &[Arc<Record>], quiet: bool, decided: &mut Decisions) -> bool {
        let queued =
            |r: &&Arc<Record>| r.event.stream_id == STREAM || r.event.class == EventClass::Animated;
        let relevant = records.iter().any(|r| queued(&r));
        if relevant {
            let mut tenants = self.tenants.lock().expect("overlay lock poisoned");
            for record in records.iter().filter(queued) {
                if record.event.stream_id == STREAM {
                    decided.applied(&record.event.id);
                }
                let t = tenants
                    .entry(record.tenant.clone())
                    .or_insert_with(|| Tenant::new(self.defaults));
                let effects = t.queues.apply(record);
                if !quiet {
                    self.carry_out(&record.tenant, t, effects);
                }
            }
        }
        if let Some(last) = records.last() {
            self.mark_folded(last.offset());
        }
        relevant
    }

    fn mark_folded(&self, offset: u64) {
        self.folded.send_if_modified(|f| {
            let moved = offset > *f;
            *f = (*f).max(offset);
            moved
        });
    }

    fn carry_out(&self, tenant: &str, t: &mut Tenant, effects: Vec<Effect>) {
        let mut changed: Vec<String> = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send {
                    overlay,
                    record,
                    play,
                } => {
                    if let Some(l) = t.local.get(&overlay) {
                        let _ = l.frames.send(play_frame(&record, play));
                    }
                }
                Effect::Stop {
                    overlay,
                    event_id,
                    play,
                } => {
                    if let Some(l) = t.local.get(&overlay) {
                        let frame = json!({"type": "ANIMATION_CANCEL", "eventId": event_id,
                            "overlay": overlay, "play": play});
                        let _ = l.frames.send(text(&frame));
                    }
                }
                Effect::Status { row } => {
                    let update = json!({"type": status_frame(row.status), "eventId": row.event_id,
                        "overlay": row.overlay_id, "play": row.play,
                        "status": row.status.as_str(), "timestamp": row.updated_ms});
                    let _ = t.admin.send(text(&update));
                    let event_status = t.queues.event_status(&row.event_id);
                    let write = Write {
                        tenant: tenant.to_owned(),
                        row,
                        event_status,
                    };
                    if self.writes.try_send(write).is_err() {
                        warn!("status writes are backed up; one status row not stored");
                    }
                }
                Effect::Changed { overlay } => {
                    if !changed.contains(&overlay) {
                        changed.push(overlay);
                    }
                }
            }
        }
        if t.admin.receiver_count() == 0 {
            return;
        }
        for overlay in changed {
            if let Some(o) = t.queues.get(&overlay) {
                // Other nodes' connections are not counted here; `GET
                // /overlays` sums them.
                let view = o.view(t.connections(&overlay));
                let _ = t
                    .admin
                    .send(text(&json!({"type": "OVERLAY_STATE", "overlay": view})));
            }
        }
    }

    /// Runs the engine until shutdown: rebuild, then fold the live tail and
    /// propose decisions.
    pub async fn run(self: Arc<Self>, state: AppState) {
        if let Some(rx) = self.writes_rx.lock().expect("overlay lock poisoned").take() {
            state.tasks.spawn(write_rows(state.clone(), rx));
        }
        let mut tail = state.log.tail();
        let mut decided = Decisions::default();
        // What was appended since `rebuild` (other nodes, in a cluster).
        let mut from = *self.folded.borrow();
        loop {
            match self.catch_up(&state, from, false, &mut decided).await {
                Ok(last) => {
                    from = last;
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the overlay queues from storage; retrying");
                    tokio::select! {
                        _ = state.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        debug!(folded = from, "overlay queues live");
        // Decisions are looked for after a change to the queues or the
        // connections, and when the earliest one falls due; not per record.
        let mut dirty = true;
        let mut due_at = tokio::time::Instant::now();
        loop {
            if dirty || tokio::time::Instant::now() >= due_at {
                due_at = tokio::time::Instant::now() + self.decide(&state, &mut decided);
                dirty = false;
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = self.wake.notified() => dirty = true,
                _ = tokio::time::sleep_until(due_at) => {}
                next = tail.next() => match next {
                    Ok(record) if record.offset() > from => {
                        from = record.offset();
                        dirty = self.fold(&[record], false, &mut decided);
                    }
                    Ok(_) => {}
                    Err(LogError::Lagged { .. }) => {
                        warn!(after = from, "overlay queues fell behind the log; reading from storage");
                        dirty = true;
                        match self.catch_up(&state, from, false, &mut decided).await {
                            Ok(last) => from = last,
                            Err(e) => warn!(error = %e, "cannot catch up the overlay queues"),
                        }
                    }
                    Err(LogError::Closed) => break,
                    Err(e) => {
                        warn!(error = %e, "overlay tail failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        tail = state.log.tail();
                        if let Ok(last) = self.catch_up(&state, from, false, &mut decided).await {
                            from = last;
                        }
                    }
                },
            }
        }
    }

    /// Rebuilds the queues from storage, without sending or writing
    /// anything: called once before the node serves, so that the first
    /// request already sees them. [`Overlays::run`] continues from there.
    ///
    /// # Errors
    /// When storage cannot be read.
    pub async fn rebuild(&self, state: &AppState) -> Result<(), ApiError> {
        let last = self
            .catch_up(state, 0, true, &mut Decisions::default())
            .await?;
        info!(folded = last, "overlay queues rebuilt");
        Ok(())
    }

    /// Folds what storage holds after `from` (the internal stream and the
    /// animated events), in offset order; returns the last offset folded.
    async fn catch_up(
        &self,
        state: &AppState,
        from: u64,
        quiet: bool,
        decided: &mut Decisions,
    ) -> Result<u64, ApiError> {
        let head = state.log.head().await?;
        let mut records: Vec<Arc<Record>> = Vec::new();
        for tenant in state.tenants().await? {
            records.extend(
                crate::follow::read_range(state, &tenant, from, head, |q| {
                    q.streams = Some(vec![STREAM.to_owned()]);
                })
                .await?,
            );
            records.extend(
                crate::follow::read_range(state, &tenant, from, head, |q| {
                    q.class = Some(EventClass::Animated);
                })
                .await?,
            );
        }
        records.sort_by_key(|r| r.offset());
        records.dedup_by_key(|r| r.offset());
        debug!(
            from,
            head,
            records = records.len(),
            "overlay queues read from storage"
        );
        self.fold(&records, quiet, decided);
        self.mark_folded(head);
        Ok(head.max(from))
    }

    /// Publishes the decisions due now; returns how long to sleep.
    fn decide(&self, state: &AppState, decided: &mut Decisions) -> Duration {
        let now = time::now_ms();
        let mut due = Vec::new();
        let mut wake: Option<i64> = None;
        {
            let tenants = self.tenants.lock().expect("overlay lock poisoned");
            for (name, t) in tenants.iter() {
                let local: HashSet<String> = t
                    .local
                    .iter()
                    .filter(|(_, l)| l.count > 0)
                    .map(|(id, _)| id.clone())
                    .collect();
                let paused = state.hub.paused(name);
                let (ops, next) = t.queues.decide(now, &local, |i| {
                    paused.contains_key(&i.record.event.stream_id)
                });
                due.extend(ops.into_iter().map(|op| (name.clone(), op)));
                if let Some(n) = next {
                    wake = Some(wake.map_or(n, |w| w.min(n)));
                }
            }
        }
        for (tenant, op) in due {
            let Some(id) = op.decision_id() else { continue };
            if !decided.propose(&id) {
                continue;
            }
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(e) = publish_op(&state, &tenant, op).await {
                    debug!(error = %e, id, "decision not published; proposed again later");
                }
            });
        }
        let until = wake.map_or(TICK, |w| {
            Duration::from_millis(u64::try_from(w - now).unwrap_or(0))
        });
        until.clamp(Duration::from_millis(5), TICK)
    }
}

/// Decisions proposed and not yet seen back in the log.
#[derive(Default)]
struct Decisions(HashMap<String, Instant>);

impl Decisions {
    /// True when `id` should be published now.
    fn propose(&mut self, id: &str) -> bool {
        let now = Instant::now();
        self.0
            .retain(|_, at| now.duration_since(*at) < DECISION_RETRY);
        if self.0.contains_key(id) {
            return false;
        }
        self.0.insert(id.to_owned(), now);
        true
    }

    fn applied(&mut self, id: &str) {
        self.0.remove(id);
    }
}

/// Keeps an overlay connection registered; see [`Overlays::attach`].
pub struct Attachment {
    engine: Arc<Overlays>,
    tenant: String,
    overlay: String,
    first: Option<Utf8Bytes>,
    frames: Option<broadcast::Receiver<Utf8Bytes>>,
}

impl Attachment {
    /// The overlay id.
    pub fn overlay(&self) -> &str {
        &self.overlay
    }

    /// The next frame for this connection (what to play, what to stop).
    pub async fn next(&mut self) -> Utf8Bytes {
        if let Some(first) = self.first.take() {
            return first;
        }
        let Some(rx) = &mut self.frames else {
            return std::future::pending().await;
        };
        loop {
            match rx.recv().await {
                Ok(frame) => return frame,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(overlay = %self.overlay, skipped = n, "overlay connection lagged");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.frames = None;
                    return std::future::pending().await;
                }
            }
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.engine.with(&self.tenant, |t| {
            if let Some(l) = t.local.get_mut(&self.overlay) {
                l.count = l.count.saturating_sub(1);
            }
        });
        self.engine.wake.notify_one();
    }
}

/// Publishes one queue input on the internal stream. Decisions carry their
/// deterministic id, so a decision two nodes take is stored once.
///
/// # Errors
/// The log's failure.
pub async fn publish_op(state: &AppState, tenant: &str, op: Op) -> Result<Appended, ApiError> {
    let decision = op.decision_id();
    let now = time::now_ms();
    let data = serde_json::to_value(&op).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let id = decision.clone().unwrap_or_else(new_event_id);
    let event = Event {
        data,
        severity: Some("info".to_owned()),
        ..Event::made(
            id,
            STREAM,
            op.event_type().to_owned(),
            EventClass::System,
            now,
        )
    };
    publish_one(
        state,
        tenant,
        NewEvent {
            event,
            supplied_id: decision.is_some(),
        },
    )
    .await
}

/// Stores status rows and event-level statuses, in order, off the fold's path.
async fn write_rows(state: AppState, mut rx: mpsc::Receiver<Write>) {
    loop {
        let w = tokio::select! {
            biased;
            w = rx.recv() => match w {
                Some(w) => w,
                None => break,
            },
            _ = state.shutdown.cancelled() => break,
        };
        if let Err(e) = state.store.put_animation_status(&w.tenant, &w.row).await {
            debug!(error = %e, event = %w.row.event_id, "status row not stored");
        }
        if let Some(status) = w.event_status {
            let at = w
                .row
                .ended_ms
                .or(w.row.started_ms)
                .unwrap_or(w.row.updated_ms);
            if let Err(e) = state
                .store
                .set_event_status(&w.tenant, &w.row.event_id, status, at)
                .await
            {
                debug!(error = %e, event = %w.row.event_id, "event status not changed");
            }
        }
    }
}

/// `{"type":"EVENT_BROADCAST","event":…,"play":N}` for a queue item.
fn play_frame(record: &Record, play: u32) -> Utf8Bytes {
    let mut out = streambus_core::wire::event_broadcast_frame(&record.json);
    out.pop();
    out.extend_from_slice(format!(",\"play\":{play}}}").as_bytes());
    Utf8Bytes::from(String::from_utf8(out).expect("event JSON is UTF-8"))
}

fn text(v: &Value) -> Utf8Bytes {
    Utf8Bytes::from(v.to_string())
}
