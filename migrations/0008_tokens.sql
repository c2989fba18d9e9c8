-- 0008: named tokens for TCP clients. Only each secret's SHA-256 is stored; the secret is
-- shown once, when the token is made. A revoked token keeps its row (and its name) so the
-- audit log's token:NAME stays unambiguous.
CREATE TABLE tokens (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,              -- reader | leaser | operator | admin
    services    TEXT NOT NULL DEFAULT '[]', -- a leaser's services (JSON array of names)
    hash        BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  TEXT
);
