-- Signed checkpoints (docs/audit-format.md): each a C2SP tlog-checkpoint
-- note over a chain's Merkle root, kept so that the next one is signed
-- only when consistent with the last (by every instance).
CREATE TABLE checkpoints (
    chain      TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    root       BLOB    NOT NULL,
    note       TEXT    NOT NULL,
    signed_at  INTEGER NOT NULL,
    PRIMARY KEY (chain, size)
) STRICT, WITHOUT ROWID;
