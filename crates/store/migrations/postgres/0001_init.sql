-- streambus cluster schema, version 1 (SPEC §7): the SQLite schema of
-- `migrations/sqlite/0001_init.sql` in PostgreSQL types.
--
-- Every row carries its tenant (SPEC §5). `seq` is the bus offset, global
-- across tenants: assigned by the cluster log (JetStream stream sequence) and
-- stored with `insert_records`, or by `append` under an advisory lock in a
-- PostgreSQL-only setup. Three B-tree inserts per event, as in SQLite (§9).

CREATE TABLE events (
    seq     BIGINT PRIMARY KEY,    -- the offset (`offset` is an SQL keyword)
    tenant  TEXT   NOT NULL,
    stream  TEXT   NOT NULL,
    id      TEXT   NOT NULL,
    type    TEXT   NOT NULL,
    class   TEXT   NOT NULL,
    source  TEXT   NOT NULL,
    time_ms BIGINT NOT NULL,       -- event time, ms since the epoch
    body    JSONB  NOT NULL        -- Event::to_body(): the event without its offset
);

-- Per-stream reads, resume and retention walk this in offset order.
CREATE INDEX events_tenant_stream_seq ON events (tenant, stream, seq);

-- Lookup by id, the idempotency check on producer-supplied ids, and the
-- second arbiter of `insert_records`' ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX events_tenant_id ON events (tenant, id);

CREATE TABLE streams (
    tenant         TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    state          TEXT   NOT NULL DEFAULT 'active',
    created_ms     BIGINT NOT NULL,
    last_seq       BIGINT NOT NULL DEFAULT 0,
    event_count    BIGINT NOT NULL DEFAULT 0,
    pruned_through BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name)
);
