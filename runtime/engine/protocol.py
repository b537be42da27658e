"""The durable-operation protocol, written once: number, replay, check, record, fence.

Every durable operation of a workflow (a step, a transaction, a child's start, a send, a sleep...)
follows the same protocol:

1. ``begin``: take the next step number. When a previous run recorded an outcome under it, that
   outcome is returned (after checking it is the same operation, else the workflow is not
   deterministic: ``DBOSUnexpectedStepError``); on a fresh step, stop first if the workflow was
   cancelled, is past its deadline, or the runtime is shutting down.
2. Do the work (the caller's part).
3. ``record``: one checkpoint write, conditional on this runner's owner epoch. Its reply says
   whether to go on, stop for a cancellation, or stop silently because another runner owns the
   workflow now (fencing).

Database failures of a checkpoint are classified once (``checkpoint``): transient ones are retried
until the database is back, others are the workflow's own error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from runtime import serialization
from runtime.checkpoint_db import CheckpointWriter, StepWrite
from runtime.context import WorkflowContext, current_workflow, now_ms
from runtime.db import is_transient
from runtime.engine.drive import Blocking, Effect, carry
from runtime.engine.group_commit import GroupCommit
from runtime.engine.parking import Parking, Wake, note_operation
from runtime.errors import (
    DBOSDatabaseError,
    DBOSException,
    DBOSSchemaMissingError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowFencedError,
)
from runtime.records import RecordedStep, RecordResult
from runtime.running_steps import RunningSteps
from runtime.status import WorkflowStatusString
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

_T = TypeVar("_T")

# The statuses in which the runner holding the current owner epoch still owns its workflow:
# running, cancelled by an operator (it stops at its next step), or cancelled and already resumed
# (the resume is claimed once this run has stopped and released it).
OWNED_STATUSES = (
    WorkflowStatusString.PENDING.value,
    WorkflowStatusString.CANCELLED.value,
    WorkflowStatusString.ENQUEUED.value,
)
# An interruptible sleep looks at cancellation and shutdown this often.
SLEEP_SLICE_S = 0.2
# A durable sleep shorter than this never parks: a replay would cost more than the thread.
MIN_PARK_S = 0.05


class Interrupted(BaseException):
    """The runtime is shutting down or lost its database mid-workflow: stop without recording, so
    the workflow stays PENDING and is recovered later."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause) if cause else "runtime shutting down")
        self.cause = cause


def shut_down(workflow_id: str) -> DBOSException:
    """What a waiter in this process gets for a run the runtime's shutdown stopped before it
    ended (queued for a thread, or parked): the workflow stays PENDING and goes on later."""
    return DBOSException(
        f"the runtime shut down before workflow {workflow_id} finished; it is still PENDING and "
        "goes on at the next launch (or in another process)"
    )


class OutcomeUnknown(Exception):
    """A transaction's connection died around its commit (or its checkpoint met an existing one):
    whether it committed is decided by looking for its recorded outcome."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause) if cause else "checkpoint already recorded")
        self.cause = cause


def owner_verdict(
    ctx: WorkflowContext, status: str | None, owner_epoch: int | None, *, fenced_only: bool = False
) -> None:
    """What a runner does on reading its workflow's status and owner epoch: go on (PENDING, its
    epoch); stop for a cancellation (its epoch, CANCELLED or ENQUEUED again); or stop silently
    (``DBOSWorkflowFencedError``: another runner's epoch, a final status, or the row gone).
    ``fenced_only`` leaves the cancellation to the caller."""
    if owner_epoch != ctx.owner_epoch or status not in OWNED_STATUSES:
        raise DBOSWorkflowFencedError(ctx.workflow_id)
    if status != WorkflowStatusString.PENDING.value and not fenced_only:
        raise DBOSWorkflowCancelledError(ctx.workflow_id)


def check_same_operation(
    ctx: WorkflowContext, function_id: int, rec: RecordedStep, name: str
) -> None:
    """A recorded outcome belongs to the operation now at its step number, or the workflow is not
    deterministic."""
    if rec.function_name != name:
        raise DBOSUnexpectedStepError(ctx.workflow_id, function_id, rec.function_name, name)


def replay_outcome(rec: RecordedStep) -> Any:
    """A recorded outcome as the operation gives it: its value, or its error raised."""
    if rec.error is not None:
        raise carry(serialization.deserialize_exception(rec.error))
    return serialization.deserialize(rec.output)


class Operations:
    """The protocol's steps for the runs of one launched runtime (see the module docstring)."""

    def __init__(
        self, sysdb: SystemDatabase, parking: Parking, *, confirm_ownership_after_s: float
    ) -> None:
        self.sysdb = sysdb
        self.parking = parking
        # Half the executor lease: a workflow can only have been taken over from a runner that
        # was out of touch for longer than the lease.
        self.confirm_ownership_after_s = confirm_ownership_after_s
        self.stopping = threading.Event()
        self.running_steps = RunningSteps()  # published by the executor heartbeat
        self.checkpoints = GroupCommit(CheckpointWriter(sysdb))

    # -- the checkpoint -------------------------------------------------------------------------

    def checkpoint(self, write: Callable[[], _T], *, in_workflow: bool = True) -> _T:
        """Run a system-table write. Inside a workflow, a failure that is not the data's fault
        (the connection lost, a timeout, a rollback: ``db.is_transient``) is retried with backoff
        until the database is back (every write tolerates being sent twice), so an outage pauses
        workflows instead of failing them; a shutdown meanwhile interrupts the workflow (it stays
        PENDING and is recovered), and so does a missing system schema (an operator must migrate).
        Any other database error was caused by the workflow's own data: it is raised to the
        workflow, whose error it becomes."""
        inside = in_workflow and current_workflow.get() is not None
        delay = 0.05
        while True:
            try:
                return write()
            except DBOSDatabaseError as exc:
                if not inside:
                    raise
                if isinstance(exc, DBOSSchemaMissingError):
                    raise Interrupted(exc) from exc
                if not is_transient(exc):
                    raise
                if self.stopping.is_set():
                    raise Interrupted(exc) from exc
                logger.warning("waiting for the database (%s); retrying in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def not_while_stopping(self, exc: BaseException) -> None:
        """An error raised while the runtime shuts down may come from the shutdown itself (closed
        pools, the facade going away): never record it; the workflow stays PENDING and is re-run
        (steps are at least once anyway)."""
        if self.stopping.is_set():
            raise Interrupted(exc) from exc

    # -- ownership and interrupts ---------------------------------------------------------------

    def ownership_stale(self, ctx: WorkflowContext) -> bool:
        """Whether this runner has been out of touch long enough to check before a step."""
        return time.monotonic() - ctx.confirmed_at > self.confirm_ownership_after_s

    def confirm_ownership_if_stale(self, ctx: WorkflowContext) -> None:
        """Before a step's side effect: a runner out of touch for a while (paused, asleep, cut
        off) may have lost the workflow to a takeover, and a fenced checkpoint would come too late
        to stop the side effect. One query, only after such a gap; the hot path stays one
        statement per step."""
        if not self.ownership_stale(ctx):
            return
        self._confirm(ctx)

    def _confirm(self, ctx: WorkflowContext) -> None:
        owner = self.checkpoint(lambda: self.sysdb.get_ownership(ctx.workflow_id))
        owner_verdict(ctx, owner.status if owner else None, owner.owner_epoch if owner else None)
        ctx.confirmed_at = time.monotonic()

    def check_interrupts(self, ctx: WorkflowContext) -> None:
        """Before a durable operation: stop if shutting down, cancelled or past the deadline.
        Costs no query unless a cancellation was signalled."""
        if self.stopping.is_set():
            raise Interrupted(None)
        if ctx.cancel_requested.is_set():
            # The notification is a hint; the database decides (a resume may have followed it).
            ctx.cancel_requested.clear()
            self._confirm(ctx)
        if ctx.deadline_ms is not None and now_ms() >= ctx.deadline_ms:
            self.checkpoint(lambda: self.sysdb.cancel_workflow(ctx.workflow_id))
            raise DBOSWorkflowCancelledError(ctx.workflow_id)

    def interrupts(self, ctx: WorkflowContext) -> Generator[Effect, Any, None]:
        """``check_interrupts`` inside an operation: a query (an effect) only when flagged."""
        if ctx.cancel_requested.is_set():
            yield Blocking(lambda: self.check_interrupts(ctx))
        else:
            self.check_interrupts(ctx)

    def confirm(self, ctx: WorkflowContext) -> Generator[Effect, Any, None]:
        """``confirm_ownership_if_stale`` inside an operation: an effect only when stale."""
        if self.ownership_stale(ctx):
            yield Blocking(lambda: self._confirm(ctx))

    # -- begin and record -----------------------------------------------------------------------

    def begin(
        self, ctx: WorkflowContext, name: str, *, extra: int = 0
    ) -> tuple[int, RecordedStep | None]:
        """Allocate the next step number for a durable operation named ``name``: returns it with
        the outcome a previous run recorded there (checked to be the same operation), or, on a
        fresh step, after checking for cancellation, deadline and shutdown. ``extra`` more
        numbers after it are taken too, whatever happens (a wait's timeout row: ``recv``,
        ``get_event``), so the numbers of later operations never depend on how this one went,
        also where a replay check stops at it."""
        note_operation(ctx)
        function_id = ctx.next_function_id()
        for _ in range(extra):
            ctx.next_function_id()
        rec = ctx.recorded.get(function_id)
        if ctx.check is not None:  # a replay check: the recorded outcome, or the workflow stops
            ctx.check.begin(function_id, name, rec)
            return function_id, rec
        if rec is not None:
            check_same_operation(ctx, function_id, rec, name)
        else:
            self.check_interrupts(ctx)
        return function_id, rec

    def peek(self, ctx: WorkflowContext) -> RecordedStep | None:
        """The outcome a previous run recorded at the next step number, without taking that
        number: for an operation that only some histories hold (``DBOS.patch``), which looks
        first and then takes the number (``begin``) or leaves it to the operation that follows.
        None on a fresh step."""
        return ctx.recorded.get(ctx.last_function_id + 1)

    def record(
        self,
        ctx: WorkflowContext,
        function_id: int,
        name: str,
        *,
        output: str | None = None,
        error: str | None = None,
        child_workflow_id: str | None = None,
        started_at_ms: int | None = None,
        wait_target: str | None = None,
        attempts: str | None = None,
    ) -> None:
        """Record an operation's outcome (one checkpoint write), then ``check_record``."""
        if ctx.check is not None:  # a replay check writes nothing
            raise ctx.check.refuse_write(function_id)
        write = StepWrite(
            ctx.workflow_id,
            ctx.owner_epoch,
            function_id,
            name,
            output=output,
            error=error,
            child_workflow_id=child_workflow_id,
            started_at_ms=started_at_ms,
            completed_at_ms=now_ms(),
            wait_target=wait_target,
            attempts=attempts,
        )
        result = self.checkpoint(lambda: self.checkpoints.record(write))
        self.check_record(ctx, result)

    def recording(
        self,
        ctx: WorkflowContext,
        function_id: int,
        name: str,
        *,
        output: str | None = None,
        error: str | None = None,
        child_workflow_id: str | None = None,
        started_at_ms: int | None = None,
    ) -> Blocking:
        """``record`` as an effect of an operation."""
        return Blocking(
            lambda: self.record(
                ctx,
                function_id,
                name,
                output=output,
                error=error,
                child_workflow_id=child_workflow_id,
                started_at_ms=started_at_ms,
            )
        )

    def check_record(self, ctx: WorkflowContext, result: RecordResult) -> None:
        """After a checkpoint write: go on, stop for a cancellation, or stop because another runner
        owns the workflow now. A write that found its row already there while we still own the
        workflow is our own earlier attempt whose reply was lost: it counts as recorded."""
        owner_verdict(ctx, result.status, result.owner_epoch)
        ctx.confirmed_at = time.monotonic()

    # -- waiting --------------------------------------------------------------------------------

    def sleep_interruptibly(self, ctx: WorkflowContext | None, seconds: float) -> None:
        """Sleep, but stop early (raising) on cancellation, deadline or shutdown (a plain sleep
        outside a workflow)."""
        if ctx is None:
            time.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if ctx.cancel_requested.wait(min(left, SLEEP_SLICE_S)) or self.stopping.is_set():
                self.check_interrupts(ctx)
                if ctx.cancel_requested.is_set():  # stale hint cleared above; keep sleeping
                    continue

    async def sleep_interruptibly_async(self, ctx: WorkflowContext | None, seconds: float) -> None:
        """``sleep_interruptibly`` on the event loop."""
        if ctx is None:
            await asyncio.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, SLEEP_SLICE_S))
            if ctx.cancel_requested.is_set() or self.stopping.is_set():
                await self.check_interrupts_async(ctx)

    async def check_interrupts_async(self, ctx: WorkflowContext) -> None:
        """``check_interrupts`` without blocking the loop (it queries only when flagged)."""
        if ctx.cancel_requested.is_set():
            await asyncio.to_thread(self.check_interrupts, ctx)
        else:
            self.check_interrupts(ctx)


class Pause(Effect):
    """An interruptible sleep of a workflow (a plain one outside a workflow). A pause that is part
    of a durable wait (``wake`` says what ends that wait early) gives its thread back when the
    wait, counting the ``waited_s`` already spent on it, is long enough to park."""

    __slots__ = ("ops", "ctx", "seconds", "wake", "waited_s")

    def __init__(
        self,
        ops: Operations,
        ctx: WorkflowContext | None,
        seconds: float,
        wake: Wake | None = None,
        waited_s: float = 0.0,
    ) -> None:
        self.ops, self.ctx, self.seconds = ops, ctx, seconds
        self.wake, self.waited_s = wake, waited_s

    def _parks(self, ctx: WorkflowContext) -> bool:
        limit = max(MIN_PARK_S, self.ops.parking.wait_in_place_s(ctx))
        return self.waited_s + self.seconds > limit

    def run(self) -> None:
        ctx, wake = self.ctx, self.wake
        if ctx is not None and wake is not None and self._parks(ctx):
            self.ops.check_interrupts(ctx)
            self.ops.parking.park(ctx, wake, lambda: True)
        self.ops.sleep_interruptibly(ctx, self.seconds)

    async def run_async(self) -> None:
        ctx, wake = self.ctx, self.wake
        if ctx is not None and wake is not None:
            # Tasks the workflow has just created run first: one that starts an operation marks
            # the workflow as concurrent, and then it does not park.
            await asyncio.sleep(0)
            if self._parks(ctx):
                await self.ops.check_interrupts_async(ctx)
                self.ops.parking.park(ctx, wake, lambda: True)
        await self.ops.sleep_interruptibly_async(ctx, self.seconds)
