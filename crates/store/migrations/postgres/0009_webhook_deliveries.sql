-- Outgoing webhook deliveries (issue 6 point 4): the table of
-- `migrations/sqlite/0009_webhook_deliveries.sql` in PostgreSQL types.
-- Every node inserts the same rows (`ON CONFLICT DO NOTHING`); claims take
-- due rows with `FOR UPDATE SKIP LOCKED`, so concurrent nodes take
-- disjoint rows.

CREATE TABLE webhook_deliveries (
    tenant          TEXT     NOT NULL,
    id              TEXT     NOT NULL,
    webhook         TEXT     NOT NULL,
    event_id        TEXT     NOT NULL,
    event_offset    BIGINT   NOT NULL,
    state           TEXT     NOT NULL,
    attempts        INTEGER  NOT NULL,
    next_attempt_ms BIGINT   NOT NULL,
    lease_until_ms  BIGINT   NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_ms      BIGINT   NOT NULL,
    updated_ms      BIGINT   NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- What is due, across tenants, soonest first; only pending rows are indexed.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms)
    WHERE state = 'pending';
-- One webhook's delivery log, newest event first.
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (tenant, webhook, event_offset);
