-- The report counters' rows not yet folded into shard 0 (`Store::fold_counters`): few once
-- the folding has caught up, so the folder finds the oldest in an index of its own.
CREATE INDEX message_counts_unfolded ON message_counts (hour) WHERE shard <> 0;
