-- What leads went on to do (a campaign's goal, a handoff, an accepted handoff, a conversion),
-- credited to the campaign steps that had sent them something in the 90 days before
-- (`core::report::attribution`): `last_step`, the one send step that reached the lead last,
-- and `campaign`, every campaign that reached it (step empty). Kept by the hour of the outcome
-- and the whole days (rounded up) from the touch to it, so a report counts those within any
-- window of whole days. Added to in the transaction that records the outcome.
CREATE TABLE conversion_counts (
    campaign_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    step TEXT NOT NULL,
    credit TEXT NOT NULL,
    outcome TEXT NOT NULL,
    lag_days BIGINT NOT NULL,
    shard BIGINT NOT NULL,
    n BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour, step, credit, outcome, lag_days, shard)
);

-- Backfill: the outcomes from the handoff log (opened, accepted, converted) and the journey
-- (goals), each with the lead's latest message per campaign step in the 90 days before it.
WITH outcomes AS (
    SELECT 'h' || CAST(l.id AS TEXT) AS oid, h.lead_id AS lead,
        CASE l.action WHEN 'opened' THEN 'handoff' ELSE l.action END AS outcome, l.at, NULL AS campaign_only
    FROM handoff_log l JOIN handoffs h ON h.id = l.handoff_id
    WHERE l.action IN ('opened', 'accepted', 'converted')
    UNION ALL
    SELECT 'j' || CAST(id AS TEXT), lead_id, 'goal', at, campaign_id FROM journey WHERE outcome = 'goal'
),
touches AS (
    SELECT o.oid, o.outcome, o.at, m.campaign_id, m.step, MAX(m.sent_at) AS sent_at
    FROM outcomes o
    JOIN messages m ON m.lead_id = o.lead AND m.sent_at IS NOT NULL AND m.sent_at <= o.at
        AND o.at - m.sent_at <= 90 * 86400000000 AND (o.campaign_only IS NULL OR m.campaign_id = o.campaign_only)
    GROUP BY o.oid, o.outcome, o.at, m.campaign_id, m.step
),
ranked AS (
    SELECT t.*, ROW_NUMBER() OVER (PARTITION BY oid ORDER BY sent_at DESC, campaign_id, step) AS latest
    FROM touches t
),
credits AS (
    SELECT campaign_id, at, step, 'last_step' AS credit, outcome, sent_at FROM ranked WHERE latest = 1
    UNION ALL
    SELECT campaign_id, at, '', 'campaign', outcome, MAX(sent_at) FROM touches
    GROUP BY oid, campaign_id, at, outcome
)
INSERT INTO conversion_counts (campaign_id, hour, step, credit, outcome, lag_days, shard, n)
SELECT campaign_id, at / 3600000000, step, credit, outcome, (at - sent_at + 86399999999) / 86400000000, 0, COUNT(*)
FROM credits
GROUP BY campaign_id, at / 3600000000, step, credit, outcome, (at - sent_at + 86399999999) / 86400000000;
