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

CREATE TRIGGER tenant_keys_changed AFTER UPDATE OR DELETE OR TRUNCATE ON tenant_keys
    FOR EACH STATEMENT EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER subject_keys_changed AFTER UPDATE OR DELETE OR TRUNCATE ON subject_keys
    FOR EACH STATEMENT EXECUTE FUNCTION key_store_epoch_moves();
CREATE TRIGGER access_keys_changed AFTER UPDATE OR DELETE OR TRUNCATE ON access_keys
    FOR EACH STATEMENT EXECUTE FUNCTION key_store_epoch_moves();
