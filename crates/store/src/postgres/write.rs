//! Writes of [`PgStore`]: `append` and `insert_records`.
//!
//! Each call is one transaction, retried once on a deadlock or serialisation
//! failure, and runs under the store's local write mutex, which is held until
//! the commit hook has returned so the hook sees offsets in order.
//!
//! `insert_records` is the cluster path: records arrive with offsets from the
//! log, possibly the same ones on every node at once. `INSERT … ON CONFLICT DO
//! NOTHING RETURNING seq` tells each node which rows it actually inserted;
//! only those count towards `streams` and reach its hook, so across the nodes
//! every record is counted and announced once.
//!
//! `append` assigns offsets itself: it takes a transaction-level advisory lock
//! (released by COMMIT or ROLLBACK), reads the head, and numbers the batch
//! from there, so concurrent appenders on any node get distinct, gapless
//! offsets. Producer-supplied ids are looked up first (SPEC §9: only those),
//! and a repeat within the batch returns the batch's first record.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::Row as _;
use streambus_core::StoreError;
use streambus_core::event::{Event, Record};
use streambus_core::store::Appended;
use streambus_core::validate::NewEvent;
use tracing::{debug, warn};

use super::rows::{
    INSERT_IGNORE, INSERT_RETURNING_BODY, Row, StreamDeltas, add_delta, bind_rows, clean,
    returned_seqs, upsert_streams,
};
use super::{MAX_ROWS_PER_INSERT, PgStore, is_retryable, read, to_u64};
use crate::sql_error;

/// An event serialised by its caller, waiting for an offset.
struct Prepared {
    /// The event (offset 0).
    event: Event,
    /// `Event::to_body()` of it.
    body: String,
    /// Whether the producer supplied the id (only those are looked up).
    supplied_id: bool,
    /// The event time in ms, for the `time_ms` column.
    time_ms: i64,
}

/// Where one event's answer comes from once the transaction is done.
enum Slot {
    /// Inserted now: the record at this index of the new records.
    New(usize),
    /// A repeat of the supplied id inserted at this index earlier in the batch.
    Repeat(usize),
    /// Stored before this call.
    Stored(Arc<Record>),
}

/// Appends a batch for one tenant; see the module docs.
pub(super) async fn append(
    store: &PgStore,
    tenant: &str,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError> {
    let mut prepared = Vec::with_capacity(events.len());
    for NewEvent {
        mut event,
        supplied_id,
    } in events
    {
        event.offset = 0;
        let body = serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let time_ms = event.time_ms();
        prepared.push(Prepared {
            event,
            body,
            supplied_id,
            time_ms,
        });
    }
    let _writing = store.writes.lock().await;
    let mut retried = false;
    let (slots, new) = loop {
        match append_tx(store, tenant, &prepared).await {
            Err(e) if !retried && is_retryable(&e) => {
                warn!(error = %e, "append transaction aborted; retrying once");
                retried = true;
            }
            done => break done.map_err(sql_error)?,
        }
    };
    store.call_hook(&new);
    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Slot::New(i) => Appended {
                record: new[i].clone(),
                duplicate: false,
            },
            Slot::Repeat(i) => Appended {
                record: new[i].clone(),
                duplicate: true,
            },
            Slot::Stored(record) => Appended {
                record,
                duplicate: true,
            },
        })
        .collect())
}

/// One attempt at an append transaction: the answer of each event, in batch
/// order, and the new records in offset order.
async fn append_tx(
    store: &PgStore,
    tenant: &str,
    prepared: &[Prepared],
) -> Result<(Vec<Slot>, Vec<Arc<Record>>), sqlx::Error> {
    let mut tx = store.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(store.append_lock)
        .execute(&mut *tx)
        .await?;
    let mut next = read::head_raw(&mut *tx).await?;
    let known = stored_duplicates(&mut tx, tenant, prepared).await?;

    // Number the batch; a supplied id seen before (stored, or earlier in this
    // batch) answers with that record instead of a new row.
    let mut rows = Vec::with_capacity(prepared.len());
    let mut slots = Vec::with_capacity(prepared.len());
    let mut first_in_batch: HashMap<String, usize> = HashMap::new();
    for p in prepared {
        if p.supplied_id {
            let id = clean(&p.event.id);
            if let Some(stored) = known.get(&*id) {
                slots.push(Slot::Stored(stored.clone()));
                continue;
            }
            if let Some(&i) = first_in_batch.get(&*id) {
                slots.push(Slot::Repeat(i));
                continue;
            }
            first_in_batch.insert(id.into_owned(), rows.len());
        }
        next += 1;
        slots.push(Slot::New(rows.len()));
        rows.push(Row::new(next, tenant, &p.event, &p.body, p.time_ms));
    }

    // PostgreSQL renders the JSONB its own way; records are built from that
    // rendering so that `get` and `query` later return identical records.
    let mut bodies: HashMap<i64, String> = HashMap::with_capacity(rows.len());
    let mut deltas = StreamDeltas::new();
    for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
        for r in bind_rows(INSERT_RETURNING_BODY, chunk)
            .fetch_all(&mut *tx)
            .await?
        {
            bodies.insert(r.try_get(0)?, r.try_get(1)?);
        }
    }
    let mut new = Vec::with_capacity(rows.len());
    for row in &rows {
        add_delta(&mut deltas, row);
        let body = bodies.get(&row.seq).ok_or_else(|| {
            sqlx::Error::Protocol(format!("insert returned no row for offset {}", row.seq))
        })?;
        let record = Record::from_body(tenant, to_u64(row.seq), body)
            .map_err(|e| sqlx::Error::Decode(format!("event at offset {}: {e}", row.seq).into()))?;
        new.push(Arc::new(record));
    }
    upsert_streams(&mut tx, &deltas, streambus_core::time::now_ms()).await?;
    tx.commit().await?;
    debug!(tenant, events = new.len(), "postgres append committed");
    Ok((slots, new))
}

/// Stored records for the producer-supplied ids of this batch, keyed by id.
/// Only supplied ids are looked up: server-made ids are fresh.
async fn stored_duplicates(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    prepared: &[Prepared],
) -> Result<HashMap<String, Arc<Record>>, sqlx::Error> {
    let ids: Vec<&str> = prepared
        .iter()
        .filter(|p| p.supplied_id)
        .map(|p| &*p.event.id)
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = ids.into_iter().map(|id| clean(id).into_owned()).collect();
    let rows =
        sqlx::query("SELECT id, seq, body::text FROM events WHERE tenant = $1 AND id = ANY($2)")
            .bind(&*clean(tenant))
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut known = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0)?;
        known.insert(id, read::record_from_row(tenant, &row, 1, 2)?);
    }
    Ok(known)
}

/// Stores records whose offsets the cluster log assigned; see the module docs.
pub(super) async fn insert_records(
    store: &PgStore,
    records: &[Arc<Record>],
) -> Result<(), StoreError> {
    let mut sorted: Vec<&Arc<Record>> = records.iter().collect();
    sorted.sort_by_key(|r| r.offset());
    sorted.dedup_by_key(|r| r.offset());
    let rows: Vec<Row<'_>> = sorted.iter().map(|r| Row::from_record(r)).collect();

    let _writing = store.writes.lock().await;
    let mut retried = false;
    let inserted = loop {
        match insert_tx(store, &rows).await {
            Err(e) if !retried && is_retryable(&e) => {
                warn!(error = %e, "insert transaction aborted; retrying once");
                retried = true;
            }
            done => break done.map_err(sql_error)?,
        }
    };
    let new: Vec<Arc<Record>> = sorted
        .iter()
        .filter(|r| inserted.contains(&r.offset()))
        .map(|r| Arc::clone(r))
        .collect();
    debug!(
        given = records.len(),
        inserted = new.len(),
        "postgres insert_records committed"
    );
    store.call_hook(&new);
    Ok(())
}

/// One attempt at an insert transaction; returns the offsets inserted.
async fn insert_tx(store: &PgStore, rows: &[Row<'_>]) -> Result<HashSet<u64>, sqlx::Error> {
    let mut tx = store.pool.begin().await?;
    let mut inserted = HashSet::with_capacity(rows.len());
    let mut deltas = StreamDeltas::new();
    for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
        let returned = bind_rows(INSERT_IGNORE, chunk).fetch_all(&mut *tx).await?;
        let seqs: HashSet<i64> = returned_seqs(&returned)?.into_iter().collect();
        for row in chunk.iter().filter(|r| seqs.contains(&r.seq)) {
            add_delta(&mut deltas, row);
            inserted.insert(to_u64(row.seq));
        }
    }
    upsert_streams(&mut tx, &deltas, streambus_core::time::now_ms()).await?;
    tx.commit().await?;
    Ok(inserted)
}
