-- The journey log, one row per move: the steps an enrollment took in one transaction (say a
-- wait ending, a branch, a send and the next wait), in order, as a JSON array of
-- [step, outcome, detail] (text: written by the engine, parsed only when read). A move used to
-- be three or four rows, each with its index entries; as one row it costs about a third as
-- much to write (4,000 lines in 14 ms as rows, the same 1,000 moves in 4 ms as one row each).
-- The view `journey` reads it back a line per step, with an id that keeps the lines' order
-- (the move's id × 2^20 + the line's place in it).
CREATE TABLE journey_moves (
    id BIGSERIAL PRIMARY KEY,
    enrollment_id BIGINT NOT NULL,
    lead_id BIGINT NOT NULL,
    campaign_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    steps TEXT NOT NULL
);
INSERT INTO journey_moves (id, enrollment_id, lead_id, campaign_id, at, steps)
SELECT id, enrollment_id, lead_id, campaign_id, at, json_build_array(json_build_array(step, outcome, detail))::text FROM journey;
SELECT setval(pg_get_serial_sequence('journey_moves', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM journey_moves;
DROP TABLE journey;
CREATE INDEX journey_moves_lead ON journey_moves (lead_id, at);
CREATE VIEW journey AS
SELECT m.id * 1048576 + s.n - 1 AS id, m.enrollment_id, m.lead_id, m.campaign_id,
       s.e ->> 0 AS step, s.e ->> 1 AS outcome, s.e ->> 2 AS detail, m.at
FROM journey_moves m CROSS JOIN LATERAL json_array_elements(m.steps::json) WITH ORDINALITY AS s(e, n);
