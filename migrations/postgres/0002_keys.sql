-- Key store for personal data (docs/adr/0004-personal-data-keys.md). Kept
-- apart from the events: the log never holds a key. An erased key leaves a
-- tombstone (wrapped IS NULL) so that nothing new is sealed for that subject.
CREATE TABLE tenant_keys (
    tenant_id   UUID    PRIMARY KEY,
    wrapped     BYTEA,
    created_at  BIGINT  NOT NULL,
    erased_at   BIGINT
);

CREATE TABLE subject_keys (
    tenant_id   UUID    NOT NULL,
    subject_id  UUID    NOT NULL,
    wrapped     BYTEA,
    created_at  BIGINT  NOT NULL,
    erased_at   BIGINT,
    PRIMARY KEY (tenant_id, subject_id)
);
