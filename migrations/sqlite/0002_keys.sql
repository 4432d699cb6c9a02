-- Key store for personal data (docs/adr/0004-personal-data-keys.md). Kept
-- apart from the events: the log never holds a key. An erased key leaves a
-- tombstone (wrapped IS NULL) so that nothing new is sealed for that subject.
CREATE TABLE tenant_keys (
    tenant_id   BLOB    PRIMARY KEY,
    wrapped     BLOB,
    created_at  INTEGER NOT NULL,
    erased_at   INTEGER
) STRICT, WITHOUT ROWID;

CREATE TABLE subject_keys (
    tenant_id   BLOB    NOT NULL,
    subject_id  BLOB    NOT NULL,
    wrapped     BLOB,
    created_at  INTEGER NOT NULL,
    erased_at   INTEGER,
    PRIMARY KEY (tenant_id, subject_id)
) STRICT, WITHOUT ROWID;
