-- A counter that moves whenever a key is destroyed, rewrapped or removed
-- (ADR 0004, "The key cache"). Instances keep unwrapped keys in memory and
-- read this one row at most every 250 ms: when it moved, they drop what
-- they hold. Triggers move it in the statement that changes the key, so
-- no code path can destroy a key without moving it.
CREATE TABLE key_store_epoch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  BIGINT  NOT NULL
);
INSERT INTO key_store_epoch (id, epoch) VALUES (1, 0);

CREATE FUNCTION key_store_epoch_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE key_store_epoch SET epoch = epoch + 1;
    RETURN NULL;
END;
$$;

-- Per row, and only when a key's wrapped bytes change (destroyed or
-- rewrapped) or a key is removed: a statement that touches no key moves
-- nothing, as on SQLite.
CREATE TRIGGER tenant_keys_changed AFTER UPDATE ON tenant_keys FOR EACH ROW
    WHEN (OLD.wrapped IS DISTINCT FROM NEW.wrapped) EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER tenant_keys_removed AFTER DELETE ON tenant_keys FOR EACH ROW
    EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER tenant_keys_truncated AFTER TRUNCATE ON tenant_keys FOR EACH STATEMENT
    EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER subject_keys_changed AFTER UPDATE ON subject_keys FOR EACH ROW
    WHEN (OLD.wrapped IS DISTINCT FROM NEW.wrapped) EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER subject_keys_removed AFTER DELETE ON subject_keys FOR EACH ROW
    EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER subject_keys_truncated AFTER TRUNCATE ON subject_keys FOR EACH STATEMENT
    EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER access_keys_changed AFTER UPDATE ON access_keys FOR EACH ROW
    WHEN (OLD.wrapped IS DISTINCT FROM NEW.wrapped) EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER access_keys_removed AFTER DELETE ON access_keys FOR EACH ROW
    EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER access_keys_truncated AFTER TRUNCATE ON access_keys FOR EACH STATEMENT
    EXECUTE FUNCTION key_store_epoch_moves();
