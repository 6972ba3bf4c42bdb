-- Handoff queues and webhooks (issue 5). A handoff is a lead waiting in a queue for an SDR or
-- a salesperson: open, claimed, then accepted, rejected or converted. A lead has at most one
-- open (or claimed) handoff. Webhook events go through a durable outbox, one delivery per
-- (subscription, event), retried with the same delivery id.
ALTER TABLE handoffs ADD COLUMN score BIGINT;
ALTER TABLE handoffs ADD COLUMN tags TEXT;
ALTER TABLE handoffs ADD COLUMN campaign_id TEXT;
ALTER TABLE handoffs ADD COLUMN step TEXT;
ALTER TABLE handoffs ADD COLUMN assigned_to TEXT;
ALTER TABLE handoffs ADD COLUMN claimed_by TEXT;
ALTER TABLE handoffs ADD COLUMN claimed_at BIGINT;
ALTER TABLE handoffs ADD COLUMN decided_by TEXT;
ALTER TABLE handoffs ADD COLUMN decided_at BIGINT;
ALTER TABLE handoffs ADD COLUMN reject_reason TEXT;
ALTER TABLE handoffs ADD COLUMN sla_due_at BIGINT;
ALTER TABLE handoffs ADD COLUMN sla_breached_at BIGINT;
ALTER TABLE handoffs ADD COLUMN moved_from TEXT;
ALTER TABLE handoffs ADD COLUMN updated_at BIGINT;
UPDATE handoffs SET updated_at = created_at, priority = COALESCE(priority, 50);
-- Requests recorded before queues existed become open handoffs, one per lead (the earliest);
-- later ones for the same lead are kept as `superseded`.
UPDATE handoffs SET status = 'open' WHERE status = 'requested';
UPDATE handoffs SET status = 'superseded'
 WHERE status = 'open' AND id NOT IN (SELECT MIN(id) FROM handoffs WHERE status = 'open' GROUP BY lead_id);
CREATE UNIQUE INDEX handoffs_one_open ON handoffs (lead_id) WHERE status IN ('open', 'claimed');
-- The next handoff to claim: highest priority, then oldest.
CREATE INDEX handoffs_queue ON handoffs (queue, priority DESC, created_at, id) WHERE status = 'open';
CREATE INDEX handoffs_sla ON handoffs (sla_due_at) WHERE status = 'open' AND sla_breached_at IS NULL AND sla_due_at IS NOT NULL;

-- What happened to each handoff, in order: opened, assigned, claimed, released, moved, …
CREATE TABLE handoff_log (
    id BIGSERIAL PRIMARY KEY,
    handoff_id BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    detail TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX handoff_log_handoff ON handoff_log (handoff_id, id);

-- Queue members' state beyond the playbook: availability, capacity, weight, and the
-- round-robin position (`pass`: stride scheduling, lowest goes next), which survives restarts.
CREATE TABLE queue_members (
    queue TEXT NOT NULL,
    member TEXT NOT NULL,
    available BOOLEAN NOT NULL DEFAULT true,
    capacity BIGINT,
    weight BIGINT NOT NULL DEFAULT 1,
    pass BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (queue, member)
);

-- A recycled lead rests until this time: no campaign enrolls it and the MQL rule waits.
ALTER TABLE leads ADD COLUMN cooldown_until BIGINT;
CREATE INDEX leads_cooldown ON leads (cooldown_until) WHERE cooldown_until IS NOT NULL;

CREATE TABLE webhooks (
    id BIGSERIAL PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT true
);

CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    webhook_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    lead_id BIGINT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_status BIGINT,
    last_error TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, lead_id, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_lead ON webhook_deliveries (lead_id);

CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
