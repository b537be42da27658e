"""Streams (DBOS 3.x): a workflow appends values to a named stream, in order; anyone reads them as
they arrive, from any offset. Written once for sync and async callers (``runtime.engine.drive``).

A stream is the rows of ``dbos.streams`` for one (workflow, key), numbered from 0 by ``offset``.
``close_stream`` appends DBOS's close marker (the string ``"__DBOS_STREAM_CLOSED__"``, so a value
equal to it closes the stream too, as in DBOS).

Writing from a workflow is a durable operation: the value is appended and the write recorded as
the workflow's step in one statement under the owner-epoch fence, so a re-run (after a crash, on
recovery) replays the record and appends nothing: each value exactly once, in order. From a step
the value is appended at once, not as a step of its own (DBOS's rule: a retried step writes
again), and only while the step's runner owns the workflow. Outside a workflow both raise.

Reading ends when the stream is closed, or when the writer has ended (any status but PENDING,
ENQUEUED or DELAYED) and every value written is read. A reader waits for the next value on the
process's LISTEN connection (``runtime.listener``; a client starts its own on its first wait),
and looks at the table at least every polling interval: the writer's end sends no notification.
Read inside a workflow, each value delivered (and the end, and a timeout) is recorded as a step
``DBOS.readStream``, so a replay sees what the first run saw even if the stream grew since; read
from a step, from a client or outside a workflow, nothing is recorded.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from runtime import context, serialization
from runtime.config import warn_unsupported
from runtime.context import StepContext, WorkflowContext, now_ms
from runtime.engine.drive import Blocking, Effect, Operation, run_async, run_sync
from runtime.engine.protocol import Operations, owner_verdict, replay_outcome
from runtime.errors import (
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSStreamNondeterminismError,
    DBOSStreamTimeoutError,
)
from runtime.listener import Notifications, Watch, stream_key
from runtime.serialization import check_text
from runtime.stream_db import MAX_OFFSET, StreamDatabase
from runtime.system_db import SystemDatabase

WRITE_STREAM_OP = "DBOS.writeStream"
CLOSE_STREAM_OP = "DBOS.closeStream"
READ_STREAM_OP = "DBOS.readStream"
READ_STREAM_OFFSET_OP = "DBOS.readStreamOffset"
#: The value ``close_stream`` appends; a reader stops at it.
STREAM_CLOSED = "__DBOS_STREAM_CLOSED__"
_CLOSED_JSON = serialization.serialize(STREAM_CLOSED)
# The writer is still going (a value may come) in these statuses.
_WRITING = ("PENDING", "ENQUEUED", "DELAYED")
# DBOS's default when neither the call nor the configuration gives a polling interval.
DEFAULT_POLL_S = 1.0
# Values fetched in one round trip (written values never change, so reading ahead is safe).
_BATCH = 100
_END = object()  # what one read returns when the stream has ended


def _owner(operation: str) -> tuple[WorkflowContext, StepContext | None]:
    """The workflow that writes, and its step that does (None: the workflow itself)."""
    ctx = context.current_workflow.get()
    if ctx is None:
        raise DBOSException(f"DBOS.{operation} can only be called inside a workflow or a step")
    return ctx, context.current_step.get()


def _no_serializers(where: str, serialization_type: object) -> None:
    """DBOS's serializer choice: values here are always JSON, so anything but its default is
    named in a warning."""
    name = getattr(serialization_type, "name", serialization_type)
    if name not in (None, "DEFAULT"):
        warn_unsupported(where, {"serialization_type": name}, ("serialization_type",))


# The largest offset a read may start at: far past any stream's end, and low enough that the
# read's ``offset + batch`` still fits the bigint column (no database error for a huge offset).


def check_read_args(
    workflow_id: object,
    key: object,
    offset: object,
    polling_interval_sec: float | None,
    timeout_seconds: float | None,
) -> None:
    """Refuse a read's bad arguments before it starts, as DBOS does (``DBOSException``; DBOS
    raises ``ValueError`` for the two numbers, which ``DBOSException`` is not: we keep one
    error hierarchy)."""
    if not isinstance(workflow_id, str) or not isinstance(key, str):
        raise DBOSException("read_stream takes a workflow ID and a stream key, both strings")
    check_text(workflow_id, "workflow ID")
    check_text(key, "stream key")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise DBOSException(f"offset must be an integer from 0 to 2**62, got {offset!r}")
    if timeout_seconds is not None and not (_is_number(timeout_seconds) and timeout_seconds >= 0):
        raise DBOSException(
            f"timeout_seconds must be a number of seconds >= 0 (or None), got {timeout_seconds!r}"
        )
    if polling_interval_sec is not None and not (
        _is_number(polling_interval_sec)
        and math.isfinite(polling_interval_sec)
        and polling_interval_sec >= 0.001
    ):
        raise DBOSException(
            "polling_interval_sec must be a finite number of at least 0.001 seconds, got "
            f"{polling_interval_sec!r}"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# The workflows (by ``id`` of their context) in which a recorded read is under way.
_READING: set[int] = set()
_READING_LOCK = threading.Lock()


@contextmanager
def _one_read_at_a_time(ctx: WorkflowContext, key: str) -> Iterator[None]:
    """Sequential reads of a workflow never overlap (each records its value before handing it
    over); two that do run concurrently (tasks of an async workflow), and which one records which
    value, under which step number, would depend on scheduling: a replay could swap them."""
    with _READING_LOCK:
        if id(ctx) in _READING:
            raise DBOSStreamNondeterminismError(ctx.workflow_id, key)
        _READING.add(id(ctx))
    try:
        yield
    finally:
        with _READING_LOCK:
            _READING.discard(id(ctx))


class _Wait(Effect):
    """Wait for a notification on the stream, at most ``seconds``; a workflow that reads looks at
    its own cancellation and deadline between slices."""

    __slots__ = ("notifications", "watch", "seconds", "ops", "ctx")

    def __init__(
        self,
        notifications: Notifications,
        watch: Watch,
        seconds: float,
        ops: Operations | None,
        ctx: WorkflowContext | None,
    ) -> None:
        self.notifications, self.watch, self.seconds = notifications, watch, seconds
        self.ops, self.ctx = ops, ctx

    def run(self) -> None:
        ops, ctx = self.ops, self.ctx
        interrupt = None if ops is None or ctx is None else (lambda: ops.check_interrupts(ctx))
        self.notifications.wait(self.watch, self.seconds, interrupt)

    async def run_async(self) -> None:
        ops, ctx = self.ops, self.ctx
        interrupt = (
            None if ops is None or ctx is None else (lambda: ops.check_interrupts_async(ctx))
        )
        await self.notifications.wait_async(self.watch, self.seconds, interrupt)


class StreamReader:
    """One reader of one stream: the next offset, the values read ahead, and (read inside a
    workflow) the workflow that records what it reads. Register ``watch`` before the first read
    (``Notifications.streams.watch(stream_key(...))``) so that no write slips between a look at
    the table and the wait."""

    def __init__(
        self,
        sysdb: SystemDatabase,
        notifications: Notifications,
        watch: Watch,
        workflow_id: str,
        key: str,
        *,
        offset: int,
        poll_s: float,
        timeout_s: float | None,
        ops: Operations | None = None,
        op_name: str = READ_STREAM_OP,
        batch: int = _BATCH,
    ) -> None:
        self.db = StreamDatabase(sysdb)
        self.notifications, self.watch = notifications, watch
        self.workflow_id, self.key, self.offset = workflow_id, key, offset
        self.poll_s, self.timeout_s, self.batch = poll_s, timeout_s, batch
        self.ops, self.op_name = ops, op_name
        # Bound once, at the first read: the reading workflow (None outside one, in a step, or
        # without ``ops``: a client never records into a workflow of its own process).
        self.ctx: WorkflowContext | None = None
        self.bound = False
        self.ahead: deque[str] = deque()
        self.final_look = False

    def next_value(self) -> Operation[Any]:
        """The next value, or ``_END`` once the stream has ended; in a workflow, recorded."""
        if not self.bound:
            self.bound = True
            self.ctx = context.active_workflow() if self.ops is not None else None
        ops, ctx = self.ops, self.ctx
        if ops is None or ctx is None:
            raw = yield from self._next_raw()
            return self._deliver(raw)
        with _one_read_at_a_time(ctx, self.key):
            return (yield from self._next_recorded(ops, ctx))

    def _next_recorded(self, ops: Operations, ctx: WorkflowContext) -> Operation[Any]:
        """``next_value`` in a workflow: one step per value (and for the end, or a timeout)."""
        function_id, rec = ops.begin(ctx, self.op_name)
        if rec is not None:
            value = replay_outcome(rec)
            if isinstance(value, str) and value == STREAM_CLOSED:
                return _END
            self.offset += 1
            return value
        started = now_ms()
        try:
            raw = yield from self._next_raw()
        except DBOSStreamTimeoutError as exc:
            error = serialization.serialize_exception(exc)
            yield ops.recording(ctx, function_id, self.op_name, error=error, started_at_ms=started)
            raise
        # Recorded before it is handed over: a crash after the workflow acted on the value
        # replays it.
        output = _CLOSED_JSON if raw is None else raw
        yield ops.recording(ctx, function_id, self.op_name, output=output, started_at_ms=started)
        return self._deliver(raw)

    def _deliver(self, raw: str | None) -> Any:
        if raw is None or raw == _CLOSED_JSON:
            return _END
        self.offset += 1
        return serialization.deserialize(raw)

    def _next_raw(self) -> Operation[str | None]:
        """The serialized value at the offset, waiting for it; None when the stream ended."""
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while not self.ahead:
            self.watch.clear()  # a write after this look wakes the wait below
            found = yield Blocking(
                lambda: self.db.read(self.workflow_id, self.key, self.offset, self.batch)
            )
            if found.status is None:
                raise DBOSNonExistentWorkflowError(self.workflow_id)
            if found.values:
                self.ahead.extend(found.values)
                break
            if self.final_look:
                return None
            if found.status not in _WRITING:
                # A cancellation or timeout ends a workflow from outside while its runner may
                # still append: look once more before calling the stream ended.
                self.final_look = True
                continue
            wait = self.poll_s
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DBOSStreamTimeoutError(self.workflow_id, self.key, self.timeout_s)
                wait = min(wait, left)
            yield _Wait(self.notifications, self.watch, wait, self.ops, self.ctx)
        return self.ahead.popleft()


def read_values(reader_args: dict[str, Any]) -> Generator[Any, None, None]:
    """Yield a stream's values in order until it ends (see ``StreamReader`` for the
    arguments)."""
    notifications: Notifications = reader_args["notifications"]
    key = stream_key(reader_args["workflow_id"], reader_args["key"])
    with notifications.streams.watch(key) as watch:
        reader = StreamReader(watch=watch, **reader_args)
        while True:
            value = run_sync(reader.next_value())
            if value is _END:
                return
            yield value


async def read_values_async(reader_args: dict[str, Any]) -> AsyncGenerator[Any, None]:
    """``read_values`` as an async generator: waits without holding a thread."""
    notifications: Notifications = reader_args["notifications"]
    key = stream_key(reader_args["workflow_id"], reader_args["key"])
    with notifications.streams.watch(key) as watch:
        reader = StreamReader(watch=watch, **reader_args)
        while True:
            value = await run_async(reader.next_value())
            if value is _END:
                return
            yield value


def read_one(reader_args: dict[str, Any]) -> Any:
    """The value at one offset, waiting for it; ``DBOSStreamTimeoutError`` if the stream ends
    before it (or the timeout passes)."""
    values = read_values({**reader_args, "op_name": READ_STREAM_OFFSET_OP, "batch": 1})
    try:
        for value in values:
            return value
    finally:
        values.close()
    raise DBOSStreamTimeoutError(reader_args["workflow_id"], reader_args["key"])


async def read_one_async(reader_args: dict[str, Any]) -> Any:
    """``read_one`` for asyncio code."""
    values = read_values_async({**reader_args, "op_name": READ_STREAM_OFFSET_OP, "batch": 1})
    try:
        async for value in values:
            return value
    finally:
        await values.aclose()
    raise DBOSStreamTimeoutError(reader_args["workflow_id"], reader_args["key"])


def reader_args(
    sysdb: SystemDatabase,
    notifications: Notifications,
    workflow_id: str,
    key: str,
    *,
    offset: int,
    polling_interval_sec: float | None,
    timeout_seconds: float | None,
    default_poll_s: float,
    ops: Operations | None,
) -> dict[str, Any]:
    """Check a read's arguments (``check_read_args``) and gather them for the readers above."""
    check_read_args(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
    return {
        "sysdb": sysdb,
        "notifications": notifications,
        "workflow_id": workflow_id,
        "key": key,
        "offset": offset,
        "poll_s": default_poll_s if polling_interval_sec is None else polling_interval_sec,
        "timeout_s": timeout_seconds,
        "ops": ops,
    }


class Streams:
    """Writing streams for one launched runtime (``*_async``: the same operation driven on the
    event loop), and its readers' shared arguments."""

    def __init__(
        self, ops: Operations, notifications: Notifications, *, default_poll_s: float | None
    ) -> None:
        self.ops = ops
        self.notifications = notifications
        self.db = StreamDatabase(ops.sysdb)
        self.default_poll_s = DEFAULT_POLL_S if default_poll_s is None else default_poll_s

    def write(self, key: str, value: Any, serialization_type: object = None) -> None:
        """Append ``value`` to this workflow's stream ``key`` (see the module docstring)."""
        _no_serializers("DBOS.write_stream", serialization_type)
        run_sync(self.writing(_owner("write_stream"), key, value, WRITE_STREAM_OP))

    async def write_async(self, key: str, value: Any, serialization_type: object = None) -> None:
        """``write`` without blocking the loop."""
        _no_serializers("DBOS.write_stream_async", serialization_type)
        await run_async(self.writing(_owner("write_stream_async"), key, value, WRITE_STREAM_OP))

    def close(self, key: str) -> None:
        """Close this workflow's stream ``key``: readers stop after its last value."""
        run_sync(self.writing(_owner("close_stream"), key, STREAM_CLOSED, CLOSE_STREAM_OP))

    async def close_async(self, key: str) -> None:
        """``close`` without blocking the loop."""
        owner = _owner("close_stream_async")
        await run_async(self.writing(owner, key, STREAM_CLOSED, CLOSE_STREAM_OP))

    def reader(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        polling_interval_sec: float | None,
        timeout_seconds: float | None,
    ) -> dict[str, Any]:
        """A read's checked arguments, for ``read_values`` and the others; a read inside one of
        this runtime's workflows is recorded."""
        return reader_args(
            self.ops.sysdb,
            self.notifications,
            workflow_id,
            key,
            offset=offset,
            polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
            default_poll_s=self.default_poll_s,
            ops=self.ops,
        )

    def writing(
        self, owner: tuple[WorkflowContext, StepContext | None], key: str, value: Any, name: str
    ) -> Operation[None]:
        """A write (``name``: a value's or the close marker's) as an operation. The key and the
        value are checked before anything is recorded."""
        ctx, step = owner
        check_text(key, "stream key")
        payload = serialization.serialize(value, "stream value")
        ops = self.ops
        if step is not None:
            function_id = step.function_id
            result = yield Blocking(
                lambda: ops.checkpoint(
                    lambda: self.db.write_from_step(
                        ctx.workflow_id, ctx.owner_epoch, function_id, key, payload
                    )
                )
            )
            if not result.recorded:  # another runner owns the workflow now: this one stops
                owner_verdict(ctx, result.status, result.owner_epoch, fenced_only=True)
            return
        function_id, rec = ops.begin(ctx, name)
        if rec is not None:
            replay_outcome(rec)
            return
        started = now_ms()
        result = yield Blocking(
            lambda: ops.checkpoint(
                lambda: self.db.write_from_workflow(
                    ctx.workflow_id, ctx.owner_epoch, function_id, name, started, key, payload
                )
            )
        )
        ops.check_record(ctx, result)
