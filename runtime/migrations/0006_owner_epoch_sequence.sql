-- Owner epochs (the fencing tokens of checkpoint writes) come from one sequence for the whole
-- table instead of counting from 1 per row. A workflow deleted while a process still runs it and
-- then started again under the same ID (delete_workflows, then SetWorkflowID) is a new row: had it
-- counted from 1 again, the old runner's epoch could match the new row's and its writes pass the
-- fence. Drawn from one sequence, an epoch is never held by two incarnations; within a row it
-- still only grows, so a token's epoch keeps ordering a workflow's runners.
CREATE SEQUENCE IF NOT EXISTS dbos.owner_epoch_seq;
SELECT setval('dbos.owner_epoch_seq'::regclass,
              coalesce((SELECT max(owner_epoch) FROM dbos.workflow_status), 0) + 1, false);
ALTER TABLE dbos.workflow_status
    ALTER COLUMN owner_epoch SET DEFAULT nextval('dbos.owner_epoch_seq'::regclass);
