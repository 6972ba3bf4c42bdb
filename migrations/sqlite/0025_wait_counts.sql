-- How long enrollments waited at each wait step before going on, by the hour they went on
-- (UTC hours since the epoch), per campaign version, as a histogram: `bucket` is
-- `core::report::queue::wait_bucket` of the seconds waited. Added to in the transaction that
-- writes the journey; writers add to one of a few shards.
CREATE TABLE wait_counts (
    campaign_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    shard BIGINT NOT NULL,
    n BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour, step, version, bucket, shard)
);

-- Backfill from the journey: a `waited` line right after a `waiting` line at the same step
-- of the same enrollment; the version is the enrollment's. The buckets' floors, in a table
-- of their own for the backfill's lookups only.
CREATE TABLE wait_bucket_floors (bucket BIGINT PRIMARY KEY, lo BIGINT NOT NULL);
CREATE INDEX wait_bucket_floors_lo ON wait_bucket_floors (lo);
WITH RECURSIVE bounds(b, lo) AS (
    SELECT CAST(0 AS BIGINT), CAST(0 AS BIGINT)
    UNION ALL
    SELECT b + 1, CASE WHEN b + 1 < 8 THEN b + 1
        ELSE (8 + (b + 1 - 8) % 8) << CAST((b + 1 - 8) / 8 AS INTEGER) END
    FROM bounds WHERE b < 400
)
INSERT INTO wait_bucket_floors (bucket, lo) SELECT b, lo FROM bounds;
INSERT INTO wait_counts (campaign_id, hour, step, version, bucket, shard, n)
SELECT campaign_id, hour, step, version, bucket, 0, COUNT(*) FROM (
    SELECT j.campaign_id, j.at / 3600000000 AS hour, j.step, e.version,
        (SELECT f.bucket FROM wait_bucket_floors f WHERE f.lo <= MAX((j.at - j.since) / 1000000, 0)
         ORDER BY f.lo DESC LIMIT 1) AS bucket
    FROM (
        SELECT enrollment_id, campaign_id, step, outcome, at,
            LAG(outcome) OVER w AS before, LAG(step) OVER w AS before_step, LAG(at) OVER w AS since
        FROM journey
        WINDOW w AS (PARTITION BY enrollment_id ORDER BY id)
    ) j
    JOIN enrollments e ON e.id = j.enrollment_id
    WHERE j.outcome = 'waited' AND j.before = 'waiting' AND j.before_step = j.step
) waits
GROUP BY campaign_id, hour, step, version, bucket;
DROP TABLE wait_bucket_floors;
