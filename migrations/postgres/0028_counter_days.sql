-- Message and handoff counters by local day of one time zone, the report zone (the Rules'
-- `default_timezone`), so that a report in that zone reads a row per key and day rather than
-- one per hour. Kept by the fold (`Store::fold_counters`), the only writer of these tables
-- and of the hour tables' shard 0: writers add to shards 1 and up; the fold moves finished
-- hours' shards into shard 0 and into the day rows, in one transaction, so that at every
-- commit the day rows are shard 0 summed by local day. `counter_zone` names the zone they are
-- kept in (none until the first fold); when the Rules' zone changes, the fold builds them
-- again from shard 0. A report reads the day rows and the hours not folded yet in one
-- statement, in any other zone the hours.
CREATE TABLE counter_zone (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    zone TEXT
);
INSERT INTO counter_zone (id, zone) VALUES (1, NULL);

CREATE TABLE message_days (
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    template TEXT NOT NULL,
    channel TEXT NOT NULL,
    language TEXT NOT NULL,
    sent BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    bounced_hard BIGINT NOT NULL DEFAULT 0,
    bounced_soft BIGINT NOT NULL DEFAULT 0,
    complained BIGINT NOT NULL DEFAULT 0,
    unsubscribed BIGINT NOT NULL DEFAULT 0,
    opened BIGINT NOT NULL DEFAULT 0,
    opens BIGINT NOT NULL DEFAULT 0,
    clicked BIGINT NOT NULL DEFAULT 0,
    clicks BIGINT NOT NULL DEFAULT 0,
    opens_automated BIGINT NOT NULL DEFAULT 0,
    clicks_automated BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day, step, version, template, channel, language)
);
CREATE INDEX message_days_template ON message_days (template, day);

CREATE TABLE handoff_days (
    queue TEXT NOT NULL,
    day BIGINT NOT NULL,
    member TEXT NOT NULL,
    fact TEXT NOT NULL,
    detail TEXT NOT NULL,
    n BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, day, member, fact, detail)
);

-- The rows not folded yet, found by what reports and the fold ask for.
CREATE INDEX message_counts_unfolded_campaign ON message_counts (campaign_id, hour) WHERE shard <> 0;
CREATE INDEX message_counts_unfolded_template ON message_counts (template, hour) WHERE shard <> 0;
CREATE INDEX handoff_counts_unfolded ON handoff_counts (queue, hour) WHERE shard <> 0;
DROP INDEX message_counts_unfolded;
