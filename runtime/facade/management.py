"""Management from the facade: list, inspect, cancel, resume, restart, fork and delete workflows.
Each method delegates to ``runtime.management`` (the same core ``DBOSClient`` uses)."""

from __future__ import annotations

from typing import Any

from runtime import context, management
from runtime.app_versions import warn_unserved
from runtime.embedded import resolve_system_url
from runtime.errors import DBOSException
from runtime.facade.base import BACKEND, FacadeBase, logger
from runtime.facade.queues import QueueCalls
from runtime.handles import WorkflowHandle
from runtime.management import OneOrMany, TimeArg
from runtime.status import StepInfo, WorkflowStatus


class ManagementCalls(QueueCalls):
    """Finding, listing and steering workflows."""

    @classmethod
    def list_workflows(
        cls,
        *,
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
        name: OneOrMany = None,
        app_version: OneOrMany = None,
        forked_from: OneOrMany = None,
        parent_workflow_id: OneOrMany = None,
        user: OneOrMany = None,
        queue_name: OneOrMany = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        workflow_id_prefix: OneOrMany = None,
        load_input: bool = True,
        load_output: bool = True,
        executor_id: OneOrMany = None,
        queues_only: bool = False,
        was_forked_from: bool | None = None,
        has_parent: bool | None = None,
        completed_after: TimeArg = None,
        completed_before: TimeArg = None,
        dequeued_after: TimeArg = None,
        dequeued_before: TimeArg = None,
        attributes: dict[str, Any] | None = None,
        is_fork: bool | None = None,
        schedule_name: OneOrMany = None,
        application_name: OneOrMany = None,
        shard_key: OneOrMany = None,
        parent_shard_key: OneOrMany = None,
    ) -> list[WorkflowStatus]:
        """Workflows matching every given filter, oldest first unless ``sort_desc`` (DBOS's
        keywords; times: datetime, ISO 8601 or epoch ms). A string filter also takes a list
        (any of its values); ``workflow_id_prefix`` matches IDs that start with it;
        ``queues_only`` keeps workflows of a queue (ENQUEUED or PENDING unless ``status``);
        ``is_fork`` keeps (True) or drops forks; ``schedule_name`` keeps the runs a managed
        schedule enqueued; ``user``, ``application_name``, ``shard_key``
        and ``parent_shard_key`` match nothing (no workflow records an authenticated user, an
        application name or a shard here);
        ``attributes`` keeps workflows whose attributes contain these key/values. Raises
        ``DBOSException`` for a bad status, time, limit, offset or attributes."""
        return management.list_workflows(cls._rt().sysdb, **management.list_arguments(locals()))

    @classmethod
    def list_queued_workflows(
        cls,
        *,
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
        name: OneOrMany = None,
        app_version: OneOrMany = None,
        forked_from: OneOrMany = None,
        parent_workflow_id: OneOrMany = None,
        user: OneOrMany = None,
        queue_name: OneOrMany = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        workflow_id_prefix: OneOrMany = None,
        load_input: bool = True,
        load_output: bool = True,
        executor_id: OneOrMany = None,
        has_parent: bool | None = None,
        completed_after: TimeArg = None,
        completed_before: TimeArg = None,
        dequeued_after: TimeArg = None,
        dequeued_before: TimeArg = None,
        attributes: dict[str, Any] | None = None,
        is_fork: bool | None = None,
        schedule_name: OneOrMany = None,
        application_name: OneOrMany = None,
        shard_key: OneOrMany = None,
        parent_shard_key: OneOrMany = None,
    ) -> list[WorkflowStatus]:
        """Workflows of a queue: ENQUEUED or PENDING (or of the given ``status``); the filters
        of ``list_workflows``."""
        arguments = management.list_arguments(locals())
        return management.list_workflows(cls._rt().sysdb, queued_only=True, **arguments)

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        """Wait for a workflow's outcome by ID: its result, or its error raised."""
        return cls._engine().results.get_result(workflow_id)

    @classmethod
    def list_workflow_steps(
        cls,
        workflow_id: str,
        *,
        load_output: bool = True,
        limit: int | None = None,
        offset: int | None = None,
        include_running: bool = False,
    ) -> list[StepInfo]:
        """The recorded steps of a workflow, in order, as DBOS's ``StepInfo`` (dict keys or
        attributes); with ``include_running`` (not DBOS's), then the steps it runs now
        (``running`` True, no outcome; visible about a second after they start); raises
        ``DBOSNonExistentWorkflowError`` for an unknown ID."""
        return management.list_steps(
            cls._rt().sysdb,
            workflow_id,
            load_output=load_output,
            limit=limit,
            offset=offset,
            include_running=include_running,
        )

    @classmethod
    def cancel_workflow(cls, workflow_id: str) -> None:
        """Cancel: a running workflow stops before its next step; an enqueued one never starts."""
        cls._engine().cancel(workflow_id)

    @classmethod
    def cancel_workflows(cls, workflow_ids: list[str]) -> None:
        """``cancel_workflow`` for each ID; one already finished is left as it is, and an unknown
        ID is skipped with a warning."""
        for change in management.cancel_many(cls._rt().sysdb, workflow_ids):
            if change.missing:
                logger.warning("workflow %s not cancelled: no such workflow", change.workflow_id)
            cls._engine().flag_cancel(change.workflow_id)

    @classmethod
    def resume_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """Continue a CANCELLED, ENQUEUED or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow (or a PENDING
        one whose process died) from its last completed step. One that came from a queue goes
        back to it, within the queue's limits; an ENQUEUED one starts now, bypassing its queue. A
        cancelled run still inside a step finishes that step first (a workflow never runs in two
        places). A running or finished workflow is left as it is, with a warning (fork a finished
        one to run it again from a step)."""
        [handle] = cls._resume([workflow_id])
        return handle

    @classmethod
    def resume_workflows(cls, workflow_ids: list[str]) -> list[WorkflowHandle[Any]]:
        """``resume_workflow`` for each ID; one left as it was (running, finished) is logged.
        The handles, in order. As in DBOS, an unknown ID raises ``DBOSNonExistentWorkflowError``
        and none is resumed."""
        return cls._resume(workflow_ids)

    @classmethod
    def _resume(cls, workflow_ids: list[str]) -> list[WorkflowHandle[Any]]:
        rt = cls._rt()
        changes = management.resume_many(rt.sysdb, workflow_ids, all_must_exist=True)
        for change in changes:
            if not change.changed:
                logger.warning("workflow %s not resumed: %s", change.workflow_id, change.reason)
        warn_unserved(rt.sysdb, [c.workflow_id for c in changes if c.changed])
        rt.dispatcher.wake()
        return [WorkflowHandle(BACKEND, c.workflow_id) for c in changes]

    @classmethod
    def restart_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """A new execution of the workflow, with the same inputs and a new ID."""
        rt = cls._rt()
        new_id = management.restart(rt.sysdb, workflow_id)
        warn_unserved(rt.sysdb, [new_id])
        rt.dispatcher.wake()
        return WorkflowHandle(BACKEND, new_id)

    @classmethod
    def fork_workflow(
        cls,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> WorkflowHandle[Any]:
        """A new workflow that keeps the recorded outcomes of steps before ``start_step`` and
        runs the rest anew (on executors of ``application_version``, default the original's;
        with a timeout of ``timeout_seconds``, default the original's). Its ID is the one an
        enclosing ``SetWorkflowID`` assigns, else a new UUID. Any ``start_step`` is accepted, as
        in DBOS: 1 or less keeps nothing, past the last step keeps them all."""
        rt = cls._rt()
        new_id = management.fork(
            rt.sysdb,
            workflow_id,
            start_step,
            forked_workflow_id=context.take_assigned_workflow_id(),
            application_version=application_version,
            timeout_seconds=timeout_seconds,
        )
        warn_unserved(rt.sysdb, [new_id])
        rt.dispatcher.wake()
        return WorkflowHandle(BACKEND, new_id)

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and everything recorded for it (see ``delete_workflows``)."""
        cls.delete_workflows([workflow_id], delete_children=delete_children)

    @classmethod
    def delete_workflows(cls, workflow_ids: list[str], *, delete_children: bool = False) -> None:
        """Delete workflows and every row recorded for them (steps, messages to them, events,
        idempotency keys), with all their descendants when ``delete_children``. A workflow still
        PENDING or ENQUEUED is cancelled first, in the same transaction, so that its run (here or
        in any process) stops at its next step and records nothing more; its handle's result
        then raises ``DBOSNonExistentWorkflowError``. Unknown IDs are ignored."""
        deleted = management.delete(cls._rt().sysdb, workflow_ids, delete_children=delete_children)
        for wid in deleted:
            cls._engine().flag_cancel(wid)

    @classmethod
    def reset_system_database(
        cls, *, system_database_url: str | None = None, truncate: bool = False
    ) -> None:
        """Destroy the system tables (every workflow, step, message, event and queue record), so
        that the next launch starts empty. For tests only. Call it before ``DBOS.launch()``
        (after ``DBOS(config=...)``, whose database it resets unless ``system_database_url``
        names one); after launch it raises ``DBOSException``. ``truncate=True`` empties the
        tables instead of dropping the schema (faster; the schema stays migrated)."""
        if FacadeBase._runtime is not None:
            raise DBOSException(
                "the system database cannot be reset after DBOS is launched: call "
                "reset_system_database() before DBOS.launch() (or after DBOS.destroy())"
            )
        inst = FacadeBase._instance
        if inst is None and system_database_url is None:
            logger.warning("reset_system_database has no effect: DBOS is not configured")
            return
        settings = inst._settings if inst is not None else None
        schema = settings.system_schema if settings is not None else "dbos"
        if system_database_url is None and settings is not None:
            configured = settings.system_database_url or settings.database_url
            system_database_url = resolve_system_url(None, configured, settings.project_dir)
        assert system_database_url is not None
        management.reset_system_database(system_database_url, schema=schema, truncate=truncate)
