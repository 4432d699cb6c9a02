-- Read models (docs/adr/0006-projections.md). Every row belongs to one
-- model and is rebuilt from the log at will: nothing here is a source of
-- truth. Personal fields stay sealed exactly as the events hold them; they
-- are opened on read, for readers allowed to see them.
CREATE TABLE read_models (
    model      TEXT NOT NULL,
    id         TEXT NOT NULL,
    tenant_id  TEXT,
    parent_id  TEXT,
    kind       TEXT,
    actor_id   TEXT,
    lookup     TEXT,
    at         INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (model, id)
) STRICT;

CREATE INDEX read_models_by_tenant ON read_models (model, tenant_id, seq);
CREATE INDEX read_models_by_parent ON read_models (model, parent_id, seq);
CREATE INDEX read_models_by_lookup ON read_models (model, tenant_id, lookup);

-- One row per projection: how far it has applied the log (written in the
-- same transaction as its read-model changes) and which process may run it
-- (a lease, renewed while it runs; another process takes over once it lapses).
CREATE TABLE projection_checkpoints (
    name         TEXT PRIMARY KEY,
    transaction_id INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    holder       TEXT NOT NULL,
    lease_until  INTEGER NOT NULL
) STRICT;
