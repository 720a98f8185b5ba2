-- Live keyed state (SPEC §2 "State", issue 6): one row per (tenant,
-- stream, key). `value` is the document's JSON, or NULL for a tombstone: a
-- delete keeps the row and its version, so a key created again never reuses
-- a version (nor the deterministic id of its `state.changed` event).
-- `patch` is the merge patch of the last change (JSON `null` for a delete)
-- and `announced` says whether that change's event was published; both let
-- the next write announce a change whose publish failed.

CREATE TABLE state_docs (
    tenant     TEXT    NOT NULL,
    stream     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    value      TEXT,
    patch      TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    announced  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, stream, key)
) WITHOUT ROWID;
