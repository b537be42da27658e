"""The ``DBOS`` facade: lifecycle, decorators, and the calls users make. No SQL here: decorators
capture the call and hand it to the engine; management calls go to the system database module."""

from __future__ import annotations

import asyncio
import atexit
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar, cast

import psycopg

from runtime import config as config_mod
from runtime import context, management, queues, registry
from runtime import scheduler as scheduler_mod
from runtime.composition import Runtime
from runtime.config import DBOSConfig, Settings
from runtime.engine import DEFAULT_MAX_RECOVERY_ATTEMPTS, Engine, EnqueueRequest, StepOptions
from runtime.errors import DBOSException, DBOSNonExistentWorkflowError
from runtime.fencing import FencingToken
from runtime.handles import WorkflowHandle, WorkflowHandleAsync
from runtime.queues import Queue, current_enqueue_options
from runtime.registry import WorkflowInfo
from runtime.scheduler import Schedule
from runtime.status import StepInfo, WorkflowStatus

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger("dbos")

_ISOLATION = {
    "SERIALIZABLE": psycopg.IsolationLevel.SERIALIZABLE,
    "REPEATABLE READ": psycopg.IsolationLevel.REPEATABLE_READ,
    "READ COMMITTED": psycopg.IsolationLevel.READ_COMMITTED,
}


class classproperty(Generic[T]):
    """A read-only property of the class itself (``DBOS.workflow_id``)."""

    def __init__(self, fget: Callable[[Any], T]) -> None:
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj: object, owner: type[Any]) -> T:
        return self.fget(owner)


class DBOS:
    """The one runtime object of a process.

    ``DBOS(config)`` sets it up, ``DBOS.launch()`` connects, migrates, recovers pending workflows
    and starts the background threads; the decorators may be used before either.
    """

    _instance: ClassVar[DBOS | None] = None
    _runtime: ClassVar[Runtime | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    logger: ClassVar[logging.Logger] = logger

    _config_arg: DBOSConfig | None
    _settings: Settings

    def __new__(cls, config: DBOSConfig | None = None) -> DBOS:
        with cls._lock:
            existing = cls._instance
            if existing is not None:
                if config is not None and config != existing._config_arg:
                    raise DBOSException(
                        "DBOS is already configured with a different config; "
                        "call DBOS.destroy() first"
                    )
                return existing
            inst = super().__new__(cls)
            inst._config_arg = dict(config) if config is not None else None  # type: ignore[assignment]
            inst._settings = config_mod.resolve(config, cwd=Path.cwd())
            cls._instance = inst
            return inst

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def launch(cls) -> None:
        """Connect, migrate the system schema if needed, recover this executor's pending
        workflows, and start the background threads. Idempotent."""
        inst = cls._instance or DBOS()
        with cls._lock:
            if cls._runtime is not None:
                return
            runtime = Runtime(inst._settings)
            cls._runtime = runtime
        try:
            runtime.start()
        except BaseException:
            with cls._lock:
                cls._runtime = None
            runtime.stop(0)
            raise
        _register_exit_hook()
        logger.info(
            "DBOS launched: executor %s, application version %s",
            runtime.settings.executor_id,
            runtime.app_version,
        )

    @classmethod
    def destroy(
        cls, workflow_completion_timeout_sec: float = 0, *, step_grace_sec: float = 0.5
    ) -> None:
        """Stop background threads and close connections. Workflows still running after
        ``workflow_completion_timeout_sec`` stop at their next step and stay PENDING (the next
        launch, or another live executor, recovers them); the steps in progress get
        ``step_grace_sec`` in all to end. While one is still in its step, this process is not
        marked stopped, so no other process runs that step at the same time."""
        # Stop first, then forget: workflows still finishing their step may call DBOS.* meanwhile.
        with cls._lock:
            runtime = cls._runtime
        if runtime is not None:
            runtime.stop(workflow_completion_timeout_sec, step_grace_sec)
        with cls._lock:
            if cls._runtime is runtime:
                cls._runtime = None
            cls._instance = None

    @classmethod
    def _rt(cls) -> Runtime:
        runtime = cls._runtime
        if runtime is None:
            raise DBOSException("DBOS is not launched: call DBOS.launch() first")
        return runtime

    @classmethod
    def _engine(cls) -> Engine:
        return cls._rt().engine

    @classproperty
    def config(cls) -> Settings:
        """The resolved settings of the runtime."""
        inst = cls._instance or DBOS()
        return inst._settings

    @classproperty
    def application_version(cls) -> str:
        """The version recorded on every workflow this process starts."""
        return cls._rt().app_version

    @classproperty
    def database_url(cls) -> str:
        """The application database in use (the embedded server's when none is configured)."""
        return cls._rt().app_url

    @classproperty
    def executor_id(cls) -> str:
        """This process's executor ID."""
        return cls._rt().settings.executor_id

    # -- decorators -------------------------------------------------------------------------------

    @classmethod
    def workflow(
        cls, *, name: str | None = None, max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Make a function a durable workflow."""

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            raw, rewrap = _unwrap_method(func)
            is_cm = rewrap is classmethod or _looks_like_classmethod(raw)
            info = WorkflowInfo(
                name=name or raw.__qualname__,
                func=raw,
                max_recovery_attempts=max_recovery_attempts,
                is_classmethod=is_cm,
                class_name=_class_name_of(raw),
                is_async=inspect.iscoroutinefunction(raw),
            )

            wrapper: Callable[..., Any]
            if info.is_async:

                @functools.wraps(raw)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    return await cls._engine().call_workflow_async(info, args, kwargs)

            else:

                @functools.wraps(raw)
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    return cls._engine().call_workflow(info, args, kwargs)

            wrapper.__dbos_workflow__ = info  # type: ignore[attr-defined]
            registry.register_workflow(info)
            return cast(Callable[P, R], rewrap(wrapper) if rewrap else wrapper)

        return decorator

    @classmethod
    def step(
        cls,
        *,
        retries_allowed: bool = False,
        interval_seconds: float = 1.0,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
        name: str | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Make a function a checkpointed step: never re-executed once it completed."""
        options = StepOptions(retries_allowed, interval_seconds, max_attempts, backoff_rate)

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            raw, rewrap = _unwrap_method(func)
            step_name = name or raw.__qualname__
            wrapper: Callable[..., Any]
            if inspect.iscoroutinefunction(raw):

                @functools.wraps(raw)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    if context.current_workflow.get() is None:
                        return await raw(*args, **kwargs)
                    return await cls._engine().steps.run_async(
                        step_name, raw, args, kwargs, options
                    )

            else:

                @functools.wraps(raw)
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    if context.current_workflow.get() is None:
                        return raw(*args, **kwargs)
                    return cls._engine().steps.run(step_name, raw, args, kwargs, options)

            return cast(Callable[P, R], rewrap(wrapper) if rewrap else wrapper)

        return decorator

    communicator = step

    @classmethod
    def transaction(
        cls, isolation_level: str = "SERIALIZABLE", *, name: str | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Run a function in one Postgres transaction whose outcome commits with its writes."""
        level = _ISOLATION.get(isolation_level.upper())
        if level is None:
            raise DBOSException(
                f"unknown isolation level {isolation_level!r}; expected one of {sorted(_ISOLATION)}"
            )

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            raw, rewrap = _unwrap_method(func)
            tx_name = name or raw.__qualname__
            wrapper: Callable[..., Any]
            if inspect.iscoroutinefunction(raw):

                @functools.wraps(raw)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    return await cls._engine().transactions.run_async(
                        tx_name, raw, args, kwargs, level
                    )

            else:

                @functools.wraps(raw)
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    return cls._engine().transactions.run(tx_name, raw, args, kwargs, level)

            return cast(Callable[P, R], rewrap(wrapper) if rewrap else wrapper)

        return decorator

    @classmethod
    def scheduled(cls, cron: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Run a workflow once per cron tick, exactly once across all processes. Goes above
        ``@DBOS.workflow()`` on a function taking ``(scheduled_time, actual_time)``."""
        scheduler_mod.validate(cron)

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            info = getattr(func, "__dbos_workflow__", None)
            if not isinstance(info, WorkflowInfo):
                raise DBOSException("@DBOS.scheduled must be placed above @DBOS.workflow()")

            def start(workflow_id: str, tick: datetime) -> None:
                with context.SetWorkflowID(workflow_id):
                    starter: Any = cls.start_workflow
                    starter(func, tick, datetime.now(timezone.utc))

            scheduler_mod.register(Schedule(info.name, cron, start))
            return func

        return decorator

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
    def step_status(cls) -> context.StepContext | None:
        """The current step: its number, name and attempt (retries count up from 1)."""
        return context.current_step.get()

    @classproperty
    def fencing_token(cls) -> FencingToken | None:
        """The running workflow's ID and this runner's owner epoch (None outside a workflow): lets
        a step's side effect refuse a runner that lost the workflow to a takeover (see
        ``runtime.fencing``)."""
        ctx = context.current_workflow.get()
        if ctx is None:
            return None
        return FencingToken(ctx.workflow_id, ctx.owner_epoch, cls._rt().idle_timeout_ms)

    @classproperty
    def sql_session(cls) -> psycopg.Connection[Any]:
        """The open connection of the running transaction."""
        conn = context.sql_session.get()
        if conn is None:
            raise DBOSException("DBOS.sql_session is only available inside a @DBOS.transaction")
        return cast(psycopg.Connection[Any], conn)

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
        """Only in a workflow: publish or overwrite a key/value on this workflow."""
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
        if this process dies (recovery resumes it)."""
        info, call_args = _workflow_of(func, args)
        wid = cls._engine().start_workflow(info, call_args, dict(kwargs))
        return WorkflowHandle(_BACKEND, wid)

    # -- async ----------------------------------------------------------------------------------

    @classmethod
    async def start_workflow_async(
        cls, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[Any]:
        """``start_workflow`` for asyncio code: an async workflow runs as a task on this loop."""
        info, call_args = _workflow_of(func, args)
        wid = await cls._engine().start_workflow_async(info, call_args, dict(kwargs))
        return WorkflowHandleAsync(_BACKEND, wid)

    @classmethod
    async def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandleAsync[Any]:
        """``retrieve_workflow`` for asyncio code."""
        if existing_workflow:
            found = await asyncio.to_thread(cls._rt().sysdb.get_status_result, workflow_id)
            if found is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandleAsync(_BACKEND, workflow_id)

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
    def _enqueue(
        cls, queue: Queue, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> WorkflowHandle[Any]:
        info, call_args = _workflow_of(func, args)
        dedup, priority = current_enqueue_options()
        if priority is not None and priority != 0 and not queue.priority_enabled:
            raise DBOSException(
                f"queue {queue.name!r} does not have priority_enabled=True; "
                "a priority would be ignored"
            )
        request = EnqueueRequest(queue.name, priority or 0, dedup)
        wid = cls._engine().enqueue_workflow(info, call_args, kwargs, request)
        return WorkflowHandle(_BACKEND, wid)

    @classmethod
    def retrieve_workflow(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle to any workflow by ID."""
        if existing_workflow and cls._rt().sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(_BACKEND, workflow_id)

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's record, or None when no workflow has that ID."""
        return cls._rt().sysdb.get_workflow_status(workflow_id)

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
        return WorkflowHandle(_BACKEND, workflow_id)

    @classmethod
    def restart_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """A new execution of the workflow, with the same inputs and a new ID."""
        rt = cls._rt()
        new_id = management.restart(rt.sysdb, workflow_id)
        rt.dispatcher.wake()
        return WorkflowHandle(_BACKEND, new_id)

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
        return WorkflowHandle(_BACKEND, new_id)


_exit_hook_registered = False


def _register_exit_hook() -> None:
    """A script that ends without ``DBOS.destroy()`` still stops cleanly: at interpreter exit its
    executor row is marked stopped (so no one mistakes it for a live process, and others take over
    its unfinished workflows at once), unless a step is still running: then it is alive until the
    process is gone."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(DBOS.destroy)


def _unwrap_method(func: Any) -> tuple[Callable[..., Any], Any]:
    """Accept decorators applied above @staticmethod / @classmethod too."""
    if isinstance(func, staticmethod):
        return func.__func__, staticmethod
    if isinstance(func, classmethod):
        return func.__func__, classmethod
    return cast(Callable[..., Any], func), None


def _class_part(qualname: str) -> str | None:
    parts = qualname.split(".")
    if len(parts) < 2 or parts[-2] == "<locals>":
        return None
    return ".".join(parts[:-1])


def _class_name_of(func: Callable[..., Any]) -> str | None:
    owner = _class_part(func.__qualname__)
    return f"{func.__module__}:{owner}" if owner else None


def _looks_like_classmethod(func: Callable[..., Any]) -> bool:
    # `@classmethod` written above `@DBOS.workflow()` hands us the plain function: its first
    # parameter is the class, conventionally named `cls`.
    if _class_part(func.__qualname__) is None:
        return False
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "cls"


def _workflow_of(
    func: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[WorkflowInfo, tuple[Any, ...]]:
    """The registered workflow behind a decorated function or bound classmethod."""
    target: Any = func
    bound_self = getattr(func, "__self__", None)
    if bound_self is not None and hasattr(func, "__func__"):
        target = func.__func__
        args = (bound_self, *args)
    info = getattr(target, "__dbos_workflow__", None)
    if not isinstance(info, WorkflowInfo):
        raise DBOSException(
            f"{getattr(func, '__qualname__', func)!r} is not a @DBOS.workflow function"
        )
    return info, args


class _DBOSHandles:
    """Handles of the launched runtime: results from the local run or the database."""

    def handle_result(self, workflow_id: str) -> Any:
        return DBOS._engine().results.get_result(workflow_id)

    def handle_status(self, workflow_id: str) -> WorkflowStatus | None:
        return DBOS.get_workflow_status(workflow_id)

    async def handle_result_async(self, workflow_id: str) -> Any:
        return await DBOS._engine().results.get_result_async(workflow_id)


_BACKEND = _DBOSHandles()
queues.bind_enqueuer(DBOS._enqueue)
