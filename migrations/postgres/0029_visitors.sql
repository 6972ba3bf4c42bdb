-- Visitors of the customer's sites, known by the first-party id the tracking script keeps
-- (`POST /t/events`), and what they did before anyone knew who they were. A visitor becomes
-- known when the site says who it is (`identify`, later a form): its page views are then
-- recorded as the lead's events and leave `visitor_events`; later ones go to the lead at once.
CREATE TABLE visitors (
    id TEXT PRIMARY KEY,
    lead_id BIGINT,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX visitors_lead ON visitors (lead_id) WHERE lead_id IS NOT NULL;

CREATE TABLE visitor_events (
    id BIGSERIAL PRIMARY KEY,
    visitor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    properties TEXT NOT NULL,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX visitor_events_visitor ON visitor_events (visitor_id, id);
