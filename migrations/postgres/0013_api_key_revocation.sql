-- A revoked key stops working (within a second: servers cache a key for at most that long);
-- its row stays, so lists and the record of who did what keep its name.
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;
