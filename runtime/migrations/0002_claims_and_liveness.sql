-- Version 2: ownership that survives operators, and executor rows that tell the truth.

-- A cancelled (or cancelled then resumed) workflow keeps its owner_process until its runner has
-- really stopped and released it; until then it still holds its queue slot, and no one else may
-- claim it. Queue dispatch counts these held slots, and executors release the rows of processes
-- that died before releasing.
CREATE INDEX IF NOT EXISTS workflow_status_held_idx
    ON dbos.workflow_status (owner_process, queue_name)
    WHERE owner_process IS NOT NULL AND status IN ('CANCELLED', 'ENQUEUED');

-- The executors view counts the PENDING workflows each process owns.
-- (workflow_status_owner_process_idx, from version 1, serves it.)

-- Which operating-system process an executor row is, precise enough for a process on the same host
-- to tell that it is gone (its pid no longer runs, or runs another program): Linux boot ID, PID
-- namespace, pid and the process's start time in clock ticks. NULL where the OS does not say.
ALTER TABLE dbos.executors ADD COLUMN IF NOT EXISTS process_identity text;
-- Set when another process found this one gone without stopping (killed): it is shown DEAD, not
-- STOPPED, although stopped_at is set so that its workflows are taken over at once.
ALTER TABLE dbos.executors ADD COLUMN IF NOT EXISTS found_gone boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS executors_hostname_idx ON dbos.executors (hostname)
    WHERE stopped_at IS NULL;

-- A NOTIFY payload of 8000 bytes or more is an error, and a trigger's error aborts the statement
-- that fired it: one over-long identifier made the shared deadline sweep fail for every workflow.
-- Identifiers are capped now; and a wake-up too long to send is not sent (waiters also poll).
CREATE OR REPLACE FUNCTION dbos.notify_if_short(channel text, payload text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(payload) < 8000 THEN
        PERFORM pg_notify(channel, payload);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION dbos.notifications_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dbos.notify_if_short('dbos_notifications_channel',
                                 NEW.destination_uuid || '::' || coalesce(NEW.topic, ''));
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION dbos.workflow_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dbos.notify_if_short('dbos_workflow_events_channel',
                                 NEW.workflow_uuid || '::' || NEW.key);
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION dbos.workflow_status_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'CANCELLED' THEN
        PERFORM dbos.notify_if_short('dbos_workflow_cancel_channel', NEW.workflow_uuid);
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION dbos.queue_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dbos.notify_if_short('dbos_queue_channel', NEW.queue_name);
    RETURN NEW;
END;
$$;
