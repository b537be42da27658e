"""What every part of the facade shares: the launched runtime, and handles bound to it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from runtime.errors import DBOSException
from runtime.registry import WorkflowInfo
from runtime.status import WorkflowStatus

if TYPE_CHECKING:
    from runtime.composition import Runtime
    from runtime.config import DBOSConfig, Settings
    from runtime.engine import Engine

T = TypeVar("T")

logger = logging.getLogger("dbos")

# The runtime of a replay check (``runtime.replay_check``) in the thread (or task) that runs it:
# the facade's calls there reach it, whatever this process has launched.
checking_runtime: ContextVar[Runtime | None] = ContextVar("dbos_checking_runtime", default=None)


class classproperty(Generic[T]):
    """A read-only property of the class itself (``DBOS.workflow_id``)."""

    def __init__(self, fget: Callable[[Any], T]) -> None:
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj: object, owner: type[Any]) -> T:
        return self.fget(owner)


class FacadeBase:
    """The process's one runtime object and its launched runtime. State lives on this class
    (always read and written as ``FacadeBase._...``), so every part of the facade sees the same."""

    _instance: ClassVar[Any] = None
    _runtime: ClassVar[Runtime | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()
    # Why ``DBOS.launch()`` may not run now, if it may not: the replay check imports the new code
    # without launching it, and an app that launched at import would recover (run the steps of,
    # write to) the very workflows the check promises to leave alone.
    launch_refusal: ClassVar[str | None] = None
    refused_launches: ClassVar[int] = 0

    _config_arg: DBOSConfig | None
    _settings: Settings

    @classmethod
    def _rt(cls) -> Runtime:
        runtime = checking_runtime.get() or FacadeBase._runtime
        if runtime is None:
            raise DBOSException("DBOS is not launched: call DBOS.launch() first")
        return runtime

    @classmethod
    def _engine(cls) -> Engine:
        return cls._rt().engine


class _DBOSHandles:
    """Handles of the launched runtime: results from the local run or the database."""

    def handle_result(self, workflow_id: str) -> Any:
        return FacadeBase._engine().results.get_result(workflow_id)

    def handle_status(self, workflow_id: str) -> WorkflowStatus | None:
        return FacadeBase._rt().sysdb.get_workflow_status(workflow_id)

    async def handle_result_async(self, workflow_id: str) -> Any:
        return await FacadeBase._engine().results.get_result_async(workflow_id)


BACKEND = _DBOSHandles()


def workflow_of(
    func: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[WorkflowInfo, tuple[Any, ...]]:
    """The registered workflow behind a decorated function or bound classmethod: a workflow, or
    the one-step workflow (``<temp>.`` + its name, DBOS's) of a ``@DBOS.step`` or
    ``@DBOS.transaction`` function. Anything else raises ``DBOSException``."""
    target: Any = func
    bound_self = getattr(func, "__self__", None)
    if bound_self is not None and hasattr(func, "__func__"):
        target = func.__func__
        args = (bound_self, *args)
    info = getattr(target, "__dbos_workflow__", None)
    if not isinstance(info, WorkflowInfo):
        info = getattr(target, "__dbos_temp_workflow__", None)
    if not isinstance(info, WorkflowInfo):
        raise DBOSException(
            f"{getattr(func, '__qualname__', func)!r} is not a @DBOS.workflow, @DBOS.step or "
            "@DBOS.transaction function"
        )
    return info, args
