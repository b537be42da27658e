"""Handles to workflows, returned by ``start_workflow`` and ``retrieve_workflow``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from runtime.status import WorkflowStatus

if TYPE_CHECKING:
    from runtime.dbos import DBOS

R = TypeVar("R")


class WorkflowHandle(Generic[R]):
    """A reference to one workflow: its ID, its status, and (waiting) its result."""

    def __init__(self, dbos: type[DBOS], workflow_id: str) -> None:
        self._dbos = dbos
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    def get_result(self) -> R:
        """Wait for the workflow to finish and return its result, or raise its error (as the same
        exception class when it can be imported). Inside a workflow, the outcome is recorded."""
        result: R = self._dbos._engine().get_result_in_workflow(self.workflow_id)
        return result

    def get_status(self) -> WorkflowStatus:
        """The workflow's current record."""
        status = self._dbos.get_workflow_status(self.workflow_id)
        if status is None:  # pragma: no cover - handles exist only for recorded workflows
            from runtime.errors import DBOSNonExistentWorkflowError

            raise DBOSNonExistentWorkflowError(self.workflow_id)
        return status

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"
