-- 0007: a lease belongs to whoever took it: a user (its uid, as the kernel said) or a token
-- (its name). Only the owner, an operator or an admin may end it or keep it alive.
ALTER TABLE leases ADD COLUMN owner_kind TEXT;   -- peer | token | daemon
ALTER TABLE leases ADD COLUMN owner_uid INTEGER;
ALTER TABLE leases ADD COLUMN owner_name TEXT;   -- the user's name, or the token's
