"""The awaitable twins of the engine: the same core, with user code awaited on the caller's event
loop and database work handed to a worker thread (the engine's own synchronous calls).

Determinism under ``asyncio.gather``: every durable operation takes its step number synchronously
on the event loop, before its first ``await``, so concurrent operations are numbered in call order
and a replay numbers them the same way. Async transactions run on a pooled connection handed back
and forth between the loop and worker threads; inside them ``DBOS.sql_session`` is an
``AsyncSession`` whose ``execute`` is awaitable. (A thread hand-off measured faster here than
psycopg's async connections, whose pools are bound to one event loop while recovered async
workflows each run on a loop of their own.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg
import psycopg.errors

from runtime import context, serialization
from runtime.context import StepContext, WorkflowContext, now_ms
from runtime.engine import (
    GET_RESULT_STEP,
    TRANSACTION_MAX_ATTEMPTS,
    WAIT_SLICE_S,
    Engine,
    EnqueueRequest,
    Interrupted,
    OutcomeUnknown,
    Prepared,
    StepOptions,
    _Outcome,
    check_same_operation,
    local_answer,
    recorded_answer,
    replay_outcome,
)
from runtime.errors import (
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSWorkflowFencedError,
)
from runtime.handles import PENDING_OUTCOME
from runtime.registry import WorkflowInfo

# Background async workflows are tasks on the caller's loop; keep them referenced until done.
_tasks: set[asyncio.Task[None]] = set()


async def execute_async(
    engine: Engine,
    ctx: WorkflowContext,
    info: WorkflowInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    future: Future[_Outcome],
) -> None:
    """Run an async workflow body on this event loop and record how it ended."""
    outcome = _Outcome()
    wf_token = context.current_workflow.set(ctx)
    step_token = context.current_step.set(None)
    try:
        try:
            value, raised = await info.func(*args, **kwargs), None
        except BaseException as exc:
            value, raised = None, exc
        await asyncio.to_thread(engine.settle, ctx, outcome, value, raised)
    finally:
        context.current_step.reset(step_token)
        context.current_workflow.reset(wf_token)
        engine.finish_run(ctx, future, outcome)


async def _run_prepared(
    engine: Engine,
    prepared: Prepared,
    info: WorkflowInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    background: bool,
) -> Future[_Outcome] | None:
    if prepared.ctx is not None and prepared.future is not None and info.is_async:
        engine.register_run(prepared.ctx)
        run = execute_async(engine, prepared.ctx, info, args, kwargs, prepared.future)
        if background:
            task = asyncio.get_running_loop().create_task(run)
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
        else:
            await run
        return prepared.future
    # A synchronous workflow, or a recorded one to claim: a worker thread does what was prepared,
    # in the background, and this loop awaits the run's outcome rather than a blocked thread.
    return await asyncio.to_thread(
        engine.run_prepared, prepared, info, args, kwargs, background=True
    )


async def _prepare(
    engine: Engine,
    info: WorkflowInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    enqueue: EnqueueRequest | None,
) -> Prepared:
    reserved = engine.reserve_child(info)  # on the loop: numbered in call order
    prepare = asyncio.ensure_future(
        asyncio.to_thread(engine.prepare_start, info, args, kwargs, enqueue, reserved)
    )
    try:
        return await asyncio.shield(prepare)
    except asyncio.CancelledError:
        # The caller gave up (its task was cancelled), but the start may be recorded, and this
        # process holds its reservation: do what was prepared in the background, as an
        # uncancelled start would have, or the ID would stay reserved here and never run.
        def carry_on(done: asyncio.Future[Prepared]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            threading.Thread(
                target=engine.run_prepared,
                args=(done.result(), info, args, kwargs),
                kwargs={"background": True},
                name="dbos-abandoned-start",
                daemon=True,
            ).start()

        prepare.add_done_callback(carry_on)
        raise


async def call_workflow_async(
    engine: Engine, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``await workflow(...)``: run it durably on this loop and return its result."""
    prepared = await _prepare(engine, info, args, kwargs, None)
    future = await _run_prepared(engine, prepared, info, args, kwargs, background=False)
    return await wait_result_async(engine, prepared.workflow_id, future)


async def start_workflow_async(
    engine: Engine,
    info: WorkflowInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    enqueue: EnqueueRequest | None = None,
) -> str:
    """Record the workflow and run it in the background (an async one as a task on this loop)."""
    prepared = await _prepare(engine, info, args, kwargs, enqueue)
    await _run_prepared(engine, prepared, info, args, kwargs, background=True)
    return prepared.workflow_id


async def wait_result_async(
    engine: Engine, workflow_id: str, future: Future[_Outcome] | None = None
) -> Any:
    """``engine.wait_result`` without blocking the loop: the same answers (inside a workflow only
    a final outcome ends the wait, and the waiter's own cancellation, deadline or shutdown stop
    it), with the local run awaited on the loop and database reads on a worker thread."""
    ctx = _workflow()
    delay = 0.01
    while True:
        if future is None:
            future = engine.local_future(workflow_id)
        if future is not None:
            waiting = asyncio.wrap_future(future)
            # asyncio.wait, not wait_for: a timeout must not cancel the run's future.
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=WAIT_SLICE_S if ctx else None)
                if ctx is not None and not waiting.done():
                    await check_interrupts_async(engine, ctx)
            done, value = local_answer(waiting.result(), ctx is not None)
            if done:
                return value
            future = None
        row = await asyncio.to_thread(
            engine.checkpoint, lambda: engine.sysdb.get_status_result(workflow_id)
        )
        value = recorded_answer(workflow_id, row, ctx is not None)
        if value is not PENDING_OUTCOME:
            return value
        if ctx is not None:
            await check_interrupts_async(engine, ctx)
            await sleep_interruptibly_async(engine, ctx, delay)
        else:
            await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


async def get_result_async(engine: Engine, workflow_id: str) -> Any:
    """``await handle.get_result()``; in a workflow the outcome is recorded, like the sync one."""
    ctx = _workflow()
    if ctx is None:
        return await wait_result_async(engine, workflow_id)
    function_id, rec = engine.begin_operation(ctx, GET_RESULT_STEP)
    if rec is not None:
        return replay_outcome(rec)
    started = now_ms()
    try:
        value = await wait_result_async(engine, workflow_id)
    except Exception as exc:
        await asyncio.to_thread(
            engine.record_operation,
            ctx,
            function_id,
            GET_RESULT_STEP,
            error=serialization.serialize_exception(exc),
            child_workflow_id=workflow_id,
            started_at_ms=started,
        )
        raise
    await asyncio.to_thread(
        engine.record_operation,
        ctx,
        function_id,
        GET_RESULT_STEP,
        output=serialization.serialize(value, "workflow result"),
        child_workflow_id=workflow_id,
        started_at_ms=started,
    )
    return value


def _workflow() -> WorkflowContext | None:
    ctx = context.current_workflow.get()
    if ctx is None or context.current_step.get() is not None:
        return None
    return ctx


async def check_interrupts_async(engine: Engine, ctx: WorkflowContext) -> None:
    """``engine.check_interrupts`` without blocking the loop (it queries only when flagged)."""
    if ctx.cancel_requested.is_set():
        await asyncio.to_thread(engine.check_interrupts, ctx)
    else:
        engine.check_interrupts(ctx)


async def sleep_interruptibly_async(engine: Engine, ctx: WorkflowContext, seconds: float) -> None:
    """``asyncio.sleep`` that stops early (raising) on cancellation, deadline or shutdown."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.2))
        if ctx.cancel_requested.is_set() or engine.stopping.is_set():
            await check_interrupts_async(engine, ctx)


async def run_step_async(
    engine: Engine,
    name: str,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: StepOptions,
) -> Any:
    """An async step: replayed from its record, or awaited (with retries) and recorded."""
    ctx = _workflow()
    if ctx is None:
        return await func(*args, **kwargs)
    function_id, rec = engine.begin_operation(ctx, name)
    if rec is not None:
        return replay_outcome(rec)
    started = now_ms()
    step = StepContext(function_id, name)
    token = context.current_step.set(step)
    try:
        value, error = await _attempt_async(engine, ctx, step, func, args, kwargs, options)
    finally:
        context.current_step.reset(token)
    return await asyncio.to_thread(
        engine.finish_step, ctx, function_id, name, started, value, error
    )


async def _attempt_async(
    engine: Engine,
    ctx: WorkflowContext,
    step: StepContext,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: StepOptions,
) -> tuple[Any, Exception | None]:
    attempts = max(1, options.max_attempts) if options.retries_allowed else 1
    delay = options.interval_seconds
    for attempt in range(1, attempts + 1):
        step.attempt = attempt
        if engine.ownership_stale(ctx):
            await asyncio.to_thread(engine.confirm_ownership_if_stale, ctx)
        try:
            return await func(*args, **kwargs), None
        except Exception as exc:
            if not options.retries_allowed:
                return None, exc
            if attempt == attempts:
                return None, DBOSMaxStepRetriesExceeded(step.name, attempts, repr(exc))
            await sleep_interruptibly_async(engine, ctx, delay)
            delay *= options.backoff_rate
    raise AssertionError("unreachable")  # pragma: no cover


class AsyncSession:
    """``DBOS.sql_session`` inside an async transaction: the transaction's connection, with an
    awaitable ``execute`` that runs the statement on a worker thread."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.connection = conn

    async def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        """Run one statement in the transaction; the cursor holds its results."""
        return await asyncio.to_thread(self.connection.execute, query, params)


async def run_transaction_async(
    engine: Engine,
    name: str,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    isolation: psycopg.IsolationLevel,
) -> Any:
    """An async transaction: the same guarantees as the sync one (its outcome commits with its
    writes; serialization failures retry; a lost connection is resolved by the record)."""
    ctx = _workflow()
    if ctx is None:
        return await _transaction_attempts(engine, func, args, kwargs, isolation, None, None, None)
    function_id, rec = engine.begin_operation(ctx, name)
    if rec is not None:
        return replay_outcome(rec)
    if not engine.same_database:
        raise DBOSException(
            "transactions need the system tables in the application database (no separate "
            "system_database_url), so that their outcome commits with their writes"
        )
    started = now_ms()
    step = StepContext(function_id, name)
    try:
        while True:
            try:
                value, result = await _transaction_attempts(
                    engine, func, args, kwargs, isolation, ctx, step, started
                )
                break
            except OutcomeUnknown as unknown:
                found = await asyncio.to_thread(
                    engine.checkpoint, lambda: engine.sysdb.get_step(ctx.workflow_id, function_id)
                )
                if found is not None:
                    check_same_operation(ctx, function_id, found, name)
                    return replay_outcome(found)
                engine._not_while_stopping(unknown)
    except (Interrupted, DBOSWorkflowFencedError):
        raise
    except Exception as exc:
        engine._not_while_stopping(exc)
        await asyncio.to_thread(
            engine.record_operation,
            ctx,
            function_id,
            name,
            error=serialization.serialize_exception(exc),
            started_at_ms=started,
        )
        raise
    engine.check_record(ctx, result)
    return value


async def _transaction_attempts(
    engine: Engine,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    isolation: psycopg.IsolationLevel,
    ctx: WorkflowContext | None,
    step: StepContext | None,
    started: int | None,
) -> Any:
    delay = 0.01
    for attempt in range(1, TRANSACTION_MAX_ATTEMPTS + 1):
        try:
            return await _transaction_once(
                engine, func, args, kwargs, isolation, ctx, step, started
            )
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            if attempt == TRANSACTION_MAX_ATTEMPTS:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")  # pragma: no cover


async def _transaction_once(
    engine: Engine,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    isolation: psycopg.IsolationLevel,
    ctx: WorkflowContext | None,
    step: StepContext | None,
    started: int | None,
) -> Any:
    conn = await asyncio.to_thread(engine.app_pool.getconn)
    try:
        conn.isolation_level = isolation
        tx = conn.transaction()
        await asyncio.to_thread(tx.__enter__)
        try:
            session_token = context.sql_session.set(AsyncSession(conn))
            step_token = context.current_step.set(step)
            try:
                value = await func(*args, **kwargs)
            finally:
                context.current_step.reset(step_token)
                context.sql_session.reset(session_token)
            result = None
            if ctx is not None and step is not None:
                result = await asyncio.to_thread(
                    engine.record_in_transaction, conn, ctx, step, started, value
                )
        except BaseException as exc:
            await asyncio.to_thread(tx.__exit__, type(exc), exc, exc.__traceback__)
            raise
        await asyncio.to_thread(tx.__exit__, None, None, None)
        return value if ctx is None else (value, result)
    except psycopg.Error as exc:
        if ctx is not None and (conn.broken or conn.closed):
            raise OutcomeUnknown(exc) from exc
        raise
    finally:
        if not conn.closed:
            conn.isolation_level = None
        await asyncio.to_thread(engine.app_pool.putconn, conn)
