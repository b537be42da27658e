"""Awaitable twins of ``messaging``: the same operations and records, with the step numbers taken
on the event loop (in call order) and database work on worker threads. Waits are asyncio waits,
woken by the process's listener, so a thousand waiting ``recv_async`` cost no threads."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime import serialization
from runtime.context import now_ms
from runtime.engine import Engine, replay_outcome
from runtime.engine_async import check_interrupts_async, sleep_interruptibly_async
from runtime.messaging import (
    GET_EVENT_OP,
    RECV_OP,
    SEND_OP,
    SET_EVENT_OP,
    SLEEP_OP,
    Notifications,
    _durable_deadline,
    _require_workflow,
    _workflow_context,
    event_key,
    get_event_once,
    message_key,
    recv_once,
    send_outside,
    send_reserved,
)


async def sleep_async(engine: Engine, seconds: float) -> None:
    """Durable sleep on the event loop."""
    ctx = _workflow_context()
    if ctx is None:
        await asyncio.sleep(seconds)
        return
    function_id, rec = engine.begin_operation(ctx, SLEEP_OP)
    if rec is not None:
        wake_at = int(serialization.deserialize(rec.output))
    else:
        wake_at = now_ms() + int(seconds * 1000)
        await asyncio.to_thread(
            engine.record_operation,
            ctx,
            function_id,
            SLEEP_OP,
            output=serialization.serialize(wake_at),
            started_at_ms=now_ms(),
        )
    remaining = (wake_at - now_ms()) / 1000
    if remaining > 0:
        await sleep_interruptibly_async(engine, ctx, remaining)


async def send_async(
    engine: Engine,
    destination_id: str,
    message: Any,
    topic: str | None,
    idempotency_key: str | None,
) -> None:
    """``send`` without blocking the loop."""
    ctx = _workflow_context()
    if ctx is None:
        await asyncio.to_thread(
            send_outside, engine.sysdb, destination_id, message, topic, idempotency_key
        )
        return
    payload = serialization.serialize(message, "message")
    function_id, rec = engine.begin_operation(ctx, SEND_OP)
    if rec is not None:
        replay_outcome(rec)
        return
    await asyncio.to_thread(send_reserved, engine, ctx, function_id, destination_id, topic, payload)


async def recv_async(
    engine: Engine, notifications: Notifications, topic: str | None, timeout_seconds: float
) -> Any:
    """``recv`` on the event loop."""
    ctx = _require_workflow("recv_async")
    function_id, rec = engine.begin_operation(ctx, RECV_OP)
    timeout_id = ctx.next_function_id()
    if rec is not None:
        return replay_outcome(rec)
    deadline = _durable_deadline(engine, ctx, timeout_id, timeout_seconds)
    started = now_ms()
    with notifications.messages.watch_async(message_key(ctx.workflow_id, topic)) as event:
        while True:
            done, value = await asyncio.to_thread(
                recv_once, engine, ctx, function_id, started, topic, deadline
            )
            if done:
                return value
            left_ms = deadline() - now_ms()
            await notifications.wait_async(
                event, left_ms / 1000, lambda: check_interrupts_async(engine, ctx)
            )


async def set_event_async(engine: Engine, key: str, value: Any) -> None:
    """``set_event`` without blocking the loop."""
    ctx = _require_workflow("set_event_async")
    payload = serialization.serialize(value, "event value")
    function_id, rec = engine.begin_operation(ctx, SET_EVENT_OP)
    if rec is not None:
        return
    started = now_ms()
    result = await asyncio.to_thread(
        engine.checkpoint,
        lambda: engine.sysdb.set_event(
            ctx.workflow_id, ctx.owner_epoch, function_id, started, key, payload
        ),
    )
    engine.check_record(ctx, result)


async def get_event_async(
    engine: Engine,
    notifications: Notifications,
    workflow_id: str,
    key: str,
    timeout_seconds: float,
) -> Any:
    """``get_event`` on the event loop."""
    ctx = _workflow_context()
    if ctx is None:
        return await _get_event_outside_async(
            engine, notifications, workflow_id, key, timeout_seconds
        )
    function_id, rec = engine.begin_operation(ctx, GET_EVENT_OP)
    timeout_id = ctx.next_function_id()
    if rec is not None:
        return replay_outcome(rec)
    deadline = _durable_deadline(engine, ctx, timeout_id, timeout_seconds)
    started = now_ms()
    with notifications.events.watch_async(event_key(workflow_id, key)) as event:
        while True:
            done, value = await asyncio.to_thread(
                get_event_once, engine, ctx, function_id, started, workflow_id, key, deadline
            )
            if done:
                return value
            left_ms = deadline() - now_ms()
            await notifications.wait_async(
                event, left_ms / 1000, lambda: check_interrupts_async(engine, ctx)
            )


async def _get_event_outside_async(
    engine: Engine,
    notifications: Notifications,
    workflow_id: str,
    key: str,
    timeout_seconds: float,
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    with notifications.events.watch_async(event_key(workflow_id, key)) as event:
        while True:
            value = await asyncio.to_thread(engine.sysdb.get_event, workflow_id, key)
            if value is not None:
                return serialization.deserialize(value)
            left = deadline - loop.time()
            if left <= 0:
                return None
            await notifications.wait_async(event, left)
