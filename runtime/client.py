"""``DBOSClient``: the management and messaging API for programs that are not the app (scripts,
web handlers in another service, the `dbos` CLI and its dashboard). It reads and writes the system
tables directly and never imports or launches the application.

The records its methods return are importable from here too (``Change``, ``ExecutorInfo``,
``QueueInfo``, ``VersionWork``, ``Waiting``, and ``STATUSES``, the status names), so that a
program using the client needs no other module of the runtime but ``runtime.errors`` and
``runtime.status``."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from typing_extensions import Required

from runtime import management, queues, serialization
from runtime.config import resolve
from runtime.embedded import resolve_system_url
from runtime.errors import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from runtime.handles import WorkflowHandle, poll_result
from runtime.management import STATUSES, Change, ExecutorInfo, TimeArg
from runtime.records import NewWorkflow, QueueInfo, VersionWork
from runtime.status import StepInfo, WorkflowStatus, WorkflowStatusString
from runtime.system_db import SystemDatabase
from runtime.waiting import Waiting

if TYPE_CHECKING:
    # The messaging machinery (and the engine it builds on) loads only when a client sends or
    # waits: `dbos workflow list` and the other management commands start faster without it.
    from runtime.listener import NotificationListener, Notifications

__all__ = [
    "STATUSES",
    "Change",
    "DBOSClient",
    "EnqueueOptions",
    "ExecutorInfo",
    "QueueInfo",
    "TimeArg",
    "VersionWork",
    "Waiting",
]


class EnqueueOptions(TypedDict, total=False):
    """What ``DBOSClient.enqueue`` needs: the workflow and queue by name (required), and
    optionally the workflow ID, the application version that must run it, a priority (0 to
    2**31-1, lower first), a deduplication ID, a timeout (seconds), the partition of a
    partitioned queue (``queue_partition_key``) and a delay (``delay_seconds``: the workflow is
    DELAYED, not dequeued before then)."""

    workflow_name: Required[str]
    queue_name: Required[str]
    workflow_id: str
    workflow_class_name: str
    app_version: str
    priority: int
    deduplication_id: str
    workflow_timeout: float
    queue_partition_key: str
    delay_seconds: float


class DBOSClient:
    """A connection to an application's system tables from outside the application.

    With no URL, it finds the database as the CLI does: ``DBOS_SYSTEM_DATABASE_URL`` or
    ``DBOS_DATABASE_URL``, the config file of the current folder, else the project's embedded
    Postgres."""

    def __init__(
        self, database_url: str | None = None, *, system_database_url: str | None = None
    ) -> None:
        explicit = system_database_url or database_url
        if explicit:
            url = explicit
        else:
            s = resolve(None, cwd=Path.cwd())
            url = resolve_system_url(None, s.system_database_url or s.database_url, s.project_dir)
        self.sysdb = SystemDatabase(url, pool_size=4)
        self._notifications: Notifications | None = None
        self._listener: NotificationListener | None = None
        self._lock = threading.Lock()

    def destroy(self) -> None:
        """Close the client's connections."""
        if self._listener is not None:
            self._listener.stop()
        self.sysdb.close()

    def __enter__(self) -> DBOSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def _listen(self) -> Notifications:
        # The listener costs a connection, so it starts only when the client first waits.
        from runtime.listener import NotificationListener, Notifications

        with self._lock:
            if self._notifications is None:  # the first wait: the listener comes with it
                notifications = Notifications()
                listener = NotificationListener(self.sysdb.url, notifications.callbacks())
                listener.on_reconnect.append(notifications.wake_all)
                notifications.is_listening = lambda: listener.listening
                listener.start()
                self._notifications, self._listener = notifications, listener
            return self._notifications

    # -- messaging --------------------------------------------------------------------------------

    def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a message to a workflow; with an idempotency key, a retried send delivers once."""
        from runtime import messaging

        messaging.send_outside(self.sysdb, destination_id, message, topic, idempotency_key)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Wait up to the timeout for a workflow's event; None when it is not set in time."""
        from runtime import messaging

        return messaging.get_event_outside(
            self.sysdb, self._listen(), workflow_id, key, timeout_seconds
        )

    # -- workflows --------------------------------------------------------------------------------

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue a workflow by name on a queue, without importing the app: an executor of the
        app that has that workflow (and version, when given) starts it. With a workflow ID that
        exists already, returns its handle (the ID is an idempotency key). Bad options (a
        priority out of range, a negative delay, a partition key with a deduplication ID) raise
        ``DBOSException`` before anything is recorded."""
        for key in ("workflow_name", "queue_name"):
            if not isinstance(options.get(key), str) or not options.get(key):
                raise DBOSException(f"enqueue options need {key!r} (a non-empty string)")
        queues.check_priority(options.get("priority"))
        delay = options.get("delay_seconds")
        queues.check_delay(delay)
        partition = options.get("queue_partition_key")
        if partition is not None and options.get("deduplication_id") is not None:
            raise DBOSException("Deduplication is not supported for partitioned queues")
        wid = options.get("workflow_id") or str(uuid.uuid4())
        timeout = options.get("workflow_timeout")
        result = self.sysdb.insert_workflow(
            NewWorkflow(
                workflow_id=wid,
                status=(
                    WorkflowStatusString.DELAYED
                    if delay is not None
                    else WorkflowStatusString.ENQUEUED
                ),
                name=options["workflow_name"],
                class_name=options.get("workflow_class_name"),
                inputs=serialization.serialize_args(args, kwargs),
                executor_id=None,
                application_version=options.get("app_version"),
                queue_name=options["queue_name"],
                priority=options.get("priority", 0),
                deduplication_id=options.get("deduplication_id"),
                timeout_ms=int(timeout * 1000) if timeout else None,
                queue_partition_key=partition,
                delay_until_epoch_ms=(
                    int((time.time() + delay) * 1000) if delay is not None else None
                ),
            )
        )
        if not result.created and result.name != options["workflow_name"]:
            raise DBOSConflictingWorkflowError(
                wid, f"it belongs to workflow {result.name!r}, not {options['workflow_name']!r}"
            )
        return WorkflowHandle(self, wid)

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to a workflow by ID."""
        if self.sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(self, workflow_id)

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """A workflow's record, or None when no workflow has that ID."""
        return self.sysdb.get_workflow_status(workflow_id)

    def get_workflow(self, workflow_id: str) -> WorkflowStatus:
        """A workflow's record, its input and output (or error) decoded; raises
        ``DBOSNonExistentWorkflowError`` when no workflow has that ID."""
        return management.get_workflow(self.sysdb, workflow_id)

    def list_workflows(
        self,
        *,
        workflow_ids: list[str] | None = None,
        status: str | Iterable[str] | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
        name: str | None = None,
        app_version: str | None = None,
        queue_name: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
        load_output: bool = True,
        before: tuple[int, str] | None = None,
    ) -> list[WorkflowStatus]:
        """Workflows matching every given filter, oldest first unless ``sort_desc``; the same
        keywords as ``DBOS.list_workflows`` (times: datetime, ISO 8601 or epoch ms), and
        ``before``, for paging newest first: only workflows older than the ``(created_at,
        workflow_id)`` of the last one shown."""
        return management.list_workflows(
            self.sysdb,
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
            before=before,
        )

    def list_queued_workflows(
        self,
        *,
        workflow_ids: list[str] | None = None,
        status: str | Iterable[str] | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
        name: str | None = None,
        app_version: str | None = None,
        queue_name: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
        load_output: bool = False,
        before: tuple[int, str] | None = None,
    ) -> list[WorkflowStatus]:
        """Workflows waiting in or running from a queue (ENQUEUED, or PENDING with a queue); the
        keywords of ``list_workflows``, outputs not loaded unless asked for."""
        return management.list_workflows(
            self.sysdb,
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
            queued_only=True,
            before=before,
        )

    def get_workflow_wait(self, workflow_id: str) -> Waiting | None:
        """What a PENDING or ENQUEUED workflow waits for, read from the database alone (so from
        any process): a durable sleep, a message or an event (``recv``/``get_event``) until a
        time, a child workflow, or its queue. None when its record shows no wait: it runs a step,
        has finished, or no workflow has that ID."""
        return management.waits(self.sysdb, [workflow_id]).get(workflow_id)

    def get_workflow_waits(self, workflow_ids: Iterable[str]) -> dict[str, Waiting]:
        """``get_workflow_wait`` for many workflows (a listing page) in one round trip, by ID;
        those whose record shows no wait are absent."""
        return management.waits(self.sysdb, workflow_ids)

    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, in order."""
        return management.list_steps(self.sysdb, workflow_id)

    def cancel_workflows(self, workflow_ids: Iterable[str]) -> list[Change]:
        """Cancel each PENDING or ENQUEUED workflow (its runner stops before its next step).
        Nothing raises for a workflow left as it was: the result says, in order, what changed and
        why the others did not (``no such workflow``, ``already SUCCESS``, ...)."""
        return [management.cancel(self.sysdb, wid) for wid in workflow_ids]

    def resume_workflows(self, workflow_ids: Iterable[str]) -> list[Change]:
        """Resume each workflow as ``resume_workflow`` does, without raising for one that is
        left as it was: the result says, in order, what changed and why the others did not (a
        running or finished workflow, or no such workflow)."""
        return [management.resume(self.sysdb, wid) for wid in workflow_ids]

    def cancel_workflow(self, workflow_id: str) -> bool:
        """Cancel a PENDING or ENQUEUED workflow; its runner stops before its next step. False
        when the workflow was in another status (nothing changed)."""
        change = management.cancel(self.sysdb, workflow_id)
        if change.missing:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return change.changed

    def resume_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Make a cancelled, pending, enqueued or failed-recovery workflow ready to continue from
        its last completed step; a live executor of its version picks it up. A finished workflow
        raises (fork it instead)."""
        change = management.resume(self.sysdb, workflow_id)
        if change.missing:
            raise DBOSNonExistentWorkflowError(workflow_id)
        if not change.changed:
            raise DBOSException(f"workflow {workflow_id!r} not resumed: {change.reason}")
        return WorkflowHandle(self, workflow_id)

    def restart_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A new execution with the same inputs and a new ID."""
        return WorkflowHandle(self, management.restart(self.sysdb, workflow_id))

    def fork_workflow(
        self,
        workflow_id: str,
        start_step: int,
        *,
        forked_workflow_id: str | None = None,
        application_version: str | None = None,
    ) -> WorkflowHandle[Any]:
        """A new workflow that keeps the outcomes of steps before ``start_step``."""
        new_id = management.fork(
            self.sysdb,
            workflow_id,
            start_step,
            forked_workflow_id=forked_workflow_id,
            application_version=application_version,
        )
        return WorkflowHandle(self, new_id)

    def list_executors(self) -> list[ExecutorInfo]:
        """Recent executor processes with their state (ALIVE, DEAD, STOPPED)."""
        return management.executors(self.sysdb)

    def version_work(self) -> list[VersionWork]:
        """Per application version: pending and enqueued workflows, and live processes."""
        return management.version_work(self.sysdb)

    def list_queues(self) -> list[QueueInfo]:
        """Every declared queue, or queue with live work: its limits (as its executors declared
        them), its depth and its running workflows."""
        return management.queues(self.sysdb)

    # -- handle backend ---------------------------------------------------------------------------

    def handle_result(self, workflow_id: str) -> Any:
        """Wait for a workflow's outcome by reading its record."""
        return poll_result(self.sysdb, workflow_id)

    def handle_status(self, workflow_id: str) -> WorkflowStatus | None:
        """A workflow's record."""
        return self.get_workflow_status(workflow_id)
