-- Cluster presence (each node's connection counts per stream). The embedded
-- store serves one node and leaves it empty; it exists so both backends keep
-- the same schema.
CREATE TABLE presence (
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    stream TEXT NOT NULL,
    clients INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (node, tenant, stream)
) WITHOUT ROWID;
