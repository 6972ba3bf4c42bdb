-- The queue a handoff was in when each line of its history was written: the queue board counts
-- SLA breaches per queue, and a breached handoff may then move to another queue. Earlier lines
-- take the queue a breach line names ("… SLA of <queue>"), else the handoff's queue now.
ALTER TABLE handoff_log ADD COLUMN queue TEXT;
UPDATE handoff_log SET queue = COALESCE(
    CASE WHEN action = 'sla_breached' AND strpos(detail, ' SLA of ') > 0
         THEN split_part(detail, ' SLA of ', 2) END,
    (SELECT queue FROM handoffs WHERE handoffs.id = handoff_log.handoff_id));
CREATE INDEX handoff_log_breaches ON handoff_log (at) WHERE action = 'sla_breached';
