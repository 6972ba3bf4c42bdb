-- Human engagement per message: when a person (not a mail proxy or a link scanner the fetch
-- said it was) first opened it and first clicked in it. The first of each also adds one to the
-- counters of the message's campaign step, in the same transaction, so that a campaign's unique
-- opens and clicks are read in O(steps). Writers spread over a few shards, as step_counts do.
ALTER TABLE messages ADD COLUMN opened_at BIGINT;
ALTER TABLE messages ADD COLUMN clicked_at BIGINT;
CREATE TABLE engagement_counts (
    campaign_id TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    shard BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, step, kind, shard)
);
