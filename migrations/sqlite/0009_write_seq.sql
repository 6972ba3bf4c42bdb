-- The write sequence: every write transaction that changes what a journey pass reads takes the
-- next number, inside the transaction. A journey pass may read and decide in a snapshot outside
-- the writer's turn (SQLite has one writer); when it then writes, the numbers taken since its
-- snapshot say whether anything it read may have changed (see `SqliteStore::begin_checked`).
CREATE TABLE write_seq (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO write_seq (id, seq) VALUES (1, 0);
