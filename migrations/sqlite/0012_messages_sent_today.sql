-- The warm-up counts today's e-mails before every dispatch pass: without an index that was a
-- scan of every message ever sent. A warm-up caps a day's sends, so the count reads at most a
-- day's allowance of index entries. (Claims need no new index here: an SQLite index ends in
-- the rowid, so `messages_pending` is already in the claim's (next_attempt_at, id) order.)
CREATE INDEX messages_sent_email ON messages (sent_at) WHERE channel = 'email' AND status = 'sent';
