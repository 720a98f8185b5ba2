//! Stream state and retention for [`PgStore`](super::PgStore).
//!
//! Retention walks each stream in offset order and deletes in steps of
//! [`PRUNE_CHUNK`] events, each step one statement (its own short
//! transaction) that also updates the stream's count and `pruned_through`, so
//! it never holds locks for long and writers interleave between steps. Nodes
//! may prune at once: a row another node deleted first is skipped and not
//! counted twice.

use sqlx::PgPool;
use sqlx::Row as _;
use streambus_core::StoreError;
use streambus_core::store::{Retention, StreamInfo, StreamState};
use tracing::{info, warn};

use super::{PRUNE_CHUNK, is_retryable, to_i64, to_u64};
use crate::sql_error;

/// Creates the stream if missing and sets its state and hold point.
pub(super) async fn set_stream_state(
    pool: &PgPool,
    tenant: &str,
    stream: &str,
    state: StreamState,
    held_after: u64,
) -> Result<StreamInfo, StoreError> {
    let row = sqlx::query(
        "INSERT INTO streams
             (tenant, name, state, created_ms, last_seq, event_count, pruned_through, held_after)
         VALUES ($1, $2, $3, $4, 0, 0, 0, $5)
         ON CONFLICT (tenant, name) DO UPDATE
             SET state = EXCLUDED.state, held_after = EXCLUDED.held_after
         RETURNING name, state, created_ms, last_seq, event_count, pruned_through, held_after",
    )
    .bind(tenant)
    .bind(stream)
    .bind(state.as_str())
    .bind(streambus_core::time::now_ms())
    .bind(to_i64(held_after))
    .fetch_one(pool)
    .await
    .map_err(sql_error)?;
    crate::query::stream_info(&row)
}

/// One retention step of one stream: picks up to `$7` offsets after `$3` (and
/// at most `$4`) that are at or below the count cut-off `$5` or older than
/// `$6`, deletes them, and takes what was actually deleted off the stream
/// record. Returns (picked, highest picked, deleted).
const PRUNE_STEP: &str = "
WITH picked AS (
    SELECT seq FROM events
    WHERE tenant = $1 AND stream = $2 AND seq > $3 AND seq <= $4
      AND (seq <= $5 OR time_ms < $6)
    ORDER BY seq LIMIT $7
), gone AS (
    DELETE FROM events e USING picked p WHERE e.seq = p.seq RETURNING e.seq
), counted AS (
    SELECT count(*)::bigint AS n, COALESCE(max(seq), 0)::bigint AS hi FROM gone
), updated AS (
    UPDATE streams
    SET event_count = GREATEST(event_count - counted.n, 0),
        pruned_through = GREATEST(pruned_through, counted.hi)
    FROM counted
    WHERE tenant = $1 AND name = $2 AND counted.n > 0
)
SELECT (SELECT count(*) FROM picked)::bigint,
       (SELECT COALESCE(max(seq), 0) FROM picked)::bigint,
       n
FROM counted";

/// Applies retention to every stream of every tenant; returns how many
/// events this call removed.
pub(super) async fn prune(pool: &PgPool, retention: Retention) -> Result<u64, StoreError> {
    if retention.max_events == 0 && retention.max_age_ms <= 0 {
        return Ok(0);
    }
    let time_cut = (retention.max_age_ms > 0)
        .then(|| streambus_core::time::now_ms().saturating_sub(retention.max_age_ms));
    let streams = sqlx::query("SELECT tenant, name FROM streams ORDER BY tenant, name")
        .fetch_all(pool)
        .await
        .map_err(sql_error)?;
    let mut removed = 0;
    for row in streams {
        let tenant: String = row.try_get(0).map_err(sql_error)?;
        let stream: String = row.try_get(1).map_err(sql_error)?;
        let seq_cut = match retention.max_events {
            0 => None,
            n => nth_newest(pool, &tenant, &stream, n).await?,
        };
        if seq_cut.is_none() && time_cut.is_none() {
            continue;
        }
        // Without an age limit nothing above the count cut-off qualifies, so
        // the walk stops there instead of reading the whole stream.
        let upper = if time_cut.is_some() {
            i64::MAX
        } else {
            seq_cut.unwrap_or(0)
        };
        let mut after = 0i64;
        loop {
            let (picked, highest, deleted) = prune_step(
                pool,
                &tenant,
                &stream,
                after,
                upper,
                seq_cut.unwrap_or(0),
                time_cut.unwrap_or(i64::MIN),
            )
            .await?;
            removed += to_u64(deleted);
            if picked < PRUNE_CHUNK {
                break;
            }
            after = highest;
        }
    }
    if removed > 0 {
        info!(removed, "retention pruned events");
    }
    Ok(removed)
}

/// One [`PRUNE_STEP`], retried once after a deadlock.
async fn prune_step(
    pool: &PgPool,
    tenant: &str,
    stream: &str,
    after: i64,
    upper: i64,
    seq_cut: i64,
    time_cut: i64,
) -> Result<(i64, i64, i64), StoreError> {
    let mut retried = false;
    loop {
        let step = sqlx::query(PRUNE_STEP)
            .bind(tenant)
            .bind(stream)
            .bind(after)
            .bind(upper)
            .bind(seq_cut)
            .bind(time_cut)
            .bind(PRUNE_CHUNK)
            .fetch_one(pool)
            .await
            .and_then(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)));
        match step {
            Err(e) if !retried && is_retryable(&e) => {
                warn!(error = %e, "retention step aborted; retrying once");
                retried = true;
            }
            done => return done.map_err(sql_error),
        }
    }
}

/// The offset of the `(n+1)`-th newest event of a stream: keeping `n` events
/// means removing it and everything older. `None` when the stream holds `n` or
/// fewer.
async fn nth_newest(
    pool: &PgPool,
    tenant: &str,
    stream: &str,
    n: u64,
) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar(
        "SELECT seq FROM events WHERE tenant = $1 AND stream = $2
         ORDER BY seq DESC LIMIT 1 OFFSET $3",
    )
    .bind(tenant)
    .bind(stream)
    .bind(to_i64(n))
    .fetch_optional(pool)
    .await
    .map_err(sql_error)
}
