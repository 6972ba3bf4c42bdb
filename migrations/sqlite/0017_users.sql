-- People who sign in to the console, and their sessions. A user's password is an argon2 PHC
-- string; the one-time link that sets it is kept as the SHA-256 of its token, with when it
-- expires. A session is kept as the SHA-256 of its cookie, with the CSRF token its forms carry.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT,
    language TEXT,
    created_at BIGINT NOT NULL,
    deactivated_at BIGINT,
    setup_hash TEXT UNIQUE,
    setup_expires_at BIGINT
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
-- A person's claimed handoffs, for their start page.
CREATE INDEX handoffs_claimed_by ON handoffs (claimed_by, claimed_at) WHERE status = 'claimed';
