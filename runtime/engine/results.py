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
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

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
from runtime.errors import DBOSNonExistentWorkflowError
from runtime.handles import PENDING_OUTCOME, outcome_of
from runtime.records import StatusResult
from runtime.status import WorkflowStatusString

GET_RESULT_STEP = "DBOS.getResult"
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
        waiting = asyncio.wrap_future(self.future)
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
            if ctx is not None:
                yield from self.ops.interrupts(ctx)
            # Inside a workflow, a long wait parks, woken when a poll finds the workflow ended.
            wake = Wake(workflow=workflow_id) if ctx is not None else None
            yield Pause(self.ops, ctx, delay, wake, time.monotonic() - started)
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
