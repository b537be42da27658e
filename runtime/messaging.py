"""Messages (send/recv), events (set/get) and durable sleep. Written once for sync and async
callers (``runtime.engine.drive``).

Inside a workflow each operation is durable: its outcome is recorded under the next step number in
the same statement that performs it (a message is consumed and recorded together, an event is
published and recorded together), so a replay returns what the first run saw. Waits are durable
too: ``recv`` and ``get_event`` record when their timeout ends before they first wait, and
``sleep`` records its wake-up time, so after a restart only the remaining time is waited.

Waiters are woken by LISTEN/NOTIFY through the process's one listener connection
(``runtime.listener``), and poll slowly as a fallback (quickly while the listener is down).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime import context, serialization
from runtime.context import WorkflowContext, now_ms
from runtime.engine.drive import Blocking, Effect, Operation, run_async, run_sync
from runtime.engine.parking import Wake
from runtime.engine.protocol import (
    Operations,
    Pause,
    check_same_operation,
    owner_verdict,
    replay_outcome,
)
from runtime.errors import DBOSException, DBOSNonExistentWorkflowError
from runtime.listener import Notifications, Watch, event_key, message_key
from runtime.message_db import MessageDatabase, OutgoingMessage
from runtime.records import RecvResult
from runtime.system_db import SystemDatabase
from runtime.waiting import WaitTarget

SLEEP_OP = "DBOS.sleep"
SEND_OP = "DBOS.send"
SEND_BULK_OP = "DBOS.send_bulk"
GET_ALL_EVENTS_OP = "DBOS.get_events"
RECV_OP = "DBOS.recv"
SET_EVENT_OP = "DBOS.setEvent"
GET_EVENT_OP = "DBOS.getEvent"


@dataclass
class SendMessage:
    """One message of ``DBOS.send_bulk``: the destination workflow's ID, the message (any
    JSON-serializable value), its topic (None: the default topic) and an idempotency key (a key
    already used for that destination delivers nothing)."""

    destination_id: str
    message: Any
    topic: str | None = None
    idempotency_key: str | None = None


def outgoing(messages: list[SendMessage]) -> list[OutgoingMessage]:
    """Check and serialize a send's messages before anything is delivered or recorded:
    ``DBOSException`` for something that is not a ``SendMessage`` or for an idempotency key used
    twice in one call (DBOS's rule), ``DBOSSerializationError`` for a value JSON cannot hold."""
    if not isinstance(messages, list) or not all(isinstance(m, SendMessage) for m in messages):
        raise DBOSException("send_bulk takes a list of SendMessage")
    keys = [m.idempotency_key for m in messages if m.idempotency_key is not None]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise DBOSException(f"send_bulk received duplicate idempotency keys: {repeated}")
    return [
        OutgoingMessage(
            m.destination_id,
            serialization.serialize(m.message, "message"),
            m.topic,
            m.idempotency_key,
        )
        for m in messages
    ]


class _Notice(Effect):
    """Wait for a notification (or the timeout, or the poll interval); a workflow checks its own
    interrupts between slices, and parks (``wake`` says on what) when the wait is long."""

    __slots__ = ("notifications", "watch", "seconds", "ops", "ctx", "wake")

    def __init__(
        self,
        notifications: Notifications,
        watch: Watch,
        seconds: float,
        ops: Operations | None = None,
        ctx: WorkflowContext | None = None,
        wake: Wake | None = None,
    ) -> None:
        self.notifications, self.watch, self.seconds = notifications, watch, seconds
        self.ops, self.ctx, self.wake = ops, ctx, wake

    def run(self) -> None:
        ops, ctx = self.ops, self.ctx
        if ops is None or ctx is None:
            self.notifications.wait(self.watch, self.seconds)
            return
        in_place = self._in_place(ops, ctx)
        woken = self.notifications.wait(
            self.watch, min(self.seconds, in_place), lambda: ops.check_interrupts(ctx)
        )
        if not woken and self.seconds > in_place and self.wake is not None:
            ops.check_interrupts(ctx)
            ops.parking.park(ctx, self.wake, lambda: not self.watch.is_set())

    async def run_async(self) -> None:
        ops, ctx = self.ops, self.ctx
        if ops is None or ctx is None:
            await self.notifications.wait_async(self.watch, self.seconds)
            return
        in_place = self._in_place(ops, ctx)
        woken = await self.notifications.wait_async(
            self.watch, min(self.seconds, in_place), lambda: ops.check_interrupts_async(ctx)
        )
        if not woken and self.seconds > in_place and self.wake is not None:
            await ops.check_interrupts_async(ctx)
            ops.parking.park(ctx, self.wake, lambda: not self.watch.is_set())

    def _in_place(self, ops: Operations, ctx: WorkflowContext) -> float:
        return float("inf") if self.wake is None else ops.parking.wait_in_place_s(ctx)


# -- outside a workflow (also what DBOSClient uses) -------------------------------------------


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
    return run_sync(_event_outside(sysdb, notifications, workflow_id, key, timeout_seconds))


def _event_outside(
    sysdb: SystemDatabase,
    notifications: Notifications,
    workflow_id: str,
    key: str,
    timeout_seconds: float,
) -> Operation[Any]:
    deadline = time.monotonic() + timeout_seconds
    with notifications.events.watch(event_key(workflow_id, key)) as watch:
        while True:
            value = yield Blocking(lambda: sysdb.get_event(workflow_id, key))
            if value is not None:
                return serialization.deserialize(value)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            yield _Notice(notifications, watch, left)


# -- the operations ---------------------------------------------------------------------------


def _require_workflow(operation: str) -> WorkflowContext:
    ctx = context.active_workflow()
    if ctx is None:
        raise DBOSException(f"DBOS.{operation} can only be called inside a workflow (not a step)")
    return ctx


def _event_owner(operation: str) -> tuple[WorkflowContext, bool]:
    """The workflow that sets an event, and whether one of its steps does."""
    ctx = context.current_workflow.get()
    if ctx is None:
        raise DBOSException(f"DBOS.{operation} can only be called inside a workflow or a step")
    return ctx, context.current_step.get() is not None


class Messaging:
    """Messages, events and durable sleep for one launched runtime; each ``*_async`` method is
    the same operation driven on the event loop."""

    def __init__(self, ops: Operations, notifications: Notifications) -> None:
        self.ops = ops
        self.notifications = notifications
        self.msgdb = MessageDatabase(ops.sysdb)

    # -- shells -----------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Durable sleep: the wake-up time is recorded, so a restarted workflow sleeps what
        remains. Outside a workflow, a plain sleep."""
        run_sync(self.sleeping(seconds))

    async def sleep_async(self, seconds: float) -> None:
        """``sleep`` on the event loop."""
        await run_async(self.sleeping(seconds))

    def send(
        self, destination_id: str, message: Any, topic: str | None, idempotency_key: str | None
    ) -> None:
        """Send a message; from a workflow it is a step and happens exactly once."""
        run_sync(self.sending(destination_id, message, topic, idempotency_key))

    async def send_async(
        self, destination_id: str, message: Any, topic: str | None, idempotency_key: str | None
    ) -> None:
        """``send`` without blocking the loop."""
        await run_async(self.sending(destination_id, message, topic, idempotency_key))

    def send_bulk(self, messages: list[SendMessage]) -> None:
        """Send many messages in one statement; from a workflow it is one step, exactly once."""
        run_sync(self.sending_many(outgoing(messages), SEND_BULK_OP))

    async def send_bulk_async(self, messages: list[SendMessage]) -> None:
        """``send_bulk`` without blocking the loop."""
        await run_async(self.sending_many(outgoing(messages), SEND_BULK_OP))

    def get_all_events(self, workflow_id: str) -> dict[str, Any]:
        """Every event a workflow has set, by key; in a workflow the answer is recorded."""
        return run_sync(self.getting_all_events(workflow_id))

    async def get_all_events_async(self, workflow_id: str) -> dict[str, Any]:
        """``get_all_events`` without blocking the loop."""
        return await run_async(self.getting_all_events(workflow_id))

    def recv(self, topic: str | None, timeout_seconds: float) -> Any:
        """Consume the next message on ``topic``, waiting (durably) up to the timeout; None when
        it passes. The consumption and its record are one statement: exactly once, even across
        crashes."""
        return run_sync(self.receiving(_require_workflow("recv"), topic, timeout_seconds))

    async def recv_async(self, topic: str | None, timeout_seconds: float) -> Any:
        """``recv`` on the event loop."""
        ctx = _require_workflow("recv_async")
        return await run_async(self.receiving(ctx, topic, timeout_seconds))

    def set_event(self, key: str, value: Any) -> None:
        """Publish (or overwrite) a key/value on the running workflow; last write wins. From a
        step it is published at once, not as a step of its own (DBOS's rule)."""
        run_sync(self.setting_event(_event_owner("set_event"), key, value))

    async def set_event_async(self, key: str, value: Any) -> None:
        """``set_event`` without blocking the loop."""
        await run_async(self.setting_event(_event_owner("set_event_async"), key, value))

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float) -> Any:
        """Wait for an event of another workflow; None on timeout. In a workflow the value seen
        is recorded, so a replay sees it even if the event changed since."""
        return run_sync(self.getting_event(workflow_id, key, timeout_seconds))

    async def get_event_async(self, workflow_id: str, key: str, timeout_seconds: float) -> Any:
        """``get_event`` on the event loop."""
        return await run_async(self.getting_event(workflow_id, key, timeout_seconds))

    # -- the operations ---------------------------------------------------------------------------

    def sleeping(self, seconds: float) -> Operation[None]:
        """Durable sleep as an operation."""
        ctx = context.active_workflow()
        if ctx is None:
            yield Pause(self.ops, None, seconds)
            return
        function_id, rec = self.ops.begin(ctx, SLEEP_OP)
        if rec is not None:
            wake_at = int(serialization.deserialize(rec.output))
        else:
            wake_at = now_ms() + int(seconds * 1000)
            yield self.ops.recording(
                ctx,
                function_id,
                SLEEP_OP,
                output=serialization.serialize(wake_at),
                started_at_ms=now_ms(),
            )
        remaining = (wake_at - now_ms()) / 1000
        if remaining > 0 and ctx.check is None:  # a replay check never waits
            yield Pause(self.ops, ctx, remaining, Wake(at_ms=wake_at))

    def sending(
        self, destination_id: str, message: Any, topic: str | None, idempotency_key: str | None
    ) -> Operation[None]:
        """``send`` as an operation. With an idempotency key, a key already used for that
        destination delivers nothing, from a workflow too."""
        ctx = context.active_workflow()
        if ctx is not None and idempotency_key is not None:
            sent = outgoing([SendMessage(destination_id, message, topic, idempotency_key)])
            return (yield from self.sending_many(sent, SEND_OP))
        if ctx is None:
            sysdb = self.ops.sysdb
            yield Blocking(
                lambda: send_outside(sysdb, destination_id, message, topic, idempotency_key)
            )
            return
        payload = serialization.serialize(message, "message")
        function_id, rec = self.ops.begin(ctx, SEND_OP)
        if rec is not None:
            replay_outcome(rec)
            return
        yield Blocking(lambda: self._send(ctx, function_id, destination_id, topic, payload))

    def _send(
        self,
        ctx: WorkflowContext,
        function_id: int,
        destination_id: str,
        topic: str | None,
        payload: str,
    ) -> None:
        ops = self.ops
        started = now_ms()
        result = ops.checkpoint(
            lambda: ops.sysdb.send_from_workflow(
                ctx.workflow_id,
                ctx.owner_epoch,
                function_id,
                started,
                destination_id,
                topic,
                payload,
            )
        )
        if result.recorded:
            ops.check_record(ctx, result)
            return
        owner_verdict(ctx, result.status, result.owner_epoch)  # fenced, cancelled, or not yet
        if not result.destination_exists:
            error = DBOSNonExistentWorkflowError(destination_id)
            ops.record(
                ctx,
                function_id,
                SEND_OP,
                error=serialization.serialize_exception(error),
                started_at_ms=started,
            )
            raise error
        ops.check_record(ctx, result)  # our own earlier attempt, whose reply was lost

    def sending_many(self, messages: list[OutgoingMessage], name: str) -> Operation[None]:
        """Sends in one statement: from a workflow, recorded as its step ``name``."""
        ctx = context.active_workflow()
        if ctx is None:
            missing = yield Blocking(lambda: self.msgdb.send_outside(messages))
            if missing is not None:
                raise DBOSNonExistentWorkflowError(missing)
            return
        function_id, rec = self.ops.begin(ctx, name)
        if rec is not None:
            replay_outcome(rec)
            return
        yield Blocking(lambda: self._send_many(ctx, function_id, name, messages))

    def _send_many(
        self,
        ctx: WorkflowContext,
        function_id: int,
        name: str,
        messages: list[OutgoingMessage],
    ) -> None:
        ops = self.ops
        started = now_ms()
        result = ops.checkpoint(
            lambda: self.msgdb.send_from_workflow(
                ctx.workflow_id, ctx.owner_epoch, function_id, name, started, messages
            )
        )
        if result.recorded:
            ops.check_record(ctx, result)
            return
        owner_verdict(ctx, result.status, result.owner_epoch)  # fenced, cancelled, or not yet
        if result.missing is not None:
            error = DBOSNonExistentWorkflowError(result.missing)
            encoded = serialization.serialize_exception(error)
            ops.record(ctx, function_id, name, error=encoded, started_at_ms=started)
            raise error
        ops.check_record(ctx, result)  # our own earlier attempt, whose reply was lost

    def getting_all_events(self, workflow_id: str) -> Operation[dict[str, Any]]:
        """``get_all_events`` as an operation: a step (its answer recorded) in a workflow."""
        ctx = context.active_workflow()
        if ctx is None:
            found = yield Blocking(lambda: self.msgdb.get_all_events(workflow_id))
            return {k: serialization.deserialize(v) for k, v in found.items()}
        function_id, rec = self.ops.begin(ctx, GET_ALL_EVENTS_OP)
        if rec is not None:
            return dict(replay_outcome(rec))
        started = now_ms()
        ops = self.ops
        found = yield Blocking(
            lambda: ops.checkpoint(lambda: self.msgdb.get_all_events(workflow_id))
        )
        events = {k: serialization.deserialize(v) for k, v in found.items()}
        output = serialization.serialize(events, "events")
        yield ops.recording(
            ctx, function_id, GET_ALL_EVENTS_OP, output=output, started_at_ms=started
        )
        return events

    def _durable_deadline(
        self, ctx: WorkflowContext, timeout_id: int, timeout_seconds: float, target: WaitTarget
    ) -> Callable[[], int]:
        """The end of a wait, recorded the first time it is needed (so a replay that did not wait
        does not need it) and read back from the record after a restart. The same write records
        what the wait is for (``target``), so an operator can see it at no extra cost."""
        rec = ctx.recorded.get(timeout_id)
        if rec is not None:
            check_same_operation(ctx, timeout_id, rec, SLEEP_OP)
        state: dict[str, int] = {}
        if rec is not None:
            state["deadline"] = int(serialization.deserialize(rec.output))

        def deadline() -> int:
            if "deadline" not in state:
                state["deadline"] = now_ms() + int(timeout_seconds * 1000)
                self.ops.record(
                    ctx,
                    timeout_id,
                    SLEEP_OP,
                    output=serialization.serialize(state["deadline"]),
                    started_at_ms=now_ms(),
                    wait_target=target.to_text(),
                )
            return state["deadline"]

        return deadline

    def receiving(
        self, ctx: WorkflowContext, topic: str | None, timeout_seconds: float
    ) -> Operation[Any]:
        """``recv`` as an operation."""
        # The timeout's number is always taken: step numbers do not depend on timing.
        function_id, rec = self.ops.begin(ctx, RECV_OP, extra=1)
        timeout_id = function_id + 1
        if rec is not None:
            return replay_outcome(rec)
        target = WaitTarget("recv", topic=topic)
        deadline = self._durable_deadline(ctx, timeout_id, timeout_seconds, target)
        started = now_ms()
        with self.notifications.messages.watch(message_key(ctx.workflow_id, topic)) as watch:
            while True:
                done, value = yield Blocking(
                    lambda: self._recv_once(ctx, function_id, started, topic, deadline)
                )
                if done:
                    return value
                end = deadline()
                wake = Wake(at_ms=end, message=(ctx.workflow_id, topic))
                yield _Notice(
                    self.notifications, watch, (end - now_ms()) / 1000, self.ops, ctx, wake
                )

    def _recv_once(
        self,
        ctx: WorkflowContext,
        function_id: int,
        started: int,
        topic: str | None,
        deadline: Callable[[], int],
    ) -> tuple[bool, Any]:
        """One look for a message: (True, message) when one was consumed, (True, None) when the
        timeout passed (recorded), (False, None) to wait on."""
        ops = self.ops
        sent = 0

        def look() -> RecvResult:
            nonlocal sent
            sent += 1
            return ops.sysdb.recv(ctx.workflow_id, ctx.owner_epoch, function_id, started, topic)

        result = ops.checkpoint(look)
        if result.recorded:
            ops.check_record(ctx, result)
            return True, serialization.deserialize(result.message)
        owner_verdict(ctx, result.status, result.owner_epoch)  # fenced, cancelled, or not yet
        # Still ours and nothing recorded: no message yet, or (only when the statement was sent
        # again after a failure) our own earlier attempt consumed one and its reply was lost; the
        # record tells.
        if sent > 1:
            own = ops.checkpoint(lambda: ops.sysdb.get_step(ctx.workflow_id, function_id))
            if own is not None:
                return True, replay_outcome(own)
        if deadline() - now_ms() <= 0:
            ops.record(
                ctx,
                function_id,
                RECV_OP,
                output=serialization.serialize(None),
                started_at_ms=started,
            )
            return True, None
        return False, None

    def setting_event(
        self, owner: tuple[WorkflowContext, bool], key: str, value: Any
    ) -> Operation[None]:
        """``set_event`` as an operation (``owner``: the workflow, and whether a step of it
        sets the event)."""
        ctx, in_step = owner
        payload = serialization.serialize(value, "event value")
        if in_step:
            yield Blocking(lambda: self._set_event_from_step(ctx, key, payload))
            return
        function_id, rec = self.ops.begin(ctx, SET_EVENT_OP)
        if rec is not None:
            return
        ops = self.ops
        started = now_ms()
        result = yield Blocking(
            lambda: ops.checkpoint(
                lambda: ops.sysdb.set_event(
                    ctx.workflow_id, ctx.owner_epoch, function_id, started, key, payload
                )
            )
        )
        ops.check_record(ctx, result)

    def _set_event_from_step(self, ctx: WorkflowContext, key: str, payload: str) -> None:
        ops = self.ops
        result = ops.checkpoint(
            lambda: self.msgdb.set_event_from_step(ctx.workflow_id, ctx.owner_epoch, key, payload)
        )
        if not result.recorded:  # another runner owns the workflow now: this one stops
            owner_verdict(ctx, result.status, result.owner_epoch, fenced_only=True)

    def getting_event(self, workflow_id: str, key: str, timeout_seconds: float) -> Operation[Any]:
        """``get_event`` as an operation."""
        ctx = context.active_workflow()
        if ctx is None:
            return (
                yield from _event_outside(
                    self.ops.sysdb, self.notifications, workflow_id, key, timeout_seconds
                )
            )
        function_id, rec = self.ops.begin(ctx, GET_EVENT_OP, extra=1)
        timeout_id = function_id + 1
        if rec is not None:
            return replay_outcome(rec)
        target = WaitTarget("get_event", workflow_id=workflow_id, key=key)
        deadline = self._durable_deadline(ctx, timeout_id, timeout_seconds, target)
        started = now_ms()
        with self.notifications.events.watch(event_key(workflow_id, key)) as watch:
            while True:
                done, value = yield Blocking(
                    lambda: self._event_once(ctx, function_id, started, workflow_id, key, deadline)
                )
                if done:
                    return value
                end = deadline()
                wake = Wake(at_ms=end, event=(workflow_id, key))
                yield _Notice(
                    self.notifications, watch, (end - now_ms()) / 1000, self.ops, ctx, wake
                )

    def _event_once(
        self,
        ctx: WorkflowContext,
        function_id: int,
        started: int,
        workflow_id: str,
        key: str,
        deadline: Callable[[], int],
    ) -> tuple[bool, Any]:
        """One look for the event: (True, value) when it is there or the timeout passed, both
        recorded; (False, None) to wait on."""
        ops = self.ops
        value = ops.checkpoint(lambda: ops.sysdb.get_event(workflow_id, key))
        found = value is not None
        if not found and deadline() - now_ms() > 0:
            return False, None
        ops.record(
            ctx,
            function_id,
            GET_EVENT_OP,
            output=value if found else serialization.serialize(None),
            started_at_ms=started,
        )
        return True, serialization.deserialize(value) if found else None
