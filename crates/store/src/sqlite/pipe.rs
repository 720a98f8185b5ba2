//! Statement plumbing for the writer: multi-row INSERTs, the per-stream
//! upsert, string interning, and [`Pipe`], which keeps the SQLite thread busy
//! while the writer prepares the next statement.
//!
//! sqlx runs each SQLite connection on its own thread and hands it one
//! command at a time. Awaiting each statement before building the next would
//! leave that thread idle while the writer builds records and binds values.
//! [`Pipe`] polls a statement once — which
//! queues it on the SQLite thread — and returns, so the writer prepares the
//! next chunk meanwhile; it awaits the previous statement only when it needs
//! the connection again. One statement is in flight at a time, so order and
//! error handling stay those of sequential code.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection};

/// One `events` row, owned so binding moves the strings instead of copying.
pub(crate) struct Row {
    pub(crate) seq: i64,
    pub(crate) tenant: Arc<str>,
    pub(crate) stream: Arc<str>,
    pub(crate) id: String,
    pub(crate) event_type: Arc<str>,
    pub(crate) class: Arc<str>,
    pub(crate) source: Arc<str>,
    pub(crate) time_ms: i64,
    pub(crate) body: String,
}

/// A statement with its values bound, ready for the SQLite thread.
pub(crate) type Stmt = Query<'static, Sqlite, SqliteArguments>;

/// Most rows in one INSERT: 9 values each stays far below SQLite's 32,766
/// variables, and a power of two keeps the set of statement texts (and so the
/// prepared-statement cache) small.
pub(crate) const MAX_ROWS_PER_INSERT: usize = 512;
const COLUMNS: &str = "(seq, tenant, stream, id, type, class, source, time_ms, body)";

/// The INSERT text for `n` rows (`n` a power of two up to the maximum), built
/// once per process. `ignore` skips rows whose offset or id is stored and
/// returns the offsets actually inserted.
fn insert_sql(ignore: bool, n: usize) -> &'static str {
    static PLAIN: OnceLock<Vec<String>> = OnceLock::new();
    static IGNORE: OnceLock<Vec<String>> = OnceLock::new();
    let build = |head: &str, tail: &str| {
        let mut out = Vec::new();
        let mut rows = 1;
        while rows <= MAX_ROWS_PER_INSERT {
            let values = vec!["(?,?,?,?,?,?,?,?,?)"; rows].join(",");
            out.push(format!(
                "{head} INTO events {COLUMNS} VALUES {values}{tail}"
            ));
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

/// Splits `rows` into INSERT statements whose sizes are powers of two (at
/// most `log2(512) + 1` statements beyond the full chunks).
pub(crate) fn insert_statements(rows: Vec<Row>, ignore: bool) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut remaining = rows.len();
    let mut rows = rows.into_iter();
    while remaining > 0 {
        let n = pow2_chunk(remaining, MAX_ROWS_PER_INSERT);
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
        out.push(q);
        remaining -= n;
    }
    out
}

/// A transaction's effect on one stream: events added and the newest offset.
pub(crate) type StreamDelta = ((Arc<str>, Arc<str>), (i64, i64));

/// Most streams in one upsert statement (5 values each).
const MAX_STREAMS_PER_UPSERT: usize = 64;

fn upsert_sql(n: usize) -> &'static str {
    static SET: OnceLock<Vec<String>> = OnceLock::new();
    let set = SET.get_or_init(|| {
        let mut out = Vec::new();
        let mut rows = 1;
        while rows <= MAX_STREAMS_PER_UPSERT {
            let values = vec!["(?,?,'active',?,?,?,0)"; rows].join(",");
            out.push(format!(
                "INSERT INTO streams (tenant, name, state, created_ms, last_seq, event_count, pruned_through) \
                 VALUES {values} ON CONFLICT (tenant, name) DO UPDATE SET \
                 last_seq = max(last_seq, excluded.last_seq), \
                 event_count = event_count + excluded.event_count"
            ));
            rows *= 2;
        }
        out
    });
    &set[n.trailing_zeros() as usize]
}

/// Creates missing streams (state `active`) and adds each one's event count
/// and newest offset: usually one statement per transaction.
pub(crate) fn upsert_streams(deltas: Vec<StreamDelta>, now_ms: i64) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut remaining = deltas.len();
    let mut deltas = deltas.into_iter();
    while remaining > 0 {
        let n = pow2_chunk(remaining, MAX_STREAMS_PER_UPSERT);
        let mut q = sqlx::query(upsert_sql(n));
        for ((tenant, name), (count, last)) in deltas.by_ref().take(n) {
            q = q
                .bind(tenant)
                .bind(name)
                .bind(now_ms)
                .bind(last)
                .bind(count);
        }
        out.push(q);
        remaining -= n;
    }
    out
}

/// The largest power of two not above `remaining`, capped at `max` (itself a
/// power of two).
fn pow2_chunk(remaining: usize, max: usize) -> usize {
    if remaining >= max {
        max
    } else {
        1 << (usize::BITS - 1 - remaining.leading_zeros())
    }
}

/// Shares one allocation per distinct stream, type, source and class string,
/// so a batch binds reference-counted strings instead of copying each.
#[derive(Default)]
pub(crate) struct Interner {
    set: HashSet<Arc<str>>,
}

/// Distinct strings kept between transactions before the interner starts over.
const INTERN_MAX: usize = 16_384;

impl Interner {
    /// The shared copy of `s`.
    pub(crate) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        if self.set.len() >= INTERN_MAX {
            self.set.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }
}

type Running<'c> =
    Pin<Box<dyn Future<Output = Result<&'c mut SqliteConnection, sqlx::Error>> + Send + 'c>>;

/// At most one statement in flight on the SQLite thread; see the module docs.
pub(crate) struct Pipe<'c> {
    idle: Option<&'c mut SqliteConnection>,
    running: Option<Running<'c>>,
}

impl<'c> Pipe<'c> {
    pub(crate) fn new(conn: &'c mut SqliteConnection) -> Self {
        Self {
            idle: Some(conn),
            running: None,
        }
    }

    /// Waits for the previous statement, then starts `stmt` and returns
    /// without waiting for it.
    ///
    /// # Errors
    /// The previous statement's failure, or this one's if it fails at once.
    pub(crate) async fn submit(&mut self, stmt: Stmt) -> Result<(), sqlx::Error> {
        let conn = self.connection().await?;
        let mut run: Running<'c> = Box::pin(async move {
            stmt.execute(&mut *conn).await?;
            Ok(conn)
        });
        // One poll queues the command on the SQLite thread.
        let first = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        match first {
            Some(done) => self.idle = Some(done?),
            None => self.running = Some(run),
        }
        Ok(())
    }

    /// Waits for the statement in flight and returns the connection.
    ///
    /// # Errors
    /// That statement's failure.
    pub(crate) async fn connection(&mut self) -> Result<&'c mut SqliteConnection, sqlx::Error> {
        if let Some(run) = self.running.take() {
            return run.await;
        }
        // `Pipe` always holds the connection in one of the two slots.
        self.idle.take().ok_or(sqlx::Error::WorkerCrashed)
    }
}
