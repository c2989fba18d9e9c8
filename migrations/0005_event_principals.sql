-- 0005: who caused each event. On the Unix socket the kernel says (SO_PEERCRED): uid, the
-- user's name, the calling process and its comm; over TCP, the token's name; for what
-- procrefd does by itself, its own name. `actor` keeps a one-line summary of the same.
ALTER TABLE events ADD COLUMN by_kind TEXT;   -- peer | token | daemon
ALTER TABLE events ADD COLUMN by_uid INTEGER;
ALTER TABLE events ADD COLUMN by_user TEXT;
ALTER TABLE events ADD COLUMN by_pid INTEGER;
ALTER TABLE events ADD COLUMN by_comm TEXT;
ALTER TABLE events ADD COLUMN by_name TEXT;   -- the token's name, or procrefd's own
-- GET /v1/events?user=: only events a user caused are indexed.
CREATE INDEX events_by_uid ON events(by_uid, id) WHERE by_uid IS NOT NULL;
