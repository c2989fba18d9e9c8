-- 0006: an audit log that shows it was not edited. Each event stores
-- hash = SHA-256(previous event's hash || its canonical bytes), written in the transaction
-- that appends it; `procrefd events verify` walks the chain. The chain starts at the anchor:
-- the last event before this migration (with a hash of 32 zero bytes), later the last event
-- retention removed. Events are append-only: only the retention pass, which sets `pruning`
-- in its own transaction, may delete.
ALTER TABLE events ADD COLUMN hash BLOB;

CREATE TABLE audit_chain (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    anchor_id    INTEGER NOT NULL,
    anchor_hash  BLOB NOT NULL,
    pruning      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_chain (id, anchor_id, anchor_hash) VALUES (1, (SELECT COALESCE(MAX(id), 0) FROM events), zeroblob(32));

CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
WHEN (SELECT pruning FROM audit_chain WHERE id = 1) IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: only the retention pass deletes');
END;
