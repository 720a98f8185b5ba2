-- Security and tenancy (SPEC §5, issue 5): API keys, tenant records and the
-- audit log. Every row but a tenant record carries its tenant, and every read
-- of keys or audit entries is scoped by it (a key is also found by its hash,
-- which is how a request learns its tenant).

-- A key's secret is never stored, only its SHA-256 (`keys::key_hash`). The
-- id is unique across tenants; globs are JSON arrays of strings.
CREATE TABLE api_keys (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    publish_globs   TEXT    NOT NULL,
    subscribe_globs TEXT    NOT NULL,
    hash            TEXT    NOT NULL UNIQUE,
    created_ms      INTEGER NOT NULL,
    revoked_ms      INTEGER,
    last_used_ms    INTEGER
) WITHOUT ROWID;

-- A tenant's keys, newest first.
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_ms);

-- Records of the tenants an operator made; `limits` is a JSON object.
CREATE TABLE tenants (
    name         TEXT    NOT NULL PRIMARY KEY,
    display_name TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    limits       TEXT    NOT NULL
) WITHOUT ROWID;

-- Append-only; AUTOINCREMENT so a `seq` (the read cursor) is never reused,
-- even after the newest rows are deleted. `outcome` is an HTTP status;
-- `detail` is JSON.
CREATE TABLE audit_log (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant  TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    role    TEXT,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    address TEXT,
    outcome INTEGER NOT NULL,
    detail  TEXT    NOT NULL
);

-- A tenant's entries, newest first; the filters (actor, action, time) are
-- checked along this walk, which suits a log written by administrators.
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
