-- The application versions that launched processes registered, with DBOS's table and column
-- names. The newest version_timestamp is the "latest" version: launch registers its version
-- (a new name gets the current time), and set_latest_application_version moves a version's
-- timestamp to now. Times are epoch milliseconds, as in DBOS.
CREATE TABLE IF NOT EXISTS dbos.application_versions (
    version_id text PRIMARY KEY,
    version_name text NOT NULL UNIQUE,
    version_timestamp bigint NOT NULL,
    created_at bigint NOT NULL
);
-- get_latest_application_version reads the newest row.
CREATE INDEX IF NOT EXISTS application_versions_timestamp_idx
    ON dbos.application_versions (version_timestamp DESC);
-- The versions of the processes that ran before this table existed, so that listing them is
-- not empty after an upgrade; each at the time its first process started.
INSERT INTO dbos.application_versions (version_id, version_name, version_timestamp, created_at)
SELECT md5(application_version), application_version, min(started_at), min(started_at)
FROM dbos.executors
GROUP BY application_version
ON CONFLICT (version_name) DO NOTHING;
