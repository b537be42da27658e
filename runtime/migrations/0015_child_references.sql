-- Version 15: garbage collection deletes a workflow only once no other record refers to it as a
-- child: neither its parent (parent_workflow_id) nor a step of another workflow
-- (operation_outputs.child_workflow_id: the parent's step that started it, and the copy of that
-- step in every fork of the parent). Finding those steps by child needs this index; partial,
-- because most steps start no child.
CREATE INDEX IF NOT EXISTS operation_outputs_child_idx
    ON dbos.operation_outputs (child_workflow_id) WHERE child_workflow_id IS NOT NULL;
