-- The system tables, version 1 (the baseline). Applied by `dbos migrate` and by DBOS.launch() under an
-- advisory lock; later changes arrive as numbered files in runtime/migrations/, never as edits here.
-- Table and key column names follow DBOS's own system tables (see spec/SCHEMA.md); times are epoch
-- milliseconds (bigint) as in DBOS, so SQL written against one works on the other.

CREATE SCHEMA IF NOT EXISTS dbos;

CREATE TABLE IF NOT EXISTS dbos.schema_version (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dbos.workflow_status (
    workflow_uuid             text PRIMARY KEY,
    status                    text NOT NULL
        CONSTRAINT workflow_status_status_check CHECK (status IN (
            'PENDING', 'ENQUEUED', 'SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')),
    name                      text NOT NULL,
    class_name                text,
    inputs                    text NOT NULL,                 -- JSON {"args": [...], "kwargs": {...}}
    output                    text,                          -- JSON
    error                     text,                          -- JSON {"type", "module", "message", "args"}
    executor_id               text,
    application_version       text,
    queue_name                text,
    priority                  integer NOT NULL DEFAULT 0,
    deduplication_id          text,
    recovery_attempts         integer NOT NULL DEFAULT 0,
    max_recovery_attempts     integer,
    workflow_timeout_ms       bigint,
    workflow_deadline_epoch_ms bigint,
    parent_workflow_id        text,
    forked_from               text,
    -- Fencing: every (re)claim of the workflow by a runner increments the epoch, and every checkpoint
    -- write is conditional on the epoch its runner holds, so a runner that lost ownership records nothing.
    owner_epoch               bigint NOT NULL DEFAULT 1,
    -- The process (dbos.executors.process_id) running it while PENDING: a workflow whose process
    -- is dead is taken over by a live one, whatever executor IDs the processes share.
    owner_process             text,
    created_at                bigint NOT NULL DEFAULT (extract(epoch FROM now()) * 1000)::bigint,
    updated_at                bigint NOT NULL DEFAULT (extract(epoch FROM now()) * 1000)::bigint,
    started_at_epoch_ms       bigint,
    completed_at_epoch_ms     bigint
);

-- `dbos workflow list` sorts by creation time and filters on these columns.
CREATE INDEX IF NOT EXISTS workflow_status_created_at_idx
    ON dbos.workflow_status (created_at);
CREATE INDEX IF NOT EXISTS workflow_status_status_created_idx
    ON dbos.workflow_status (status, created_at);
CREATE INDEX IF NOT EXISTS workflow_status_name_created_idx
    ON dbos.workflow_status (name, created_at);
CREATE INDEX IF NOT EXISTS workflow_status_app_version_created_idx
    ON dbos.workflow_status (application_version, created_at);
CREATE INDEX IF NOT EXISTS workflow_status_parent_idx
    ON dbos.workflow_status (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;
-- Recovery scans the PENDING workflows of one executor; a partial index keeps that scan small however
-- many finished workflows the table holds.
CREATE INDEX IF NOT EXISTS workflow_status_pending_idx
    ON dbos.workflow_status (executor_id, application_version) WHERE status = 'PENDING';
-- A process looks for its own PENDING workflows that it is not running (a claim whose reply was
-- lost in a connection failure).
CREATE INDEX IF NOT EXISTS workflow_status_owner_process_idx
    ON dbos.workflow_status (owner_process) WHERE status = 'PENDING';
-- The executors view and takeover look at the live work of each application version.
CREATE INDEX IF NOT EXISTS workflow_status_live_version_idx
    ON dbos.workflow_status (application_version, status) WHERE status IN ('PENDING', 'ENQUEUED');
-- Queue dispatch claims ENQUEUED rows of one queue in priority then arrival order, and counts the
-- running (PENDING) rows of that queue for concurrency limits.
CREATE INDEX IF NOT EXISTS workflow_status_queue_dispatch_idx
    ON dbos.workflow_status (queue_name, priority, created_at)
    WHERE status = 'ENQUEUED';
CREATE INDEX IF NOT EXISTS workflow_status_queue_running_idx
    ON dbos.workflow_status (queue_name, executor_id)
    WHERE status = 'PENDING' AND queue_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflow_status_queue_created_idx
    ON dbos.workflow_status (queue_name, created_at) WHERE queue_name IS NOT NULL;
-- Rate limiters count a queue's starts within their period.
CREATE INDEX IF NOT EXISTS workflow_status_queue_started_idx
    ON dbos.workflow_status (queue_name, started_at_epoch_ms) WHERE queue_name IS NOT NULL;
-- The deadline sweep looks only at live workflows that have a deadline.
CREATE INDEX IF NOT EXISTS workflow_status_deadline_idx
    ON dbos.workflow_status (workflow_deadline_epoch_ms)
    WHERE workflow_deadline_epoch_ms IS NOT NULL AND status IN ('PENDING', 'ENQUEUED');
-- A deduplication ID is unique within its queue while the workflow holding it is queued or running.
CREATE UNIQUE INDEX IF NOT EXISTS workflow_status_dedup_idx
    ON dbos.workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

CREATE TABLE IF NOT EXISTS dbos.operation_outputs (
    workflow_uuid         text NOT NULL
        REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    function_id           integer NOT NULL,
    function_name         text NOT NULL,
    output                text,
    error                 text,
    child_workflow_id     text,
    started_at_epoch_ms   bigint,
    completed_at_epoch_ms bigint,
    PRIMARY KEY (workflow_uuid, function_id)
);

CREATE TABLE IF NOT EXISTS dbos.notifications (
    message_uuid        text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    destination_uuid    text NOT NULL
        REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    topic               text,
    message             text NOT NULL,
    created_at_epoch_ms bigint NOT NULL DEFAULT (extract(epoch FROM now()) * 1000)::bigint,
    -- Arrival order within (destination, topic); created_at alone can tie within a millisecond.
    seq                 bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS notifications_destination_topic_idx
    ON dbos.notifications (destination_uuid, topic, seq);

-- Sends from outside a workflow with an idempotency key: the key is kept after the message is
-- consumed, so a retried send never delivers twice.
CREATE TABLE IF NOT EXISTS dbos.idempotent_sends (
    destination_uuid    text NOT NULL
        REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    idempotency_key     text NOT NULL,
    created_at_epoch_ms bigint NOT NULL DEFAULT (extract(epoch FROM now()) * 1000)::bigint,
    PRIMARY KEY (destination_uuid, idempotency_key)
);

CREATE TABLE IF NOT EXISTS dbos.workflow_events (
    workflow_uuid text NOT NULL
        REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    key           text NOT NULL,
    value         text NOT NULL,
    PRIMARY KEY (workflow_uuid, key)
);

-- One row per launched process. A process heartbeats its row; an executor ID none of whose
-- processes has heartbeated within its lease (or all of which stopped cleanly) is dead, and live
-- executors of the same application version take over its PENDING workflows.
CREATE TABLE IF NOT EXISTS dbos.executors (
    process_id          text PRIMARY KEY,          -- unique per process, chosen at launch
    executor_id         text NOT NULL,
    hostname            text NOT NULL,
    pid                 integer NOT NULL,
    application_version text NOT NULL,
    lease_ms            bigint NOT NULL,
    started_at          bigint NOT NULL,
    last_heartbeat_at   bigint NOT NULL,
    stopped_at          bigint                     -- set by a clean shutdown
);
CREATE INDEX IF NOT EXISTS executors_executor_id_idx ON dbos.executors (executor_id);

-- The queues executors declare, with their limits (which live in the application's code), so the
-- CLI and the dashboard can show them without importing the application.
CREATE TABLE IF NOT EXISTS dbos.queue_config (
    queue_name          text PRIMARY KEY,
    concurrency         integer,
    worker_concurrency  integer,
    limit_count         integer,
    limit_period_s      double precision,
    priority_enabled    boolean NOT NULL DEFAULT false,
    application_version text,
    updated_at          bigint NOT NULL
);

-- Wake-ups. A waiting recv or get_event LISTENs once per process; the payload says whom to wake.
CREATE OR REPLACE FUNCTION dbos.notifications_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dbos_notifications_channel',
                      NEW.destination_uuid || '::' || coalesce(NEW.topic, ''));
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION dbos.workflow_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dbos_workflow_events_channel', NEW.workflow_uuid || '::' || NEW.key);
    RETURN NEW;
END;
$$;

-- Cancellation written by any process (the CLI included) reaches running executors without a query
-- per step: they LISTEN and flip an in-memory flag; the checkpoint write stays the authority.
CREATE OR REPLACE FUNCTION dbos.workflow_status_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'CANCELLED' THEN
        PERFORM pg_notify('dbos_workflow_cancel_channel', NEW.workflow_uuid);
    END IF;
    RETURN NEW;
END;
$$;

-- Queue dispatchers wake when work is enqueued or when a queued workflow stops running (a slot
-- frees), instead of waiting for their polling interval.
CREATE OR REPLACE FUNCTION dbos.queue_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dbos_queue_channel', NEW.queue_name);
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS dbos_queue_enqueue_trigger ON dbos.workflow_status;
CREATE TRIGGER dbos_queue_enqueue_trigger
    AFTER INSERT ON dbos.workflow_status
    FOR EACH ROW WHEN (NEW.queue_name IS NOT NULL AND NEW.status = 'ENQUEUED')
    EXECUTE FUNCTION dbos.queue_notify();

DROP TRIGGER IF EXISTS dbos_queue_status_trigger ON dbos.workflow_status;
CREATE TRIGGER dbos_queue_status_trigger
    AFTER UPDATE OF status ON dbos.workflow_status
    FOR EACH ROW WHEN (NEW.queue_name IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
                       AND (NEW.status = 'ENQUEUED' OR OLD.status = 'PENDING'))
    EXECUTE FUNCTION dbos.queue_notify();

DROP TRIGGER IF EXISTS dbos_notifications_trigger ON dbos.notifications;
CREATE TRIGGER dbos_notifications_trigger
    AFTER INSERT ON dbos.notifications
    FOR EACH ROW EXECUTE FUNCTION dbos.notifications_notify();

DROP TRIGGER IF EXISTS dbos_workflow_events_trigger ON dbos.workflow_events;
CREATE TRIGGER dbos_workflow_events_trigger
    AFTER INSERT OR UPDATE ON dbos.workflow_events
    FOR EACH ROW EXECUTE FUNCTION dbos.workflow_events_notify();

DROP TRIGGER IF EXISTS dbos_workflow_status_cancel_trigger ON dbos.workflow_status;
CREATE TRIGGER dbos_workflow_status_cancel_trigger
    AFTER UPDATE OF status ON dbos.workflow_status
    FOR EACH ROW WHEN (NEW.status = 'CANCELLED' AND OLD.status IS DISTINCT FROM 'CANCELLED')
    EXECUTE FUNCTION dbos.workflow_status_notify();
