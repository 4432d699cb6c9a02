-- The key store (ADR 0011): every key Custodia holds, apart from the event
-- log. By default on SQLite it is a file of its own beside the log, so that
-- a backup of the log never holds a key. The first three tables keep the
-- shape the log's migrations 0002 and 0003 gave them (a store that shares
-- the log's database already has them).
CREATE TABLE IF NOT EXISTS tenant_keys (
    tenant_id   UUID    PRIMARY KEY,
    wrapped     BYTEA,
    created_at  BIGINT  NOT NULL,
    erased_at   BIGINT
);

CREATE TABLE IF NOT EXISTS subject_keys (
    tenant_id   UUID    NOT NULL,
    subject_id  UUID    NOT NULL,
    wrapped     BYTEA,
    created_at  BIGINT  NOT NULL,
    erased_at   BIGINT,
    PRIMARY KEY (tenant_id, subject_id)
);

CREATE TABLE IF NOT EXISTS signing_keys (
    kid          TEXT    PRIMARY KEY,
    algorithm    TEXT    NOT NULL,
    private_key  BYTEA   NOT NULL,
    public_x     TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    retired_at   BIGINT
);

-- Which master key wraps a row (its public id; NULL: made before master
-- keys had ids). `custodia keys rotate-master` rewraps the rows of any
-- other key.
ALTER TABLE tenant_keys ADD COLUMN master_key_id TEXT;
ALTER TABLE signing_keys ADD COLUMN master_key_id TEXT;

-- Access data (IP addresses, user agents) is sealed under a key derived
-- from the subject's key and the key of its day: one per tenant per UTC
-- day, wrapped under the tenant key, destroyed by retention.
CREATE TABLE access_keys (
    tenant_id   UUID    NOT NULL,
    day         TEXT    NOT NULL,
    wrapped     BYTEA,
    created_at  BIGINT  NOT NULL,
    erased_at   BIGINT,
    PRIMARY KEY (tenant_id, day)
);

-- A random id given to the store when it is made: two database URLs name
-- the same key store exactly when they read the same id.
CREATE TABLE key_store_identity (id TEXT NOT NULL);
INSERT INTO key_store_identity (id) VALUES (gen_random_uuid()::text);
