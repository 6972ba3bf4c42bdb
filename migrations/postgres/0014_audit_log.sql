-- The audit trail: each change made by hand (deploy, pause, enrollment, manual tag, handoff
-- decision, key, erasure, …), written in the same transaction as the change. `detail` is
-- JSON text; `at` is microseconds since the epoch.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX audit_log_by_kind ON audit_log (kind, id);
