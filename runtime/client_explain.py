"""``DBOSClient.explain_workflow``: why a workflow is where it is (`dbos workflow why`). A part of
``DBOSClient`` of its own, so that the client class stays within its size limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.asyncs import twin
from runtime.context import validate_workflow_id
from runtime.errors import DBOSNonExistentWorkflowError
from runtime.system_db import SystemDatabase

if TYPE_CHECKING:
    from runtime.explain import WorkflowExplanation


class ClientExplainCalls:
    """Explanations through a client's system database (``self.sysdb``)."""

    sysdb: SystemDatabase

    def explain_workflow(self, workflow_id: str) -> WorkflowExplanation:
        """Why the workflow is where it is, from the database alone: a stable ``reason`` code,
        a one-sentence ``summary`` (times in UTC), the ``facts`` behind it as (label, value)
        pairs, the `dbos` ``commands`` that would move it, and the ``cause`` (the explanation of
        the child workflow it waits on, recursively). ``to_json()`` gives all of it as a dict.

        Raises:
            DBOSException: ``workflow_id`` is not a valid workflow ID.
            DBOSNonExistentWorkflowError: no workflow has that ID.
        """
        from runtime.explain import explain  # here: only `why` pays for its module (~6 ms)

        validate_workflow_id(workflow_id)
        found = explain(self.sysdb, workflow_id)
        if found is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return found

    explain_workflow_async = twin(explain_workflow)
