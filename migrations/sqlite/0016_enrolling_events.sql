-- The event that enrolled a lead into an event-triggered campaign (the webinar registration),
-- kept for the enrollment's templates (`{{event.title}}`) and waits (`until: {event_property:
-- …}`). Written once, when the enrollment starts; erased with the lead.
CREATE TABLE enrolling_events (
    enrollment_id BIGINT PRIMARY KEY,
    lead_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    properties TEXT NOT NULL
);
CREATE INDEX enrolling_events_lead ON enrolling_events (lead_id);
