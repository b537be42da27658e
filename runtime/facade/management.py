"""Management from the facade: list, inspect, cancel, resume, restart and fork workflows."""

from __future__ import annotations

from typing import Any

from runtime import context, management
from runtime.errors import DBOSNonExistentWorkflowError
from runtime.facade.base import BACKEND, logger
from runtime.facade.queues import QueueCalls
from runtime.handles import WorkflowHandle
from runtime.status import StepInfo, WorkflowStatus


class ManagementCalls(QueueCalls):
    """Finding, listing and steering workflows."""

    @classmethod
    def list_workflows(
        cls,
        *,
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        start_time: management.TimeArg = None,
        end_time: management.TimeArg = None,
        name: str | None = None,
        app_version: str | None = None,
        queue_name: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
        load_output: bool = True,
    ) -> list[WorkflowStatus]:
        """Workflows matching every given filter (times: datetime, ISO 8601 or epoch ms)."""
        return management.list_workflows(
            cls._rt().sysdb,
            workflow_ids=workflow_ids,
            status=status,
            start_time=start_time,
            end_time=end_time,
            name=name,
            app_version=app_version,
            queue_name=queue_name,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
            load_input=load_input,
            load_output=load_output,
        )

    @classmethod
    def list_queued_workflows(
        cls,
        *,
        queue_name: str | None = None,
        status: str | list[str] | None = None,
        start_time: management.TimeArg = None,
        end_time: management.TimeArg = None,
        name: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
    ) -> list[WorkflowStatus]:
        """Workflows waiting in or running from a queue (ENQUEUED, or PENDING with a queue)."""
        return management.list_workflows(
            cls._rt().sysdb,
            queue_name=queue_name,
            status=status,
            start_time=start_time,
            end_time=end_time,
            name=name,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
            load_input=load_input,
            load_output=False,
            queued_only=True,
        )

    @classmethod
    def list_workflow_steps(cls, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, in order."""
        return management.list_steps(cls._rt().sysdb, workflow_id)

    @classmethod
    def cancel_workflow(cls, workflow_id: str) -> None:
        """Cancel: a running workflow stops before its next step; an enqueued one never starts."""
        cls._engine().cancel(workflow_id)

    @classmethod
    def resume_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """Continue a CANCELLED, ENQUEUED or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow (or a PENDING
        one whose process died) from its last completed step. One that came from a queue goes
        back to it, within the queue's limits; an ENQUEUED one starts now, bypassing its queue. A
        cancelled run still inside a step finishes that step first (a workflow never runs in two
        places). A running or finished workflow is left as it is, with a warning (fork a finished
        one to run it again from a step)."""
        rt = cls._rt()
        change = management.resume(rt.sysdb, workflow_id)
        if not change.changed:
            if change.missing:
                raise DBOSNonExistentWorkflowError(workflow_id)
            logger.warning("workflow %s not resumed: %s", workflow_id, change.reason)
        rt.dispatcher.wake()
        return WorkflowHandle(BACKEND, workflow_id)

    @classmethod
    def restart_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """A new execution of the workflow, with the same inputs and a new ID."""
        rt = cls._rt()
        new_id = management.restart(rt.sysdb, workflow_id)
        rt.dispatcher.wake()
        return WorkflowHandle(BACKEND, new_id)

    @classmethod
    def fork_workflow(
        cls, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        """A new workflow that keeps the recorded outcomes of steps before ``start_step`` and
        runs the rest anew (on executors of ``application_version``, default the original's)."""
        rt = cls._rt()
        with_id = context.take_assigned_workflow_id()
        new_id = management.fork(
            rt.sysdb,
            workflow_id,
            start_step,
            forked_workflow_id=with_id,
            application_version=application_version,
        )
        rt.dispatcher.wake()
        return WorkflowHandle(BACKEND, new_id)
