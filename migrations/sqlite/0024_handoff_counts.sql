-- What became of each queue's handoffs, by the hour it happened (UTC hours since the epoch),
-- per member: opened, moved in and out on an SLA breach, breached, claimed (with how long the
-- handoff had waited, as a histogram bucket: `core::report::queue::wait_bucket`), released,
-- accepted, rejected (per reason), converted. Added to in the transactions that move the
-- handoffs, never by reading the handoff log; writers add to one of a few shards.
CREATE TABLE handoff_counts (
    queue TEXT NOT NULL,
    hour BIGINT NOT NULL,
    member TEXT NOT NULL,
    fact TEXT NOT NULL,
    detail TEXT NOT NULL,
    shard BIGINT NOT NULL,
    n BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, hour, member, fact, detail, shard)
);

-- Backfill from the handoff log. Breaches logged before now name no member; an accept or
-- reject with no claim logged before it claimed as it decided; a rejection's reason is the
-- handoff's latest; a decision's member is whoever holds the handoff now, else who decided.
WITH RECURSIVE bounds(b, lo) AS (
    SELECT CAST(0 AS BIGINT), CAST(0 AS BIGINT)
    UNION ALL
    SELECT b + 1, CASE WHEN b + 1 < 8 THEN b + 1
        ELSE (8 + (b + 1 - 8) % 8) << CAST((b + 1 - 8) / 8 AS INTEGER) END
    FROM bounds WHERE b < 400
),
log AS (
    SELECT l.id, l.handoff_id, l.action, l.actor, l.detail, l.at / 3600000000 AS hour, l.queue,
        MAX((l.at - h.created_at) / 1000000, 0) AS waited, h.claimed_by, h.reject_reason,
        (l.action = 'claimed' OR (l.action IN ('accepted', 'rejected') AND NOT EXISTS (
            SELECT 1 FROM handoff_log c WHERE c.handoff_id = l.handoff_id AND c.action = 'claimed' AND c.id < l.id))) AS claims
    FROM handoff_log l JOIN handoffs h ON h.id = l.handoff_id
    WHERE l.queue IS NOT NULL
),
facts(queue, hour, member, fact, detail) AS (
    SELECT queue, hour, '', 'opened', '' FROM log WHERE action = 'opened'
    UNION ALL SELECT queue, hour, '', 'moved_out', '' FROM log WHERE action = 'moved'
    UNION ALL SELECT substr(detail, instr(detail, ' → ') + 3), hour, '', 'moved_in', '' FROM log WHERE action = 'moved'
    UNION ALL SELECT queue, hour, '', 'breached', '' FROM log WHERE action = 'sla_breached'
    UNION ALL SELECT queue, hour, COALESCE(actor, ''), 'claimed', '' FROM log WHERE claims
    UNION ALL SELECT queue, hour, COALESCE(actor, ''), 'claim_wait',
        CAST((SELECT MAX(b) FROM bounds WHERE lo <= waited) AS TEXT) FROM log WHERE claims
    UNION ALL SELECT queue, hour, COALESCE(actor, ''), 'released', '' FROM log WHERE action = 'released'
    UNION ALL SELECT queue, hour, COALESCE(claimed_by, actor, ''), action,
        CASE WHEN action = 'rejected' THEN substr(trim(COALESCE(reject_reason, '')), 1, 200) ELSE '' END
    FROM log WHERE action IN ('accepted', 'rejected', 'converted')
)
INSERT INTO handoff_counts (queue, hour, member, fact, detail, shard, n)
SELECT queue, hour, member, fact, detail, 0, COUNT(*) FROM facts
GROUP BY queue, hour, member, fact, detail;
