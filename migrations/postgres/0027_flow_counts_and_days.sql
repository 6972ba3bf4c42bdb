-- A campaign's flow per version and over time: journey lines per step, version, outcome and
-- hour (UTC hours since the epoch), and the arrivals at the step among them. Added to in the
-- transaction that writes the journey; writers add to one of a few shards. (`step_counts`
-- keeps the same since the first deploy, for the graph and the campaign list.)
CREATE TABLE flow_counts (
    campaign_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    outcome TEXT NOT NULL,
    shard BIGINT NOT NULL,
    entered BIGINT NOT NULL DEFAULT 0,
    lines BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour, step, version, outcome, shard)
);
-- Backfill from the journey, as `step_counts` was: every line but leaving a wait, a goal
-- reached and an exit is an arrival; the version is the enrollment's now.
INSERT INTO flow_counts (campaign_id, hour, step, version, outcome, shard, entered, lines)
SELECT j.campaign_id, j.at / 3600000000, j.step, e.version, j.outcome, 0,
       SUM(CASE WHEN j.outcome IN ('waited', 'goal', 'exited') THEN 0 ELSE 1 END), COUNT(*)
FROM journey j JOIN enrollments e ON e.id = j.enrollment_id
GROUP BY j.campaign_id, j.at / 3600000000, j.step, e.version, j.outcome;

-- Conversions are kept by attribution window (`attribution::WINDOWS`, the shortest that
-- holds the days from the touch), not by the day: a report reads a seventh of the rows.
CREATE TABLE conversion_windows (
    campaign_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    step TEXT NOT NULL,
    credit TEXT NOT NULL,
    outcome TEXT NOT NULL,
    within_days BIGINT NOT NULL,
    shard BIGINT NOT NULL,
    n BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour, step, credit, outcome, within_days, shard)
);
INSERT INTO conversion_windows (campaign_id, hour, step, credit, outcome, within_days, shard, n)
SELECT campaign_id, hour, step, credit, outcome, within_days, shard, SUM(n) FROM (
    SELECT campaign_id, hour, step, credit, outcome, shard, n,
        CASE WHEN lag_days <= 1 THEN 1 WHEN lag_days <= 3 THEN 3 WHEN lag_days <= 7 THEN 7
             WHEN lag_days <= 14 THEN 14 WHEN lag_days <= 30 THEN 30 WHEN lag_days <= 60 THEN 60
             ELSE 90 END AS within_days
    FROM conversion_counts
) c
GROUP BY campaign_id, hour, step, credit, outcome, within_days, shard;
DROP TABLE conversion_counts;
ALTER TABLE conversion_windows RENAME TO conversion_counts;

-- The counters that are only ever added to at the current hour (flow, waits, conversions),
-- rolled up per UTC day once the day is over (`ReportStore::roll_up_counters`): a report
-- reads a row per day for the whole days of its span and hours only at its ends. Days before
-- `counter_rollups.through_day` (days since the epoch) are rolled up; the hourly rows stay.
CREATE TABLE flow_days (
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    outcome TEXT NOT NULL,
    entered BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, day, step, version, outcome)
);
CREATE TABLE wait_days (
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, day, step, version, bucket)
);
CREATE TABLE conversion_days (
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    step TEXT NOT NULL,
    credit TEXT NOT NULL,
    outcome TEXT NOT NULL,
    within_days BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, day, step, credit, outcome, within_days)
);
CREATE TABLE counter_rollups (
    counter TEXT PRIMARY KEY,
    through_day BIGINT NOT NULL
);
INSERT INTO counter_rollups (counter, through_day)
VALUES ('flow_counts', 0), ('wait_counts', 0), ('conversion_counts', 0);
