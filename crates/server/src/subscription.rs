//! One connection's subscription: resume, rewind, live delivery and catch-up,
//! shared by SSE and WebSocket (SPEC §4).
//!
//! The seam between history and live events has no gap and no duplicate:
//! the ring receiver is opened *before* storage is read, every record the hub
//! put in the ring was committed before, and each delivery is checked against
//! the connection's per-stream cursor. The same path serves a connection that
//! fell behind the ring (`Lagged`): it reopens the receiver, reads storage
//! from its cursor, and rejoins live. Only a consumer whose cursor is below
//! what retention already removed is closed ([`SubError::BehindRetention`]).
//!
//! Held events of a paused stream are the one exception to offset order: on
//! resume they arrive after events of other streams with higher offsets. They
//! are read per stream ("owed" reads) when a [`HubItem::Release`] arrives, or,
//! for a connection that lagged past the marker, from the hub's release log.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use streambus_core::Filter;
use streambus_core::log::LogError;
use streambus_core::store::{EventQuery, StoreError};
use tokio::sync::broadcast;

use crate::hub::{ClientGuard, Delivery, HubItem, Release};
use crate::state::AppState;

/// Storage pages a rewind may read before giving up on finding N matches.
const REWIND_MAX_PAGES: usize = 20;

/// Why a subscription cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SubError {
    /// Events the consumer needs were removed by retention.
    #[error("consumer fell behind retention; the earliest available offset is {earliest}")]
    BehindRetention {
        /// The earliest offset still stored.
        earliest: u64,
    },
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server is shutting down.
    #[error("server shutting down")]
    Closed,
}

/// How a subscription began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The log head when it went live.
    pub head: u64,
    /// False when retention had removed events after `since`.
    pub recovered: bool,
    /// With `recovered: false`, the earliest offset still available.
    pub earliest: Option<u64>,
}

/// Where to begin.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartAt {
    /// Resume after this offset.
    pub since: Option<u64>,
    /// Otherwise, begin with the last N matching events.
    pub rewind: Option<usize>,
}

/// A live subscription.
pub struct Subscription {
    state: AppState,
    tenant: String,
    filter: Filter,
    rx: broadcast::Receiver<HubItem>,
    /// Default cursor for streams not in `stream_cursors`.
    start: u64,
    /// Highest offset handled, where catch-up resumes.
    cursor: u64,
    /// Stream → highest offset delivered (or skipped) for it.
    stream_cursors: HashMap<String, u64>,
    /// Reading storage after this offset before going live again.
    catchup: Option<u64>,
    /// Streams whose held events are to be read, each after an offset.
    owed: VecDeque<(String, u64)>,
    /// The last release of the tenant this subscription has accounted for.
    release_generation: u64,
    pending: VecDeque<Arc<Delivery>>,
    _guard: ClientGuard,
}

impl Subscription {
    /// Opens a subscription for `tenant` with `filter`.
    ///
    /// # Errors
    /// Storage or log failures.
    pub async fn start(
        state: &AppState,
        tenant: &str,
        filter: Filter,
        at: StartAt,
    ) -> Result<(Self, Started), SubError> {
        let rx = state.hub.subscribe(tenant);
        let release_generation = state.hub.release_generation(tenant);
        let head = state.log.head().await?;
        let counted = filter
            .literal_streams()
            .unwrap_or_else(|| vec!["*".to_owned()]);
        let guard = state.hub.register(tenant, counted);
        let mut sub = Self {
            state: state.clone(),
            tenant: tenant.to_owned(),
            filter,
            rx,
            start: head,
            cursor: head,
            stream_cursors: HashMap::new(),
            catchup: None,
            owed: VecDeque::new(),
            release_generation,
            pending: VecDeque::new(),
            _guard: guard,
        };
        let mut started = Started {
            head,
            recovered: true,
            earliest: None,
        };
        if let Some(since) = at.since {
            let since = since.min(head);
            let pruned = sub.pruned_through().await?;
            if since < pruned {
                started.recovered = false;
                started.earliest = Some(pruned + 1);
            }
            // Without recovery the client was told where history begins.
            let from = since.max(pruned);
            sub.start = from;
            sub.cursor = from;
            sub.catchup = Some(from);
        } else if let Some(n) = at.rewind.filter(|n| *n > 0) {
            sub.rewind(n, head).await?;
        }
        for (stream, held_after) in state.hub.paused(tenant) {
            if sub.filter.matches_stream(&stream) && held_after < sub.start {
                sub.stream_cursors.insert(stream, held_after);
            }
        }
        Ok((sub, started))
    }

    /// The highest offset retention removed from the streams this filter reads.
    async fn pruned_through(&self) -> Result<u64, SubError> {
        let streams = self.state.store.list_streams(&self.tenant).await?;
        Ok(streams
            .iter()
            .filter(|s| self.filter.matches_stream(&s.name))
            .map(|s| s.pruned_through)
            .max()
            .unwrap_or(0))
    }

    async fn rewind(&mut self, n: usize, head: u64) -> Result<(), SubError> {
        let mut found = Vec::new();
        let mut before = head + 1;
        for _ in 0..REWIND_MAX_PAGES {
            let query = EventQuery {
                streams: self.filter.literal_streams(),
                cursor: Some(before),
                descending: true,
                limit: self.state.config.delivery.catchup_page,
                ..Default::default()
            };
            let page = self.state.log.read(&self.tenant, &query).await?;
            for r in &page.records {
                if self.filter.matches(&r.event) && found.len() < n {
                    found.push(Arc::clone(r));
                }
            }
            match page.next_cursor {
                Some(c) if found.len() < n => before = c,
                _ => break,
            }
        }
        let paused = self.state.hub.paused(&self.tenant);
        for r in found.into_iter().rev() {
            if paused
                .get(&r.event.stream_id)
                .is_some_and(|held| r.offset() > *held)
            {
                continue;
            }
            self.set_stream_cursor(&r.event.stream_id, r.offset());
            self.pending.push_back(Arc::new(Delivery::new(r)));
        }
        Ok(())
    }

    /// Accepts a delivery if it matches and is new for its stream.
    fn accept(&mut self, d: &Delivery) -> bool {
        let event = &d.record.event;
        let seen = self.stream_cursor(&event.stream_id);
        if d.offset() <= seen || !self.filter.matches(event) {
            return false;
        }
        self.set_stream_cursor(&event.stream_id, d.offset());
        true
    }

    /// Updates a stream's cursor, allocating only the first time (hot path).
    fn set_stream_cursor(&mut self, stream: &str, offset: u64) {
        match self.stream_cursors.get_mut(stream) {
            Some(c) => *c = offset,
            None => {
                self.stream_cursors.insert(stream.to_owned(), offset);
            }
        }
    }

    /// The next events to send, at most `max`, waiting until there is one.
    /// Cancel-safe: state changes only after each await completes.
    ///
    /// # Errors
    /// [`SubError::BehindRetention`] when the consumer cannot be served any
    /// more; storage failures; [`SubError::Closed`] at shutdown.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Delivery>>, SubError> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(max);
                return Ok(self.pending.drain(..n).collect());
            }
            if let Some((stream, after)) = self.owed.front().cloned() {
                self.owed_page(&stream, after).await?;
                continue;
            }
            if let Some(after) = self.catchup {
                self.catch_up_page(after).await?;
                continue;
            }
            let first = self.rx.recv().await;
            let mut out = Vec::new();
            let mut item = first;
            loop {
                match item {
                    Ok(HubItem::Event(d)) => {
                        self.cursor = self.cursor.max(d.offset());
                        if self.accept(&d) {
                            out.push(d);
                        }
                    }
                    Ok(HubItem::Release(r)) => {
                        self.owe(&r);
                        break;
                    }
                    Ok(HubItem::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.fall_back_to_storage().await?;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(SubError::Closed),
                }
                if out.len() >= max {
                    break;
                }
                item = match self.rx.try_recv() {
                    Ok(i) => Ok(i),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(_) => break,
                };
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// The ring overran this connection: reopen it, then read storage from the
    /// cursor. The order (receiver first) is what makes the seam gapless.
    async fn fall_back_to_storage(&mut self) -> Result<(), SubError> {
        let pruned = self.pruned_through().await?;
        if self.cursor < pruned {
            return Err(SubError::BehindRetention {
                earliest: pruned + 1,
            });
        }
        self.rx = self.state.hub.subscribe(&self.tenant);
        match self
            .state
            .hub
            .releases_since(&self.tenant, self.release_generation)
        {
            Some(missed) => missed.iter().for_each(|r| self.owe(r)),
            None => {
                // Too many releases to replay one by one: re-read every stream
                // this connection has seen from where it stood.
                let behind: Vec<(String, u64)> = self
                    .stream_cursors
                    .iter()
                    .filter(|(_, c)| **c < self.cursor)
                    .map(|(s, c)| (s.clone(), *c))
                    .collect();
                self.owed.extend(behind);
                self.release_generation = self.state.hub.release_generation(&self.tenant);
            }
        }
        self.catchup = Some(self.cursor);
        Ok(())
    }

    /// Schedules the read of what `release` held, if this connection wants it.
    fn owe(&mut self, release: &Release) {
        self.release_generation = self.release_generation.max(release.generation);
        if self.filter.matches_stream(&release.stream) {
            let seen = self.stream_cursor(&release.stream);
            self.owed
                .push_back((release.stream.clone(), release.after.min(seen)));
        }
    }

    fn stream_cursor(&self, stream: &str) -> u64 {
        self.stream_cursors
            .get(stream)
            .copied()
            .unwrap_or(self.start)
    }

    /// Reads one page of a released stream's held events.
    async fn owed_page(&mut self, stream: &str, after: u64) -> Result<(), SubError> {
        let query = EventQuery {
            streams: Some(vec![stream.to_owned()]),
            cursor: Some(after),
            limit: self.state.config.delivery.catchup_page,
            ..Default::default()
        };
        let page = self.state.log.read(&self.tenant, &query).await?;
        let held = self.state.hub.paused(&self.tenant).get(stream).copied();
        for r in page.records {
            // Paused again meanwhile: the next release brings the rest.
            if held.is_some_and(|h| r.offset() > h) {
                break;
            }
            // An owed read leaves the catch-up cursor alone: it reads one
            // stream, and must not move past other streams' offsets.
            let d = Delivery::new(r);
            if self.accept(&d) {
                self.pending.push_back(Arc::new(d));
            }
        }
        match page.next_cursor {
            Some(next) if held.is_none() => {
                if let Some(front) = self.owed.front_mut() {
                    front.1 = next;
                }
            }
            _ => {
                self.owed.pop_front();
            }
        }
        Ok(())
    }

    async fn catch_up_page(&mut self, after: u64) -> Result<(), SubError> {
        let query = EventQuery {
            streams: self.filter.literal_streams(),
            cursor: Some(after),
            limit: self.state.config.delivery.catchup_page,
            ..Default::default()
        };
        let page = self.state.log.read(&self.tenant, &query).await?;
        // Checked after the read: pruning before it would show here.
        let pruned = self.pruned_through().await?;
        if after < pruned {
            return Err(SubError::BehindRetention {
                earliest: pruned + 1,
            });
        }
        let paused = self.state.hub.paused(&self.tenant);
        let mut last = after;
        for r in page.records {
            last = last.max(r.offset());
            // Held events arrive through the ring when their stream resumes.
            if paused
                .get(&r.event.stream_id)
                .is_some_and(|held| r.offset() > *held)
            {
                continue;
            }
            let d = Delivery::new(r);
            if self.accept(&d) {
                self.pending.push_back(Arc::new(d));
            }
        }
        self.cursor = self.cursor.max(last);
        self.catchup = page.next_cursor;
        Ok(())
    }
}
