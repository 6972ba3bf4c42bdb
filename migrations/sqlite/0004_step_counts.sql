-- Per-step counters, kept in the transaction that writes the journey, so that a campaign's
-- funnel is read in O(steps) instead of by scanning (and de-duplicating) its whole journey.
-- `entered` counts arrivals at the step (a lead that loops back counts again); `lines` counts
-- journey lines by outcome. Writers add to one of a few shards so that concurrent workers do not
-- queue on one row; readers sum the shards.
CREATE TABLE step_counts (
    campaign_id TEXT NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    shard INTEGER NOT NULL,
    entered BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, step, outcome, shard)
);
-- What the journey says so far: every line but leaving a wait, a goal reached, and an exit is
-- an arrival.
INSERT INTO step_counts (campaign_id, step, outcome, shard, entered, lines)
SELECT campaign_id, step, outcome, 0,
       SUM(CASE WHEN outcome IN ('waited', 'goal', 'exited') THEN 0 ELSE 1 END), COUNT(*)
FROM journey GROUP BY campaign_id, step, outcome;
-- The journey is read by lead (timelines) only now.
DROP INDEX journey_campaign;
