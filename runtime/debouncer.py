"""Debouncing (DBOS's ``Debouncer`` and ``DebouncerClient``): calls with the same key within a
period collapse into one run of the workflow, with the latest call's arguments.

How it works (as DBOS's current version does it, on our queue machinery):

- The first call for a key enqueues the workflow DELAYED on the debouncer's queue (else the
  internal queue) until ``now + debounce_period_sec``. Its deduplication ID is the debounce key
  (``"<workflow name>-<key>"``), marked ``is_debounced``, and ``debounce_deadline_epoch_ms``
  caps its delay at ``now + debounce_timeout_sec`` (no cap without a timeout).
- A later call first *bounces*: one conditional UPDATE (``runtime.debounce_db``) moves the
  DELAYED workflow's delay to ``now + debounce_period_sec`` (never past the cap) and replaces its
  inputs. The row is the only state, so processes and ``DebouncerClient``s anywhere coalesce on
  it, and a crash loses nothing: the DELAYED row survives and runs once its delay ends.
- The queue dispatcher turns it ENQUEUED when the delay has passed and in the same statement
  releases the key (sets the deduplication ID NULL), so a call after that starts a new workflow.
  The UPDATE re-checks ``status = 'DELAYED'`` on the row it locks, so no bounce rewrites the
  inputs of a workflow that has been promoted.
- When two first calls race, the unique (queue, deduplication ID) index lets one insert; the
  other gets ``DBOSQueueDeduplicatedError`` and bounces onto the winner instead.

Inside a workflow a debounce is one step (``DBOS.debounce``): a recovered workflow gets the same
handle back rather than debouncing again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import types
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypedDict, TypeVar

from runtime import serialization
from runtime.client import DBOSClient, EnqueueOptions
from runtime.config import warn_unsupported
from runtime.context import SetWorkflowID, take_assigned_workflow_id
from runtime.debounce_db import Bounce, DebounceTable
from runtime.engine import EnqueueRequest
from runtime.engine.steps import StepOptions
from runtime.enqueueing import request_for
from runtime.errors import DBOSException, DBOSQueueDeduplicatedError
from runtime.facade.base import BACKEND, FacadeBase, workflow_of
from runtime.handles import WorkflowHandle, WorkflowHandleAsync
from runtime.queues import (
    INTERNAL_QUEUE,
    MAX_DELAY_SECONDS,
    EnqueueOptionValues,
    Queue,
    check_queue_name,
    current_enqueue_options,
    get_queue,
)
from runtime.registry import get_workflow

P = ParamSpec("P")
R = TypeVar("R", covariant=True)

__all__ = ["Debouncer", "DebouncerClient", "DebouncerOptions"]

_STEP: StepOptions = {"name": "DBOS.debounce"}
# A bounce that finds its workflow leaving DELAYED (promoted between the two halves of the
# statement's view) tries again after this pause, doubling up to the cap.
_RETRY_PAUSE_S = 0.01
_RETRY_PAUSE_MAX_S = 0.5


class DebouncerOptions(TypedDict):
    """A debouncer's settings: the workflow's registered name, the cap on the total delay
    (seconds; None: none), the queue its runs go on (None: the internal queue) and DBOS's
    ``application_name``."""

    workflow_name: str
    debounce_timeout_sec: float | None
    queue_name: str | None
    #: DBOS's owning application; this runtime has no application names (ignored, warned).
    application_name: str | None


def _queue_name(queue: Queue | str | None) -> str | None:
    if queue is None or isinstance(queue, str):
        return queue
    if isinstance(queue, Queue):
        return queue.name
    raise DBOSException(f"invalid queue {queue!r}: expected a Queue, a queue name or None")


def _seconds(value: object, what: str) -> float:
    """``value`` as seconds, checked before anything reaches the database: a number from 0 to
    ``MAX_DELAY_SECONDS`` (NaN and infinities refused; the end of the delay, in epoch
    milliseconds, is stored in a bigint). ``DBOSException`` naming ``what`` otherwise."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 <= value <= MAX_DELAY_SECONDS
    ):
        raise DBOSException(
            f"invalid {what} {value!r}: expected a number of seconds from 0 to "
            f"{MAX_DELAY_SECONDS:.0e}"
        )
    return float(value)


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    return _seconds(timeout, "debounce_timeout_sec") or None  # 0, like None: no cap (DBOS)


def _application(name: str | None) -> str | None:
    """DBOS's ``application_name``, kept and named in a warning: this runtime has no
    application names (every process of the database serves every workflow)."""
    warn_unsupported("Debouncer", {"application_name": name}, ("application_name",))
    return name


def _check_call(debounce_key: object, debounce_period_sec: object) -> float:
    if not isinstance(debounce_key, str):
        raise DBOSException(f"invalid debounce_key {debounce_key!r}: expected a string")
    return _seconds(debounce_period_sec, "debounce_period_sec")


def _reject_conflicts(values: EnqueueOptionValues | dict[str, Any]) -> None:
    """A debounce owns the deduplication ID (its key) and the delay (its period); a priority or
    a partition key cannot apply to it (DBOS's rules). Refused before anything is recorded."""
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k, None)
    for key, why in (
        ("deduplication_id", "the debounce key is the workflow's deduplication ID"),
        ("delay_until_ms", "the debounce period sets the workflow's delay"),
        ("delay_seconds", "the debounce period sets the workflow's delay"),
        ("priority", "debounced workflows have no priority"),
        ("queue_partition_key", "partitioned queues do not deduplicate, which debouncing needs"),
    ):
        if get(key) is not None:
            raise DBOSException(f"cannot debounce a workflow with {key} set: {why}")


def _bouncer(
    table: DebounceTable, name: str, queue_name: str, key: str, inputs: str
) -> Callable[[int], Bounce]:
    """The one statement of a later call with ``key``: move the pending run to a new time."""

    def bounce(delay_until_ms: int) -> Bounce:
        return table.bounce(
            name=name, queue_name=queue_name, key=key, delay_until_ms=delay_until_ms, inputs=inputs
        )

    return bounce


def debounce_loop(
    name: str,
    queue_name: str,
    key: str,
    period_s: float,
    timeout_s: float | None,
    bounce: Callable[[int], Bounce],
    enqueue: Callable[[int, int | None], str],
) -> str:
    """Bounce onto the DELAYED workflow holding ``key``, else enqueue a new one; returns the ID
    of the workflow that will run. ``bounce(delay_until_ms)`` runs the statement;
    ``enqueue(delay_until_ms, deadline_ms)`` records a new debounced workflow."""
    pause = _RETRY_PAUSE_S
    while True:
        now = int(time.time() * 1000)
        found = bounce(now + int(period_s * 1000))
        if found.bounced and found.workflow_id is not None:
            return found.workflow_id
        if found.workflow_id is not None:
            if not found.holder_is_debounced or found.holder_name != name:
                raise DBOSQueueDeduplicatedError(
                    f"queue {queue_name!r} already holds workflow {found.workflow_id!r} with "
                    f"deduplication ID {key!r}, which is not a debounce of {name!r}"
                )
            time.sleep(pause)  # it is leaving DELAYED: its key is about to be released
            pause = min(pause * 2, _RETRY_PAUSE_MAX_S)
            continue
        deadline = now + int(timeout_s * 1000) if timeout_s else None
        delay_until = now + int(period_s * 1000)
        if deadline is not None:
            delay_until = min(delay_until, deadline)
        try:
            return enqueue(delay_until, deadline)
        except DBOSQueueDeduplicatedError:
            continue  # another caller enqueued first: bounce onto theirs


class Debouncer(Generic[P, R]):
    """Debounces one workflow of this app (``Debouncer.create(workflow, ...)``)."""

    def __init__(
        self,
        workflow_name: str,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> None:
        self.func_name = workflow_name
        self.options: DebouncerOptions = {
            "workflow_name": workflow_name,
            "debounce_timeout_sec": _check_timeout(debounce_timeout_sec),
            "queue_name": _queue_name(queue),
            "application_name": _application(application_name),
        }

    @staticmethod
    def create(
        workflow: Callable[P, R],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> Debouncer[P, R]:
        """A debouncer of ``workflow`` (a ``@DBOS.workflow`` function, not a method: raises
        ``TypeError``). ``debounce_timeout_sec`` caps how long calls may keep postponing a run
        (seconds from the first call for a key; None: no cap); ``queue`` (a ``Queue`` or its
        name, declared in this process) is where runs go (default: the internal queue)."""
        if isinstance(workflow, types.MethodType):
            raise TypeError("Only workflow functions may be debounced, not methods")
        info, _ = workflow_of(workflow, ())
        return Debouncer(
            info.name,
            debounce_timeout_sec=debounce_timeout_sec,
            queue=queue,
            application_name=application_name,
        )

    @staticmethod
    def create_async(
        workflow: Callable[P, Coroutine[Any, Any, R]],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> Debouncer[P, R]:
        """``create`` for an async workflow."""
        if isinstance(workflow, types.MethodType):
            raise TypeError("Only workflow functions may be debounced, not methods")
        info, _ = workflow_of(workflow, ())
        return Debouncer(
            info.name,
            debounce_timeout_sec=debounce_timeout_sec,
            queue=queue,
            application_name=application_name,
        )

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Run the workflow once ``debounce_period_sec`` seconds pass without another call with
        ``debounce_key`` (or once the timeout since the first call passes), with the arguments of
        the latest call. Returns the handle of that one run (the same for every call it
        absorbs). Raises ``DBOSException`` for a bad key or period, an enclosing
        ``SetEnqueueOptions`` with a deduplication ID, delay, priority or partition key, or an
        undeclared queue; ``DBOSQueueDeduplicatedError`` when the key is held by another
        workflow's enqueue."""
        run = self._prepare(debounce_key, debounce_period_sec, args, kwargs)
        wid = FacadeBase._engine().steps.run_step(_STEP, run, (), {})
        return WorkflowHandle(BACKEND, wid)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        """``debounce`` for asyncio code (the database work runs in a worker thread)."""
        run = self._prepare(debounce_key, debounce_period_sec, args, kwargs)
        wid = await FacadeBase._engine().steps.run_step_async(_STEP, run, (), {})
        return WorkflowHandleAsync(BACKEND, wid)

    def _prepare(
        self, key: str, period: float, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[], str]:
        """Check the call (before anything is recorded, in a workflow too) and return what
        does it: the step's body."""
        period = _check_call(key, period)
        name = self.options["workflow_name"]
        info = get_workflow(name)
        if info is None:
            raise DBOSException(f"cannot debounce {name!r}: no workflow has that name here")
        queue_name = self.options["queue_name"] or INTERNAL_QUEUE
        if get_queue(queue_name) is None:
            raise DBOSException(f"cannot debounce on queue {queue_name!r}: it is not declared")
        _reject_conflicts(current_enqueue_options())
        rt = FacadeBase._rt()
        base = request_for(queue_name, rt.app_version)
        inputs = serialization.serialize_args(args, kwargs, info.param_names)
        dedup = f"{name}-{key}"
        table = DebounceTable(rt.sysdb)
        assigned = take_assigned_workflow_id()  # for a new workflow only, never a bounce

        bounce = _bouncer(table, name, queue_name, dedup, inputs)

        def enqueue(delay_until: int, deadline: int | None) -> str:
            request = dataclasses.replace(
                base,
                deduplication_id=dedup,
                delay_until_ms=delay_until,
                is_debounced=True,
                debounce_deadline_ms=deadline,
            )
            return _enqueue(info, args, kwargs, request, assigned)

        timeout = self.options["debounce_timeout_sec"]

        def run() -> str:
            return debounce_loop(name, queue_name, dedup, period, timeout, bounce, enqueue)

        return run


def _enqueue(
    info: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    request: EnqueueRequest,
    assigned: str | None,
) -> str:
    engine = FacadeBase._engine()
    if assigned is None:
        return engine.enqueue_workflow(info, args, kwargs, request)
    with SetWorkflowID(assigned):
        return engine.enqueue_workflow(info, args, kwargs, request)


class DebouncerClient:
    """Debounces a workflow from outside the app, through a ``DBOSClient``:
    ``DebouncerClient(client, {"workflow_name": ..., "queue_name": ...})``. Coalesces with the
    app's own ``Debouncer`` of the same workflow and queue."""

    def __init__(
        self,
        client: DBOSClient,
        workflow_options: EnqueueOptions,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> None:
        """``workflow_options``: ``DBOSClient.enqueue``'s options (``workflow_name`` and
        ``queue_name`` required; no ``deduplication_id``, ``delay_seconds``, ``priority`` or
        ``queue_partition_key``: the debounce owns them). ``queue`` overrides the options'
        queue."""
        self.client = client
        self.workflow_options = workflow_options
        self.debouncer_options: DebouncerOptions = {
            "workflow_name": workflow_options["workflow_name"],
            "debounce_timeout_sec": _check_timeout(debounce_timeout_sec),
            "queue_name": _queue_name(queue),
            "application_name": _application(application_name),
        }

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """``Debouncer.debounce`` through the client: the handle of the one run that absorbs
        this call."""
        period = _check_call(debounce_key, debounce_period_sec)
        options: dict[str, Any] = dict(self.workflow_options)
        _reject_conflicts(options)
        queue_name = check_queue_name(self.debouncer_options["queue_name"] or options["queue_name"])
        name = self.debouncer_options["workflow_name"]
        dedup = f"{name}-{debounce_key}"
        inputs = serialization.serialize_args(args, kwargs)
        table = DebounceTable(self.client.sysdb)

        bounce = _bouncer(table, name, queue_name, dedup, inputs)

        def enqueue(delay_until: int, deadline: int | None) -> str:
            delay_s = max(delay_until - int(time.time() * 1000), 0) / 1000
            opts: Any = {
                **options,
                "queue_name": queue_name,
                "deduplication_id": dedup,
                "delay_seconds": delay_s,
            }
            return self.client._enqueue(
                opts, args, kwargs, is_debounced=True, debounce_deadline_ms=deadline
            )

        timeout = self.debouncer_options["debounce_timeout_sec"]
        wid = debounce_loop(name, queue_name, dedup, period, timeout, bounce, enqueue)
        return WorkflowHandle(self.client, wid)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """``debounce`` for asyncio code."""
        handle = await asyncio.to_thread(
            self.debounce, debounce_key, debounce_period_sec, *args, **kwargs
        )
        return WorkflowHandleAsync(self.client, handle.workflow_id)
