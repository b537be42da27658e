-- Managed schedules (DBOS.create_schedule): stored here, not in code, so that every executor sees
-- them and a schedule created, paused or deleted by one process (or by a DBOSClient) takes effect
-- in all. The table and its columns are DBOS's workflow_schedules, later columns included.
-- schedule is the cron expression; status is ACTIVE or PAUSED; context is the JSON (see
-- runtime/serialization.py) of the value every run receives; last_fired_at is the ISO 8601 time of
-- the last tick fired (the start of an automatic backfill); cron_timezone is an IANA zone name
-- (NULL: UTC); queue_name is the queue the ticks' workflows are enqueued on (NULL: the internal one).
CREATE TABLE IF NOT EXISTS dbos.workflow_schedules (
    schedule_id TEXT PRIMARY KEY,
    schedule_name TEXT NOT NULL UNIQUE,
    workflow_name TEXT NOT NULL,
    workflow_class_name TEXT,
    schedule TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ACTIVE',
    context TEXT NOT NULL,
    last_fired_at TEXT DEFAULT NULL,
    automatic_backfill BOOLEAN NOT NULL DEFAULT FALSE,
    cron_timezone TEXT DEFAULT NULL,
    queue_name TEXT DEFAULT NULL
);
