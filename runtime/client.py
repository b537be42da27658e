"""``DBOSClient``: the management and messaging API for programs that are not the app (scripts,
web handlers in another service, the `dbos` CLI and its dashboard). It reads and writes the system
tables directly and never imports or launches the application.

The records its methods return are importable from here too (``Change``, ``ExecutorInfo``,
``QueueInfo``, ``VersionInfo``, ``VersionWork``, ``Unserved``, ``Waiting``,
``WorkflowExplanation``, and ``STATUSES``, the
status names), so that a program using the client needs no other module of the runtime but
``runtime.errors`` and ``runtime.status``."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from typing_extensions import Required

from runtime import context, db, management, queues, serialization
from runtime.app_versions import UNSERVED_LOG_KEY, Unserved, VersionInfo, warn_unserved
from runtime.asyncs import twin
from runtime.client_counts import ClientCountCalls
from runtime.client_dashboard import ClientDashboardCalls
from runtime.client_explain import ClientExplainCalls
from runtime.client_retention import ClientRetentionCalls
from runtime.client_schedules import ClientScheduleCalls
from runtime.client_streams import ClientStreams
from runtime.client_versions import ClientVersionCalls
from runtime.config import resolve
from runtime.context import validate_workflow_id
from runtime.embedded import resolve_system_url
from runtime.errors import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from runtime.handles import WorkflowHandle, WorkflowHandleAsync, poll_result
from runtime.management import STATUSES, Change, ExecutorInfo, OneOrMany, TimeArg
from runtime.queues import INTERNAL_QUEUE
from runtime.records import NewWorkflow, QueueInfo, VersionWork
from runtime.retention import GarbageCollection
from runtime.status import StepInfo, WorkflowStatus, WorkflowStatusString
from runtime.stream_db import MAX_OFFSET as MAX_STREAM_OFFSET
from runtime.system_db import SystemDatabase
from runtime.waiting import Waiting

if TYPE_CHECKING:
    # The messaging machinery (and the engine it builds on) loads only when a client sends or
    # waits: `dbos workflow list` and the other management commands start faster without it.
    from runtime.explain import WorkflowExplanation
    from runtime.listener import NotificationListener, Notifications
    from runtime.schedules import ClientScheduleInput, WorkflowSchedule

# Records re-exported from here whose modules load on first use (PEP 562), as the client's own
# calls that need them do: explanations and schedules are ~10 ms that a listing never uses.
_LAZY = {
    "WorkflowExplanation": "runtime.explain",
    "ClientScheduleInput": "runtime.schedules",
    "WorkflowSchedule": "runtime.schedules",
}


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "INTERNAL_QUEUE",
    "MAX_STREAM_OFFSET",
    "STATUSES",
    "Change",
    "ClientScheduleInput",
    "DBOSClient",
    "EnqueueOptions",
    "ExecutorInfo",
    "GarbageCollection",
    "QueueInfo",
    "TimeArg",
    "UNSERVED_LOG_KEY",
    "Unserved",
    "VersionInfo",
    "VersionWork",
    "Waiting",
    "WorkflowExplanation",
    "WorkflowSchedule",
    "check_database",
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
    #: DBOS's names: the class of a class-method workflow (``workflow_class_name`` here too),
    #: the configured instance's ``config_name``, and the workflow's maximum recovery attempts.
    class_name: str
    instance_name: str
    max_recovery_attempts: int
    #: Custom key/values recorded with the workflow (as ``SetWorkflowAttributes``).
    attributes: dict[str, Any]
    # DBOS keys for features this runtime lacks (authenticated users, serializers, duplication
    # policies, application names): accepted, and named in a warning when given.
    authenticated_user: str
    authenticated_roles: list[str]
    serialization_type: str
    duplication_policy: str
    application_name: str


def check_database(url: str, *, missing_database_ok: bool = False) -> None:
    """Fail fast when ``url`` cannot be connected to: one attempt that gives up after about two
    seconds, raising ``DBOSConnectionError`` with one line naming host:port/database and the cause
    (refused, no answer, host name, authentication, missing database, SSL), never the password.
    What a command-line tool calls before it opens a client. ``missing_database_ok``: a server
    answering that the database does not exist passes (for a tool that creates it)."""
    db.probe(url, missing_database_ok=missing_database_ok)


def _check_urls(database_url: object, system_url: object, application_url: object) -> None:
    """Refuse a URL that is not a string, and ``database_url`` and ``application_database_url``
    (two names for one setting) naming different databases, as DBOS's configuration does."""
    for key, url in (
        ("database_url", database_url),
        ("system_database_url", system_url),
        ("application_database_url", application_url),
    ):
        if url is not None and not isinstance(url, str):
            raise DBOSException(f"invalid {key} {url!r}: expected a database URL string")
    if database_url and application_url and database_url != application_url:
        raise DBOSException(
            "database_url and application_database_url name different databases: give one"
        )


class DBOSClient(
    ClientScheduleCalls,
    ClientStreams,
    ClientVersionCalls,
    ClientCountCalls,
    ClientExplainCalls,
    ClientDashboardCalls,
    ClientRetentionCalls,
):
    """A connection to an application's system tables from outside the application.

    With no URL, it finds the database as the CLI does: ``DBOS_SYSTEM_DATABASE_URL`` or
    ``DBOS_DATABASE_URL``, the config file of the current folder, else the project's embedded
    Postgres."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        system_database_url: str | None = None,
        application_database_url: str | None = None,
        dbos_system_schema: str | None = None,
    ) -> None:
        """``dbos_system_schema``: the schema of the system tables, which must be the
        application's. None: ``dbos`` with an explicit URL; without one, the URL and the schema
        both come from the configuration (``system_schema`` of the config file, else ``dbos``).
        ``database_url`` and ``application_database_url`` (DBOS's deprecated names) are used
        when ``system_database_url`` is not given."""
        _check_urls(database_url, system_database_url, application_database_url)
        explicit = system_database_url or database_url or application_database_url
        schema = dbos_system_schema or "dbos"
        if explicit:
            url = explicit
        else:
            s = resolve(None, cwd=Path.cwd())
            url = resolve_system_url(None, s.system_database_url or s.database_url, s.project_dir)
            schema = dbos_system_schema or s.system_schema
        self.sysdb = SystemDatabase(url, pool_size=4, schema=schema)
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

    send_async = twin(send)
    get_event_async = twin(get_event)

    # -- workflows --------------------------------------------------------------------------------

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue a workflow by name on a queue, without importing the app: an executor of the
        app that has that workflow (and version, when given) starts it. With a workflow ID that
        exists already, returns its handle (the ID is an idempotency key). Bad options (a
        priority out of range, a negative delay, a partition key with a deduplication ID, an
        unknown key) raise ``DBOSException`` before anything is recorded."""
        return WorkflowHandle(self, self._enqueue(options, args, kwargs))

    def _enqueue(
        self,
        options: EnqueueOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        is_debounced: bool = False,
        debounce_deadline_ms: int | None = None,
    ) -> str:
        """``enqueue``'s record (also of ``DebouncerClient``'s first call for a key, which
        marks it debounced); returns the workflow's ID."""
        queues.check_enqueue_options(options)
        delay, partition = options.get("delay_seconds"), options.get("queue_partition_key")
        given = options.get("workflow_id")
        # An empty ID is refused, not replaced: the caller meant a specific workflow.
        wid = str(uuid.uuid4()) if given is None else validate_workflow_id(given, "workflow_id")
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
                class_name=queues.options_class_name(options),
                config_name=options.get("instance_name"),
                max_recovery_attempts=options.get("max_recovery_attempts"),
                inputs=serialization.serialize_args(args, kwargs),
                executor_id=None,
                application_version=options.get("app_version"),
                queue_name=options["queue_name"],
                priority=options.get("priority") or 0,  # None means the default, as in DBOS
                deduplication_id=options.get("deduplication_id"),
                timeout_ms=int(timeout * 1000) if timeout else None,
                queue_partition_key=partition,
                delay_until_epoch_ms=(
                    int((time.time() + delay) * 1000) if delay is not None else None
                ),
                attributes=context.attributes_json(options.get("attributes")),
                is_debounced=is_debounced,
                debounce_deadline_epoch_ms=debounce_deadline_ms,
            )
        )
        if not result.created and result.name != options["workflow_name"]:
            raise DBOSConflictingWorkflowError(
                wid, f"it belongs to workflow {result.name!r}, not {options['workflow_name']!r}"
            )
        return wid

    async def enqueue_async(
        self, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """``enqueue`` for asyncio code."""
        handle = await asyncio.to_thread(self.enqueue, options, *args, **kwargs)
        return WorkflowHandleAsync(self, handle.workflow_id)

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to a workflow by ID."""
        if self.sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(self, workflow_id)

    async def retrieve_workflow_async(self, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """``retrieve_workflow`` for asyncio code."""
        handle = await asyncio.to_thread(self.retrieve_workflow, workflow_id)
        return WorkflowHandleAsync(self, handle.workflow_id)

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
        before: tuple[int, str] | None = None,
    ) -> list[WorkflowStatus]:
        """Workflows matching every given filter, oldest first unless ``sort_desc``; the same
        keywords as ``DBOS.list_workflows`` (times: datetime, ISO 8601 or epoch ms), and
        ``before``, for paging newest first: only workflows older than the ``(created_at,
        workflow_id)`` of the last one shown."""
        return management.list_workflows(self.sysdb, **management.list_arguments(locals()))

    def list_queued_workflows(
        self,
        *,
        workflow_ids: list[str] | None = None,
        status: str | Iterable[str] | None = None,
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
        before: tuple[int, str] | None = None,
    ) -> list[WorkflowStatus]:
        """Workflows of a queue: ENQUEUED or PENDING (or of the given ``status``); the keywords
        of ``list_workflows``."""
        arguments = management.list_arguments(locals())
        return management.list_workflows(self.sysdb, queued_only=True, **arguments)

    def update_workflow_attributes(
        self, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
    ) -> None:
        """Replace a workflow's custom attributes (None clears them), or with ``merge`` write
        the given top-level keys over its current ones. Bad attributes raise
        ``DBOSException``; an unknown ID changes nothing (as in DBOS)."""
        text = management.attributes_text(attributes, merge)
        management.update_attributes(self.sysdb, workflow_id, text, merge)

    update_workflow_attributes_async = twin(update_workflow_attributes)
    list_workflows_async = twin(list_workflows)
    list_queued_workflows_async = twin(list_queued_workflows)

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

    def list_workflow_steps(
        self,
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
            self.sysdb,
            workflow_id,
            load_output=load_output,
            limit=limit,
            offset=offset,
            include_running=include_running,
        )

    list_workflow_steps_async = twin(list_workflow_steps)

    def cancel_each(self, workflow_ids: Iterable[str], *, dry_run: bool = False) -> list[Change]:
        """Cancel each PENDING, ENQUEUED or DELAYED workflow (its runner stops before its next
        step). Nothing raises for a workflow left as it was: the result says, in order, what
        changed and why the others did not (``no such workflow``, ``already SUCCESS``, ...).
        ``dry_run``: the same list for what a cancel would do now (``changed`` = would change),
        from the same predicate as the real run, writing nothing."""
        return management.cancel_many(self.sysdb, workflow_ids, dry_run=dry_run)

    def resume_each(self, workflow_ids: Iterable[str], *, dry_run: bool = False) -> list[Change]:
        """Resume each workflow as ``resume_workflow`` does, without raising for one that is
        left as it was: the result says, in order, what changed and why the others did not (a
        running or finished workflow, or no such workflow). ``dry_run``: the same list for what
        a resume would do now (``changed`` = would change), from the same predicate as the real
        run, writing nothing."""
        return management.resume_many(self.sysdb, workflow_ids, dry_run=dry_run)

    def cancel_workflows(self, workflow_ids: list[str]) -> None:
        """Cancel each PENDING or ENQUEUED workflow, as DBOS does: one in another status (or
        unknown) is left as it is (``cancel_each`` says which)."""
        self.cancel_each(workflow_ids)

    def resume_workflows(self, workflow_ids: list[str]) -> list[WorkflowHandle[Any]]:
        """Resume each workflow as ``resume_workflow`` does, without raising for one left as it
        was (``resume_each`` says which); their handles, in order. As in DBOS, an unknown ID
        raises ``DBOSNonExistentWorkflowError`` and none is resumed."""
        changes = management.resume_many(self.sysdb, workflow_ids, all_must_exist=True)
        warn_unserved(self.sysdb, [c.workflow_id for c in changes if c.changed])
        return [WorkflowHandle(self, c.workflow_id) for c in changes]

    async def resume_workflows_async(
        self, workflow_ids: list[str]
    ) -> list[WorkflowHandleAsync[Any]]:
        """``resume_workflows`` for asyncio code."""
        handles = await asyncio.to_thread(self.resume_workflows, workflow_ids)
        return [WorkflowHandleAsync(self, h.workflow_id) for h in handles]

    def delete_workflow(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and everything recorded for it (see ``delete_workflows``)."""
        self.delete_workflows([workflow_id], delete_children=delete_children)

    def delete_workflows(self, workflow_ids: list[str], *, delete_children: bool = False) -> None:
        """Delete workflows and every row recorded for them (steps, messages to them, events,
        idempotency keys), with all their descendants when ``delete_children``. One still
        PENDING or ENQUEUED is cancelled first, in the same transaction: its run, in whatever
        process, stops at its next step and records nothing more. Unknown IDs are ignored."""
        management.delete(self.sysdb, workflow_ids, delete_children=delete_children)

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
        warn_unserved(self.sysdb, [workflow_id])
        return WorkflowHandle(self, workflow_id)

    def restart_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A new execution with the same inputs and a new ID."""
        new_id = management.restart(self.sysdb, workflow_id)
        warn_unserved(self.sysdb, [new_id])
        return WorkflowHandle(self, new_id)

    def fork_workflow(
        self,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        timeout_seconds: float | None = None,
        forked_workflow_id: str | None = None,
    ) -> WorkflowHandle[Any]:
        """A new workflow that keeps the outcomes of steps before ``start_step`` (any step is
        accepted, as in DBOS: 1 or less keeps none, past the last keeps all), with a timeout of
        ``timeout_seconds`` (default the original's). Its ID is ``forked_workflow_id``, else the
        one an enclosing ``SetWorkflowID`` assigns, else a new UUID."""
        new_id = management.fork(
            self.sysdb,
            workflow_id,
            start_step,
            # An empty ID given is refused by fork, not replaced by the block's or a new one.
            forked_workflow_id=(
                forked_workflow_id
                if forked_workflow_id is not None
                else context.take_assigned_workflow_id()
            ),
            application_version=application_version,
            timeout_seconds=timeout_seconds,
        )
        warn_unserved(self.sysdb, [new_id])
        return WorkflowHandle(self, new_id)

    async def fork_workflow_async(
        self,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        timeout_seconds: float | None = None,
        forked_workflow_id: str | None = None,
    ) -> WorkflowHandleAsync[Any]:
        """``fork_workflow`` for asyncio code."""
        handle = await asyncio.to_thread(
            self.fork_workflow,
            workflow_id,
            start_step,
            application_version=application_version,
            timeout_seconds=timeout_seconds,
            forked_workflow_id=forked_workflow_id,
        )
        return WorkflowHandleAsync(self, handle.workflow_id)

    async def resume_workflow_async(self, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """``resume_workflow`` for asyncio code."""
        handle = await asyncio.to_thread(self.resume_workflow, workflow_id)
        return WorkflowHandleAsync(self, handle.workflow_id)

    async def restart_workflow_async(self, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """``restart_workflow`` for asyncio code."""
        handle = await asyncio.to_thread(self.restart_workflow, workflow_id)
        return WorkflowHandleAsync(self, handle.workflow_id)

    get_workflow_status_async = twin(get_workflow_status)
    cancel_workflow_async = twin(cancel_workflow)
    cancel_workflows_async = twin(cancel_workflows)
    delete_workflow_async = twin(delete_workflow)
    delete_workflows_async = twin(delete_workflows)

    def list_executors(self) -> list[ExecutorInfo]:
        """Recent executor processes with their state (ALIVE, DEAD, STOPPED)."""
        return management.executors(self.sysdb)

    def version_work(self) -> list[VersionWork]:
        """Per application version: pending and enqueued workflows, and live processes."""
        return management.version_work(self.sysdb)

    def list_queues(self) -> list[QueueInfo]:
        """Every declared queue, or queue with live work: its limits (as its executors declared
        them), its depth and its running workflows. The runtime's internal queue (the one resume,
        restart and fork go through) is left out, as in the CLI's listings."""
        return management.queues(self.sysdb)

    # -- handle backend ---------------------------------------------------------------------------

    def handle_result(self, workflow_id: str) -> Any:
        """Wait for a workflow's outcome by reading its record."""
        return poll_result(self.sysdb, workflow_id)

    def handle_status(self, workflow_id: str) -> WorkflowStatus | None:
        """A workflow's record."""
        return self.get_workflow_status(workflow_id)

    async def handle_result_async(self, workflow_id: str) -> Any:
        """``handle_result`` for an async handle, in a worker thread."""
        return await asyncio.to_thread(self.handle_result, workflow_id)
