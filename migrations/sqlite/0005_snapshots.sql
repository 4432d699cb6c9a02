-- Snapshots: an aggregate's state at a stream version, so that a command
-- folds only the events after it (ADR 0008). Derived data, never part of a
-- chain: deleting every row is always safe (they are rebuilt as streams are
-- loaded). Personal data appears here only as the events hold it (sealed).
CREATE TABLE snapshots (
    stream_category  TEXT    NOT NULL,
    stream_id        BLOB    NOT NULL,
    chain_id         BLOB    NOT NULL,
    stream_version   INTEGER NOT NULL,
    form_version     INTEGER NOT NULL,
    state            BLOB    NOT NULL,
    PRIMARY KEY (stream_category, stream_id)
) STRICT, WITHOUT ROWID;
