-- Live keyed state (SPEC §2 "State", issue 6): the table of
-- `migrations/sqlite/0007_state.sql` in PostgreSQL types, JSON as JSONB.
-- `value` is SQL NULL for a tombstone (distinct from a JSON `null` value).
-- Writers of one key serialise on its row (`SELECT … FOR UPDATE`).

CREATE TABLE state_docs (
    tenant     TEXT    NOT NULL,
    stream     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    value      JSONB,
    patch      JSONB   NOT NULL,
    updated_ms BIGINT  NOT NULL,
    announced  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (tenant, stream, key)
);
