//! The one write path of live state, shared by REST and WebSocket: the
//! store's compare-and-set, then the `state.changed` event (SPEC §2
//! "State"; the protocol is described in `streambus_core::state`,
//! "Announcing").
//!
//! 1. `state_write` stores the new row, unannounced — or stores nothing and
//!    answers `Unannounced` when the key's last change still waits for its
//!    event (a publish that failed, a server that stopped, another node in
//!    the middle of its write). That change is published and marked first,
//!    then the write is tried again.
//! 2. The change is published through the normal log, on its own stream,
//!    under its deterministic id (a repeated publish is stored and
//!    delivered once), and the row is marked announced.
//!
//! If the publish fails the caller gets the failure (503) although the
//! state did change; the next write of that key announces it. Because a
//! version is only written once the one before is in the log, each key's
//! events are in version order, across nodes too.
//!
//! Writes of one key on one node also queue on a striped lock, so they do
//! not find each other's changes unannounced and publish them twice; the
//! store's compare-and-set, not this lock, is what keeps versions right.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use streambus_core::state::{self, StateNotice, StateOutcome, StateWrite};
use streambus_core::store::StoreError;
use streambus_core::validate::{NewEvent, new_event_id};
use streambus_core::{Event, time};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::api::error::ApiError;
use crate::publish::publish_one;
use crate::state::AppState;

/// Stripes of the per-key write lock: enough that unrelated keys rarely
/// share one, few enough to allocate once.
const LOCK_STRIPES: usize = 64;

/// How many unannounced changes of other writers one write announces before
/// it gives up with 503 (each round lets some writer make progress).
const MAX_ROUNDS: usize = 8;

/// The write locks. Process-wide rather than in `AppState`: they only order
/// this node's writers of one key (see the module docs), so servers sharing
/// a process (tests) lose nothing by sharing them.
static LOCKS: LazyLock<Vec<Mutex<()>>> =
    LazyLock::new(|| (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect());

fn lock_of(tenant: &str, stream: &str, key: &str) -> &'static Mutex<()> {
    let mut h = DefaultHasher::new();
    (tenant, stream, key).hash(&mut h);
    &LOCKS[(h.finish() % LOCK_STRIPES as u64) as usize]
}

/// Writes `key` of `stream` in `tenant` and announces the change. The
/// caller has checked names, permission and input size.
///
/// # Errors
/// `412` when `write.expected_version` does not hold; `413` for a result
/// over `write.max_value_bytes`; `503` when the store or the log fails (a
/// change already stored is then announced by the next write of the key).
pub async fn write_state(
    state: &AppState,
    tenant: &str,
    stream: &str,
    key: &str,
    write: &StateWrite,
) -> Result<StateOutcome, ApiError> {
    let _turn = lock_of(tenant, stream, key).lock().await;
    for _ in 0..MAX_ROUNDS {
        let outcome = state
            .store
            .state_write(tenant, stream, key, write, time::now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(detail) => ApiError::PreconditionFailed(detail),
                other => other.into(),
            })?;
        if let StateOutcome::Unannounced(owed) = &outcome {
            debug!(
                tenant,
                stream,
                key,
                version = owed.version,
                "announcing an earlier change first"
            );
            announce(state, tenant, stream, owed).await?;
            state
                .store
                .state_announced(tenant, stream, key, owed.version)
                .await?;
            continue;
        }
        if let Some(notice) = outcome.notice(key) {
            announce(state, tenant, stream, &notice).await?;
            // The change is in the log; a failure here only means the next
            // write publishes it again, which stores and delivers nothing.
            if let Err(e) = state
                .store
                .state_announced(tenant, stream, key, notice.version)
                .await
            {
                warn!(tenant, stream, key, error = %e, "state change announced but not marked");
            }
        }
        return Ok(outcome);
    }
    Err(ApiError::Unavailable(
        format!("state key `{key}` keeps changing under this write; retry").into(),
    ))
}

/// Publishes the `state.changed` event of `notice` on `stream`.
async fn announce(
    state: &AppState,
    tenant: &str,
    stream: &str,
    notice: &StateNotice,
) -> Result<(), ApiError> {
    let event = notice.event(stream);
    let appended = publish_one(
        state,
        tenant,
        NewEvent {
            event,
            supplied_id: true,
        },
    )
    .await?;
    if appended.duplicate && !announces(&appended.record.event, stream, notice) {
        // A producer published an event under this id first (ids are the
        // tenant's, and producers may choose theirs): announce the change
        // under a fresh id rather than not at all.
        warn!(tenant, stream, id = %appended.record.event.id, "state event id taken by another event");
        let mut event = notice.event(stream);
        event.id = new_event_id();
        publish_one(
            state,
            tenant,
            NewEvent {
                event,
                supplied_id: false,
            },
        )
        .await?;
    }
    Ok(())
}

/// Is `event` the announcement of `notice` on `stream`?
fn announces(event: &Event, stream: &str, notice: &StateNotice) -> bool {
    event.stream_id == stream
        && state::announced_version(event) == Some((notice.key.as_str(), notice.version))
}
