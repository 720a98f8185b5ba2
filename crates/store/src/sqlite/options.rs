//! How to open a [`SqliteStore`](super::SqliteStore), its tunables and its
//! counters.

use std::path::PathBuf;
use std::time::Duration;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "streambus.db";
/// Default most events one group-commit transaction takes from the queue.
pub const DEFAULT_BATCH_MAX: usize = 4096;
/// Default bound of the writer's request queue (requests, not events).
pub const DEFAULT_QUEUE: usize = 8192;
/// Read-only connections serving `get`, `query` and `list_streams`.
pub const READ_CONNECTIONS: u32 = 4;
/// How long a connection waits for a lock before failing (`busy_timeout`).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page size of a new database. Larger pages mean fewer B-tree splits for an
/// append-mostly table (measured: less writer CPU per event than 4 KiB).
pub const PAGE_SIZE: u32 = 16 * 1024;
/// WAL pages after which a COMMIT checkpoints by itself: a backstop only, the
/// checkpoint task normally keeps the WAL far smaller (256 MiB at 16 KiB pages).
pub(super) const AUTOCHECKPOINT_PAGES: &str = "16384";
/// Events one retention step deletes; the writer serves appends between steps.
pub const PRUNE_CHUNK: usize = 2000;

/// How to open a [`SqliteStore`](super::SqliteStore).
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Directory holding `streambus.db` (created if missing).
    pub data_dir: PathBuf,
    /// `synchronous=FULL` (fsync every commit, survives power loss) instead of
    /// `NORMAL` (survives a killed process; the default).
    pub synchronous_full: bool,
    /// Most events one transaction takes from the queue (a single larger
    /// request is still committed whole).
    pub batch_max: usize,
    /// Bound of the writer's request queue; a full queue makes `append` wait.
    pub queue: usize,
}

impl SqliteOptions {
    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            synchronous_full: false,
            batch_max: DEFAULT_BATCH_MAX,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SqliteStats {
    /// Append transactions committed (one per group commit).
    pub commits: u64,
    /// New (non-duplicate) events those transactions stored.
    pub events: u64,
}
