-- Scheduled events (SPEC §4): the table of
-- `migrations/sqlite/0005_scheduled.sql` in PostgreSQL types, the body as
-- JSONB. Every node's scheduler reads what is due; the log de-duplicates the
-- ids, so two nodes appending one event store it once.

CREATE TABLE scheduled_events (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    due_ms     BIGINT  NOT NULL,
    body       JSONB   NOT NULL,
    created_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- What is due, across tenants, soonest first.
CREATE INDEX scheduled_events_due ON scheduled_events (due_ms);
