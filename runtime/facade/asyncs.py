"""The ``*_async`` twins of the management calls, as ``DBOS`` has them: each runs its sync twin
(``runtime.facade.management``) in a worker thread; the ones that return a handle return a
``WorkflowHandleAsync``."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.asyncs import twin
from runtime.facade.base import BACKEND
from runtime.facade.management import ManagementCalls
from runtime.handles import WorkflowHandleAsync


class AsyncManagementCalls(ManagementCalls):
    """Management for asyncio code. The twins are bound to ``ManagementCalls``: its state (the
    launched runtime) lives on ``FacadeBase``, so they act on the same runtime as ``DBOS``."""

    get_workflow_status_async = staticmethod(twin(ManagementCalls.get_workflow_status))
    list_workflows_async = staticmethod(twin(ManagementCalls.list_workflows))
    list_queued_workflows_async = staticmethod(twin(ManagementCalls.list_queued_workflows))
    list_workflow_steps_async = staticmethod(twin(ManagementCalls.list_workflow_steps))
    cancel_workflow_async = staticmethod(twin(ManagementCalls.cancel_workflow))
    cancel_workflows_async = staticmethod(twin(ManagementCalls.cancel_workflows))
    delete_workflow_async = staticmethod(twin(ManagementCalls.delete_workflow))
    delete_workflows_async = staticmethod(twin(ManagementCalls.delete_workflows))

    @classmethod
    async def get_result_async(cls, workflow_id: str) -> Any:
        """``get_result`` for asyncio code: awaits without holding a thread."""
        return await cls._engine().results.get_result_async(workflow_id)

    @classmethod
    async def resume_workflow_async(cls, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """``resume_workflow`` for asyncio code."""
        handle = await asyncio.to_thread(ManagementCalls.resume_workflow, workflow_id)
        return WorkflowHandleAsync(BACKEND, handle.workflow_id)

    @classmethod
    async def resume_workflows_async(
        cls, workflow_ids: list[str]
    ) -> list[WorkflowHandleAsync[Any]]:
        """``resume_workflows`` for asyncio code."""
        handles = await asyncio.to_thread(ManagementCalls.resume_workflows, workflow_ids)
        return [WorkflowHandleAsync(BACKEND, h.workflow_id) for h in handles]

    @classmethod
    async def restart_workflow_async(cls, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """``restart_workflow`` for asyncio code."""
        handle = await asyncio.to_thread(ManagementCalls.restart_workflow, workflow_id)
        return WorkflowHandleAsync(BACKEND, handle.workflow_id)

    @classmethod
    async def fork_workflow_async(
        cls,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> WorkflowHandleAsync[Any]:
        """``fork_workflow`` for asyncio code (a ``SetWorkflowID`` around the call names the
        fork here too)."""
        handle = await asyncio.to_thread(
            ManagementCalls.fork_workflow,
            workflow_id,
            start_step,
            application_version=application_version,
            timeout_seconds=timeout_seconds,
        )
        return WorkflowHandleAsync(BACKEND, handle.workflow_id)
