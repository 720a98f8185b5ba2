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
//! Paused streams are held here: their records are not put in the ring. On
//! resume the hub puts a [`HubItem::Release`] marker in the ring and keeps it in
//! a short log of recent releases; each subscription then reads the held range
//! from storage itself. Held events have offsets below what a connection has
//! already seen of other streams, so they cannot simply be re-sent through the
//! ring: a connection that lagged during the release would skip them when it
//! catches up from its cursor. The release log lets it find them again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use streambus_core::log::{EventLog, LogError};
use streambus_core::{Record, wire};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Releases remembered per tenant for connections that lagged past a marker.
const RELEASE_LOG: usize = 256;

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
        Self {
            record,
            sse: OnceLock::new(),
            ws: OnceLock::new(),
        }
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
    /// A paused stream resumed: what it held after `after` is to be read from
    /// storage by every connection watching it.
    Release(Arc<Release>),
}

/// One resume of a paused stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The stream.
    pub stream: String,
    /// Its last offset delivered before the pause.
    pub after: u64,
    /// Position in the tenant's release log.
    pub generation: u64,
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
    /// Releases so far; the newest [`RELEASE_LOG`] are kept.
    generation: u64,
    releases: VecDeque<Arc<Release>>,
}

/// The fan-out hub. Cheap to share behind an `Arc`.
pub struct Hub {
    capacity: usize,
    tenants: Mutex<HashMap<String, TenantLive>>,
}

impl Hub {
    /// A hub whose rings hold `capacity` events per tenant.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tenants: Mutex::new(HashMap::new()),
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
            t.ring
                .get_or_insert_with(|| broadcast::channel(capacity).0)
                .subscribe()
        })
    }

    /// Counts a connection on `streams` until the guard drops.
    pub fn register(self: &Arc<Self>, tenant: &str, streams: Vec<String>) -> ClientGuard {
        self.with_tenant(tenant, |t| {
            for s in &streams {
                *t.clients.entry(s.clone()).or_default() += 1;
            }
        });
        ClientGuard {
            hub: Arc::clone(self),
            tenant: tenant.to_owned(),
            streams,
        }
    }

    /// Connections per stream (glob subscriptions under `*`).
    pub fn client_counts(&self, tenant: &str) -> HashMap<String, usize> {
        self.with_tenant(tenant, |t| t.clients.clone())
    }

    /// Paused streams with the last offset delivered before each pause.
    pub fn paused(&self, tenant: &str) -> HashMap<String, u64> {
        self.with_tenant(tenant, |t| t.paused.clone())
    }

    /// Where a pause of `stream` would hold from: the existing hold point if
    /// it is paused, else the last offset delivered live, or `stored_last`
    /// when this node has delivered nothing of the stream yet.
    pub fn hold_point(&self, tenant: &str, stream: &str, stored_last: u64) -> u64 {
        self.with_tenant(tenant, |t| match t.paused.get(stream) {
            Some(held) => *held,
            None => t.last.get(stream).copied().unwrap_or(stored_last),
        })
    }

    /// Holds live delivery of `stream` after `held_after` (idempotent: an
    /// existing hold keeps its point).
    pub fn hold(&self, tenant: &str, stream: &str, held_after: u64) {
        self.with_tenant(tenant, |t| {
            t.paused.entry(stream.to_owned()).or_insert(held_after);
        });
    }

    /// Ends the hold on `stream`: connections read what it held from storage
    /// (announced by a [`HubItem::Release`]), then receive it live again.
    pub fn resume(&self, tenant: &str, stream: &str) {
        self.with_tenant(tenant, |t| {
            let Some(after) = t.paused.remove(stream) else {
                return;
            };
            t.generation += 1;
            let release = Arc::new(Release {
                stream: stream.to_owned(),
                after,
                generation: t.generation,
            });
            if t.releases.len() == RELEASE_LOG {
                t.releases.pop_front();
            }
            t.releases.push_back(Arc::clone(&release));
            if let Some(ring) = &t.ring {
                let _ = ring.send(HubItem::Release(release));
            }
            debug!(tenant, stream, after, "stream released");
        });
    }

    /// The tenant's release generation now.
    pub fn release_generation(&self, tenant: &str) -> u64 {
        self.with_tenant(tenant, |t| t.generation)
    }

    /// Releases after `generation`, or `None` when some were already forgotten.
    pub fn releases_since(&self, tenant: &str, generation: u64) -> Option<Vec<Arc<Release>>> {
        self.with_tenant(tenant, |t| {
            let oldest_kept = t
                .releases
                .front()
                .map_or(t.generation + 1, |r| r.generation);
            if generation + 1 < oldest_kept && generation < t.generation {
                return None;
            }
            Some(
                t.releases
                    .iter()
                    .filter(|r| r.generation > generation)
                    .cloned()
                    .collect(),
            )
        })
    }

    fn publish(&self, record: Arc<Record>) {
        let mut tenants = self.tenants.lock().expect("hub lock poisoned");
        // Keys are allocated only the first time a tenant or stream is seen:
        // this runs once per event.
        if !tenants.contains_key(&record.tenant) {
            tenants.insert(record.tenant.clone(), TenantLive::default());
        }
        let Some(t) = tenants.get_mut(&record.tenant) else {
            return;
        };
        let stream = &record.event.stream_id;
        if t.paused.contains_key(stream) {
            return;
        }
        match t.last.get_mut(stream) {
            Some(last) => *last = record.offset(),
            None => {
                t.last.insert(stream.clone(), record.offset());
            }
        }
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
        let mut tail = log.tail();
        info!("hub started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
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
