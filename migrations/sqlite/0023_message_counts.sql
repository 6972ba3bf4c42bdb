-- What became of the messages each campaign step sent, by the hour they were sent (UTC hours
-- since the epoch): a report by day or week in any time zone adds up whole hours, and every
-- figure of a row is about the same messages, so rates over delivered hold in every period.
-- Maintained in the transactions that record a send's outcome (sent, failed, skipped, refused
-- by the relay) and that ingest the events naming a message (opens, clicks, bounces,
-- complaints, unsubscribes), never by scanning. `opened`/`clicked` count a message's first
-- human open or click, `opens`/`clicks` every human one, `*_automated` those of mail proxies and
-- link scanners. A message refused by the relay counts as sent and hard-bounced. Writers add
-- to one of a few shards; readers sum them.
ALTER TABLE messages ADD COLUMN language TEXT;
CREATE TABLE message_counts (
    campaign_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    step TEXT NOT NULL,
    version TEXT NOT NULL,
    template TEXT NOT NULL,
    channel TEXT NOT NULL,
    language TEXT NOT NULL,
    shard BIGINT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    bounced_hard INTEGER NOT NULL DEFAULT 0,
    bounced_soft INTEGER NOT NULL DEFAULT 0,
    complained INTEGER NOT NULL DEFAULT 0,
    unsubscribed INTEGER NOT NULL DEFAULT 0,
    opened INTEGER NOT NULL DEFAULT 0,
    opens INTEGER NOT NULL DEFAULT 0,
    clicked INTEGER NOT NULL DEFAULT 0,
    clicks INTEGER NOT NULL DEFAULT 0,
    opens_automated INTEGER NOT NULL DEFAULT 0,
    clicks_automated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour, step, version, template, channel, language, shard)
);
CREATE INDEX message_counts_template ON message_counts (template, hour);

-- Backfill. A message's language is its lead's `language` attribute (English when it starts
-- with "en", else Chinese, the shipped default); a message never sent is counted at the hour
-- it was queued; one refused by the relay is known by its bounce event (`bounce:ID`). An
-- event counts for a message of its own lead only.
UPDATE messages SET language = CASE WHEN lower(l.attributes->>'$.language') LIKE 'en%' THEN 'en' ELSE 'zh' END
FROM leads l WHERE l.id = messages.lead_id AND messages.status <> 'pending';
INSERT INTO message_counts (campaign_id, hour, step, version, template, channel, language, shard,
    sent, failed, skipped, bounced_hard, bounced_soft, complained, unsubscribed,
    opened, opens, clicked, clicks, opens_automated, clicks_automated)
SELECT campaign_id, hour, step, version, template, channel, language, 0,
    SUM(sent), SUM(failed), SUM(skipped), SUM(bounced_hard), SUM(bounced_soft), SUM(complained), 0,
    SUM(opened), SUM(opens), SUM(clicked), SUM(clicks), SUM(opens_automated), SUM(clicks_automated)
FROM (
    SELECT m.campaign_id, COALESCE(m.sent_at, m.created_at) / 3600000000 AS hour, m.step, m.version,
        m.template, m.channel, COALESCE(m.language, 'zh') AS language,
        CASE WHEN m.status = 'sent' OR r.refused THEN 1 ELSE 0 END AS sent,
        CASE WHEN m.status = 'failed' AND NOT r.refused THEN 1 ELSE 0 END AS failed,
        CASE WHEN m.status = 'skipped' THEN 1 ELSE 0 END AS skipped,
        CASE WHEN r.refused THEN 1 ELSE 0 END AS bounced_hard,
        0 AS bounced_soft, 0 AS complained,
        CASE WHEN m.opened_at IS NOT NULL THEN 1 ELSE 0 END AS opened, 0 AS opens,
        CASE WHEN m.clicked_at IS NOT NULL THEN 1 ELSE 0 END AS clicked, 0 AS clicks,
        0 AS opens_automated, 0 AS clicks_automated
    FROM messages m
    JOIN (SELECT id, status = 'failed'
        AND EXISTS (SELECT 1 FROM events WHERE idempotency_key = 'bounce:' || messages.id) AS refused
        FROM messages) r ON r.id = m.id
    WHERE m.status <> 'pending'
    UNION ALL
    SELECT m.campaign_id, m.sent_at / 3600000000, m.step, m.version, m.template, m.channel,
        COALESCE(m.language, 'zh'), 0, 0, 0,
        CASE WHEN e.type = 'email_bounced' AND lower(e.properties->>'$.kind') = 'hard' THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_bounced' AND lower(e.properties->>'$.kind') = 'soft' THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_complained' THEN 1 ELSE 0 END,
        0,
        CASE WHEN e.type = 'email_opened' AND NOT e.automated THEN 1 ELSE 0 END,
        0,
        CASE WHEN e.type = 'email_clicked' AND NOT e.automated THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_opened' AND e.automated THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_clicked' AND e.automated THEN 1 ELSE 0 END
    FROM (SELECT lead_id, type, properties, COALESCE(properties->>'$.automated', 0) IN (1, 'true') AS automated,
              CAST(properties->>'$.message_id' AS INTEGER) AS message_id
          FROM events
          WHERE type IN ('email_opened', 'email_clicked', 'email_bounced', 'email_complained')) e
    JOIN messages m ON m.id = e.message_id AND m.lead_id = e.lead_id
    WHERE m.sent_at IS NOT NULL
) x
GROUP BY campaign_id, hour, step, version, template, channel, language;
