-- Version 16: fewer index writes per workflow (issue 22). Every index entry a workflow's INSERT
-- and its final UPDATE make is WAL and CPU on the hot path: the final UPDATE changes `status`, so
-- it is never a HOT update and writes a new entry into every index whose predicate it meets.

-- One partial index on live work now serves what two did: recovery at launch (this executor's
-- PENDING workflows of this version: all three columns), takeover candidates (PENDING of a
-- version) and the executors/versions views (PENDING or ENQUEUED per version). It replaces
-- workflow_status_pending_idx (executor_id, application_version) WHERE PENDING and
-- workflow_status_live_version_idx (application_version, status) WHERE PENDING or ENQUEUED:
-- a start now writes one entry where it wrote two.
CREATE INDEX IF NOT EXISTS workflow_status_live_idx
    ON dbos.workflow_status (application_version, status, executor_id)
    WHERE status IN ('PENDING', 'ENQUEUED');
DROP INDEX IF EXISTS dbos.workflow_status_pending_idx;
DROP INDEX IF EXISTS dbos.workflow_status_live_version_idx;

-- Rate limiters count a queue's starts within their period (started_at_epoch_ms > since), which
-- only rows with a start time can meet: an enqueue (no start time yet) no longer writes an entry
-- that no limiter can read.
CREATE INDEX IF NOT EXISTS workflow_status_queue_started_at_idx
    ON dbos.workflow_status (queue_name, started_at_epoch_ms)
    WHERE queue_name IS NOT NULL AND started_at_epoch_ms IS NOT NULL;
DROP INDEX IF EXISTS dbos.workflow_status_queue_started_idx;
CREATE INDEX IF NOT EXISTS workflow_status_partition_started_at_idx
    ON dbos.workflow_status (queue_name, queue_partition_key, started_at_epoch_ms)
    WHERE queue_partition_key IS NOT NULL AND started_at_epoch_ms IS NOT NULL;
DROP INDEX IF EXISTS dbos.workflow_status_partition_started_idx;
