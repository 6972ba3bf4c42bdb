-- The two reads that start every runner pass, with plans that do not hang on the tables'
-- statistics. Their right plan is always the same (the wake-up index in order, stopping at the
-- limit; the leads by primary key), but PostgreSQL chose by estimates: with the statistics of a
-- moment when few waits were due, it read every due enrollment, sorted them on disk and then
-- took the first thousand (20-35 ms a pass with 100,000 due in `bench engine`, growing with the
-- backlog), and it read 1,000 leads out of 100,000 by a sequential scan (13-17 ms a pass).
-- A function's SET clauses hold only while it runs, so nothing else is planned this way.
CREATE FUNCTION due_leads(due_at BIGINT, paused TEXT[], most BIGINT) RETURNS SETOF BIGINT
LANGUAGE sql SET enable_bitmapscan = off SET enable_seqscan = off SET enable_sort = off
AS $$
    SELECT lead_id FROM enrollments
    WHERE status = 'waiting' AND wake_at <= due_at AND NOT (campaign_id = ANY(paused))
    ORDER BY wake_at LIMIT most FOR UPDATE SKIP LOCKED
$$;

CREATE FUNCTION take_free_leads(ids BIGINT[]) RETURNS SETOF leads
LANGUAGE sql SET enable_bitmapscan = off SET enable_seqscan = off SET enable_sort = off
AS $$
    SELECT * FROM leads WHERE id = ANY(ids) ORDER BY id FOR UPDATE SKIP LOCKED
$$;
