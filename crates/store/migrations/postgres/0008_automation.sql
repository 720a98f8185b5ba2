-- Automation catalogs (issue 6): the tables of
-- `migrations/sqlite/0008_automation.sql` in PostgreSQL types, bodies as JSONB.

CREATE TABLE rules (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       JSONB   NOT NULL,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE webhooks (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       JSONB   NOT NULL,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE pollers (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    body       JSONB   NOT NULL,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);
