-- The on-air catalog and lifecycle (issue 4): the tables of
-- `migrations/sqlite/0004_on_air.sql` in PostgreSQL types, bodies as JSONB.

CREATE TABLE event_types (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       JSONB   NOT NULL,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE event_templates (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       JSONB   NOT NULL,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- One stored filter per overlay (seed 000 keeps one row per overlay and
-- type; a filter holds the types and more).
CREATE TABLE event_subscriptions (
    tenant     TEXT    NOT NULL,
    overlay_id TEXT    NOT NULL,
    body       JSONB   NOT NULL,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, overlay_id)
);

-- Where each event stands on each overlay; `play` counts replays.
CREATE TABLE animation_status (
    tenant     TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    overlay_id TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    play       BIGINT  NOT NULL DEFAULT 0,
    started_ms BIGINT,
    ended_ms   BIGINT,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, event_id, overlay_id)
);

-- An overlay's recent history, newest first.
CREATE INDEX animation_status_overlay ON animation_status (tenant, overlay_id, updated_ms);
