-- Scheduled events (SPEC §4): an event whose `scheduled_at` lies in the
-- future is held here, not in `events`, until it is due; the server's
-- scheduler then appends it to the log (same id) and deletes the row. The
-- body is the validated event's canonical JSON (no offset yet).

CREATE TABLE scheduled_events (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    due_ms     INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

-- What is due, across tenants, soonest first.
CREATE INDEX scheduled_events_due ON scheduled_events (due_ms);
