-- A counter that moves whenever a key is destroyed, rewrapped or removed
-- (ADR 0004, "The key cache"). Instances keep unwrapped keys in memory and
-- read this one row at most every 250 ms: when it moved, they drop what
-- they hold. Triggers move it in the statement that changes the key, so
-- no code path can destroy a key without moving it.
CREATE TABLE key_store_epoch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL
) STRICT;
INSERT INTO key_store_epoch (id, epoch) VALUES (1, 0);

CREATE TRIGGER tenant_keys_changed AFTER UPDATE ON tenant_keys
WHEN OLD.wrapped IS NOT NEW.wrapped
BEGIN UPDATE key_store_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER tenant_keys_removed AFTER DELETE ON tenant_keys
BEGIN UPDATE key_store_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER subject_keys_changed AFTER UPDATE ON subject_keys
WHEN OLD.wrapped IS NOT NEW.wrapped
BEGIN UPDATE key_store_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER subject_keys_removed AFTER DELETE ON subject_keys
BEGIN UPDATE key_store_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER access_keys_changed AFTER UPDATE ON access_keys
WHEN OLD.wrapped IS NOT NEW.wrapped
BEGIN UPDATE key_store_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER access_keys_removed AFTER DELETE ON access_keys
BEGIN UPDATE key_store_epoch SET epoch = epoch + 1; END;
