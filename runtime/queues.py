"""Queues as the application declares them, and the options of an enqueue.

Enqueue records the workflow as ENQUEUED (one statement); the dispatcher of every launched process
(``runtime.dispatcher``) starts queued workflows within the queue's limits:

- ``concurrency``: running workflows of the queue across all processes (PENDING rows, so a
  workflow whose process crashed holds its slot until it is recovered and finishes);
- ``limiter``: starts per period across all processes;
- ``worker_concurrency``: running workflows of the queue in this process (counted in memory, so two
  processes that share an executor ID still each get their own budget).

A ``partition_queue=True`` queue applies each of these limits to each partition (the
``queue_partition_key`` of ``SetEnqueueOptions``) separately. An enqueue with ``delay_seconds`` is
recorded DELAYED and turned ENQUEUED by a dispatcher once the delay has passed; one with
``app_version`` is dequeued only by executors of that version. A process dequeues from the queues
it listens to (``DBOS.listen_queues``), by default every queue it declares.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypedDict, TypeVar

from runtime.config import warn_unsupported
from runtime.context import attributes_json
from runtime.errors import DBOSException

P = ParamSpec("P")
R = TypeVar("R")

# Where management commands put workflows to resume, restart or fork: no limits, every executor.
INTERNAL_QUEUE = "_dbos_internal_queue"


class Limiter(TypedDict):
    """At most ``limit`` starts per ``period`` seconds, across all processes."""

    limit: int
    period: float


MAX_PRIORITY = 2**31 - 1
# DBOS's default for ``Queue(polling_interval_sec=...)``.
DEFAULT_POLLING_INTERVAL_S = 1.0


def check_priority(priority: object) -> None:
    """Refuse a priority that is not an integer from 0 to ``MAX_PRIORITY`` (``DBOSException``)."""
    if priority is not None and (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not 0 <= priority <= MAX_PRIORITY
    ):
        raise DBOSException(
            f"Invalid priority {priority!r}: priority must be an integer from 0 to {MAX_PRIORITY} "
            "(lower runs first)"
        )


# The longest delay (about 31.7 million years): its end, in epoch milliseconds, must fit the
# bigint column it is recorded in, with room to spare.
MAX_DELAY_SECONDS = 10**15


def check_delay(delay_seconds: object) -> None:
    """Refuse a delay that is not a number of seconds from 0 to ``MAX_DELAY_SECONDS``
    (``DBOSException``)."""
    if delay_seconds is not None and (
        not isinstance(delay_seconds, int | float)
        or isinstance(delay_seconds, bool)
        or not 0 <= delay_seconds <= MAX_DELAY_SECONDS
    ):
        raise DBOSException(
            f"Invalid delay_seconds {delay_seconds!r}: must be a number of seconds from 0 to "
            f"{MAX_DELAY_SECONDS:.0e}"
        )


def check_queue_name(queue_name: object) -> str:
    """``queue_name`` if it is a non-empty string; ``DBOSException`` otherwise."""
    if not isinstance(queue_name, str) or not queue_name.strip():
        raise DBOSException(f"invalid queue_name {queue_name!r}: expected a non-empty string")
    return queue_name


# The keys of ``EnqueueOptions`` (``DBOSClient.enqueue``, ``DBOS.enqueue_workflow_with_options``).
# DBOS's enqueue options for features this runtime does not have (authenticated users,
# serializers, duplication policies, application names): accepted so that a DBOS client's call
# works, and named in a warning when given.
ENQUEUE_OPTIONS_IGNORED = (
    "authenticated_user",
    "authenticated_roles",
    "serialization_type",
    "duplication_policy",
    "application_name",
)
ENQUEUE_OPTION_KEYS = (
    "workflow_name",
    "queue_name",
    "workflow_id",
    "workflow_class_name",
    "app_version",
    "priority",
    "deduplication_id",
    "workflow_timeout",
    "queue_partition_key",
    "delay_seconds",
    "class_name",
    "instance_name",
    "max_recovery_attempts",
    "attributes",
) + ENQUEUE_OPTIONS_IGNORED


def options_class_name(options: Mapping[str, Any]) -> Any:
    """The class of the workflow that enqueue ``options`` name: ours or DBOS's key."""
    return options.get("workflow_class_name") or options.get("class_name")


def check_enqueue_options(options: object) -> None:
    """Refuse, with a ``DBOSException`` naming the option, enqueue options that are not a dict
    of known keys (a misspelt key must not be silently ignored), lack a ``workflow_name`` or
    ``queue_name``, or hold a value of the wrong type or range."""
    if not isinstance(options, Mapping):
        raise DBOSException(f"enqueue options must be a dict (EnqueueOptions), not {options!r}")
    unknown = sorted(repr(k) for k in options if k not in ENQUEUE_OPTION_KEYS)
    if unknown:
        raise DBOSException(
            f"unknown enqueue options {', '.join(unknown)}; known: {', '.join(ENQUEUE_OPTION_KEYS)}"
        )
    for key in ("workflow_name", "queue_name"):
        value = options.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DBOSException(f"enqueue options need {key!r} (a non-empty string)")
    warn_unsupported("enqueue options", options, ENQUEUE_OPTIONS_IGNORED)
    attempts = options.get("max_recovery_attempts")
    if attempts is not None and (
        not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0
    ):
        raise DBOSException(
            f"enqueue option 'max_recovery_attempts' must be an integer >= 0, not {attempts!r}"
        )
    text_keys = (
        "workflow_id",
        "workflow_class_name",
        "class_name",
        "instance_name",
        "app_version",
        "deduplication_id",
        "queue_partition_key",
    )
    for key in text_keys:
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise DBOSException(f"enqueue option {key!r} must be a string, not {value!r}")
    check_priority(options.get("priority"))
    check_delay(options.get("delay_seconds"))
    attributes_json(options.get("attributes"))
    timeout = options.get("workflow_timeout")
    if timeout is not None and (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not 0 <= timeout < float("inf")
    ):
        raise DBOSException(
            f"enqueue option 'workflow_timeout' {timeout!r}: must be a finite number of "
            "seconds >= 0 (0: no timeout)"
        )
    if (
        options.get("queue_partition_key") is not None
        and options.get("deduplication_id") is not None
    ):
        raise DBOSException("Deduplication is not supported for partitioned queues")


@dataclass(frozen=True)
class EnqueueOptionValues:
    """What an enclosing ``SetEnqueueOptions`` set (each None when not set). ``delay_until_ms``
    is the epoch millisecond the delay ends, fixed when the options were created (as DBOS)."""

    deduplication_id: str | None = None
    priority: int | None = None
    app_version: str | None = None
    queue_partition_key: str | None = None
    delay_until_ms: int | None = None

    def set_names(self) -> list[str]:
        """The names of the options that are set, in DBOS's order."""
        return [
            name
            for name, value in (
                ("deduplication_id", self.deduplication_id),
                ("priority", self.priority),
                ("app_version", self.app_version),
                ("queue_partition_key", self.queue_partition_key),
                ("delay_seconds", self.delay_until_ms),
            )
            if value is not None
        ]


_enqueue_options: ContextVar[EnqueueOptionValues | None] = ContextVar(
    "dbos_enqueue_options", default=None
)


class SetEnqueueOptions:
    """``with SetEnqueueOptions(...):`` applies to the enqueues in the block.

    - ``deduplication_id``: a second enqueue with the same ID on the same queue raises
      ``DBOSQueueDeduplicatedError`` while the first is DELAYED, ENQUEUED or PENDING;
    - ``priority``: 0 to 2**31-1, lower runs first (the queue needs ``priority_enabled``);
    - ``app_version``: only executors of that application version dequeue the workflow;
    - ``queue_partition_key``: the partition of a ``partition_queue=True`` queue (required there,
      refused elsewhere); the queue's limits apply per partition;
    - ``delay_seconds``: the workflow is DELAYED and not dequeued before that many seconds
      (counted from when the options are created).

    Starting a workflow without a queue (``DBOS.start_workflow``) inside the block raises
    ``DBOSException``: these options only mean something to a queue."""

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        app_version: str | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
    ) -> None:
        check_priority(priority)
        check_delay(delay_seconds)
        for label, text in (
            ("deduplication_id", deduplication_id),
            ("app_version", app_version),
            ("queue_partition_key", queue_partition_key),
        ):
            if text is not None and not isinstance(text, str):
                raise DBOSException(f"{label} must be a string, not {type(text).__name__}")
        delay_until = (
            int((time.time() + delay_seconds) * 1000) if delay_seconds is not None else None
        )
        self._options = EnqueueOptionValues(
            deduplication_id, priority, app_version, queue_partition_key, delay_until
        )
        self._token: Any = None

    def __enter__(self) -> SetEnqueueOptions:
        self._token = _enqueue_options.set(self._options)
        return self

    def __exit__(self, *exc: object) -> None:
        _enqueue_options.reset(self._token)


def current_enqueue_options() -> EnqueueOptionValues:
    """The options set by an enclosing ``SetEnqueueOptions`` (all None outside one)."""
    return _enqueue_options.get() or EnqueueOptionValues()


def refuse_enqueue_options() -> None:
    """For a start without a queue: raise ``DBOSException`` if enqueue options are set, as DBOS
    does, rather than silently ignore them."""
    names = current_enqueue_options().set_names()
    if names:
        raise DBOSException(
            f"Enqueue option(s) {', '.join(names)} set on a workflow that is not being "
            "enqueued; they only apply when enqueueing a workflow on a queue"
        )


Enqueuer = Callable[["Queue", Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]
AsyncEnqueuer = Callable[
    ["Queue", Callable[..., Any], tuple[Any, ...], dict[str, Any]], Coroutine[Any, Any, Any]
]
# What ``Queue.enqueue`` and ``Queue.enqueue_async`` call: bound by the ``DBOS`` facade (which sits
# above this module).
_enqueuer: Enqueuer | None = None
_async_enqueuer: AsyncEnqueuer | None = None


def bind_enqueuer(enqueuer: Enqueuer, async_enqueuer: AsyncEnqueuer | None = None) -> None:
    """Give ``Queue.enqueue`` (and ``Queue.enqueue_async``) their implementation (the facade's,
    once, at import)."""
    global _enqueuer, _async_enqueuer
    _enqueuer = enqueuer
    _async_enqueuer = async_enqueuer


_queues: dict[str, Queue] = {}
_queues_lock = threading.Lock()
# The queues this process dequeues from (``DBOS.listen_queues``); None: every declared queue.
_listening: frozenset[str] | None = None


class Queue:
    """A named queue of workflows, declared at import time in every process of the app.

    ``concurrency`` bounds its running workflows across all processes, ``worker_concurrency`` per
    process, and ``limiter={"limit": n, "period": seconds}`` its starts per period. With
    ``partition_queue=True`` every enqueue names a partition
    (``SetEnqueueOptions(queue_partition_key=...)``) and each of these limits applies to each
    partition separately. ``polling_interval_sec`` below the default (1 s) makes the dispatcher
    poll that often when no notification wakes it (enqueues and finished workflows notify).

    Declaring a second queue under a name already declared in this process raises
    ``DBOSException`` (as DBOS does, whatever the parameters): the first would silently stop
    being served as declared."""

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: Limiter | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = DEFAULT_POLLING_INTERVAL_S,
    ) -> None:
        _check_queue(name, concurrency, limiter, worker_concurrency, polling_interval_sec)
        self.name = name
        self.concurrency = concurrency
        self.limiter = limiter
        self.worker_concurrency = worker_concurrency
        self.priority_enabled = priority_enabled
        self.partition_queue = partition_queue
        self.polling_interval_sec = polling_interval_sec
        with _queues_lock:
            if name in _queues:
                raise DBOSException(f"Queue {name} has already been declared")
            _queues[name] = self

    def enqueue(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Any:
        """Durably enqueue a workflow; returns its handle once it is ENQUEUED (or DELAYED).
        Raises ``DBOSException`` for a partition key missing on a partitioned queue or given
        to another, and ``DBOSQueueDeduplicatedError`` for a deduplication ID in use."""
        if _enqueuer is None:  # pragma: no cover - bound when the runtime package is imported
            raise DBOSException("the runtime is not loaded")
        return _enqueuer(self, func, args, dict(kwargs))

    async def enqueue_async(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> Any:
        """``enqueue`` for asyncio code: returns a ``WorkflowHandleAsync`` without blocking the
        event loop."""
        if _async_enqueuer is None:  # pragma: no cover - bound when the runtime is imported
            raise DBOSException("the runtime is not loaded")
        return await _async_enqueuer(self, func, args, dict(kwargs))

    def check_enqueue(self, options: EnqueueOptionValues) -> None:
        """Refuse, before anything is recorded, options this queue cannot honour (as DBOS)."""
        key = options.queue_partition_key
        if key is not None and options.deduplication_id is not None:
            raise DBOSException("Deduplication is not supported for partitioned queues")
        if self.partition_queue and key is None:
            raise DBOSException(
                f"A workflow cannot be enqueued on partitioned queue {self.name} without a "
                "partition key"
            )
        if key is not None and not self.partition_queue:
            raise DBOSException(
                f"You can only use a partition key on a partition-enabled queue. Key {key} was "
                f"used with non-partitioned queue {self.name}"
            )
        if options.priority and not self.priority_enabled:
            raise DBOSException(
                f"queue {self.name!r} does not have priority_enabled=True; "
                "a priority would be ignored"
            )

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"


def _check_queue(
    name: str,
    concurrency: int | None,
    limiter: Limiter | None,
    worker_concurrency: int | None,
    polling_interval_sec: float,
) -> None:
    if not isinstance(name, str) or not name:
        raise DBOSException("a queue's name must be a non-empty string")
    for label, value in (("concurrency", concurrency), ("worker_concurrency", worker_concurrency)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DBOSException(f"queue {name!r}: {label} must be a positive integer")
    if (
        concurrency is not None
        and worker_concurrency is not None
        and worker_concurrency > concurrency
    ):
        raise DBOSException(
            f"queue {name!r}: concurrency must be greater than or equal to worker_concurrency"
        )
    if limiter is not None and (
        not isinstance(limiter.get("limit"), int)
        or limiter["limit"] < 1
        or not isinstance(limiter.get("period"), int | float)
        or limiter["period"] <= 0
    ):
        raise DBOSException(
            f"queue {name!r}: limiter must be {{'limit': positive int, 'period': positive seconds}}"
        )
    if not isinstance(polling_interval_sec, int | float) or not polling_interval_sec > 0:
        raise DBOSException(f"queue {name!r}: polling_interval_sec must be positive")


def declared_queues() -> list[Queue]:
    """Every queue declared in this process (the internal one included)."""
    with _queues_lock:
        return list(_queues.values())


def get_queue(name: str) -> Queue | None:
    """The queue declared under ``name`` in this process."""
    with _queues_lock:
        return _queues.get(name)


def delete_queue(name: str) -> None:
    """Forget the queue declared under ``name`` (nothing when there is none): this process stops
    dequeuing from it and the name may be declared again. Its recorded workflows stay as they are.
    The internal queue cannot be deleted (``DBOSException``)."""
    if name == INTERNAL_QUEUE:
        raise DBOSException(f"the internal queue {INTERNAL_QUEUE!r} cannot be deleted")
    with _queues_lock:
        _queues.pop(name, None)


def listen(names: list[str], *, launched: bool) -> None:
    """Make this process dequeue only from ``names`` (and the internal queue). Raises
    ``DBOSException`` once launched, or when called a second time (as DBOS)."""
    global _listening
    if launched:
        raise DBOSException("listen_queues called after DBOS is launched")
    with _queues_lock:
        if _listening is not None:
            raise DBOSException("listen_queues called more than once")
        _listening = frozenset(names)


def forget_declared() -> None:
    """Forget every queue the application declared (``DBOS.destroy(destroy_registry=True)``), so
    that it may declare them again; the internal queue stays."""
    with _queues_lock:
        for name in [n for n in _queues if n != INTERNAL_QUEUE]:
            del _queues[name]


def stop_listening() -> None:
    """Forget ``listen_queues`` (at ``DBOS.destroy``): every declared queue is served again."""
    global _listening
    with _queues_lock:
        _listening = None


def served_queues() -> list[Queue]:
    """The declared queues this process dequeues from: those it listens to (``listen_queues``),
    else all; the internal queue always (management commands must reach every executor)."""
    with _queues_lock:
        listening = _listening
        return [
            q
            for q in _queues.values()
            if listening is None or q.name in listening or q.name == INTERNAL_QUEUE
        ]


# Management (resume, restart, fork from the CLI) enqueues here; every executor serves it.
Queue(INTERNAL_QUEUE, priority_enabled=True)
