-- Deployed campaigns and every version of each. A version is the hash of the campaign's
-- canonical content; enrollments will reference (campaign_id, version), so old versions stay.
CREATE TABLE campaign_versions (
    campaign_id TEXT NOT NULL,
    version TEXT NOT NULL,
    number BIGINT NOT NULL,
    name TEXT NOT NULL,
    campaign_type TEXT NOT NULL,
    definition TEXT NOT NULL,
    source TEXT NOT NULL,
    file TEXT NOT NULL,
    deployed_at BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, version)
);

-- The current state of each campaign: which version runs, and whether it is active, paused
-- (no step runs; waits keep counting) or retired (no longer in the playbook).
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
