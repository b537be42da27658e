-- Version 3: indexes for DBOS 2.x's list_workflows filters (forked_from, executor_id,
-- workflow_id_prefix), so that each is answered from an index however many workflows there are.

-- "The forks of X", and was_forked_from (does any fork name this workflow?). Few rows are forks.
CREATE INDEX IF NOT EXISTS workflow_status_forked_from_idx
    ON dbos.workflow_status (forked_from, created_at) WHERE forked_from IS NOT NULL;
-- The workflows one executor ran, in the listing's order.
CREATE INDEX IF NOT EXISTS workflow_status_executor_created_idx
    ON dbos.workflow_status (executor_id, created_at);
-- workflow_id_prefix is a LIKE 'prefix%'; the primary key's index serves that only under the C
-- collation, this one under any.
CREATE INDEX IF NOT EXISTS workflow_status_id_pattern_idx
    ON dbos.workflow_status (workflow_uuid text_pattern_ops);
