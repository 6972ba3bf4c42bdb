-- Notes and call outcomes an SDR writes about a lead (alone, or with a handoff decision), and
-- the value of a converted handoff. `call_outcome` is null for a note without a call;
-- `follow_up_on` is a date (`2026-12-10`); times are microseconds since the epoch. Erased with
-- the lead.
CREATE TABLE lead_notes (
    id BIGSERIAL PRIMARY KEY,
    lead_id BIGINT NOT NULL,
    handoff_id BIGINT,
    decision TEXT,
    text TEXT,
    call_outcome TEXT,
    follow_up_on TEXT,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX lead_notes_lead ON lead_notes (lead_id, created_at, id);
-- Follow-ups due, per author, for the SDR's inbox.
CREATE INDEX lead_notes_follow_up ON lead_notes (author, follow_up_on) WHERE follow_up_on IS NOT NULL;

-- A conversion's value in hundredths of the company's currency.
ALTER TABLE handoffs ADD COLUMN amount_cents BIGINT;
