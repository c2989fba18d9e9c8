-- 0003: indexes for the remaining event filters (pid, time range).
CREATE INDEX events_by_pid ON events(pid, id);
CREATE INDEX events_by_time ON events(time, id);
