-- Version 3: workflows of configured instances.

-- An instance method's workflow records which configured instance it runs on: class_name holds
-- the instance's class (its @DBOS.dbos_class name) and config_name the DBOSConfiguredInstance's
-- config_name. The instance itself is not an input; a re-run (recovery, dequeue, resume, fork)
-- finds it again in the registry of the process by these two names. NULL for every other workflow.
ALTER TABLE dbos.workflow_status ADD COLUMN IF NOT EXISTS config_name text;
