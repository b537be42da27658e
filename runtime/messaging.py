"""Messages (send/recv), events (set/get) and durable sleep.

Inside a workflow each operation is durable: its outcome is recorded under the next step number in
the same statement that performs it (a message is consumed and recorded together, an event is
published and recorded together), so a replay returns what the first run saw. Waits are durable
too: ``recv`` and ``get_event`` record when their timeout ends before they first wait, and
``sleep`` records its wake-up time, so after a restart only the remaining time is waited.

Waiting threads are woken by LISTEN/NOTIFY through the process's one listener connection, and
poll slowly as a fallback (quickly while the listener is down). A waiter registers before it looks
at the table, so a notification cannot slip between the look and the wait.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from runtime import context, serialization
from runtime.context import WorkflowContext, now_ms
from runtime.engine import Engine, check_same_operation, owner_verdict, replay_outcome
from runtime.errors import (
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from runtime.system_db import RecordedStep, SystemDatabase

MESSAGE_CHANNEL = "dbos_notifications_channel"
EVENT_CHANNEL = "dbos_workflow_events_channel"

SLEEP_OP = "DBOS.sleep"
SEND_OP = "DBOS.send"
RECV_OP = "DBOS.recv"
SET_EVENT_OP = "DBOS.setEvent"
GET_EVENT_OP = "DBOS.getEvent"

# With the listener up a notification wakes a waiter at once; the poll only guards against a
# notification lost in a reconnect. With it down, polling is the only way to notice, so it is fast.
POLL_LISTENING_S = 5.0
POLL_NOT_LISTENING_S = 0.5
# Waits are sliced so that a cancellation or shutdown is noticed promptly without a query.
WAIT_SLICE_S = 0.25


def message_key(workflow_id: str, topic: str | None) -> str:
    """The notification payload of a message to ``workflow_id`` on ``topic`` (see schema.sql)."""
    return f"{workflow_id}::{topic or ''}"


def event_key(workflow_id: str, key: str) -> str:
    """The notification payload of an event ``key`` of ``workflow_id``."""
    return f"{workflow_id}::{key}"


class Waiters:
    """Threads and tasks waiting for notifications, by payload."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[Callable[[], object]]] = {}

    @contextmanager
    def _register(self, key: str, wake: Callable[[], object]) -> Iterator[None]:
        with self._lock:
            self._waiting.setdefault(key, set()).add(wake)
        try:
            yield
        finally:
            with self._lock:
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.discard(wake)
                    if not waiting:
                        del self._waiting[key]

    @contextmanager
    def watch(self, key: str) -> Iterator[threading.Event]:
        """An event set whenever a notification for ``key`` arrives while the block runs."""
        event = threading.Event()
        with self._register(key, event.set):
            yield event

    @contextmanager
    def watch_async(self, key: str) -> Iterator[asyncio.Event]:
        """The same for a task: an asyncio event of the running loop, set from the listener's
        thread."""
        event = asyncio.Event()
        loop = asyncio.get_running_loop()
        with self._register(key, lambda: loop.call_soon_threadsafe(event.set)):
            yield event

    def notify(self, key: str) -> None:
        """Wake everyone waiting for ``key``."""
        with self._lock:
            wakes = list(self._waiting.get(key, ()))
        for wake in wakes:
            wake()

    def notify_all(self) -> None:
        """Wake every waiter (after a reconnect, when notifications may have been missed)."""
        with self._lock:
            wakes = [w for group in self._waiting.values() for w in group]
        for wake in wakes:
            wake()


class Notifications:
    """The waiters for messages and events of one process, fed by its listener."""

    def __init__(self) -> None:
        self.messages = Waiters()
        self.events = Waiters()
        self.is_listening: Callable[[], bool] = lambda: False

    def callbacks(self) -> dict[str, Callable[[str], None]]:
        """Listener channel → callback."""
        return {MESSAGE_CHANNEL: self.messages.notify, EVENT_CHANNEL: self.events.notify}

    def wake_all(self) -> None:
        """Wake every waiter so it looks at the database again."""
        self.messages.notify_all()
        self.events.notify_all()

    def wait(
        self,
        event: threading.Event,
        seconds: float,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        """Wait until ``event`` is set, ``seconds`` pass, or the poll interval passes, whichever is
        first; ``interrupt`` is called between slices and may raise."""
        poll = POLL_LISTENING_S if self.is_listening() else POLL_NOT_LISTENING_S
        end = time.monotonic() + min(seconds, poll)
        while (left := end - time.monotonic()) > 0:
            if event.wait(min(left, WAIT_SLICE_S)):
                break
            if interrupt is not None:
                interrupt()
        event.clear()

    async def wait_async(
        self,
        event: asyncio.Event,
        seconds: float,
        interrupt: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``wait`` for a task: returns on the event, the timeout or the poll interval."""
        poll = POLL_LISTENING_S if self.is_listening() else POLL_NOT_LISTENING_S
        end = time.monotonic() + min(seconds, poll)
        while (left := end - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(event.wait(), min(left, WAIT_SLICE_S))
                break
            except asyncio.TimeoutError:
                if interrupt is not None:
                    await interrupt()
        event.clear()


# -- outside a workflow ----------------------------------------------------------------------


def send_outside(
    sysdb: SystemDatabase,
    destination_id: str,
    message: Any,
    topic: str | None,
    idempotency_key: str | None,
) -> None:
    """Send from outside any workflow; with an idempotency key, a repeated send delivers nothing."""
    payload = serialization.serialize(message, "message")
    sent = sysdb.send_from_outside(destination_id, topic, payload, idempotency_key)
    if not sent.destination_exists:
        raise DBOSNonExistentWorkflowError(destination_id)


def get_event_outside(
    sysdb: SystemDatabase,
    notifications: Notifications,
    workflow_id: str,
    key: str,
    timeout_seconds: float,
) -> Any:
    """Wait up to ``timeout_seconds`` for the event; None when it does not appear in time."""
    deadline = time.monotonic() + timeout_seconds
    with notifications.events.watch(event_key(workflow_id, key)) as event:
        while True:
            value = sysdb.get_event(workflow_id, key)
            if value is not None:
                return serialization.deserialize(value)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            notifications.wait(event, left)


# -- inside a workflow -----------------------------------------------------------------------


def _workflow_context() -> WorkflowContext | None:
    ctx = context.current_workflow.get()
    if ctx is None or context.current_step.get() is not None:
        return None
    return ctx


def _require_workflow(operation: str) -> WorkflowContext:
    ctx = _workflow_context()
    if ctx is None:
        raise DBOSException(f"DBOS.{operation} can only be called inside a workflow (not a step)")
    return ctx


def sleep(engine: Engine, seconds: float) -> None:
    """Durable sleep: the wake-up time is recorded, so a restarted workflow sleeps what remains."""
    ctx = _workflow_context()
    if ctx is None:
        time.sleep(seconds)
        return
    function_id, rec = engine.begin_operation(ctx, SLEEP_OP)
    if rec is not None:
        wake_at = int(serialization.deserialize(rec.output))
    else:
        wake_at = now_ms() + int(seconds * 1000)
        engine.record_operation(
            ctx,
            function_id,
            SLEEP_OP,
            output=serialization.serialize(wake_at),
            started_at_ms=now_ms(),
        )
    remaining = (wake_at - now_ms()) / 1000
    if remaining > 0:
        engine.sleep_interruptibly(ctx, remaining)


def send(
    engine: Engine,
    destination_id: str,
    message: Any,
    topic: str | None,
    idempotency_key: str | None,
) -> None:
    """Send a message; from a workflow it is a step and happens exactly once."""
    ctx = _workflow_context()
    if ctx is None:
        send_outside(engine.sysdb, destination_id, message, topic, idempotency_key)
        return
    payload = serialization.serialize(message, "message")
    function_id, rec = engine.begin_operation(ctx, SEND_OP)
    if rec is not None:
        replay_outcome(rec)
        return
    send_reserved(engine, ctx, function_id, destination_id, topic, payload)


def send_reserved(
    engine: Engine,
    ctx: WorkflowContext,
    function_id: int,
    destination_id: str,
    topic: str | None,
    payload: str,
) -> None:
    """The send of a workflow, under a step number already taken (sync and async ``send``)."""
    started = now_ms()
    result = engine.checkpoint(
        lambda: engine.sysdb.send_from_workflow(
            ctx.workflow_id, ctx.owner_epoch, function_id, started, destination_id, topic, payload
        )
    )
    if result.recorded:
        engine.check_record(ctx, result)
        return
    owner_verdict(ctx, result.status, result.owner_epoch)  # fenced, cancelled, or nothing yet
    if not result.destination_exists:
        error = DBOSNonExistentWorkflowError(destination_id)
        engine.record_operation(
            ctx,
            function_id,
            SEND_OP,
            error=serialization.serialize_exception(error),
            started_at_ms=started,
        )
        raise error
    engine.check_record(ctx, result)  # our own earlier attempt, whose reply was lost


def _durable_deadline(
    engine: Engine, ctx: WorkflowContext, timeout_id: int, timeout_seconds: float
) -> Callable[[], int]:
    """The end of a wait, recorded the first time it is needed (so a replay that did not wait
    does not need it) and read back from the record after a restart."""
    rec: RecordedStep | None = ctx.recorded.get(timeout_id)
    if rec is not None:
        check_same_operation(ctx, timeout_id, rec, SLEEP_OP)
    state: dict[str, int] = {}
    if rec is not None:
        state["deadline"] = int(serialization.deserialize(rec.output))

    def deadline() -> int:
        if "deadline" not in state:
            state["deadline"] = now_ms() + int(timeout_seconds * 1000)
            engine.record_operation(
                ctx,
                timeout_id,
                SLEEP_OP,
                output=serialization.serialize(state["deadline"]),
                started_at_ms=now_ms(),
            )
        return state["deadline"]

    return deadline


def recv(
    engine: Engine, notifications: Notifications, topic: str | None, timeout_seconds: float
) -> Any:
    """Consume the next message on ``topic``, waiting (durably) up to the timeout; None when it
    passes. The consumption and its record are one statement: exactly once, even across crashes."""
    ctx = _require_workflow("recv")
    function_id, rec = engine.begin_operation(ctx, RECV_OP)
    timeout_id = ctx.next_function_id()  # always taken, so step numbers do not depend on timing
    if rec is not None:
        return replay_outcome(rec)
    deadline = _durable_deadline(engine, ctx, timeout_id, timeout_seconds)
    started = now_ms()
    with notifications.messages.watch(message_key(ctx.workflow_id, topic)) as event:
        while True:
            done, value = recv_once(engine, ctx, function_id, started, topic, deadline)
            if done:
                return value
            left_ms = deadline() - now_ms()
            notifications.wait(event, left_ms / 1000, lambda: engine.check_interrupts(ctx))


def recv_once(
    engine: Engine,
    ctx: WorkflowContext,
    function_id: int,
    started: int,
    topic: str | None,
    deadline: Callable[[], int],
) -> tuple[bool, Any]:
    """One look for a message (shared by the sync and async recv): (True, message) when one was
    consumed, (True, None) when the timeout passed (recorded), (False, None) to wait on."""
    result = engine.checkpoint(
        lambda: engine.sysdb.recv(ctx.workflow_id, ctx.owner_epoch, function_id, started, topic)
    )
    if result.recorded:
        engine.check_record(ctx, result)
        return True, serialization.deserialize(result.message)
    owner_verdict(ctx, result.status, result.owner_epoch)  # fenced, cancelled, or nothing yet
    # Still ours and nothing recorded: either no message yet, or our own earlier attempt consumed
    # one and its reply was lost; the record tells.
    own = engine.checkpoint(lambda: engine.sysdb.get_step(ctx.workflow_id, function_id))
    if own is not None:
        return True, replay_outcome(own)
    if deadline() - now_ms() <= 0:
        engine.record_operation(
            ctx, function_id, RECV_OP, output=serialization.serialize(None), started_at_ms=started
        )
        return True, None
    return False, None


def set_event(engine: Engine, key: str, value: Any) -> None:
    """Publish (or overwrite) a key/value on the running workflow; last write wins."""
    ctx = _require_workflow("set_event")
    payload = serialization.serialize(value, "event value")
    function_id, rec = engine.begin_operation(ctx, SET_EVENT_OP)
    if rec is not None:
        return
    started = now_ms()
    result = engine.checkpoint(
        lambda: engine.sysdb.set_event(
            ctx.workflow_id, ctx.owner_epoch, function_id, started, key, payload
        )
    )
    engine.check_record(ctx, result)


def get_event(
    engine: Engine,
    notifications: Notifications,
    workflow_id: str,
    key: str,
    timeout_seconds: float,
) -> Any:
    """Wait for an event of another workflow; None on timeout. In a workflow the value seen is
    recorded, so a replay sees it even if the event changed since."""
    ctx = _workflow_context()
    if ctx is None:
        return get_event_outside(engine.sysdb, notifications, workflow_id, key, timeout_seconds)
    function_id, rec = engine.begin_operation(ctx, GET_EVENT_OP)
    timeout_id = ctx.next_function_id()
    if rec is not None:
        return replay_outcome(rec)
    deadline = _durable_deadline(engine, ctx, timeout_id, timeout_seconds)
    started = now_ms()
    with notifications.events.watch(event_key(workflow_id, key)) as event:
        while True:
            done, value = get_event_once(
                engine, ctx, function_id, started, workflow_id, key, deadline
            )
            if done:
                return value
            left_ms = deadline() - now_ms()
            notifications.wait(event, left_ms / 1000, lambda: engine.check_interrupts(ctx))


def get_event_once(
    engine: Engine,
    ctx: WorkflowContext,
    function_id: int,
    started: int,
    workflow_id: str,
    key: str,
    deadline: Callable[[], int],
) -> tuple[bool, Any]:
    """One look for the event (shared by the sync and async get_event): (True, value) when it is
    there or the timeout passed, both recorded; (False, None) to wait on."""
    value = engine.checkpoint(lambda: engine.sysdb.get_event(workflow_id, key))
    found = value is not None
    if not found and deadline() - now_ms() > 0:
        return False, None
    engine.record_operation(
        ctx,
        function_id,
        GET_EVENT_OP,
        output=value if found else serialization.serialize(None),
        started_at_ms=started,
    )
    return True, serialization.deserialize(value) if found else None
