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
    PRIMARY KEY (campaign_id, hour, step, version, template, channel, language, shard)
);
CREATE INDEX message_counts_template ON message_counts (template, hour);

-- Backfill. A message's language is its lead's `language` attribute (English when it starts
-- with "en", else Chinese, the shipped default); a message never sent is counted at the hour
-- it was queued; one refused by the relay is known by its bounce event (`bounce:ID`). An
-- event counts for a message of its own lead only.
UPDATE messages m SET language = CASE WHEN lower(l.attributes->>'language') LIKE 'en%' THEN 'en' ELSE 'zh' END
FROM leads l WHERE l.id = m.lead_id AND m.status <> 'pending';
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
    CROSS JOIN LATERAL (SELECT m.status = 'failed'
        AND EXISTS (SELECT 1 FROM events WHERE idempotency_key = 'bounce:' || m.id) AS refused) r
    WHERE m.status <> 'pending'
    UNION ALL
    SELECT m.campaign_id, m.sent_at / 3600000000, m.step, m.version, m.template, m.channel,
        COALESCE(m.language, 'zh'), 0, 0, 0,
        CASE WHEN e.type = 'email_bounced' AND lower(e.properties->>'kind') = 'hard' THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_bounced' AND lower(e.properties->>'kind') = 'soft' THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_complained' THEN 1 ELSE 0 END,
        0,
        CASE WHEN e.type = 'email_opened' AND NOT e.automated THEN 1 ELSE 0 END,
        0,
        CASE WHEN e.type = 'email_clicked' AND NOT e.automated THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_opened' AND e.automated THEN 1 ELSE 0 END,
        CASE WHEN e.type = 'email_clicked' AND e.automated THEN 1 ELSE 0 END
    FROM (SELECT lead_id, type, properties, COALESCE(properties->>'automated', '') = 'true' AS automated,
              CASE WHEN properties->>'message_id' ~ '^[0-9]{1,18}$'
                  THEN (properties->>'message_id')::bigint END AS message_id
          FROM events
          WHERE type IN ('email_opened', 'email_clicked', 'email_bounced', 'email_complained')) e
    JOIN messages m ON m.id = e.message_id AND m.lead_id = e.lead_id
    WHERE m.sent_at IS NOT NULL
) x
GROUP BY campaign_id, hour, step, version, template, channel, language;
