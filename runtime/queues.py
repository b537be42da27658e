"""Queues as the application declares them, and the options of an enqueue.

Enqueue records the workflow as ENQUEUED (one statement); the dispatcher of every launched process
(``runtime.dispatcher``) starts queued workflows within the queue's limits:

- ``concurrency``: running workflows of the queue across all processes (PENDING rows, so a
  workflow whose process crashed holds its slot until it is recovered and finishes);
- ``limiter``: starts per period across all processes;
- ``worker_concurrency``: running workflows of the queue in this process (counted in memory, so two
  processes that share an executor ID still each get their own budget).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypedDict, TypeVar

from runtime.errors import DBOSException

P = ParamSpec("P")
R = TypeVar("R")

# Where management commands put workflows to resume, restart or fork: no limits, every executor.
INTERNAL_QUEUE = "_dbos_internal_queue"


class Limiter(TypedDict):
    """At most ``limit`` starts per ``period`` seconds, across all processes."""

    limit: int
    period: float


@dataclass(frozen=True)
class _EnqueueOptions:
    deduplication_id: str | None
    priority: int | None


_enqueue_options: ContextVar[_EnqueueOptions | None] = ContextVar(
    "dbos_enqueue_options", default=None
)


class SetEnqueueOptions:
    """``with SetEnqueueOptions(deduplication_id=..., priority=...):`` applies to the enqueues in
    the block. A deduplication ID refuses a second enqueue (``DBOSQueueDeduplicatedError``) while
    the first is ENQUEUED or PENDING; a lower priority runs first (queues need
    ``priority_enabled``)."""

    def __init__(self, *, deduplication_id: str | None = None, priority: int | None = None) -> None:
        if priority is not None and (
            not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority < 2**31
        ):
            raise DBOSException(
                "priority must be an integer from 0 to 2147483647 (lower runs first)"
            )
        self._options = _EnqueueOptions(deduplication_id, priority)
        self._token: Any = None

    def __enter__(self) -> SetEnqueueOptions:
        self._token = _enqueue_options.set(self._options)
        return self

    def __exit__(self, *exc: object) -> None:
        _enqueue_options.reset(self._token)


def current_enqueue_options() -> tuple[str | None, int | None]:
    """(deduplication_id, priority) set by an enclosing ``SetEnqueueOptions``."""
    options = _enqueue_options.get()
    return (options.deduplication_id, options.priority) if options else (None, None)


Enqueuer = Callable[["Queue", Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]
# What ``Queue.enqueue`` calls: bound by the ``DBOS`` facade (which sits above this module).
_enqueuer: Enqueuer | None = None


def bind_enqueuer(enqueuer: Enqueuer) -> None:
    """Give ``Queue.enqueue`` its implementation (the facade's, once, at import)."""
    global _enqueuer
    _enqueuer = enqueuer


_queues: dict[str, Queue] = {}
_queues_lock = threading.Lock()


class Queue:
    """A named queue of workflows, declared at import time in every process of the app.

    ``concurrency`` bounds its running workflows across all processes, ``worker_concurrency`` per
    process, and ``limiter={"limit": n, "period": seconds}`` its starts per period."""

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: Limiter | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
    ) -> None:
        for label, value in (
            ("concurrency", concurrency),
            ("worker_concurrency", worker_concurrency),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise DBOSException(f"queue {name!r}: {label} must be a positive integer")
        if limiter is not None:
            if (
                not isinstance(limiter.get("limit"), int)
                or limiter["limit"] < 1
                or not isinstance(limiter.get("period"), int | float)
                or limiter["period"] <= 0
            ):
                raise DBOSException(
                    f"queue {name!r}: limiter must be {{'limit': positive int, "
                    "'period': positive seconds}"
                )
        self.name = name
        self.concurrency = concurrency
        self.limiter = limiter
        self.worker_concurrency = worker_concurrency
        self.priority_enabled = priority_enabled
        with _queues_lock:
            _queues[name] = self

    def enqueue(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Any:
        """Durably enqueue a workflow; returns its handle once it is ENQUEUED."""
        if _enqueuer is None:  # pragma: no cover - bound when the runtime package is imported
            raise DBOSException("the runtime is not loaded")
        return _enqueuer(self, func, args, dict(kwargs))

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"


def declared_queues() -> list[Queue]:
    """Every queue declared in this process (the internal one included)."""
    with _queues_lock:
        return list(_queues.values())


# Management (resume, restart, fork from the CLI) enqueues here; every executor serves it.
Queue(INTERNAL_QUEUE, priority_enabled=True)


def get_queue(name: str) -> Queue | None:
    """The queue declared under ``name`` in this process."""
    with _queues_lock:
        return _queues.get(name)
