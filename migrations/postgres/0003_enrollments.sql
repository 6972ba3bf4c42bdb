-- Enrollments: one lead in one campaign version, where it stands and when it wakes. Ids come
-- from the sequence, reserved in batches (the engine writes a batch with its ids known).
CREATE TABLE enrollments (
    id BIGSERIAL PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    version TEXT NOT NULL,
    lead_id BIGINT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    wake_at BIGINT,
    outcome TEXT,
    transitions BIGINT NOT NULL,
    entered_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- At most one running enrollment per campaign and lead.
CREATE UNIQUE INDEX enrollments_open ON enrollments (campaign_id, lead_id) WHERE status IN ('active', 'waiting');
-- Due work is found by the wake-up time.
CREATE INDEX enrollments_due ON enrollments (wake_at) WHERE status = 'waiting';
CREATE INDEX enrollments_lead ON enrollments (lead_id);

-- The journey log: every step an enrollment takes, with the outcome and why.
CREATE TABLE journey (
    id BIGSERIAL PRIMARY KEY,
    enrollment_id BIGINT NOT NULL,
    lead_id BIGINT NOT NULL,
    campaign_id TEXT NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX journey_lead ON journey (lead_id, at);
CREATE INDEX journey_campaign ON journey (campaign_id, step);

-- The outbox: a message is created in the same transaction as the step that sends it, once
-- per (enrollment, transition), and rendered and sent later by the dispatcher.
CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    enrollment_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    lead_id BIGINT NOT NULL,
    campaign_id TEXT NOT NULL,
    version TEXT NOT NULL,
    step TEXT NOT NULL,
    channel TEXT NOT NULL,
    template TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    UNIQUE (enrollment_id, seq)
);
CREATE INDEX messages_pending ON messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX messages_lead ON messages (lead_id);

-- Server settings generated on first start, such as the secret that signs tracking links.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
