-- 0004: Idempotency-Key of lease acquires. A retry with the same key and body gets the
-- same lease; the row is written in the same transaction as the lease it names.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    service       TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    lease         TEXT NOT NULL,
    count         INTEGER NOT NULL,
    started       INTEGER NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX idempotency_keys_by_time ON idempotency_keys(created_at);
