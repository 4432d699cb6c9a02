-- The keys that sign checkpoints (docs/audit-format.md): Ed25519 seeds
-- sealed under the master key, apart from the JWT signing keys. The one
-- not retired signs; every one stays, so old checkpoints still verify.
CREATE TABLE checkpoint_keys (
    verifier       TEXT    PRIMARY KEY,
    sealed_seed    BYTEA   NOT NULL,
    created_at     BIGINT  NOT NULL,
    retired_at     BIGINT,
    master_key_id  TEXT
);
