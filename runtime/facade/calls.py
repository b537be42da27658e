"""The calls a workflow makes (its ID, step, sleep, messages and events) and the calls that start
and find workflows, with their async twins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast, overload

from runtime import context
from runtime.engine.results import DEFAULT_POLLING_INTERVAL_S
from runtime.engine.steps import StepOptions
from runtime.errors import DBOSException, DBOSNonExistentWorkflowError
from runtime.facade.base import BACKEND, FacadeBase, classproperty, workflow_of
from runtime.fencing import FencingToken
from runtime.handles import WorkflowHandle, WorkflowHandleAsync
from runtime.messaging import SendMessage
from runtime.queues import refuse_enqueue_options
from runtime.sql_session import SqlSession
from runtime.status import WorkflowStatus

P = ParamSpec("P")
R = TypeVar("R")


class WorkflowCalls(FacadeBase):
    """Inside a workflow, and starting and finding workflows."""

    # -- inside a workflow ------------------------------------------------------------------------

    @classproperty
    def workflow_id(cls) -> str | None:
        """The running workflow's ID (None outside a workflow)."""
        ctx = context.current_workflow.get()
        return ctx.workflow_id if ctx else None

    @classproperty
    def step_id(cls) -> int | None:
        """The current step's number within its workflow (None outside a step)."""
        step = context.current_step.get()
        return step.function_id if step else None

    @classproperty
    def step_status(cls) -> context.StepStatus | None:
        """The current step (None outside one): DBOS's ``step_id``, ``current_attempt`` (from 0)
        and ``max_attempts`` (both None for a step without retries); also ``name`` and
        ``attempt`` (from 1)."""
        return context.current_step.get()

    @overload
    @classmethod
    def run_step(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[P, Coroutine[Any, Any, R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R: ...

    @overload
    @classmethod
    def run_step(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[P, R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R: ...

    @classmethod
    def run_step(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[P, Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        """Run ``func(*args, **kwargs)`` as a step without decorating it: checkpointed in a
        workflow (replayed, never re-executed, once recorded), a plain call outside one.
        ``dbos_step_options`` is a ``StepOptions`` dict (``name``, retries, ``should_retry``,
        ``timeout_seconds``) or None; bad options raise ``DBOSException``."""
        return cls._engine().steps.run_step(dbos_step_options, func, args, dict(kwargs))

    @overload
    @classmethod
    async def run_step_async(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[P, Coroutine[Any, Any, R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R: ...

    @overload
    @classmethod
    async def run_step_async(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[P, R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R: ...

    @classmethod
    async def run_step_async(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[P, Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        """``run_step`` on the event loop: a coroutine function is awaited here, a plain
        function runs on a worker thread."""
        return await cls._engine().steps.run_step_async(dbos_step_options, func, args, dict(kwargs))

    @classmethod
    def wait_first(
        cls,
        handles: list[WorkflowHandle[Any]],
        *,
        polling_interval_sec: float = DEFAULT_POLLING_INTERVAL_S,
    ) -> WorkflowHandle[Any]:
        """The first of ``handles`` whose workflow has finished (any final status), waiting
        (reading their statuses every ``polling_interval_sec`` seconds) until one has. In a
        workflow the choice is recorded: a replay returns the same handle. ``DBOSException``
        unless ``handles`` is a list of handles; ``ValueError`` for no handles or a repeated ID;
        ``DBOSNonExistentWorkflowError`` for an unknown ID."""
        return cls._engine().results.wait_first(handles, polling_interval_sec)

    @classmethod
    async def wait_first_async(
        cls,
        handles: list[WorkflowHandleAsync[Any]],
        *,
        polling_interval_sec: float = DEFAULT_POLLING_INTERVAL_S,
    ) -> WorkflowHandleAsync[Any]:
        """``wait_first`` for asyncio code."""
        return await cls._engine().results.wait_first_async(handles, polling_interval_sec)

    @classmethod
    def send_bulk(cls, messages: list[SendMessage], *, send_to_forks: bool = False) -> None:
        """Send many messages (``SendMessage``: destination, message, topic, idempotency key)
        in one statement; from a workflow it is one step, delivered exactly once. Nothing is
        delivered if a destination does not exist (``DBOSNonExistentWorkflowError``). An
        idempotency key repeated in the call raises ``DBOSException``. ``send_to_forks`` is
        not supported (``DBOSException``)."""
        cls._rt().messaging.send_bulk(_no_forks(messages, send_to_forks))

    @classmethod
    async def send_bulk_async(
        cls, messages: list[SendMessage], *, send_to_forks: bool = False
    ) -> None:
        """``send_bulk`` for asyncio code."""
        await cls._rt().messaging.send_bulk_async(_no_forks(messages, send_to_forks))

    @classmethod
    def get_all_events(cls, workflow_id: str) -> dict[str, Any]:
        """Every event the workflow has set so far, key to value (empty when none). In a
        workflow the answer is recorded for replay."""
        return cls._rt().messaging.get_all_events(workflow_id)

    @classmethod
    async def get_all_events_async(cls, workflow_id: str) -> dict[str, Any]:
        """``get_all_events`` for asyncio code."""
        return await cls._rt().messaging.get_all_events_async(workflow_id)

    @classproperty
    def fencing_token(cls) -> FencingToken | None:
        """The running workflow's ID and this runner's owner epoch (None outside a workflow): lets
        a step's side effect refuse a runner that lost the workflow to a takeover (see
        ``runtime.fencing``)."""
        ctx = context.current_workflow.get()
        if ctx is None:
            return None
        rt = cls._rt()
        return FencingToken(ctx.workflow_id, ctx.owner_epoch, rt.idle_timeout_ms, rt.sysdb.schema)

    @classproperty
    def sql_session(cls) -> SqlSession:
        """The running transaction's session, on its connection: ``execute("... %s", (x,))``
        (psycopg: a cursor) or SQLAlchemy's ``Session`` API (``execute(text(...))``, ``scalars``,
        ``add``...; needs the ``sqlalchemy`` extra). In an async transaction, an
        ``AsyncSession`` (awaitable ``execute``...). Raises DBOSException outside a transaction."""
        session = context.sql_session.get()
        if session is None:
            raise DBOSException("DBOS.sql_session is only available inside a @DBOS.transaction")
        return cast(SqlSession, session)

    @classmethod
    def sleep(cls, seconds: float) -> None:
        """Durable sleep: the wake-up time is recorded, so after a restart the workflow sleeps only
        what remains. Outside a workflow, a plain sleep."""
        cls._rt().messaging.sleep(seconds)

    @classmethod
    def send(
        cls,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a message to a workflow's queue for ``topic``. Exactly once from a workflow; from
        outside, an ``idempotency_key`` makes a retried send deliver once."""
        cls._rt().messaging.send(destination_id, message, topic, idempotency_key)

    @classmethod
    def recv(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """Only in a workflow: consume the next message on ``topic``, waiting (durably) up to the
        timeout; None when it passes."""
        return cls._rt().messaging.recv(topic, timeout_seconds)

    @classmethod
    def set_event(cls, key: str, value: Any) -> None:
        """In a workflow or one of its steps: publish or overwrite a key/value on this workflow
        (from a step, at once and not as a step of its own, as DBOS does)."""
        cls._rt().messaging.set_event(key, value)

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Wait up to the timeout for a workflow's event; None when it is not set in time. In a
        workflow, the value seen is recorded for replay."""
        return cls._rt().messaging.get_event(workflow_id, key, timeout_seconds)

    # -- starting and finding workflows -----------------------------------------------------------

    @classmethod
    def start_workflow(
        cls, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Record the workflow's inputs and run it in the background; the workflow completes even
        if this process dies (recovery resumes it). Raises ``DBOSException`` inside a
        ``SetEnqueueOptions`` block (those options need a queue: use ``Queue.enqueue``)."""
        refuse_enqueue_options()
        info, call_args = workflow_of(func, args)
        wid = cls._engine().start_workflow(info, call_args, dict(kwargs))
        return WorkflowHandle(BACKEND, wid)

    # -- async ----------------------------------------------------------------------------------

    @classmethod
    async def start_workflow_async(
        cls, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[Any]:
        """``start_workflow`` for asyncio code: an async workflow runs as a task on this loop."""
        refuse_enqueue_options()
        info, call_args = workflow_of(func, args)
        wid = await cls._engine().start_workflow_async(info, call_args, dict(kwargs))
        return WorkflowHandleAsync(BACKEND, wid)

    @classmethod
    async def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandleAsync[Any]:
        """``retrieve_workflow`` for asyncio code."""
        if existing_workflow:
            found = await asyncio.to_thread(cls._rt().sysdb.get_status_result, workflow_id)
            if found is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandleAsync(BACKEND, workflow_id)

    @classmethod
    async def sleep_async(cls, seconds: float) -> None:
        """Durable sleep for asyncio code."""
        await cls._rt().messaging.sleep_async(seconds)

    @classmethod
    async def send_async(
        cls,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """``send`` for asyncio code."""
        await cls._rt().messaging.send_async(destination_id, message, topic, idempotency_key)

    @classmethod
    async def recv_async(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """``recv`` for async workflows: waits on the event loop, not a thread."""
        return await cls._rt().messaging.recv_async(topic, timeout_seconds)

    @classmethod
    async def set_event_async(cls, key: str, value: Any) -> None:
        """``set_event`` for async workflows."""
        await cls._rt().messaging.set_event_async(key, value)

    @classmethod
    async def get_event_async(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """``get_event`` for asyncio code."""
        return await cls._rt().messaging.get_event_async(workflow_id, key, timeout_seconds)

    @classmethod
    def retrieve_workflow(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle to any workflow by ID."""
        if existing_workflow and cls._rt().sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(BACKEND, workflow_id)

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's record, or None when no workflow has that ID."""
        return cls._rt().sysdb.get_workflow_status(workflow_id)


def _no_forks(messages: list[SendMessage], send_to_forks: bool) -> list[SendMessage]:
    if send_to_forks:
        raise DBOSException("send_bulk(send_to_forks=True) is not supported")
    return messages
