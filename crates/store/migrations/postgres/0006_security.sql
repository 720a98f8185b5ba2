-- Security and tenancy (SPEC §5, issue 5): the tables of
-- `migrations/sqlite/0006_security.sql` in PostgreSQL types, JSON columns as
-- JSONB, the audit sequence a BIGSERIAL.

-- A key's secret is never stored, only its SHA-256 (`keys::key_hash`). The
-- id is unique across tenants; globs are JSON arrays of strings.
CREATE TABLE api_keys (
    id              TEXT   NOT NULL PRIMARY KEY,
    tenant          TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    role            TEXT   NOT NULL,
    publish_globs   JSONB  NOT NULL,
    subscribe_globs JSONB  NOT NULL,
    hash            TEXT   NOT NULL UNIQUE,
    created_ms      BIGINT NOT NULL,
    revoked_ms      BIGINT,
    last_used_ms    BIGINT
);

-- A tenant's keys, newest first.
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_ms);

-- Records of the tenants an operator made; `limits` is a JSON object.
CREATE TABLE tenants (
    name         TEXT   NOT NULL PRIMARY KEY,
    display_name TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    limits       JSONB  NOT NULL
);

-- Append-only; a sequence never hands out a `seq` (the read cursor) twice.
-- `outcome` is an HTTP status; `detail` is JSON.
CREATE TABLE audit_log (
    seq     BIGSERIAL PRIMARY KEY,
    tenant  TEXT      NOT NULL,
    at_ms   BIGINT    NOT NULL,
    actor   TEXT      NOT NULL,
    role    TEXT,
    action  TEXT      NOT NULL,
    target  TEXT      NOT NULL,
    address TEXT,
    outcome INTEGER   NOT NULL,
    detail  JSONB     NOT NULL
);

-- A tenant's entries, newest first; the filters (actor, action, time) are
-- checked along this walk, which suits a log written by administrators.
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
