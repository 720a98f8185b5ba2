//! The node's fan-out hub (SPEC §4, STYLE §3).
//!
//! One task tails the log once for the whole node and republishes each record
//! into its tenant's broadcast ring as a [`Delivery`], whose SSE and WebSocket
//! frames are built at most once and shared by every connection. Connections
//! hold only a ring cursor, so an idle connection costs a few words and a slow
//! one never slows the others: when it falls more than the ring's capacity
//! behind it gets `Lagged` and catches up from storage (see
//! [`crate::subscription`]).
//!
//! Paused streams are held here: their records are not put in the ring, and on
//! resume the hub reads the held range back from the log and releases it, in
//! order, before any newer record of that stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use streambus_core::log::{EventLog, LogError};
use streambus_core::store::EventQuery;
use streambus_core::{Record, wire};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// One committed event on its way to connections.
#[derive(Debug)]
pub struct Delivery {
    /// The record.
    pub record: Arc<Record>,
    sse: OnceLock<Bytes>,
    ws: OnceLock<Utf8Bytes>,
}

impl Delivery {
    /// Wraps a record; frames are built on first use.
    pub fn new(record: Arc<Record>) -> Self {
        Self { record, sse: OnceLock::new(), ws: OnceLock::new() }
    }

    /// The offset.
    pub fn offset(&self) -> u64 {
        self.record.offset()
    }

    /// `id: <offset>\ndata: <json>\n\n`, built once.
    pub fn sse_frame(&self) -> Bytes {
        self.sse
            .get_or_init(|| {
                let json = &self.record.json;
                let mut out = Vec::with_capacity(json.len() + 32);
                out.extend_from_slice(b"id: ");
                out.extend_from_slice(self.offset().to_string().as_bytes());
                out.extend_from_slice(b"\ndata: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            })
            .clone()
    }

    /// `{"type":"EVENT_BROADCAST","event":…}`, built once.
    pub fn ws_frame(&self) -> Utf8Bytes {
        self.ws
            .get_or_init(|| {
                let frame = wire::event_broadcast_frame(&self.record.json);
                Utf8Bytes::from(String::from_utf8(frame).expect("event JSON is UTF-8"))
            })
            .clone()
    }
}

/// What a tenant's ring carries.
#[derive(Debug, Clone)]
pub enum HubItem {
    /// A committed event.
    Event(Arc<Delivery>),
    /// The hub itself skipped records: every connection catches up from storage.
    Resync,
}

/// Client counts and pause state, per tenant.
#[derive(Default)]
struct TenantLive {
    ring: Option<broadcast::Sender<HubItem>>,
    /// Stream → connections watching it (`*` for glob subscriptions).
    clients: HashMap<String, usize>,
    /// Stream → last offset delivered before the pause.
    paused: HashMap<String, u64>,
    /// Stream → last offset delivered live.
    last: HashMap<String, u64>,
}

enum Command {
    Resume { tenant: String, stream: String, done: oneshot::Sender<()> },
}

/// The fan-out hub. Cheap to share behind an `Arc`.
pub struct Hub {
    capacity: usize,
    tenants: Mutex<HashMap<String, TenantLive>>,
    commands: mpsc::UnboundedSender<Command>,
    command_rx: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl Hub {
    /// A hub whose rings hold `capacity` events per tenant.
    pub fn new(capacity: usize) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        Self {
            capacity,
            tenants: Mutex::new(HashMap::new()),
            commands,
            command_rx: Mutex::new(Some(rx)),
        }
    }

    fn with_tenant<R>(&self, tenant: &str, f: impl FnOnce(&mut TenantLive) -> R) -> R {
        let mut tenants = self.tenants.lock().expect("hub lock poisoned");
        f(tenants.entry(tenant.to_owned()).or_default())
    }

    /// A receiver of the tenant's live events, starting now.
    pub fn subscribe(&self, tenant: &str) -> broadcast::Receiver<HubItem> {
        let capacity = self.capacity;
        self.with_tenant(tenant, |t| {
            t.ring.get_or_insert_with(|| broadcast::channel(capacity).0).subscribe()
        })
    }

    /// Counts a connection on `streams` until the guard drops.
    pub fn register(self: &Arc<Self>, tenant: &str, streams: Vec<String>) -> ClientGuard {
        self.with_tenant(tenant, |t| {
            for s in &streams {
                *t.clients.entry(s.clone()).or_default() += 1;
            }
        });
        ClientGuard { hub: Arc::clone(self), tenant: tenant.to_owned(), streams }
    }

    /// Connections per stream (glob subscriptions under `*`).
    pub fn client_counts(&self, tenant: &str) -> HashMap<String, usize> {
        self.with_tenant(tenant, |t| t.clients.clone())
    }

    /// Paused streams with the last offset delivered before each pause.
    pub fn paused(&self, tenant: &str) -> HashMap<String, u64> {
        self.with_tenant(tenant, |t| t.paused.clone())
    }

    /// Holds live delivery of `stream` (idempotent).
    pub fn pause(&self, tenant: &str, stream: &str) {
        self.with_tenant(tenant, |t| {
            let last = t.last.get(stream).copied().unwrap_or(0);
            t.paused.entry(stream.to_owned()).or_insert(last);
        });
    }

    /// Marks `stream` paused as found in storage at start, holding what comes
    /// after `last_offset`.
    pub fn restore_paused(&self, tenant: &str, stream: &str, last_offset: u64) {
        self.with_tenant(tenant, |t| {
            t.paused.insert(stream.to_owned(), last_offset);
        });
    }

    /// Releases what was held for `stream`, in order, then delivers it live.
    /// Returns when the held events are in the ring.
    pub async fn resume(&self, tenant: &str, stream: &str) {
        let paused = self.with_tenant(tenant, |t| t.paused.contains_key(stream));
        if !paused {
            return;
        }
        let (done, wait) = oneshot::channel();
        let cmd = Command::Resume { tenant: tenant.to_owned(), stream: stream.to_owned(), done };
        if self.commands.send(cmd).is_ok() {
            let _ = wait.await;
        }
    }

    fn publish(&self, record: Arc<Record>) {
        let mut tenants = self.tenants.lock().expect("hub lock poisoned");
        let t = tenants.entry(record.tenant.clone()).or_default();
        if t.paused.contains_key(&record.event.stream_id) {
            return;
        }
        t.last.insert(record.event.stream_id.clone(), record.offset());
        if let Some(ring) = &t.ring {
            // No receiver is fine: nobody is watching this tenant.
            let _ = ring.send(HubItem::Event(Arc::new(Delivery::new(record))));
        }
    }

    fn resync_all(&self) {
        let tenants = self.tenants.lock().expect("hub lock poisoned");
        for t in tenants.values() {
            if let Some(ring) = &t.ring {
                let _ = ring.send(HubItem::Resync);
            }
        }
    }

    /// Tails `log` until `shutdown`, feeding every tenant's ring.
    pub async fn run(self: Arc<Self>, log: Arc<dyn EventLog>, shutdown: CancellationToken) {
        let Some(mut commands) = self.command_rx.lock().expect("hub lock poisoned").take() else {
            warn!("hub already running");
            return;
        };
        let mut tail = log.tail();
        info!("hub started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(cmd) = commands.recv() => match cmd {
                    Command::Resume { tenant, stream, done } => {
                        self.release(log.as_ref(), &tenant, &stream).await;
                        let _ = done.send(());
                    }
                },
                next = tail.next() => match next {
                    Ok(record) => self.publish(record),
                    Err(LogError::Lagged { after }) => {
                        warn!(after, "hub fell behind the log; connections resync from storage");
                        self.resync_all();
                    }
                    Err(LogError::Closed) => break,
                    Err(e) => {
                        warn!(error = %e, "live tail failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        tail = log.tail();
                        self.resync_all();
                    }
                },
            }
        }
        info!("hub stopped");
    }

    /// Reads the held range of a paused stream from the log into the ring, then
    /// unpauses it. Runs inside the hub task, so no newer record of the stream
    /// can overtake the held ones; records read here that the tail also yields
    /// later are dropped by each connection's per-stream cursor.
    async fn release(&self, log: &dyn EventLog, tenant: &str, stream: &str) {
        let Some(mut after) = self.with_tenant(tenant, |t| t.paused.get(stream).copied()) else {
            return;
        };
        loop {
            let query = EventQuery {
                streams: Some(vec![stream.to_owned()]),
                cursor: Some(after),
                limit: 1000,
                ..Default::default()
            };
            match log.read(tenant, &query).await {
                Ok(page) => {
                    let ring = self.with_tenant(tenant, |t| t.ring.clone());
                    for r in &page.records {
                        after = r.offset();
                        if let Some(ring) = &ring {
                            let _ = ring.send(HubItem::Event(Arc::new(Delivery::new(Arc::clone(r)))));
                        }
                    }
                    if page.next_cursor.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, tenant, stream, "cannot read held events; connections resync");
                    self.resync_all();
                    break;
                }
            }
        }
        debug!(tenant, stream, after, "stream released");
        self.with_tenant(tenant, |t| {
            t.paused.remove(stream);
            t.last.insert(stream.to_owned(), after);
        });
    }
}

/// Keeps a connection counted in [`Hub::client_counts`] while alive.
pub struct ClientGuard {
    hub: Arc<Hub>,
    tenant: String,
    streams: Vec<String>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.with_tenant(&self.tenant, |t| {
            for s in &self.streams {
                if let Some(n) = t.clients.get_mut(s) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        t.clients.remove(s);
                    }
                }
            }
        });
    }
}
