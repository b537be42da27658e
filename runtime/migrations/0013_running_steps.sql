-- Version 13: the steps each live process has been running for a while, published by its
-- heartbeat (runtime.running_steps), so that `dbos workflow steps`/`get` and
-- DBOSClient.list_workflow_steps show a step that is running now. A JSON array of
-- {"workflow_id", "function_id", "function_name", "started_at"} (epoch ms), or NULL when none;
-- read only for processes whose lease is current, so a killed process's steps vanish with it.
ALTER TABLE dbos.executors ADD COLUMN IF NOT EXISTS running_steps jsonb;
