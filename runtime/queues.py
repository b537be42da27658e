"""Queues: durable enqueue, and the dispatcher that starts queued workflows in every process.

Enqueue records the workflow as ENQUEUED (one statement). Each launched process runs one
dispatcher thread that claims ready workflows of every declared queue with
``FOR UPDATE SKIP LOCKED``, in priority then arrival order, within the queue's limits:

- ``concurrency``: running workflows of the queue across all processes (PENDING rows, so a
  workflow whose process crashed holds its slot until it is recovered and finishes);
- ``limiter``: starts per period across all processes;
- ``worker_concurrency``: running workflows of the queue in this process (counted in memory, so two
  processes that share an executor ID still each get their own budget).

The dispatcher wakes on a NOTIFY (enqueue anywhere, or a queued workflow stopping anywhere), on a
local enqueue or finish, when a rate window reopens, and otherwise polls slowly as a fallback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypedDict, TypeVar

from runtime import registry
from runtime.errors import DBOSException

logger = logging.getLogger("dbos")

P = ParamSpec("P")
R = TypeVar("R")

QUEUE_CHANNEL = "dbos_queue_channel"
# Where management commands put workflows to resume, restart or fork: no limits, every executor.
INTERNAL_QUEUE = "_dbos_internal_queue"
POLL_INTERVAL_S = 1.0


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
        from runtime.dbos import DBOS

        return DBOS._enqueue(self, func, args, dict(kwargs))

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


class QueueDispatcher:
    """The thread that starts queued workflows in this process."""

    def __init__(
        self,
        engine: Any,
        sysdb: Any,
        *,
        executor_id: str,
        process_id: str,
        application_version: str,
        max_threads: int,
    ) -> None:
        self.engine = engine
        self.sysdb = sysdb
        self.executor_id = executor_id
        self.process_id = process_id
        self.application_version = application_version
        self.max_threads = max_threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbos-queue-dispatcher", daemon=True)
        # Epoch ms before which a rate-limited queue cannot start anything more.
        self._not_before: dict[str, int] = {}

    def start(self) -> None:
        """Start dispatching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching and wait for the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def wake(self, queue_name: str = "") -> None:
        """Look at the queues now (a NOTIFY, a local enqueue, or a freed slot)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                next_due = self.dispatch_once()
            except DBOSException as exc:
                logger.warning("queue dispatch failed (will retry): %s", exc)
                next_due = None
            except Exception:
                logger.exception("queue dispatch failed (will retry)")
                next_due = None
            timeout = POLL_INTERVAL_S
            if next_due is not None:
                timeout = min(timeout, max(0.0, (next_due - _now_ms()) / 1000))
            self._wake.wait(timeout)

    def dispatch_once(self) -> int | None:
        """One pass over the queues; returns when a rate-limited queue can next start work."""
        names = registry.workflow_names()
        next_due: int | None = None
        for queue in declared_queues():
            if self._stop.is_set() or self.engine.stopping.is_set():
                return None
            not_before = self._not_before.get(queue.name, 0)
            if not_before > _now_ms():
                next_due = not_before if next_due is None else min(next_due, not_before)
                continue
            capacity = self.max_threads - self.engine.running_in_background()
            if queue.worker_concurrency is not None:
                capacity = min(
                    capacity, queue.worker_concurrency - self.engine.running_from_queue(queue.name)
                )
            if capacity <= 0:
                continue
            limiter = (
                (queue.limiter["limit"], float(queue.limiter["period"])) if queue.limiter else None
            )
            batch = self.sysdb.dequeue(
                queue.name,
                executor_id=self.executor_id,
                process_id=self.process_id,
                application_version=self.application_version,
                names=names,
                max_claim=capacity,
                concurrency=queue.concurrency,
                limiter=limiter,
            )
            claimed, possible_at = batch.workflows, batch.next_start_at_ms
            if possible_at is not None:
                self._not_before[queue.name] = possible_at
                next_due = possible_at if next_due is None else min(next_due, possible_at)
            for dequeued in claimed:
                try:
                    self.engine.run_dequeued(dequeued)
                except DBOSException as exc:
                    logger.error("cannot start dequeued workflow: %s", exc)
        return next_due


def _now_ms() -> int:
    return int(time.time() * 1000)
