-- The wake-up index holds the lead as well, so that the runner's search for due leads reads
-- the index alone: before, every due entry it passed (and those of leads another worker had
-- taken, which it skips) cost a lookup of the enrollment row for its lead and campaign. The
-- campaign is read from the row only while some campaign is paused.
DROP INDEX enrollments_due;
CREATE INDEX enrollments_due ON enrollments (wake_at, lead_id) WHERE status = 'waiting';
