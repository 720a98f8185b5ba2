//! Row plumbing for the writes of [`PgStore`](super::PgStore): `events` rows,
//! the array-bound INSERT, the per-stream upsert, and text PostgreSQL refuses.
//!
//! Rows travel as one array per column through `UNNEST`, so a statement has
//! nine bind parameters whatever its row count (PostgreSQL allows 65,535) and
//! one statement text, prepared once per connection. Rows are inserted in
//! offset order and stream records are locked in (tenant, name) order, so
//! nodes inserting overlapping batches at once wait for each other but never
//! deadlock.
//!
//! PostgreSQL text cannot hold U+0000 and JSONB refuses the `\u0000` escape;
//! such characters are stored as U+FFFD. Producers may send them in `source`,
//! `message` or `data`, and a record the cluster cannot store would stall
//! every node's ingest.

use std::borrow::Cow;
use std::collections::BTreeMap;

use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::query::Query;
use sqlx::{Postgres, Row as _};
use streambus_core::event::{Event, Record};

/// Shared head of the INSERTs. The body is bound as text; `- 'offset'` drops
/// the offset a record's canonical JSON carries (a stored body has none).
macro_rules! insert_events {
    () => {
        "INSERT INTO events (seq, tenant, stream, id, type, class, source, time_ms, body) \
         SELECT seq, tenant, stream, id, type, class, source, time_ms, body::jsonb - 'offset' \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::bigint[], $9::text[]) \
           AS t(seq, tenant, stream, id, type, class, source, time_ms, body) \
         ORDER BY seq"
    };
}

/// For `append`: offsets are ours (under the append lock); the stored body
/// comes back as PostgreSQL renders it, to build the records from.
pub(super) const INSERT_RETURNING_BODY: &str =
    concat!(insert_events!(), " RETURNING seq, body::text");

/// For `insert_records`: skips rows whose offset or (tenant, id) is stored and
/// returns the offsets actually inserted.
pub(super) const INSERT_IGNORE: &str =
    concat!(insert_events!(), " ON CONFLICT DO NOTHING RETURNING seq");

/// Creates missing streams (`active`) and adds each one's new events and
/// newest offset, locking the rows in (tenant, name) order.
const UPSERT_STREAMS: &str = "INSERT INTO streams \
     (tenant, name, state, created_ms, last_seq, event_count, pruned_through, held_after) \
     SELECT tenant, name, 'active', $5, last_seq, n, 0, 0 \
     FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS t(tenant, name, last_seq, n) \
     ORDER BY tenant COLLATE \"C\", name COLLATE \"C\" \
     ON CONFLICT (tenant, name) DO UPDATE SET \
     last_seq = GREATEST(streams.last_seq, EXCLUDED.last_seq), \
     event_count = streams.event_count + EXCLUDED.event_count";

/// One `events` row, borrowing from the event or record where it can.
pub(super) struct Row<'a> {
    pub(super) seq: i64,
    pub(super) tenant: Cow<'a, str>,
    pub(super) stream: Cow<'a, str>,
    pub(super) id: Cow<'a, str>,
    pub(super) event_type: Cow<'a, str>,
    pub(super) class: &'static str,
    pub(super) source: Cow<'a, str>,
    pub(super) time_ms: i64,
    /// Event JSON; an `offset` key in it is dropped by the INSERT.
    pub(super) body: Cow<'a, str>,
}

impl<'a> Row<'a> {
    /// A row for `event` (any offset) at `seq`, with its JSON `body`.
    pub(super) fn new(
        seq: i64,
        tenant: &'a str,
        event: &'a Event,
        body: &'a str,
        time_ms: i64,
    ) -> Self {
        Self {
            seq,
            tenant: clean(tenant),
            stream: clean(&event.stream_id),
            id: clean(&event.id),
            event_type: clean(&event.event_type),
            class: event.class.as_str(),
            source: clean(&event.source),
            time_ms,
            body: clean_body(body),
        }
    }

    /// A row for a record whose offset was assigned elsewhere. Its canonical
    /// JSON is the body (the INSERT drops the offset), so nothing is
    /// serialised again.
    pub(super) fn from_record(record: &'a Record) -> Self {
        let seq = i64::try_from(record.offset()).unwrap_or(i64::MAX);
        let time_ms = record.event.time_ms();
        match std::str::from_utf8(&record.json) {
            Ok(json) => Self::new(seq, &record.tenant, &record.event, json, time_ms),
            Err(_) => {
                // Not reachable for JSON made by serde; keep the row anyway.
                let mut row = Self::new(seq, &record.tenant, &record.event, "{}", time_ms);
                row.body = Cow::Owned(record.event.to_body());
                row
            }
        }
    }
}

/// Binds `rows` as column arrays to one of the INSERTs above.
pub(super) fn bind_rows<'q>(
    sql: &'static str,
    rows: &[Row<'_>],
) -> Query<'q, Postgres, PgArguments> {
    fn col<'r, T>(rows: &'r [Row<'_>], f: impl Fn(&'r Row<'_>) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    sqlx::query(sql)
        .bind(col(rows, |r| r.seq))
        .bind(col(rows, |r| &*r.tenant))
        .bind(col(rows, |r| &*r.stream))
        .bind(col(rows, |r| &*r.id))
        .bind(col(rows, |r| &*r.event_type))
        .bind(col(rows, |r| r.class))
        .bind(col(rows, |r| &*r.source))
        .bind(col(rows, |r| r.time_ms))
        .bind(col(rows, |r| &*r.body))
}

/// What one transaction adds to each stream: (new events, newest offset),
/// keyed by (tenant, name) in the order the rows are locked.
pub(super) type StreamDeltas<'a> = BTreeMap<(&'a str, &'a str), (i64, i64)>;

/// Counts `row` into `deltas`.
pub(super) fn add_delta<'a>(deltas: &mut StreamDeltas<'a>, row: &'a Row<'_>) {
    let e = deltas.entry((&row.tenant, &row.stream)).or_insert((0, 0));
    e.0 += 1;
    e.1 = e.1.max(row.seq);
}

/// Applies `deltas` to the `streams` table in one statement.
pub(super) async fn upsert_streams(
    conn: &mut PgConnection,
    deltas: &StreamDeltas<'_>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut names, mut lasts, mut counts) = (
        Vec::with_capacity(deltas.len()),
        Vec::with_capacity(deltas.len()),
        Vec::with_capacity(deltas.len()),
        Vec::with_capacity(deltas.len()),
    );
    for (&(tenant, name), &(count, last)) in deltas {
        tenants.push(tenant);
        names.push(name);
        lasts.push(last);
        counts.push(count);
    }
    sqlx::query(UPSERT_STREAMS)
        .bind(tenants)
        .bind(names)
        .bind(lasts)
        .bind(counts)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// The `seq` column of rows returned by an INSERT.
pub(super) fn returned_seqs(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<i64>, sqlx::Error> {
    rows.iter().map(|r| r.try_get::<i64, _>(0)).collect()
}

/// `s` with U+0000 replaced by U+FFFD (PostgreSQL text cannot hold it).
pub(super) fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// JSON text with every `\u0000` escape replaced by `\ufffd` (JSONB refuses
/// it). An escaped backslash followed by `u0000` is left alone.
pub(super) fn clean_body(json: &str) -> Cow<'_, str> {
    if !json.contains("\\u0000") {
        return Cow::Borrowed(json);
    }
    let b = json.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1..].starts_with(b"u0000") {
                out.extend_from_slice(b"\\ufffd");
                i += 6;
            } else {
                // Any other escape (including `\\`) is copied whole, so the
                // byte after it is never mistaken for an escape's start.
                out.extend_from_slice(&b[i..i + 2]);
                i += 2;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only ASCII was replaced, so the text is still UTF-8.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_replaced_but_escaped_backslashes_kept() {
        let cases = [
            (r#"{"a":"x"}"#, r#"{"a":"x"}"#),
            (r#"{"a":"x\u0000y"}"#, r#"{"a":"x\ufffdy"}"#),
            (r#"{"a":"\\u0000"}"#, r#"{"a":"\\u0000"}"#),
            (r#"{"a":"\\\u0000"}"#, r#"{"a":"\\\ufffd"}"#),
            (
                r#"{"\u0000":1,"b":"\u00001"}"#,
                r#"{"\ufffd":1,"b":"\ufffd1"}"#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(clean_body(input), want, "{input}");
            let v: serde_json::Value = serde_json::from_str(&clean_body(input)).unwrap();
            assert!(!v.to_string().contains('\0'));
        }
        assert!(matches!(clean_body(r#"{"a":1}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn nul_in_text_becomes_replacement_character() {
        assert_eq!(clean("a\0b"), "a\u{FFFD}b");
        assert!(matches!(clean("ab"), Cow::Borrowed(_)));
    }
}
