-- Version 11: which managed schedule enqueued a workflow (DBOS's column), so that
-- list_workflows(schedule_name=...) and `dbos workflow list --schedule NAME` find a schedule's
-- runs (its ticks, backfills and triggers) without parsing workflow IDs. NULL for every other
-- workflow, so the index is partial and costs nothing for them.
ALTER TABLE dbos.workflow_status ADD COLUMN IF NOT EXISTS schedule_name text;
CREATE INDEX IF NOT EXISTS workflow_status_schedule_name_idx
    ON dbos.workflow_status (schedule_name, created_at) WHERE schedule_name IS NOT NULL;
