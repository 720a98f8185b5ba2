//! The single writer task of [`SqliteStore`](super::SqliteStore): group commit
//! (SPEC §7, §9).
//!
//! It owns the only read-write connection. Each round takes one request, and
//! for appends drains whatever else is already queued (up to `batch_max`
//! events) into ONE transaction: look up producer-supplied ids only, assign
//! consecutive offsets from the in-memory counter, insert with multi-row
//! statements, upsert each touched stream once, COMMIT. Only then does it
//! advance the counter, call the commit hook once with every new record in
//! offset order, and answer each caller. A failed transaction is rolled back
//! and every request in it gets `Unavailable`; the counter does not move.
//!
//! Offsets are assigned here, not by SQLite, so the records (and the JSON that
//! will be delivered) are built before the insert and never re-read.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row as _};
use streambus_core::StoreError;
use streambus_core::event::{Event, Record};
use streambus_core::store::{Appended, StreamInfo, StreamState};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use super::pipe::{Interner, MAX_ROWS_PER_INSERT, Pipe, Row, insert_statements, upsert_streams};
use super::{Shared, read};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One queued append: tenant, events, and where to send the answer.
type AppendReq = (Arc<str>, Vec<Pending>, Reply<Vec<Appended>>);

/// An event serialised by its caller, waiting for an offset.
pub(crate) struct Pending {
    /// The event (offset 0).
    pub(crate) event: Event,
    /// `Event::to_body()` of it.
    pub(crate) body: String,
    /// Whether the producer supplied the id (only those are looked up).
    pub(crate) supplied_id: bool,
    /// The event time in ms, for the `time_ms` column.
    pub(crate) time_ms: i64,
}

/// Work for the writer.
pub(crate) enum Request {
    /// Append a batch for one tenant.
    Append {
        tenant: Arc<str>,
        events: Vec<Pending>,
        reply: Reply<Vec<Appended>>,
    },
    /// Store rows with offsets assigned elsewhere, skipping stored offsets.
    Insert { rows: Vec<Row>, reply: Reply<()> },
    /// Create the stream if missing and set its state.
    SetState {
        tenant: String,
        stream: String,
        state: StreamState,
        held_after: u64,
        reply: Reply<StreamInfo>,
    },
    /// Delete these offsets of one stream (one retention step).
    Prune {
        tenant: String,
        stream: String,
        seqs: Vec<i64>,
        reply: Reply<u64>,
    },
    /// A short catalog or lifecycle write on the writer's connection; the
    /// job answers its caller itself (see `SqliteStore::write`).
    Exec(Job),
    /// Stop accepting, flush what is queued, close the connection, answer.
    Close { reply: oneshot::Sender<()> },
}

/// A boxed future borrowing the writer's connection.
pub(crate) type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// Work run on the writer's connection; it sends its own answer.
pub(crate) type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, ()> + Send>;

/// Why a transaction failed; cloned into every request it held.
pub(super) enum TxError {
    /// The engine failed: `Unavailable` (or `Corrupt` for undecodable rows).
    Sql(Arc<sqlx::Error>),
    /// Stored data could not be read back.
    Corrupt(String),
}

impl TxError {
    pub(super) fn to_store_error(&self) -> StoreError {
        match self {
            Self::Sql(e) => match &**e {
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                    StoreError::Corrupt(e.to_string())
                }
                _ => StoreError::Unavailable(Box::new(e.clone())),
            },
            Self::Corrupt(m) => StoreError::Corrupt(m.clone()),
        }
    }
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sql(e) => write!(f, "{e}"),
            Self::Corrupt(m) => write!(f, "corrupt data: {m}"),
        }
    }
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(Arc::new(e))
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(m) => Self::Corrupt(m),
            other => Self::Corrupt(other.to_string()),
        }
    }
}

/// A committed append transaction.
struct Committed {
    /// The answer of each request, in request order.
    results: Vec<Vec<Appended>>,
    /// Every new record, in offset order.
    new: Vec<Arc<Record>>,
    /// The highest offset assigned.
    last: u64,
}

/// The writer task's state.
pub(crate) struct Writer {
    pub(super) conn: SqliteConnection,
    /// The last offset assigned and committed; advanced only after COMMIT.
    pub(super) last: u64,
    pub(super) shared: Arc<Shared>,
    batch_max: usize,
    /// Shared copies of stream, type, source and class strings.
    interner: Interner,
}

impl Writer {
    pub(crate) fn new(
        conn: SqliteConnection,
        last: u64,
        shared: Arc<Shared>,
        batch_max: usize,
    ) -> Self {
        Self {
            conn,
            last,
            shared,
            batch_max,
            interner: Interner::default(),
        }
    }

    /// Serves requests until `Close` (then flushes what is queued) or until every
    /// sender is gone (the store was dropped without `close`).
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut carry: Option<Request> = None;
        let mut closers = Vec::new();
        loop {
            let first = match carry.take() {
                Some(r) => r,
                None => match rx.recv().await {
                    Some(r) => r,
                    None => break,
                },
            };
            match first {
                Request::Append {
                    tenant,
                    events,
                    reply,
                } => {
                    let mut n = events.len();
                    let mut batch = vec![(tenant, events, reply)];
                    while n < self.batch_max {
                        match rx.try_recv() {
                            Ok(Request::Append {
                                tenant,
                                events,
                                reply,
                            }) if n + events.len() <= self.batch_max => {
                                n += events.len();
                                batch.push((tenant, events, reply));
                            }
                            Ok(other) => {
                                carry = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_appends(batch).await;
                }
                Request::Insert { rows, reply } => {
                    let r = self
                        .insert_records(rows)
                        .await
                        .map_err(|e| e.to_store_error());
                    let _ = reply.send(r);
                }
                Request::SetState {
                    tenant,
                    stream,
                    state,
                    held_after,
                    reply,
                } => {
                    let _ = reply.send(self.set_state(&tenant, &stream, state, held_after).await);
                }
                Request::Prune {
                    tenant,
                    stream,
                    seqs,
                    reply,
                } => {
                    let r = self
                        .prune(&tenant, &stream, &seqs)
                        .await
                        .map_err(|e| e.to_store_error());
                    let _ = reply.send(r);
                }
                Request::Exec(job) => job(&mut self.conn).await,
                Request::Close { reply } => {
                    // Refuse new sends; what is already queued is still served.
                    rx.close();
                    closers.push(reply);
                }
            }
        }
        if let Err(e) = self.conn.close().await {
            warn!(error = %e, "closing the sqlite writer connection failed");
        }
        debug!(head = self.last, "sqlite writer stopped");
        for c in closers {
            let _ = c.send(());
        }
    }

    async fn commit_appends(&mut self, batch: Vec<AppendReq>) {
        let started = Instant::now();
        let mut work = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (tenant, events, reply) in batch {
            work.push((tenant, events));
            replies.push(reply);
        }
        match self.append_tx(work).await {
            Ok(done) => {
                self.last = done.last;
                self.shared.head.store(done.last, Ordering::Release);
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .events
                    .fetch_add(done.new.len() as u64, Ordering::Relaxed);
                debug!(
                    requests = replies.len(),
                    events = done.new.len(),
                    head = done.last,
                    micros = started.elapsed().as_micros() as u64,
                    "group commit"
                );
                // The hook runs before the answers so that an acknowledged event
                // has already reached the live tail.
                if !done.new.is_empty() {
                    self.call_hook(&done.new);
                }
                for (reply, result) in replies.into_iter().zip(done.results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                error!(error = %e, requests = replies.len(), "append transaction failed; rolled back");
                for reply in replies {
                    let _ = reply.send(Err(e.to_store_error()));
                }
            }
        }
    }

    fn call_hook(&self, records: &[Arc<Record>]) {
        let hook = match self.shared.hook.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(hook) = hook {
            // A panicking hook must not take the only writer down with it.
            if std::panic::catch_unwind(AssertUnwindSafe(|| hook(records))).is_err() {
                error!(records = records.len(), "commit hook panicked");
            }
        }
    }

    async fn append_tx(
        &mut self,
        work: Vec<(Arc<str>, Vec<Pending>)>,
    ) -> Result<Committed, TxError> {
        let total: usize = work.iter().map(|(_, e)| e.len()).sum();
        let Self {
            conn,
            last,
            interner,
            ..
        } = self;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut known = stored_duplicates(&mut tx, &work).await?;
        let mut pipe = Pipe::new(&mut tx);

        let mut next = *last;
        let mut chunk = Vec::with_capacity(MAX_ROWS_PER_INSERT.min(total));
        let mut new = Vec::with_capacity(total);
        let mut results = Vec::with_capacity(work.len());
        let mut streams: HashMap<(Arc<str>, Arc<str>), (i64, i64)> = HashMap::new();
        for (tenant, events) in work {
            let mut out = Vec::with_capacity(events.len());
            for p in events {
                if p.supplied_id
                    && let Some(first) = known.get(&(tenant.clone(), p.event.id.clone()))
                {
                    out.push(Appended {
                        record: first.clone(),
                        duplicate: true,
                    });
                    continue;
                }
                next += 1;
                let seq = i64::try_from(next)
                    .map_err(|_| TxError::Corrupt("offset overflow".to_owned()))?;
                let mut event = p.event;
                event.offset = next;
                let row = Row {
                    seq,
                    tenant: tenant.clone(),
                    stream: interner.get(&event.stream_id),
                    id: event.id.clone(),
                    event_type: interner.get(&event.event_type),
                    class: interner.get(event.class.as_str()),
                    source: interner.get(&event.source),
                    time_ms: p.time_ms,
                    body: p.body,
                };
                let record = Arc::new(Record::with_body(&tenant, event, &row.body));
                let entry = streams
                    .entry((tenant.clone(), row.stream.clone()))
                    .or_insert((0, 0));
                entry.0 += 1;
                entry.1 = seq;
                if p.supplied_id {
                    known.insert((tenant.clone(), row.id.clone()), record.clone());
                }
                chunk.push(row);
                new.push(record.clone());
                out.push(Appended {
                    record,
                    duplicate: false,
                });
                if chunk.len() == MAX_ROWS_PER_INSERT {
                    // Runs on the SQLite thread while the next chunk is built.
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(MAX_ROWS_PER_INSERT));
                    for stmt in insert_statements(full, false) {
                        pipe.submit(stmt).await?;
                    }
                }
            }
            results.push(out);
        }
        for stmt in insert_statements(chunk, false) {
            pipe.submit(stmt).await?;
        }
        for stmt in upsert_streams(
            streams.into_iter().collect(),
            streambus_core::time::now_ms(),
        ) {
            pipe.submit(stmt).await?;
        }
        pipe.connection().await?;
        drop(pipe);
        tx.commit().await?;
        Ok(Committed {
            results,
            new,
            last: next,
        })
    }
}

/// Stored records for the producer-supplied ids of this batch, keyed by
/// (tenant, id). Only supplied ids are looked up: server-made ids are fresh.
async fn stored_duplicates(
    conn: &mut SqliteConnection,
    work: &[(Arc<str>, Vec<Pending>)],
) -> Result<HashMap<(Arc<str>, String), Arc<Record>>, TxError> {
    let mut by_tenant: BTreeMap<&Arc<str>, Vec<&str>> = BTreeMap::new();
    for (tenant, events) in work {
        for p in events.iter().filter(|p| p.supplied_id) {
            by_tenant
                .entry(tenant)
                .or_default()
                .push(p.event.id.as_str());
        }
    }
    let mut known = HashMap::new();
    for (tenant, ids) in by_tenant {
        // One static statement whatever the count: the ids travel as a JSON
        // array and each is probed in the (tenant, id) index.
        let list = serde_json::to_string(&ids).map_err(|e| TxError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(
            "SELECT id, seq, body FROM events
             WHERE tenant = ?1 AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(&**tenant)
        .bind(list)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let id: String = row.try_get(0)?;
            let record = read::record_from_row(tenant, &row, 1, 2)?;
            known.insert((tenant.clone(), id), record);
        }
    }
    Ok(known)
}
