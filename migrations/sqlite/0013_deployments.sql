-- Every deployment of the playbook: its files (the YAML and the templates, as a JSON array of
-- {path, text}), who deployed it, when, from where, and what it warned of. The latest one is
-- what `serve` runs; earlier ones are kept for rollback and for the record.
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployed_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    origin TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    files TEXT NOT NULL,
    warnings TEXT NOT NULL,
    report TEXT NOT NULL,
    restored_from BIGINT
);
