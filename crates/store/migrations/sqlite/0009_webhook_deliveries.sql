-- Outgoing webhook deliveries (issue 6 point 4): one row per (webhook,
-- event). The id is derived from the pair, so every node that folds the
-- event inserts the same row and it is stored once (`ON CONFLICT DO
-- NOTHING`). A node claims due pending rows by stamping `lease_until_ms`;
-- the stamp is also the token it writes the attempt's result with.
-- `state` is `pending`, `delivered` or `dead`.

CREATE TABLE webhook_deliveries (
    tenant          TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    webhook         TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_offset    INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    lease_until_ms  INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

-- What is due, across tenants, soonest first; only pending rows are indexed.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms)
    WHERE state = 'pending';
-- One webhook's delivery log, newest event first.
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (tenant, webhook, event_offset);
