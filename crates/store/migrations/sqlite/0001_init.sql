-- streambus embedded schema, version 1 (SPEC §7).
--
-- Every row carries its tenant (SPEC §5). The writer task assigns `seq` (the
-- bus offset, global across tenants) itself, so `seq` is the rowid with no
-- AUTOINCREMENT table: each event costs three B-tree inserts (the table, the
-- stream index and the id index) and nothing more (SPEC §9).

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY,   -- the offset (`offset` is an SQL keyword)
    tenant  TEXT    NOT NULL,
    stream  TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    class   TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    time_ms INTEGER NOT NULL,      -- event time, ms since the epoch
    body    TEXT    NOT NULL       -- Event::to_body(): canonical JSON without the offset
);

-- Per-stream reads, resume and retention walk this in offset order.
CREATE INDEX events_tenant_stream_seq ON events (tenant, stream, seq);

-- Lookup by id and the idempotency check on producer-supplied ids.
CREATE UNIQUE INDEX events_tenant_id ON events (tenant, id);

CREATE TABLE streams (
    tenant         TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    state          TEXT    NOT NULL DEFAULT 'active',
    created_ms     INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL DEFAULT 0,
    event_count    INTEGER NOT NULL DEFAULT 0,
    pruned_through INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
