"""Waiting for a workflow's outcome: from its run in this process when there is one, else from its
record. Written once for sync and async waiters (``runtime.engine.drive``).

Outside a workflow a CANCELLED workflow is an answer (``DBOSAwaitedWorkflowCancelledError``).
Inside one the wait is durable and only a final outcome ends it: a cancelled workflow may be
resumed, so the waiter keeps waiting, and stops (unrecorded) only for its own cancellation,
deadline or the runtime's shutdown. So a cancellation is never recorded as an outcome that a
resumed workflow would replay. ``handle.get_result()`` inside a workflow records the outcome it
saw, so a replay sees the same one without waiting again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol, TypeVar

from runtime import context, serialization
from runtime.context import WorkflowContext, now_ms
from runtime.engine.drive import (
    Blocking,
    Effect,
    Operation,
    carry,
    run_async,
    run_sync,
    uncarry,
)
from runtime.engine.parking import Wake
from runtime.engine.protocol import Operations, Pause, replay_outcome
from runtime.engine.runs import LocalRuns, Outcome
from runtime.errors import DBOSException, DBOSNonExistentWorkflowError
from runtime.handles import PENDING_OUTCOME, WorkflowHandle, WorkflowHandleAsync, outcome_of
from runtime.message_db import UNFINISHED, MessageDatabase
from runtime.records import StatusResult
from runtime.status import WorkflowStatusString

GET_RESULT_STEP = "DBOS.getResult"
WAIT_FIRST_STEP = "DBOS.waitFirst"
# How often wait_first reads the statuses of the workflows it waits on (DBOS's default).
DEFAULT_POLLING_INTERVAL_S = 1.0


class _HasWorkflowID(Protocol):
    @property
    def workflow_id(self) -> str: ...


H = TypeVar("H", bound=_HasWorkflowID)


def check_handles(handles: Sequence[H]) -> dict[str, H]:
    """The handles of ``wait_first`` by workflow ID; ``ValueError`` (DBOS's) for none or a
    repeated ID."""
    if not isinstance(handles, list | tuple) or not all(
        isinstance(h, WorkflowHandle | WorkflowHandleAsync) for h in handles
    ):
        raise DBOSException(
            f"wait_first takes a list of WorkflowHandle (or WorkflowHandleAsync), not {handles!r}"
        )
    if not handles:
        raise ValueError("handles must not be empty")
    by_id = {h.workflow_id: h for h in handles}
    if len(by_id) != len(handles):
        raise ValueError("handles must not contain duplicate workflow IDs")
    return by_id


# A workflow waiting on a local run looks at its own cancellation and deadline this often.
WAIT_SLICE_S = 0.25


def local_answer(outcome: Outcome, in_workflow: bool) -> tuple[bool, Any]:
    """What a waiter gets from a local run's outcome: (True, value), or its error raised; (False,
    None) when the record must be read (the run stopped without a final outcome). An interrupted
    run's cause is raised to a waiter outside a workflow (a workflow stops for its own reasons)."""
    if not outcome.detached:
        if outcome.error is not None:
            raise carry(outcome.error)
        return True, outcome.value
    if outcome.error is not None and not in_workflow:
        raise carry(outcome.error)  # the run was interrupted (shutdown): say why
    return False, None


def recorded_answer(workflow_id: str, found: StatusResult | None, in_workflow: bool) -> Any:
    """What a waiter gets from a workflow's record: its result, its error raised, or
    ``PENDING_OUTCOME`` to wait on. Inside a workflow a CANCELLED one is not an answer: it may be
    resumed, and a cancellation must never become a recorded outcome."""
    if found is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if in_workflow and found.status == WorkflowStatusString.CANCELLED.value:
        return PENDING_OUTCOME
    try:
        return outcome_of(workflow_id, found)
    except StopIteration as error:  # the workflow's own error, raised inside an operation
        raise carry(error) from None


def watch_future(future: Future[Outcome]) -> asyncio.Future[Outcome]:
    """An asyncio future that completes with ``future``. Unlike ``asyncio.wrap_future``,
    cancelling it (a waiting task was cancelled) does not cancel ``future``: that is the run's
    outcome, which other waiters, later ones included, still wait on."""
    loop = asyncio.get_running_loop()
    waiting: asyncio.Future[Outcome] = loop.create_future()

    def settle(done: Future[Outcome]) -> None:
        if waiting.done():
            return
        if done.cancelled():
            waiting.cancel()
        elif (error := done.exception()) is not None:
            waiting.set_exception(error)
        else:
            waiting.set_result(done.result())

    def copy(done: Future[Outcome]) -> None:
        try:
            loop.call_soon_threadsafe(settle, done)
        except RuntimeError:  # the waiter's loop is closed: nobody waits there any more
            pass

    future.add_done_callback(copy)
    return waiting


class _LocalStart(Effect):
    """Outside a workflow, a pause between reads of an awaited workflow's record that ends when a
    run of it is reserved or ends in this process; gives that run (None: read the record). The
    async driver only sleeps (it must not hold a worker thread for the pause)."""

    __slots__ = ("runs", "workflow_id", "seconds")

    def __init__(self, runs: LocalRuns, workflow_id: str, seconds: float) -> None:
        self.runs, self.workflow_id, self.seconds = runs, workflow_id, seconds

    def run(self) -> Future[Outcome] | None:
        return self.runs.wait_for_run(self.workflow_id, self.seconds)

    async def run_async(self) -> Future[Outcome] | None:
        await asyncio.sleep(self.seconds)
        return None


class _LocalRun(Effect):
    """The outcome of a run in this process; a waiting workflow checks its own interrupts
    meanwhile, and parks (woken by the run's end) when the wait is long."""

    __slots__ = ("ops", "ctx", "future")

    def __init__(
        self, ops: Operations, ctx: WorkflowContext | None, future: Future[Outcome]
    ) -> None:
        self.ops, self.ctx, self.future = ops, ctx, future

    def run(self) -> Outcome:
        ctx = self.ctx
        if ctx is None:
            return self.future.result()
        end = time.monotonic() + self.ops.parking.wait_in_place_s(ctx)
        while True:
            try:
                return self.future.result(
                    timeout=max(0.0, min(WAIT_SLICE_S, end - time.monotonic()))
                )
            except FutureTimeout:
                self.ops.check_interrupts(ctx)
            if time.monotonic() >= end:
                self.ops.parking.park(ctx, Wake(local=self.future), lambda: not self.future.done())
                end = time.monotonic() + self.ops.parking.wait_in_place_s(ctx)  # not parked

    async def run_async(self) -> Outcome:
        ctx = self.ctx
        waiting = watch_future(self.future)
        end = time.monotonic() + (self.ops.parking.wait_in_place_s(ctx) if ctx else 0.0)
        # asyncio.wait, not wait_for: a timeout must not cancel the run's future.
        while not waiting.done():
            slice_s = None if ctx is None else max(0.0, min(WAIT_SLICE_S, end - time.monotonic()))
            await asyncio.wait({waiting}, timeout=slice_s)
            if ctx is not None and not waiting.done():
                await self.ops.check_interrupts_async(ctx)
                if time.monotonic() >= end:
                    self.ops.parking.park(
                        ctx, Wake(local=self.future), lambda: not self.future.done()
                    )
                    end = time.monotonic() + self.ops.parking.wait_in_place_s(ctx)
        return waiting.result()


class Results:
    """Waits for workflow outcomes for one launched runtime."""

    def __init__(self, ops: Operations, runs: LocalRuns) -> None:
        self.ops = ops
        self.runs = runs
        self.msgdb = MessageDatabase(ops.sysdb)

    def wait_first(self, handles: Sequence[H], polling_interval_sec: float) -> H:
        """``DBOS.wait_first``: the first handle whose workflow has finished (SUCCESS, ERROR,
        CANCELLED...); in a workflow the choice is recorded, so a replay returns the same."""
        by_id = check_handles(handles)
        return by_id[run_sync(self.waiting_first(list(by_id), polling_interval_sec))]

    async def wait_first_async(self, handles: Sequence[H], polling_interval_sec: float) -> H:
        """``wait_first`` on the event loop."""
        by_id = check_handles(handles)
        return by_id[await run_async(self.waiting_first(list(by_id), polling_interval_sec))]

    def waiting_first(self, workflow_ids: list[str], poll_s: float) -> Operation[str]:
        """``wait_first`` as an operation: a durable one (its answer recorded) in a workflow."""
        ctx = context.active_workflow()
        if ctx is None:
            return (yield from self._first_finished(None, workflow_ids, poll_s))
        function_id, rec = self.ops.begin(ctx, WAIT_FIRST_STEP)
        if rec is not None:
            return str(replay_outcome(rec))
        started = now_ms()
        try:
            first = yield from self._first_finished(ctx, workflow_ids, poll_s)
        except Exception as exc:
            error = serialization.serialize_exception(uncarry(exc))
            yield self.ops.recording(
                ctx, function_id, WAIT_FIRST_STEP, error=error, started_at_ms=started
            )
            raise
        output = serialization.serialize(first)
        yield self.ops.recording(
            ctx, function_id, WAIT_FIRST_STEP, output=output, started_at_ms=started
        )
        return first

    def _first_finished(
        self, ctx: WorkflowContext | None, workflow_ids: list[str], poll_s: float
    ) -> Operation[str]:
        """Read the workflows' statuses (one query) until one has finished. It waits in place
        (a workflow does not park here: no single wake-up covers several workflows), looking
        at its own cancellation, deadline and shutdown between reads."""
        while True:
            found = yield Blocking(
                lambda: self.ops.checkpoint(lambda: self.msgdb.statuses(workflow_ids))
            )
            for wid in workflow_ids:
                status = found.get(wid)
                if status is None:
                    raise DBOSNonExistentWorkflowError(wid)
                if status not in UNFINISHED:
                    return wid
            if ctx is not None:
                yield from self.ops.interrupts(ctx)
            yield Pause(self.ops, ctx, poll_s)

    def wait(self, workflow_id: str, future: Future[Outcome] | None = None) -> Any:
        """Wait in this thread for a workflow's outcome (its error raised); unrecorded."""
        return run_sync(self.waiting(workflow_id, future))

    async def wait_async(self, workflow_id: str, future: Future[Outcome] | None = None) -> Any:
        """``wait`` on the event loop."""
        return await run_async(self.waiting(workflow_id, future))

    def get_result(self, workflow_id: str) -> Any:
        """``handle.get_result()``: recorded inside a workflow (see the module docstring)."""
        return run_sync(self.getting(workflow_id))

    async def get_result_async(self, workflow_id: str) -> Any:
        """``await handle.get_result()``: recorded inside a workflow, like the sync one."""
        return await run_async(self.getting(workflow_id))

    def waiting(self, workflow_id: str, future: Future[Outcome] | None) -> Operation[Any]:
        """The wait as an operation: the local run when there is one, else the record, read with
        backoff."""
        ctx = context.active_workflow()
        delay = 0.01
        started = time.monotonic()
        while True:
            if future is None:
                future = self.runs.local_future(workflow_id)
            if future is not None:
                done, value = local_answer(
                    (yield _LocalRun(self.ops, ctx, future)), ctx is not None
                )
                if done:
                    return value
                future = None
            found = yield Blocking(
                lambda: self.ops.checkpoint(lambda: self.ops.sysdb.get_status_result(workflow_id))
            )
            value = recorded_answer(workflow_id, found, ctx is not None)
            if value is not PENDING_OUTCOME:
                return value
            if ctx is not None and ctx.check is not None:  # the original waits here too
                raise ctx.check.end_waiting(ctx.last_function_id, workflow_id)
            if ctx is not None:
                yield from self.ops.interrupts(ctx)
            if ctx is None:
                # Outside a workflow the wait ends early when the workflow starts (a queued one
                # claimed by this process's dispatcher) or ends here.
                future = yield _LocalStart(self.runs, workflow_id, delay)
            else:
                # Inside a workflow, a long wait parks, woken when a poll finds it ended.
                yield Pause(
                    self.ops, ctx, delay, Wake(workflow=workflow_id), time.monotonic() - started
                )
            delay = min(delay * 1.5, 0.5)

    def getting(self, workflow_id: str) -> Operation[Any]:
        """``get_result`` as an operation: a durable one inside a workflow."""
        ctx = context.active_workflow()
        if ctx is None:
            return (yield from self.waiting(workflow_id, None))
        function_id, rec = self.ops.begin(ctx, GET_RESULT_STEP)
        if rec is not None:
            return replay_outcome(rec)
        started = now_ms()
        try:
            value = yield from self.waiting(workflow_id, None)
        except Exception as exc:
            yield self.ops.recording(
                ctx,
                function_id,
                GET_RESULT_STEP,
                error=serialization.serialize_exception(uncarry(exc)),
                child_workflow_id=workflow_id,
                started_at_ms=started,
            )
            raise
        yield self.ops.recording(
            ctx,
            function_id,
            GET_RESULT_STEP,
            output=serialization.serialize(value, "workflow result"),
            child_workflow_id=workflow_id,
            started_at_ms=started,
        )
        return value
