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
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row as _};
use streambus_core::event::{Event, Record};
use streambus_core::store::{Appended, StreamInfo, StreamState};
use streambus_core::StoreError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use super::{read, Shared};
use crate::sql_error;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

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

/// One `events` row, owned so binding moves the strings instead of copying.
pub(crate) struct Row {
    pub(crate) seq: i64,
    pub(crate) tenant: Arc<str>,
    pub(crate) stream: String,
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) class: &'static str,
    pub(crate) source: String,
    pub(crate) time_ms: i64,
    pub(crate) body: String,
}

/// Work for the writer.
pub(crate) enum Request {
    /// Append a batch for one tenant.
    Append { tenant: Arc<str>, events: Vec<Pending>, reply: Reply<Vec<Appended>> },
    /// Store rows with offsets assigned elsewhere, skipping stored offsets.
    Insert { rows: Vec<Row>, reply: Reply<()> },
    /// Create the stream if missing and set its state.
    SetState { tenant: String, stream: String, state: StreamState, reply: Reply<StreamInfo> },
    /// Delete these offsets of one stream (one retention step).
    Prune { tenant: String, stream: String, seqs: Vec<i64>, reply: Reply<u64> },
    /// Stop accepting, flush what is queued, close the connection, answer.
    Close { reply: oneshot::Sender<()> },
}

/// Why a transaction failed; cloned into every request it held.
enum TxError {
    /// The engine failed: `Unavailable` (or `Corrupt` for undecodable rows).
    Sql(Arc<sqlx::Error>),
    /// Stored data could not be read back.
    Corrupt(String),
}

impl TxError {
    fn to_store_error(&self) -> StoreError {
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
    conn: SqliteConnection,
    /// The last offset assigned and committed; advanced only after COMMIT.
    last: u64,
    shared: Arc<Shared>,
    batch_max: usize,
}

impl Writer {
    pub(crate) fn new(conn: SqliteConnection, last: u64, shared: Arc<Shared>, batch_max: usize) -> Self {
        Self { conn, last, shared, batch_max }
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
                Request::Append { tenant, events, reply } => {
                    let mut n = events.len();
                    let mut batch = vec![(tenant, events, reply)];
                    while n < self.batch_max {
                        match rx.try_recv() {
                            Ok(Request::Append { tenant, events, reply })
                                if n + events.len() <= self.batch_max =>
                            {
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
                    let r = self.insert_records(rows).await.map_err(|e| e.to_store_error());
                    let _ = reply.send(r);
                }
                Request::SetState { tenant, stream, state, reply } => {
                    let _ = reply.send(self.set_state(&tenant, &stream, state).await);
                }
                Request::Prune { tenant, stream, seqs, reply } => {
                    let r = self.prune(&tenant, &stream, &seqs).await.map_err(|e| e.to_store_error());
                    let _ = reply.send(r);
                }
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

    async fn commit_appends(&mut self, batch: Vec<(Arc<str>, Vec<Pending>, Reply<Vec<Appended>>)>) {
        let started = Instant::now();
        let mut work = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (tenant, events, reply) in batch {
            work.push((tenant, events));
            replies.push(reply);
        }
        let r = self.append_tx(work).await;
        eprintln!("TX {} events {} us", r.as_ref().map(|d| d.new.len()).unwrap_or(0), started.elapsed().as_micros());
        match r {
            Ok(done) => {
                self.last = done.last;
                self.shared.head.store(done.last, Ordering::Release);
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                self.shared.events.fetch_add(done.new.len() as u64, Ordering::Relaxed);
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
                let err = e.to_store_error();
                error!(error = %err, requests = replies.len(), "append transaction failed");
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

    async fn append_tx(&mut self, work: Vec<(Arc<str>, Vec<Pending>)>) -> Result<Committed, TxError> {
        let total: usize = work.iter().map(|(_, e)| e.len()).sum();
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;

        let mut known = stored_duplicates(&mut tx, &work).await?;
        let mut next = self.last;
        let mut rows = Vec::with_capacity(total);
        let mut new = Vec::with_capacity(total);
        let mut results = Vec::with_capacity(work.len());
        let mut streams: BTreeMap<(Arc<str>, String), (i64, i64)> = BTreeMap::new();
        for (tenant, events) in work {
            let mut out = Vec::with_capacity(events.len());
            for p in events {
                if p.supplied_id {
                    if let Some(first) = known.get(&(tenant.clone(), p.event.id.clone())) {
                        out.push(Appended { record: first.clone(), duplicate: true });
                        continue;
                    }
                }
                next += 1;
                let seq = i64::try_from(next).map_err(|_| {
                    TxError::Corrupt("offset overflow".to_owned())
                })?;
                let mut event = p.event;
                event.offset = next;
                let row = Row {
                    seq,
                    tenant: tenant.clone(),
                    stream: event.stream_id.clone(),
                    id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    class: event.class.as_str(),
                    source: event.source.clone(),
                    time_ms: p.time_ms,
                    body: p.body,
                };
                let record = Arc::new(Record::with_body(&tenant, event, &row.body));
                let entry = streams.entry((tenant.clone(), row.stream.clone())).or_insert((0, 0));
                entry.0 += 1;
                entry.1 = seq;
                if p.supplied_id {
                    known.insert((tenant.clone(), row.id.clone()), record.clone());
                }
                rows.push(row);
                new.push(record.clone());
                out.push(Appended { record, duplicate: false });
            }
            results.push(out);
        }

        let t0 = Instant::now();
        insert_rows(&mut tx, rows, false).await?;
        let t1 = Instant::now();
        upsert_streams(&mut tx, &streams).await?;
        let t2 = Instant::now();
        tx.commit().await?;
        eprintln!("  insert {} us upsert {} us commit {} us", (t1-t0).as_micros(), (t2-t1).as_micros(), t2.elapsed().as_micros());
        Ok(Committed { results, new, last: next })
    }

    async fn insert_records(&mut self, rows: Vec<Row>) -> Result<(), TxError> {
        let max = rows.iter().map(|r| r.seq).max().unwrap_or(0);
        let owners: HashMap<i64, (Arc<str>, String)> =
            rows.iter().map(|r| (r.seq, (r.tenant.clone(), r.stream.clone()))).collect();
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = insert_rows(&mut tx, rows, true).await?;
        let mut streams: BTreeMap<(Arc<str>, String), (i64, i64)> = BTreeMap::new();
        for seq in inserted {
            if let Some(key) = owners.get(&seq) {
                let e = streams.entry(key.clone()).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(seq);
            }
        }
        upsert_streams(&mut tx, &streams).await?;
        tx.commit().await?;
        // Keep our own counter ahead of every stored offset.
        let max = u64::try_from(max).unwrap_or(0);
        if max > self.last {
            self.last = max;
            self.shared.head.store(max, Ordering::Release);
        }
        Ok(())
    }

    async fn set_state(&mut self, tenant: &str, stream: &str, state: StreamState) -> Result<StreamInfo, StoreError> {
        let row = sqlx::query(
            "INSERT INTO streams (tenant, name, state, created_ms, last_seq, event_count, pruned_through)
             VALUES (?1, ?2, ?3, ?4, 0, 0, 0)
             ON CONFLICT (tenant, name) DO UPDATE SET state = excluded.state
             RETURNING name, state, created_ms, last_seq, event_count, pruned_through",
        )
        .bind(tenant)
        .bind(stream)
        .bind(state.as_str())
        .bind(streambus_core::time::now_ms())
        .fetch_one(&mut self.conn)
        .await
        .map_err(sql_error)?;
        read::stream_info(&row)
    }

    async fn prune(&mut self, tenant: &str, stream: &str, seqs: &[i64]) -> Result<u64, TxError> {
        let list = serde_json::to_string(seqs).map_err(|e| TxError::Corrupt(e.to_string()))?;
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let deleted = sqlx::query(
            "DELETE FROM events WHERE tenant = ?1 AND stream = ?2
             AND seq IN (SELECT value FROM json_each(?3)) RETURNING seq",
        )
        .bind(tenant)
        .bind(stream)
        .bind(list)
        .fetch_all(&mut *tx)
        .await?;
        let mut highest = 0i64;
        for row in &deleted {
            highest = highest.max(row.try_get::<i64, _>(0)?);
        }
        let n = deleted.len() as i64;
        if n > 0 {
            sqlx::query(
                "UPDATE streams SET event_count = max(event_count - ?3, 0),
                 pruned_through = max(pruned_through, ?4) WHERE tenant = ?1 AND name = ?2",
            )
            .bind(tenant)
            .bind(stream)
            .bind(n)
            .bind(highest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n as u64)
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
            by_tenant.entry(tenant).or_default().push(p.event.id.as_str());
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

/// Most rows in one INSERT: 9 values each stays far below SQLite's 32,766
/// variables, and a power of two keeps the set of statement texts (and so the
/// prepared-statement cache) small.
const MAX_ROWS_PER_INSERT: usize = 512;
const COLUMNS: &str = "(seq, tenant, stream, id, type, class, source, time_ms, body)";

/// The INSERT text for `n` rows (`n` a power of two up to the maximum), built
/// once per process.
fn insert_sql(ignore: bool, n: usize) -> &'static str {
    static PLAIN: OnceLock<Vec<String>> = OnceLock::new();
    static IGNORE: OnceLock<Vec<String>> = OnceLock::new();
    let build = |head: &str, tail: &str| {
        let mut out = Vec::new();
        let mut rows = 1;
        while rows <= MAX_ROWS_PER_INSERT {
            let values = vec!["(?,?,?,?,?,?,?,?,?)"; rows].join(",");
            out.push(format!("{head} INTO events {COLUMNS} VALUES {values}{tail}"));
            rows *= 2;
        }
        out
    };
    let set = if ignore {
        IGNORE.get_or_init(|| build("INSERT OR IGNORE", " RETURNING seq"))
    } else {
        PLAIN.get_or_init(|| build("INSERT", ""))
    };
    &set[n.trailing_zeros() as usize]
}

/// Inserts rows with multi-row statements; returns the offsets stored when
/// `ignore` (rows whose offset or id exists are skipped then).
async fn insert_rows(conn: &mut SqliteConnection, rows: Vec<Row>, ignore: bool) -> Result<Vec<i64>, sqlx::Error> {
    let mut remaining = rows.len();
    let mut rows = rows.into_iter();
    let mut stored = Vec::new();
    while remaining > 0 {
        // The largest power of two that fits: at most log2(512)+1 statements
        // beyond the full chunks.
        let n = if remaining >= MAX_ROWS_PER_INSERT {
            MAX_ROWS_PER_INSERT
        } else {
            1 << (usize::BITS - 1 - remaining.leading_zeros())
        };
        let mut q = sqlx::query(insert_sql(ignore, n));
        for r in rows.by_ref().take(n) {
            q = q
                .bind(r.seq)
                .bind(r.tenant)
                .bind(r.stream)
                .bind(r.id)
                .bind(r.event_type)
                .bind(r.class)
                .bind(r.source)
                .bind(r.time_ms)
                .bind(r.body);
        }
        if ignore {
            for row in q.fetch_all(&mut *conn).await? {
                stored.push(row.try_get::<i64, _>(0)?);
            }
        } else {
            q.execute(&mut *conn).await?;
        }
        remaining -= n;
    }
    Ok(stored)
}

/// Creates missing streams (state `active`) and adds this transaction's count
/// and newest offset: one statement per stream per transaction.
async fn upsert_streams(
    conn: &mut SqliteConnection,
    streams: &BTreeMap<(Arc<str>, String), (i64, i64)>,
) -> Result<(), sqlx::Error> {
    let now = streambus_core::time::now_ms();
    for ((tenant, name), (count, last)) in streams {
        sqlx::query(
            "INSERT INTO streams (tenant, name, state, created_ms, last_seq, event_count, pruned_through)
             VALUES (?1, ?2, 'active', ?3, ?4, ?5, 0)
             ON CONFLICT (tenant, name) DO UPDATE SET
               last_seq = max(last_seq, excluded.last_seq),
               event_count = event_count + excluded.event_count",
        )
        .bind(&**tenant)
        .bind(name.as_str())
        .bind(now)
        .bind(*last)
        .bind(*count)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
