-- The on-air catalog and lifecycle (issue 4; seed 000's `event_subscriptions`
-- and `animation_status`). Every row carries its tenant (SPEC §5). Bodies are
-- the canonical JSON of the core types (`EventTypeDef`, `Template`, the
-- canonical filter of `consumer::filter_to_json`).

CREATE TABLE event_types (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

CREATE TABLE event_templates (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

-- One stored filter per overlay (seed 000 keeps one row per overlay and
-- type; a filter holds the types and more).
CREATE TABLE event_subscriptions (
    tenant     TEXT    NOT NULL,
    overlay_id TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, overlay_id)
) WITHOUT ROWID;

-- Where each event stands on each overlay; `play` counts replays.
CREATE TABLE animation_status (
    tenant     TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    overlay_id TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    play       INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER,
    ended_ms   INTEGER,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, event_id, overlay_id)
) WITHOUT ROWID;

-- An overlay's recent history, newest first.
CREATE INDEX animation_status_overlay ON animation_status (tenant, overlay_id, updated_ms);
