-- 0001: services, leases and the append-only event log.
-- schema_migrations itself is created by the migration runner before any file is applied.

CREATE TABLE services (
    name        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,              -- the JSON body of PUT /v1/services/{name}
    source      TEXT NOT NULL DEFAULT 'api',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    sem_key     INTEGER,
    sem_id      INTEGER,
    state       TEXT NOT NULL DEFAULT 'stopped',
    pid         INTEGER,
    pid_start_time INTEGER
);

CREATE TABLE leases (
    id                TEXT PRIMARY KEY,
    service           TEXT NOT NULL,
    holder            TEXT NOT NULL DEFAULT '',
    holder_pid        INTEGER NOT NULL,
    holder_start_time INTEGER NOT NULL,
    client_pid        INTEGER,
    ttl_ms            INTEGER,
    acquired_at       TEXT NOT NULL,
    expires_at        TEXT,
    ended_at          TEXT,
    end_reason        TEXT
);
CREATE INDEX leases_live ON leases(service) WHERE ended_at IS NULL;

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    service  TEXT,
    lease    TEXT,
    pid      INTEGER,
    actor    TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_service ON events(service, id);
CREATE INDEX events_by_kind ON events(kind, id);
CREATE INDEX events_by_lease ON events(lease, id);
