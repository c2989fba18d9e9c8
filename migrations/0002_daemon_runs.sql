-- 0002: one row per daemon run, to tell a restart on the same boot (holders and services
-- may still be alive and are re-adopted) from a reboot (everything recorded is gone).
CREATE TABLE daemon_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pid         INTEGER NOT NULL,
    boot_id     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    stopped_at  TEXT,
    stop_mode   TEXT
);
