//! Background WAL checkpoints for [`SqliteStore`](super::SqliteStore).
//!
//! In WAL mode commits append pages to `streambus.db-wal`; a checkpoint copies
//! them back into the database file and fsyncs it. Left to SQLite's automatic
//! checkpoint, that copy runs inside whichever COMMIT crosses the threshold —
//! on the single writer, stalling every publisher behind it for tens to
//! hundreds of milliseconds. Here a task with its own connection runs a
//! `PASSIVE` checkpoint on a timer instead: it never blocks the writer or the
//! readers, and the writer keeps a large automatic threshold only as a
//! backstop should this task fall behind.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// How often the WAL is copied back into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The running checkpoint task and the way to stop it.
pub(crate) struct Checkpointer {
    stop: Arc<Notify>,
    handle: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing through `conn` (a read-write connection).
    pub(crate) fn spawn(conn: SqliteConnection) -> Self {
        let stop = Arc::new(Notify::new());
        let handle = tokio::spawn(run(conn, stop.clone()));
        Self { stop, handle }
    }

    /// Asks the task to stop without waiting (used on drop).
    pub(crate) fn signal(&self) {
        self.stop.notify_one();
    }

    /// Stops the task and waits for its connection to close.
    pub(crate) async fn stop(self) {
        self.stop.notify_one();
        if let Err(e) = self.handle.await {
            warn!(error = %e, "sqlite checkpoint task ended abnormally");
        }
    }
}

async fn run(mut conn: SqliteConnection, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            () = stop.notified() => break,
            () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await
        {
            Ok(row) => {
                let log: i64 = row.try_get(1).unwrap_or(-1);
                let done: i64 = row.try_get(2).unwrap_or(-1);
                if log > 0 {
                    debug!(wal_frames = log, checkpointed = done, "wal checkpoint");
                }
            }
            Err(e) => warn!(error = %e, "wal checkpoint failed"),
        }
    }
    if let Err(e) = conn.close().await {
        warn!(error = %e, "closing the sqlite checkpoint connection failed");
    }
}
