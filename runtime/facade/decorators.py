"""The decorators: `@DBOS.workflow`, `@DBOS.step`, `@DBOS.transaction`, `@DBOS.scheduled` and
`@DBOS.dbos_class`, and `DBOSConfiguredInstance`, the base class of instances whose methods are
workflows."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar, cast

import psycopg

from runtime import context, registry
from runtime import scheduler as scheduler_mod
from runtime.engine import DEFAULT_MAX_RECOVERY_ATTEMPTS, StepOptions, step_policy
from runtime.engine.steps import ShouldRetry
from runtime.errors import DBOSException
from runtime.facade.base import FacadeBase
from runtime.facade.calls import WorkflowCalls
from runtime.registry import WorkflowInfo
from runtime.scheduler import Schedule

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_ISOLATION = {
    "SERIALIZABLE": psycopg.IsolationLevel.SERIALIZABLE,
    "REPEATABLE READ": psycopg.IsolationLevel.REPEATABLE_READ,
    "READ COMMITTED": psycopg.IsolationLevel.READ_COMMITTED,
}


class Decorators(WorkflowCalls):
    """What turns a user's function into a workflow, step or transaction."""

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
        name: str | None = None,
        retries_allowed: bool = False,
        interval_seconds: float = 1.0,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
        should_retry: ShouldRetry | None = None,
        timeout_seconds: float | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Make a function a checkpointed step: never re-executed once it completed.

        With ``retries_allowed``, a failing step is tried ``max_attempts`` times in all, the
        first retry after ``interval_seconds``, each later wait ``backoff_rate`` times longer;
        ``should_retry(exception)`` returning False fails it at once. ``timeout_seconds`` (async
        steps only) cancels an attempt running longer and fails it with
        ``DBOSStepTimeoutError``. Bad options raise ``DBOSException`` here. A step function can
        also be started or enqueued as a workflow of its own (one step)."""
        options = StepOptions(
            retries_allowed=retries_allowed,
            interval_seconds=interval_seconds,
            max_attempts=max_attempts,
            backoff_rate=backoff_rate,
            should_retry=should_retry,
            timeout_seconds=timeout_seconds,
        )

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            raw, rewrap = _unwrap_method(func)
            step_name = name or raw.__qualname__
            policy = step_policy(step_name, raw, options)
            wrapper: Callable[..., Any]
            if inspect.iscoroutinefunction(raw):

                @functools.wraps(raw)
                async def wrapper(*args: Any, **kwargs: Any) -> Any:
                    if context.current_workflow.get() is None:
                        return await raw(*args, **kwargs)
                    return await cls._engine().steps.run_async(step_name, raw, args, kwargs, policy)

            else:

                @functools.wraps(raw)
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    if context.current_workflow.get() is None:
                        return raw(*args, **kwargs)
                    return cls._engine().steps.run(step_name, raw, args, kwargs, policy)

            _as_one_step_workflow(wrapper, step_name, raw, rewrap)
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
                    if context.current_workflow.get() is None:
                        return await cls._engine().call_workflow_async(temp, args, kwargs)
                    return await cls._engine().transactions.run_async(
                        tx_name, raw, args, kwargs, level
                    )

            else:

                @functools.wraps(raw)
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    if context.current_workflow.get() is None:
                        return cls._engine().call_workflow(temp, args, kwargs)
                    return cls._engine().transactions.run(tx_name, raw, args, kwargs, level)

            # As in DBOS, a transaction called outside a workflow runs as its one-step workflow,
            # so it commits once per workflow ID (``SetWorkflowID`` makes a call idempotent). A
            # method's records its instance or class by name, as a workflow method's does.
            temp = _as_one_step_workflow(wrapper, tx_name, raw, rewrap)
            return cast(Callable[P, R], rewrap(wrapper) if rewrap else wrapper)

        return decorator

    @classmethod
    def dbos_class(cls, class_name: str | None = None) -> Callable[[type[T]], type[T]]:
        """Register a class whose methods are workflows, steps or transactions; required for
        instance-method workflows (of a ``DBOSConfiguredInstance`` subclass), optional for
        static and class methods. ``class_name`` (default: the class's ``__qualname__``) is the
        name recorded in ``workflow_status.class_name`` and must be unique in the application.

        Raises ``DBOSException`` when another class is already registered under that name."""

        def register(target: type[T]) -> type[T]:
            registry.register_class(target, class_name)
            return target

        return register

    @classmethod
    def register_instance(cls, inst: object) -> None:
        """Register a configured instance (``DBOSConfiguredInstance.__init__`` calls this) under
        (its class's name, its ``config_name``). Raises ``DBOSException`` when another object
        holds that pair. Create instances before ``DBOS.launch()``: launch recovers workflows."""
        registry.register_instance(inst, launched=FacadeBase._runtime is not None)

    @classmethod
    def scheduled(cls, cron: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Run a workflow once per cron tick, exactly once across all processes. Goes above
        ``@DBOS.workflow()`` on a function taking ``(scheduled_time, actual_time)``."""
        scheduler_mod.validate(cron)

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            info = getattr(func, "__dbos_workflow__", None)
            if not isinstance(info, WorkflowInfo):
                raise DBOSException("@DBOS.scheduled must be placed above @DBOS.workflow()")
            if info.takes_self:  # a tick has no instance to run on
                raise DBOSException(
                    "Configured instance methods cannot be used as scheduled workflows"
                )

            def start(workflow_id: str, tick: datetime) -> None:
                with context.SetWorkflowID(workflow_id):
                    starter: Any = cls.start_workflow
                    starter(func, tick, datetime.now(timezone.utc))

            scheduler_mod.register(Schedule(info.name, cron, start))
            return func

        return decorator


TEMP_WORKFLOW_PREFIX = "<temp>."


def _as_one_step_workflow(
    step: Callable[..., Any], step_name: str, raw: Callable[..., Any], rewrap: Any
) -> WorkflowInfo:
    """Register the workflow that runs ``step`` alone, as DBOS does: it is what
    ``DBOS.start_workflow(step, ...)`` and ``queue.enqueue(step, ...)`` start, named
    ``<temp>.`` + the step's name, so recovery (and a client enqueueing by name) finds it. It
    calls the step's wrapper, so its one step is recorded like any other. For a method (``raw``
    the undecorated function, ``rewrap`` the static/classmethod it sat on) it knows its class as
    a workflow method does; ``@DBOS.dbos_class`` then says which kind of method it is."""
    body: Callable[..., Any]
    if inspect.iscoroutinefunction(step):

        async def body(*args: Any, **kwargs: Any) -> Any:
            return await step(*args, **kwargs)

    else:

        def body(*args: Any, **kwargs: Any) -> Any:
            return step(*args, **kwargs)

    functools.update_wrapper(body, step)
    info = WorkflowInfo(
        name=TEMP_WORKFLOW_PREFIX + step_name,
        func=body,
        max_recovery_attempts=DEFAULT_MAX_RECOVERY_ATTEMPTS,
        is_classmethod=rewrap is classmethod or _looks_like_classmethod(raw),
        class_name=_class_name_of(raw),
        is_async=inspect.iscoroutinefunction(step),
    )
    step.__dbos_temp_workflow__ = info  # type: ignore[attr-defined]
    registry.register_workflow(info)
    return info


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


class DBOSConfiguredInstance:
    """Base class of a ``@DBOS.dbos_class`` whose instance methods are workflows.

    ``config_name`` names the instance: a workflow started on it records (class name,
    config_name), never the instance itself, and a re-run (recovery, queue dispatch, resume,
    fork) finds the instance again by these names in the process that runs it. Each instance of
    a class needs its own ``config_name`` (``DBOSException`` otherwise), and every instance must
    be created, in every process, before ``DBOS.launch()``.

    Example::

        @DBOS.dbos_class()
        class Greeter(DBOSConfiguredInstance):
            def __init__(self, greeting: str) -> None:
                super().__init__(config_name=greeting)
                self.greeting = greeting

            @DBOS.workflow()
            def greet(self, name: str) -> str:
                return f"{self.greeting}, {name}"
    """

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        Decorators.register_instance(self)
