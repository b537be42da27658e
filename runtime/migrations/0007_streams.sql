-- Version 7: streams (DBOS.write_stream / close_stream / read_stream). Same table and column names
-- as DBOS's own `streams` table, so SQL written against one reads the other.

-- One row per value written to a stream (workflow, key), numbered from 0 in write order by
-- "offset". A closed stream ends with DBOS's close marker, the JSON string
-- "__DBOS_STREAM_CLOSED__". function_id is the step that wrote the value (the write itself, from
-- a workflow; the enclosing step, from a step): a fork copies the values written before its
-- start step. Deleting the workflow deletes its streams.
CREATE TABLE IF NOT EXISTS dbos.streams (
    workflow_uuid text NOT NULL
        REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    key           text NOT NULL,
    value         text NOT NULL,
    "offset"      integer NOT NULL,
    function_id   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_uuid, key, "offset")
);

-- Readers wait for the next value by LISTENing (one connection per process); the payload says
-- which stream. Sent on commit, so a reader woken by it finds the row.
CREATE OR REPLACE FUNCTION dbos.streams_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dbos.notify_if_short('dbos_streams_channel', NEW.workflow_uuid || '::' || NEW.key);
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS dbos_streams_trigger ON dbos.streams;
CREATE TRIGGER dbos_streams_trigger
    AFTER INSERT ON dbos.streams
    FOR EACH ROW EXECUTE FUNCTION dbos.streams_notify();
