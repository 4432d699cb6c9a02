-- The event log: append-only, one hash chain per tenant (plus the platform
-- chain, chain_id = 16 zero bytes). Layout of the hashed fields:
-- docs/event-format.md. SQLite serialises writers, so positions are assigned
-- in commit order and transaction_id is the first position of the append.
CREATE TABLE events (
    position         INTEGER PRIMARY KEY,
    transaction_id   INTEGER NOT NULL,
    event_id         BLOB    NOT NULL UNIQUE,
    chain_id         BLOB    NOT NULL,
    chain_index      INTEGER NOT NULL,
    stream_category  TEXT    NOT NULL,
    stream_id        BLOB    NOT NULL,
    stream_version   INTEGER NOT NULL,
    event_type       TEXT    NOT NULL,
    schema_version   INTEGER NOT NULL,
    payload          BLOB    NOT NULL,
    actor            TEXT    NOT NULL,
    command_id       BLOB    NOT NULL,
    correlation_id   BLOB    NOT NULL,
    causation_id     BLOB,
    origin           TEXT    NOT NULL,
    recorded_at      INTEGER NOT NULL,
    prev_hash        BLOB    NOT NULL,
    hash             BLOB    NOT NULL,
    UNIQUE (chain_id, chain_index),
    UNIQUE (stream_category, stream_id, stream_version)
) STRICT;

-- Idempotency: one row per committed append, keyed by its command id.
CREATE TABLE commands (
    command_id        BLOB    PRIMARY KEY,
    chain_id          BLOB    NOT NULL,
    stream_category   TEXT    NOT NULL,
    stream_id         BLOB    NOT NULL,
    event_count       INTEGER NOT NULL,
    last_position     INTEGER NOT NULL,
    last_version      INTEGER NOT NULL,
    last_chain_index  INTEGER NOT NULL,
    transaction_id    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Guard against accidents: the log is never updated or deleted. (An attacker
-- with write access can drop these; the hash chain is what catches them.)
CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
CREATE TRIGGER events_are_immutable_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
