-- The lead store (SQLite). Leads use AUTOINCREMENT so that ids are never reused after an erasure.
-- The lead store: leads, behaviour events, tags, the score ledger, handoff requests,
-- API keys, idempotent requests and suppressions. Times are microseconds since the Unix epoch (UTC).

CREATE TABLE leads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE,
    external_id TEXT UNIQUE,
    first_name TEXT,
    last_name TEXT,
    title TEXT,
    company TEXT,
    industry TEXT,
    company_size TEXT,
    region TEXT,
    phone TEXT,
    timezone TEXT,
    source TEXT,
    persona TEXT,
    owner TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    stage TEXT NOT NULL DEFAULT 'new',
    score BIGINT NOT NULL DEFAULT 0,
    email_opt_out_at BIGINT,
    email_opt_out_source TEXT,
    wechat_opt_out_at BIGINT,
    wechat_opt_out_source TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_activity_at BIGINT,
    last_decay_at BIGINT
);
CREATE INDEX leads_stage ON leads (stage, id);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    lead_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    idempotency_key TEXT UNIQUE,
    source TEXT
);
CREATE INDEX events_lead ON events (lead_id, occurred_at);

CREATE TABLE lead_tags (
    lead_id BIGINT NOT NULL,
    tag TEXT NOT NULL,
    family TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (lead_id, tag)
);
CREATE INDEX lead_tags_tag ON lead_tags (tag, lead_id);

CREATE TABLE tag_changes (
    id INTEGER PRIMARY KEY,
    lead_id BIGINT NOT NULL,
    tag TEXT NOT NULL,
    family TEXT NOT NULL,
    added INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX tag_changes_lead ON tag_changes (lead_id, at);

CREATE TABLE score_changes (
    id INTEGER PRIMARY KEY,
    lead_id BIGINT NOT NULL,
    delta BIGINT NOT NULL,
    reason TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    rule TEXT,
    occurred_at BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX score_changes_lead ON score_changes (lead_id, at);
-- Cap windows are read per lead through score_changes_lead; a lead's ledger is short.

CREATE TABLE handoffs (
    id INTEGER PRIMARY KEY,
    lead_id BIGINT NOT NULL,
    queue TEXT NOT NULL,
    reason TEXT NOT NULL,
    priority INTEGER,
    origin TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'requested',
    created_at BIGINT NOT NULL
);
CREATE INDEX handoffs_lead ON handoffs (lead_id, created_at);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE idempotent_requests (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE suppressions (
    email_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
