-- Version 9: workflow attributes and debouncing (DBOS's column names).

-- Custom key/values attached to a workflow at its start (SetWorkflowAttributes, the enqueue
-- option "attributes") and replaced by update_workflow_attributes; NULL when it has none.
ALTER TABLE dbos.workflow_status ADD COLUMN IF NOT EXISTS attributes jsonb;
-- list_workflows(attributes={...}) is a containment filter (attributes @> '{...}'), which a GIN
-- index answers however many workflows there are. jsonb_path_ops: containment is the only
-- operator asked of it, and its index is smaller and faster for that than the default class.
-- Partial: most workflows have no attributes, and @> never matches NULL.
CREATE INDEX IF NOT EXISTS workflow_status_attributes_idx
    ON dbos.workflow_status USING gin (attributes jsonb_path_ops) WHERE attributes IS NOT NULL;

-- A debounced workflow (Debouncer.debounce) waits DELAYED under its debounce key (held as its
-- deduplication ID); each later call with the key moves delay_until_epoch_ms on and replaces its
-- inputs, but never past this cap (now + debounce_timeout_sec at its first call; NULL: no cap).
ALTER TABLE dbos.workflow_status ADD COLUMN IF NOT EXISTS debounce_deadline_epoch_ms bigint;
-- Whether deduplication_id is a debounce key: released (set NULL) when the workflow leaves
-- DELAYED, so that a call with the same key after that starts a new workflow.
ALTER TABLE dbos.workflow_status ADD COLUMN IF NOT EXISTS is_debounced boolean NOT NULL DEFAULT false;
