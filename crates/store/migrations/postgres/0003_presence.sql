-- Each node's connection counts per stream, refreshed every few seconds, so
-- that any node can report clients summed across the cluster.
CREATE TABLE presence (
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    stream TEXT NOT NULL,
    clients BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (node, tenant, stream)
);
