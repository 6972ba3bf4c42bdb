-- Deliverability: addresses that must get no more mail (a hard bounce, a complaint, repeated
-- soft bounces), kept as a hash of the address so that erasing the person keeps the block.
CREATE TABLE mail_suppressions (
    email_hash TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL
);

-- Frequency caps count a lead's recent messages on a channel.
CREATE INDEX messages_lead_created ON messages (lead_id, created_at);
DROP INDEX messages_lead;
