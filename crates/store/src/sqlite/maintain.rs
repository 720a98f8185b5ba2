//! Writes other than append, and retention, for
//! [`SqliteStore`].
//!
//! They run on the writer task too (SQLite has one writer), each as its own
//! short transaction. Retention is split so it never holds the writer for
//! long: candidates are found on the read pool, then deleted by offset in
//! chunks of [`PRUNE_CHUNK`], and appends are served between chunks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sqlx::{Connection, Row as _};
use streambus_core::StoreError;
use streambus_core::event::Record;
use streambus_core::store::{Retention, StreamInfo, StreamState};
use tracing::info;

use super::pipe::{Row, insert_statements, upsert_streams};
use super::writer::{Request, TxError, Writer};
use super::{PRUNE_CHUNK, SqliteStore, read};
use crate::sql_error;

/// `events` rows for records whose offsets were assigned elsewhere.
pub(super) fn rows_from_records(records: &[Arc<Record>]) -> Vec<Row> {
    records
        .iter()
        .map(|r| Row {
            seq: i64::try_from(r.offset()).unwrap_or(i64::MAX),
            tenant: Arc::from(r.tenant.as_str()),
            stream: Arc::from(r.event.stream_id.as_str()),
            id: r.event.id.clone(),
            event_type: Arc::from(r.event.event_type.as_str()),
            class: Arc::from(r.event.class.as_str()),
            source: Arc::from(r.event.source.as_str()),
            time_ms: r.event.time_ms(),
            body: r.event.to_body(),
        })
        .collect()
}

/// Applies retention to every stream of every tenant; see the module docs.
pub(super) async fn prune(store: &SqliteStore, retention: Retention) -> Result<u64, StoreError> {
    if retention.max_events == 0 && retention.max_age_ms <= 0 {
        return Ok(0);
    }
    // Candidates are found on the read pool and deleted by offset in
    // bounded chunks, each its own short transaction, so retention never
    // holds the writer (and the publishers behind it) for long.
    let time_cut = (retention.max_age_ms > 0)
        .then(|| streambus_core::time::now_ms().saturating_sub(retention.max_age_ms));
    let mut removed = 0;
    for (tenant, stream) in read::all_streams(&store.reads).await? {
        let seq_cut = match retention.max_events {
            0 => None,
            n => read::nth_newest(&store.reads, &tenant, &stream, n).await?,
        };
        if seq_cut.is_none() && time_cut.is_none() {
            continue;
        }
        let mut after = 0;
        loop {
            let seqs = read::prune_candidates(
                &store.reads,
                &tenant,
                &stream,
                after,
                seq_cut,
                time_cut,
                PRUNE_CHUNK,
            )
            .await?;
            let Some(&last) = seqs.last() else { break };
            after = last;
            let full = seqs.len() == PRUNE_CHUNK;
            let (t, s) = (tenant.clone(), stream.clone());
            removed += store
                .call(|reply| Request::Prune {
                    tenant: t,
                    stream: s,
                    seqs,
                    reply,
                })
                .await?;
            if !full {
                break;
            }
        }
    }
    if removed > 0 {
        info!(removed, "retention pruned events");
    }
    Ok(removed)
}

impl Writer {
    /// Stores rows with offsets assigned elsewhere, skipping stored offsets
    /// (and ids), and keeps the offset counter ahead of them. The commit hook
    /// is not called: in cluster mode the log that assigned them is the tail.
    pub(super) async fn insert_records(&mut self, rows: Vec<Row>) -> Result<(), TxError> {
        let max = rows.iter().map(|r| r.seq).max().unwrap_or(0);
        let owners: HashMap<i64, (Arc<str>, Arc<str>)> = rows
            .iter()
            .map(|r| (r.seq, (r.tenant.clone(), r.stream.clone())))
            .collect();
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut streams: HashMap<(Arc<str>, Arc<str>), (i64, i64)> = HashMap::new();
        for stmt in insert_statements(rows, true) {
            for row in stmt.fetch_all(&mut *tx).await? {
                let seq: i64 = row.try_get(0)?;
                if let Some(key) = owners.get(&seq) {
                    let e = streams.entry(key.clone()).or_insert((0, 0));
                    e.0 += 1;
                    e.1 = e.1.max(seq);
                }
            }
        }
        for stmt in upsert_streams(
            streams.into_iter().collect(),
            streambus_core::time::now_ms(),
        ) {
            stmt.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        // Keep our own counter ahead of every stored offset.
        let max = u64::try_from(max).unwrap_or(0);
        if max > self.last {
            self.last = max;
            self.shared.head.store(max, Ordering::Release);
        }
        Ok(())
    }

    /// Creates the stream if missing and sets its state.
    pub(super) async fn set_state(
        &mut self,
        tenant: &str,
        stream: &str,
        state: StreamState,
        held_after: u64,
    ) -> Result<StreamInfo, StoreError> {
        let row = sqlx::query(
            "INSERT INTO streams (tenant, name, state, created_ms, last_seq, event_count, pruned_through, held_after)
             VALUES (?1, ?2, ?3, ?4, 0, 0, 0, ?5)
             ON CONFLICT (tenant, name) DO UPDATE SET state = excluded.state, held_after = excluded.held_after
             RETURNING name, state, created_ms, last_seq, event_count, pruned_through, held_after",
        )
        .bind(tenant)
        .bind(stream)
        .bind(state.as_str())
        .bind(streambus_core::time::now_ms())
        .bind(i64::try_from(held_after).unwrap_or(i64::MAX))
        .fetch_one(&mut self.conn)
        .await
        .map_err(sql_error)?;
        crate::query::stream_info(&row)
    }

    /// Deletes these offsets of one stream (one retention step) and records
    /// the highest removed offset.
    pub(super) async fn prune(
        &mut self,
        tenant: &str,
        stream: &str,
        seqs: &[i64],
    ) -> Result<u64, TxError> {
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
