-- E-mails to people inside the company (not to leads): a queue's `on_breach: {notify: [...]}`
-- tells team leads that a handoff waits past its SLA. Written in the transaction that records
-- the breach, sent by the dispatcher, retried with backoff. `lead_id` is whom it is about, so
-- that erasing the person deletes it.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lead_id BIGINT,
    handoff_id BIGINT,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_lead ON notifications (lead_id);
