-- Version 4: partitioned queues and delayed enqueues (DBOS's column names and status value).

-- The partition of a partitioned queue a workflow was enqueued on (SetEnqueueOptions
-- queue_partition_key); NULL on other queues. A partitioned queue's limits apply per partition.
ALTER TABLE dbos.workflow_status ADD COLUMN IF NOT EXISTS queue_partition_key text;
-- A DELAYED workflow is not dequeued before this epoch millisecond (SetEnqueueOptions
-- delay_seconds); dispatchers turn it ENQUEUED once it has passed.
ALTER TABLE dbos.workflow_status ADD COLUMN IF NOT EXISTS delay_until_epoch_ms bigint;

ALTER TABLE dbos.workflow_status DROP CONSTRAINT IF EXISTS workflow_status_status_check;
ALTER TABLE dbos.workflow_status ADD CONSTRAINT workflow_status_status_check CHECK (status IN (
    'PENDING', 'ENQUEUED', 'DELAYED', 'SUCCESS', 'ERROR', 'CANCELLED',
    'MAX_RECOVERY_ATTEMPTS_EXCEEDED'));

-- A deduplication ID is held while its workflow is delayed too.
DROP INDEX IF EXISTS dbos.workflow_status_dedup_idx;
CREATE UNIQUE INDEX IF NOT EXISTS workflow_status_dedup_idx
    ON dbos.workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('DELAYED', 'ENQUEUED', 'PENDING');

-- Dispatchers turn the DELAYED workflows whose delay has passed ENQUEUED: a small partial index.
CREATE INDEX IF NOT EXISTS workflow_status_delayed_idx
    ON dbos.workflow_status (delay_until_epoch_ms) WHERE status = 'DELAYED';

-- Dispatch of a partitioned queue: the partitions with queued work, then per partition its ENQUEUED
-- rows in priority then arrival order, its running (PENDING) rows, and its starts within a
-- rate-limit period.
CREATE INDEX IF NOT EXISTS workflow_status_partition_dispatch_idx
    ON dbos.workflow_status (queue_name, queue_partition_key, priority, created_at)
    WHERE status = 'ENQUEUED' AND queue_partition_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflow_status_partition_running_idx
    ON dbos.workflow_status (queue_name, queue_partition_key)
    WHERE status = 'PENDING' AND queue_partition_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflow_status_partition_started_idx
    ON dbos.workflow_status (queue_name, queue_partition_key, started_at_epoch_ms)
    WHERE queue_partition_key IS NOT NULL;

-- The executors view counts each application version's DELAYED workflows with its queued ones.
CREATE INDEX IF NOT EXISTS workflow_status_delayed_version_idx
    ON dbos.workflow_status (application_version) WHERE status = 'DELAYED';
