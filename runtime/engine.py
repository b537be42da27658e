"""Start, run, replay, cancel: the durable execution of workflows, steps and transactions.

Cost model (the hot path): starting a workflow is one statement (``insert_workflow``), each step or
transaction one checkpoint write (which also reports cancellation and fencing), finishing one
statement. A fresh run never reads before a step; a resumed run reads its recorded outcomes once.

Replay: each durable operation gets the next step number; when a previous run recorded an outcome
under that number, the operation returns it (or re-raises the recorded error) without executing,
after checking that the recorded operation has the same name (else the workflow is not
deterministic: ``DBOSUnexpectedStepError``).

Fencing: every run holds the owner epoch it claimed the workflow with; checkpoint writes are
conditional on it, so a runner whose workflow was taken over records nothing more and stops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from runtime import context, serialization
from runtime.context import StepContext, WorkflowContext, now_ms
from runtime.db import is_transient
from runtime.errors import (
    DBOSConflictingWorkflowError,
    DBOSDatabaseError,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSSchemaMissingError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowFencedError,
    DBOSWorkflowFunctionNotFoundError,
)
from runtime.handles import PENDING_OUTCOME, outcome_of
from runtime.registry import WorkflowInfo, get_workflow, resolve_class
from runtime.system_db import (
    ClaimedWorkflow,
    DequeuedWorkflow,
    NewWorkflow,
    RecordedStep,
    RecordResult,
    StatusResult,
    SystemDatabase,
)

logger = logging.getLogger("dbos")

DEFAULT_MAX_RECOVERY_ATTEMPTS = 100
GET_RESULT_STEP = "DBOS.getResult"
# A workflow waiting on a local run looks at its own cancellation and deadline this often.
WAIT_SLICE_S = 0.25


class Interrupted(BaseException):
    """The runtime is shutting down or lost its database mid-workflow: stop without recording, so
    the workflow stays PENDING and is recovered later."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause) if cause else "runtime shutting down")
        self.cause = cause


class OutcomeUnknown(Exception):
    """A transaction's connection died around its commit (or its checkpoint met an existing one):
    whether it committed is decided by looking for its recorded outcome."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause) if cause else "checkpoint already recorded")
        self.cause = cause


@dataclass(frozen=True)
class EnqueueRequest:
    """Where and how a workflow is enqueued."""

    queue_name: str
    priority: int = 0
    deduplication_id: str | None = None


@dataclass(frozen=True)
class StepOptions:
    """How a step retries."""

    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0


@dataclass
class Prepared:
    """What ``prepare_start`` decided for a workflow start."""

    workflow_id: str
    ctx: WorkflowContext | None = None
    future: Future[_Outcome] | None = None
    claim: bool = False
    reclaim_own: bool = False


@dataclass
class _Outcome:
    """What a local run produced, for waiters in this process."""

    value: Any = None
    error: BaseException | None = None
    # The run stopped without a final outcome (fenced, interrupted): ask the database.
    detached: bool = False


class Engine:
    """The execution engine of one launched runtime."""

    def __init__(
        self,
        sysdb: SystemDatabase,
        app_pool: ConnectionPool,
        *,
        executor_id: str,
        application_version: str,
        same_database: bool,
        process_id: str,
        confirm_ownership_after_s: float = 5.0,
    ) -> None:
        self.sysdb = sysdb
        self.app_pool = app_pool
        self.executor_id = executor_id
        self.process_id = process_id
        # Half the executor lease: a workflow can only have been taken over from a runner that
        # was out of touch for longer than the lease.
        self.confirm_ownership_after_s = confirm_ownership_after_s
        self.application_version = application_version
        self.same_database = same_database
        self._lock = threading.Lock()
        self._running: dict[str, Future[_Outcome]] = {}
        self._contexts: dict[str, WorkflowContext] = {}
        self._threads: set[threading.Thread] = set()
        self._queue_running: Counter[str] = Counter()
        self._on_idle: Callable[[], None] | None = None
        self.stopping = threading.Event()
        # Set by the queue dispatcher: called when work is enqueued here or a local slot frees.
        self.on_enqueued: Callable[[str], None] = lambda queue_name: None
        self.on_queue_slot_freed: Callable[[str], None] = lambda queue_name: None

    # ------------------------------------------------------------------------------------------
    # Starting workflows
    # ------------------------------------------------------------------------------------------

    def call_workflow(
        self, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A workflow function called directly: run it durably in this thread, return its result."""
        wid, future = self._start(info, args, kwargs, background=False)
        return self.wait_result(wid, future)

    def start_workflow(
        self, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        """Record the workflow and run it in a background thread; returns its ID once its inputs
        are durably recorded."""
        wid, _ = self._start(info, args, kwargs, background=True)
        return wid

    def enqueue_workflow(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        request: EnqueueRequest,
    ) -> str:
        """Record the workflow as ENQUEUED on a queue; a dispatcher of any executor starts it when
        the queue's limits allow. Returns its ID once it is durably enqueued."""
        wid, _ = self._start(info, args, kwargs, background=True, enqueue=request)
        return wid

    def _start(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        background: bool,
        enqueue: EnqueueRequest | None = None,
    ) -> tuple[str, Future[_Outcome] | None]:
        prepared = self.prepare_start(info, args, kwargs, enqueue)
        return prepared.workflow_id, self.run_prepared(
            prepared, info, args, kwargs, background=background
        )

    def run_prepared(
        self,
        prepared: Prepared,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        background: bool,
    ) -> Future[_Outcome] | None:
        """Do what ``prepare_start`` decided: run the new workflow, claim and run the one it found
        PENDING, or nothing. Returns the local run to wait on, if any."""
        if prepared.ctx is not None and prepared.future is not None:
            self._launch(prepared.ctx, info, args, kwargs, prepared.future, background=background)
        elif prepared.claim:
            prepared.future = self.run_claim(prepared, background=background)
        return prepared.future

    def reserve_child(self, info: WorkflowInfo) -> tuple[int, RecordedStep | None] | None:
        """In a workflow, the parent's step number for starting ``info`` (allocated in call order,
        which async callers do on their event loop before handing the rest to a thread)."""
        parent = context.current_workflow.get()
        if parent is None or context.current_step.get() is not None:
            return None
        return self.begin_operation(parent, info.name)

    def prepare_start(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        enqueue: EnqueueRequest | None = None,
        reserved: tuple[int, RecordedStep | None] | None = None,
    ) -> Prepared:
        """Record a workflow start (one statement) and decide what runs it: a new run here
        (``ctx`` set), a claim of a child a crash left behind (``claim``), or nothing (attach to
        ``future`` or wait on the database)."""
        parent = context.current_workflow.get()
        if parent is not None and context.current_step.get() is not None:
            parent = None  # a workflow started inside a step is an ordinary top-level workflow
        class_name, stored_args = _split_class_arg(info, args)
        # Refuse unserializable inputs before anything is recorded.
        inputs = serialization.serialize_args(stored_args, kwargs, info.param_names)

        assigned = context.take_assigned_workflow_id()
        timeout_s = context.take_assigned_timeout()
        function_id: int | None = None
        recorded_child: str | None = None
        if parent is not None:
            function_id, rec = reserved or self.begin_operation(parent, info.name)
            if rec is not None:
                recorded_child = rec.child_workflow_id
        wid = recorded_child or assigned
        if wid is None:
            # A child's ID derives from its parent's and its step number, so a replay that crashed
            # before recording the link still attaches to the same child.
            wid = f"{parent.workflow_id}-{function_id}" if parent else str(uuid.uuid4())

        # Reserve the ID in this process before recording it, so that a concurrent start of the
        # same ID here attaches to this run instead of mistaking the row for its own.
        reservation: Future[_Outcome] | None = None
        with self._lock:
            local = self._running.get(wid)
            if local is None and enqueue is None:
                reservation = self._running[wid] = Future()
        try:
            result = self.checkpoint(
                lambda: self.sysdb.insert_workflow(
                    NewWorkflow(
                        workflow_id=wid,
                        status="ENQUEUED" if enqueue else "PENDING",
                        name=info.name,
                        class_name=class_name,
                        inputs=inputs,
                        executor_id=self.executor_id,
                        application_version=self.application_version,
                        max_recovery_attempts=info.max_recovery_attempts,
                        timeout_ms=int(timeout_s * 1000) if timeout_s else None,
                        deadline_ms=parent.deadline_ms if parent else None,
                        parent_workflow_id=parent.workflow_id if parent else None,
                        queue_name=enqueue.queue_name if enqueue else None,
                        priority=enqueue.priority if enqueue else 0,
                        deduplication_id=enqueue.deduplication_id if enqueue else None,
                        owner_process=self.process_id,
                    )
                ),
                in_workflow=parent is not None,
            )
            if parent is not None and function_id is not None and recorded_child is None:
                self.record_operation(parent, function_id, info.name, child_workflow_id=wid)
        except BaseException:
            self._forget(wid, reservation)
            raise

        if result.created:
            if enqueue is not None:
                self.on_enqueued(enqueue.queue_name)
                return Prepared(wid)
            ctx = WorkflowContext(wid, info.name, result.owner_epoch, result.deadline_ms)
            return Prepared(wid, ctx=ctx, future=reservation)
        if result.name != info.name:
            self._forget(wid, reservation)
            raise DBOSConflictingWorkflowError(
                wid, f"it belongs to workflow {result.name!r}, not {info.name!r}"
            )
        if local is not None:
            return Prepared(wid, future=local)
        if result.status != "PENDING":
            self._forget(wid, reservation)
            return Prepared(wid)  # finished, queued or cancelled: the record tells
        # PENDING and not running here, so it must be claimed before it runs, like any recovered
        # workflow (its recorded steps replayed, its epoch bumped). Holding the reservation, a row
        # of this process is ours to claim: our own insert whose reply was lost (the checkpoint
        # retried it), or a run of ours that ended without finishing (a KeyboardInterrupt, a
        # cancelled task, a claim whose reply was lost). Any other is claimed only if no live
        # process owns it (a parent's replay reaching a child a crash left behind).
        own = reservation is not None and result.owner_process == self.process_id
        return Prepared(wid, future=reservation, claim=True, reclaim_own=own)

    def run_claim(self, prepared: Prepared, *, background: bool) -> Future[_Outcome] | None:
        """Claim and run the recorded workflow a start found PENDING (``prepare_start``); the
        local run, or None when it is not ours to run (the caller reads the record)."""
        runs = self.recover(
            [prepared.workflow_id],
            reclaim_own=prepared.reclaim_own,
            background=background,
            reserved=prepared.future,
        )
        return runs.get(prepared.workflow_id)

    def recover(
        self,
        workflow_ids: list[str],
        *,
        reclaim_own: bool = False,
        background: bool = True,
        reserved: Future[_Outcome] | None = None,
    ) -> dict[str, Future[_Outcome]]:
        """The one path by which recorded PENDING workflows start running here: recovery at
        launch, takeover of dead processes' work, a parent's replay reaching its child, and this
        process's orphans (``reclaim_own``: claims whose reply was lost).

        Each ID is first reserved in this process (one already running here is left to that run),
        then all are claimed in one statement that only takes workflows no live process owns, and
        their recorded steps are loaded in one query. Returns the runs of the given IDs in this
        process: those started and those already under way. ``reserved`` is a reservation the
        caller already holds for its one ID."""
        futures: dict[str, Future[_Outcome]] = {}
        runs: dict[str, Future[_Outcome]] = {}
        if reserved is not None:
            futures[workflow_ids[0]] = reserved
        with self._lock:
            for wid in dict.fromkeys(workflow_ids):
                if wid in futures:
                    continue
                existing = self._running.get(wid)
                if existing is not None:
                    runs[wid] = existing
                else:
                    futures[wid] = self._running[wid] = Future()
        if not futures:
            return runs
        try:
            claimed = self.sysdb.claim_pending(
                list(futures),
                executor_id=self.executor_id,
                process_id=self.process_id,
                application_version=self.application_version,
                default_max_attempts=DEFAULT_MAX_RECOVERY_ATTEMPTS,
                reclaim_from=self.process_id if reclaim_own else None,
            )
            ready = [c.workflow_id for c in claimed if c.status == "PENDING"]
            recorded = self.sysdb.load_recorded_steps_batch(ready) if ready else {}
        except BaseException:
            for wid, future in futures.items():
                self._forget(wid, future)
            raise
        for c in claimed:
            future = futures.pop(c.workflow_id)
            if c.status != "PENDING":
                self._forget(c.workflow_id, future)
                logger.warning(
                    "workflow %s exceeded its maximum recovery attempts (%d); "
                    "it is now MAX_RECOVERY_ATTEMPTS_EXCEEDED",
                    c.workflow_id,
                    c.recovery_attempts - 1,
                )
                continue
            try:
                self._run_claimed(
                    c, future, background=background, recorded=recorded.get(c.workflow_id, {})
                )
                runs[c.workflow_id] = future
            except DBOSException as exc:
                logger.error("cannot run workflow %s: %s", c.workflow_id, exc)
        for wid, future in futures.items():  # a live process owns it, or it is no longer PENDING
            self._forget(wid, future)
        return runs

    def run_dequeued(self, dequeued: DequeuedWorkflow) -> None:
        """Run a workflow a queue dispatcher just claimed for this process. Should an earlier run
        of the same ID still be winding down here (the claim fenced it), this one starts when it
        has ended: within a process, a workflow never runs on two threads at once."""
        wid = dequeued.claimed.workflow_id
        future: Future[_Outcome] = Future()
        with self._lock:
            previous = self._running.get(wid)
            self._running[wid] = future

        def run(_: object = None) -> None:
            try:
                self._run_claimed(
                    dequeued.claimed, future, background=True, load_steps=dequeued.has_steps
                )
            except DBOSException as exc:
                logger.error("cannot start dequeued workflow %s: %s", wid, exc)

        if previous is None:
            run()
        else:
            logger.info("workflow %s starts when its previous run here has stopped", wid)
            previous.add_done_callback(run)

    def _run_claimed(
        self,
        claimed: ClaimedWorkflow,
        future: Future[_Outcome],
        *,
        background: bool,
        load_steps: bool = True,
        recorded: dict[int, RecordedStep] | None = None,
    ) -> None:
        wid = claimed.workflow_id
        try:
            info = get_workflow(claimed.name)
            if info is None:
                raise DBOSWorkflowFunctionNotFoundError(
                    f"workflow {wid!r} runs {claimed.name!r}, which this process has not "
                    "registered (is the module that defines it imported?)"
                )
            if recorded is None:
                recorded = self.sysdb.load_recorded_steps(wid) if load_steps else {}
            args, kwargs = serialization.deserialize_args(claimed.inputs)
            args = _join_class_arg(info, claimed.class_name, args)
        except BaseException:
            self._forget(wid, future)
            raise
        ctx = WorkflowContext(
            wid,
            info.name,
            claimed.owner_epoch,
            claimed.deadline_ms,
            recorded,
            queue_name=claimed.queue_name,
        )
        self._launch(ctx, info, args, kwargs, future, background=background)

    def _forget(self, wid: str, future: Future[_Outcome] | None) -> None:
        """Drop a reservation that will not run; anyone attached to it reads the record."""
        if future is None:
            return
        with self._lock:
            if self._running.get(wid) is future:
                del self._running[wid]
        if not future.done():
            future.set_result(_Outcome(detached=True))

    # ------------------------------------------------------------------------------------------
    # Running
    # ------------------------------------------------------------------------------------------

    def _launch(
        self,
        ctx: WorkflowContext,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[_Outcome],
        *,
        background: bool,
    ) -> None:
        self.register_run(ctx)
        if not background and not info.is_async:
            self._execute(ctx, info, args, kwargs, future)
            return
        # Background runs get a thread; an async workflow reached from synchronous code (recovery,
        # dispatch, a sync caller) runs on an event loop of its own in that thread.
        target: Callable[[], None]
        if info.is_async:
            from runtime.engine_async import execute_async

            def target() -> None:
                asyncio.run(execute_async(self, ctx, info, args, kwargs, future))
        else:

            def target() -> None:
                self._execute(ctx, info, args, kwargs, future)

        thread = threading.Thread(
            target=target, name=f"dbos-workflow-{ctx.workflow_id}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()
        if not background:
            thread.join()

    def register_run(self, ctx: WorkflowContext) -> None:
        """Note a run starting in this process (for cancellation flags and queue slots)."""
        with self._lock:
            self._contexts[ctx.workflow_id] = ctx
            if ctx.queue_name is not None:
                self._queue_running[ctx.queue_name] += 1

    def _execute(
        self,
        ctx: WorkflowContext,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[_Outcome],
    ) -> None:
        outcome = _Outcome()
        wf_token = context.current_workflow.set(ctx)
        step_token = context.current_step.set(None)
        try:
            try:
                value, raised = info.func(*args, **kwargs), None
            except BaseException as exc:
                value, raised = None, exc
            self.settle(ctx, outcome, value, raised)
        finally:
            context.current_step.reset(step_token)
            context.current_workflow.reset(wf_token)
            self.finish_run(ctx, future, outcome)

    def settle(
        self, ctx: WorkflowContext, outcome: _Outcome, value: Any, raised: BaseException | None
    ) -> None:
        """Record how a run ended (shared by the sync and async runners): SUCCESS with its result,
        ERROR with its exception, or nothing when it was cancelled, taken over or interrupted.
        What a local waiter gets always agrees with the record: when the final write is refused
        (cancelled meanwhile), the outcome is left to the database. Re-raises what must stop the
        process (KeyboardInterrupt, SystemExit, task cancellation)."""
        try:
            try:
                if raised is not None:
                    raise raised
                output = serialization.serialize(value, "workflow result")
                self._complete(ctx, outcome, "SUCCESS", value=value, output=output)
            except Exception as exc:  # the workflow failed: record ERROR; it is not recovered
                self._not_while_stopping(exc)
                error = serialization.serialize_exception(exc)
                self._complete(ctx, outcome, "ERROR", error_value=exc, error=error)
        except (DBOSWorkflowCancelledError, DBOSWorkflowFencedError, Interrupted) as stop:
            outcome.detached = True
            if isinstance(stop, Interrupted):
                outcome.error = stop.cause
            elif isinstance(stop, DBOSWorkflowCancelledError):
                # Nothing is recorded: a resume continues from the last recorded step. The run
                # gives the workflow back so that the resume can claim it.
                self._release(ctx)
            else:
                logger.warning(
                    "workflow %s was taken over by another runner; this run stopped",
                    ctx.workflow_id,
                )
        except BaseException as exc:  # the process (or the task) is going down: stay PENDING
            outcome.error = exc
            outcome.detached = True
            raise

    def _release(self, ctx: WorkflowContext) -> None:
        try:
            self.sysdb.release_workflow(ctx.workflow_id, ctx.owner_epoch, self.process_id)
        except DBOSException as exc:  # the executor loop releases what this could not
            logger.warning("could not release workflow %s: %s", ctx.workflow_id, exc)

    def finish_run(self, ctx: WorkflowContext, future: Future[_Outcome], outcome: _Outcome) -> None:
        with self._lock:
            if ctx.queue_name is not None:
                self._queue_running[ctx.queue_name] -= 1
            if self._contexts.get(ctx.workflow_id) is ctx:
                del self._contexts[ctx.workflow_id]
            if self._running.get(ctx.workflow_id) is future:
                del self._running[ctx.workflow_id]
            self._threads.discard(threading.current_thread())
            on_idle = None
            if not self._contexts:
                on_idle, self._on_idle = self._on_idle, None
        if not future.done():
            future.set_result(outcome)
        if on_idle is not None:
            on_idle()
        if ctx.queue_name is not None:
            self.on_queue_slot_freed(ctx.queue_name)

    def _complete(
        self,
        ctx: WorkflowContext,
        outcome: _Outcome,
        status: str,
        *,
        value: Any = None,
        output: str | None = None,
        error_value: BaseException | None = None,
        error: str | None = None,
    ) -> None:
        done = self.checkpoint(
            lambda: self.sysdb.complete_workflow(
                ctx.workflow_id, ctx.owner_epoch, status, output=output, error=error
            )
        )
        if done:
            outcome.value, outcome.error = value, error_value
            return
        # Cancelled meanwhile (or cancelled and resumed, or taken over): the record decides what
        # waiters see, and a later run of the workflow writes its outcome.
        logger.info("workflow %s finished but is no longer owned here", ctx.workflow_id)
        outcome.detached = True
        self._release(ctx)

    def checkpoint(self, write: Callable[[], _T], *, in_workflow: bool = True) -> _T:
        """Run a system-table write. Inside a workflow, a failure that is not the data's fault
        (the connection lost, a timeout, a rollback: ``db.is_transient``) is retried with backoff
        until the database is back (every write tolerates being sent twice), so an outage pauses
        workflows instead of failing them; a shutdown meanwhile interrupts the workflow (it stays
        PENDING and is recovered), and so does a missing system schema (an operator must migrate).
        Any other database error was caused by the workflow's own data: it is raised to the
        workflow, whose error it becomes."""
        inside = in_workflow and context.current_workflow.get() is not None
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
                logger.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)

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
        owner = self.checkpoint(lambda: self.sysdb.get_ownership(ctx.workflow_id))
        owner_verdict(ctx, owner.status if owner else None, owner.owner_epoch if owner else None)
        ctx.confirmed_at = time.monotonic()

    def _not_while_stopping(self, exc: BaseException) -> None:
        """An error raised while the runtime shuts down may come from the shutdown itself (closed
        pools, the facade going away): never record it; the workflow stays PENDING and is re-run
        (steps are at least once anyway)."""
        if self.stopping.is_set():
            raise Interrupted(exc) from exc

    def check_interrupts(self, ctx: WorkflowContext) -> None:
        """Before a durable operation: stop if shutting down, cancelled or past the deadline.
        Costs no query unless a cancellation was signalled."""
        if self.stopping.is_set():
            raise Interrupted(None)
        if ctx.cancel_requested.is_set():
            # The notification is a hint; the database decides (a resume may have followed it).
            ctx.cancel_requested.clear()
            owner = self.checkpoint(lambda: self.sysdb.get_ownership(ctx.workflow_id))
            owner_verdict(
                ctx, owner.status if owner else None, owner.owner_epoch if owner else None
            )
            ctx.confirmed_at = time.monotonic()
        if ctx.deadline_ms is not None and now_ms() >= ctx.deadline_ms:
            self.checkpoint(lambda: self.sysdb.cancel_workflow(ctx.workflow_id))
            raise DBOSWorkflowCancelledError(ctx.workflow_id)

    def begin_operation(self, ctx: WorkflowContext, name: str) -> tuple[int, RecordedStep | None]:
        """Allocate the next step number for a durable operation named ``name``: returns it with
        the outcome a previous run recorded there (checked to be the same operation), or, on a
        fresh step, after checking for cancellation, deadline and shutdown."""
        function_id = ctx.next_function_id()
        rec = ctx.recorded.get(function_id)
        if rec is not None:
            check_same_operation(ctx, function_id, rec, name)
        else:
            self.check_interrupts(ctx)
        return function_id, rec

    def record_operation(
        self,
        ctx: WorkflowContext,
        function_id: int,
        name: str,
        *,
        output: str | None = None,
        error: str | None = None,
        child_workflow_id: str | None = None,
        started_at_ms: int | None = None,
    ) -> None:
        result = self.checkpoint(
            lambda: self.sysdb.record_step(
                ctx.workflow_id,
                ctx.owner_epoch,
                function_id,
                name,
                output=output,
                error=error,
                child_workflow_id=child_workflow_id,
                started_at_ms=started_at_ms,
                completed_at_ms=now_ms(),
            )
        )
        self.check_record(ctx, result)

    def check_record(self, ctx: WorkflowContext, result: RecordResult) -> None:
        """After a checkpoint write: go on, stop for a cancellation, or stop because another runner
        owns the workflow now. A write that found its row already there while we still own the
        workflow is our own earlier attempt whose reply was lost: it counts as recorded."""
        owner_verdict(ctx, result.status, result.owner_epoch)
        ctx.confirmed_at = time.monotonic()

    def run_step(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StepOptions,
    ) -> Any:
        """Run a step: replayed from its record when a previous run completed it, else executed
        (with retries) and its outcome recorded in one checkpoint write."""
        ctx = context.current_workflow.get()
        if ctx is None or context.current_step.get() is not None:
            return func(*args, **kwargs)  # outside a workflow (or nested in a step): a plain call
        function_id, rec = self.begin_operation(ctx, name)
        if rec is not None:
            return replay_outcome(rec)
        started = now_ms()
        step = StepContext(function_id, name)
        token = context.current_step.set(step)
        try:
            value, error = self._attempt(ctx, step, func, args, kwargs, options)
        finally:
            context.current_step.reset(token)
        return self.finish_step(ctx, function_id, name, started, value, error)

    def finish_step(
        self,
        ctx: WorkflowContext,
        function_id: int,
        name: str,
        started: int,
        value: Any,
        error: Exception | None,
    ) -> Any:
        """Record a step's outcome (one checkpoint write): return its value or raise its error."""
        if error is None:
            try:
                output = serialization.serialize(value, f"result of step {name}")
            except DBOSException as exc:
                error = exc
        if error is not None:
            self._not_while_stopping(error)
            self.record_operation(
                ctx,
                function_id,
                name,
                error=serialization.serialize_exception(error),
                started_at_ms=started,
            )
            raise error
        self.record_operation(ctx, function_id, name, output=output, started_at_ms=started)
        return value

    def _attempt(
        self,
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
            self.confirm_ownership_if_stale(ctx)
            try:
                return func(*args, **kwargs), None
            except Exception as exc:
                if not options.retries_allowed:
                    return None, exc
                if attempt == attempts:
                    return None, DBOSMaxStepRetriesExceeded(step.name, attempts, repr(exc))
                logger.warning(
                    "step %s of workflow %s failed (attempt %d of %d): %r; retrying in %.2fs",
                    step.name,
                    ctx.workflow_id,
                    attempt,
                    attempts,
                    exc,
                    delay,
                )
                self.sleep_interruptibly(ctx, delay)
                delay *= options.backoff_rate
        raise AssertionError("unreachable")  # pragma: no cover

    def sleep_interruptibly(self, ctx: WorkflowContext, seconds: float) -> None:
        """Sleep, but stop early (raising) on cancellation, deadline or shutdown."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if ctx.cancel_requested.wait(min(left, 0.2)) or self.stopping.is_set():
                self.check_interrupts(ctx)
                if ctx.cancel_requested.is_set():  # stale hint cleared above; keep sleeping
                    continue

    def run_transaction(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        isolation: psycopg.IsolationLevel,
    ) -> Any:
        """Run a transaction on the application database; inside a workflow its outcome is
        recorded in the same Postgres transaction, so it commits exactly once."""
        ctx = context.current_workflow.get()
        if ctx is None or context.current_step.get() is not None:
            return self._in_transaction(func, args, kwargs, isolation, None, None)
        function_id, rec = self.begin_operation(ctx, name)
        if rec is not None:
            return replay_outcome(rec)
        if not self.same_database:
            raise DBOSException(
                "transactions need the system tables in the application database (no separate "
                "system_database_url), so that their outcome commits with their writes"
            )
        started = now_ms()
        try:
            while True:
                try:
                    value, result = self._in_transaction(
                        func, args, kwargs, isolation, ctx, StepContext(function_id, name), started
                    )
                    break
                except OutcomeUnknown as unknown:
                    # The connection died around the commit, or our checkpoint met an existing
                    # one: the record, written inside the transaction, says whether it committed.
                    rec = self.checkpoint(lambda: self.sysdb.get_step(ctx.workflow_id, function_id))
                    if rec is not None:
                        check_same_operation(ctx, function_id, rec, name)
                        return replay_outcome(rec)
                    self._not_while_stopping(unknown)
                    logger.warning(
                        "transaction %s of workflow %s did not commit (%s); running it again",
                        name,
                        ctx.workflow_id,
                        unknown.cause,
                    )
        except (Interrupted, DBOSWorkflowFencedError):
            raise
        except Exception as exc:
            # The user's writes rolled back; the error is the transaction's recorded outcome.
            self._not_while_stopping(exc)
            self.record_operation(
                ctx,
                function_id,
                name,
                error=serialization.serialize_exception(exc),
                started_at_ms=started,
            )
            raise
        self.check_record(ctx, result)
        return value

    def _in_transaction(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        isolation: psycopg.IsolationLevel,
        ctx: WorkflowContext | None,
        step: StepContext | None,
        started: int | None = None,
    ) -> Any:
        delay = 0.01
        for attempt in range(1, TRANSACTION_MAX_ATTEMPTS + 1):
            try:
                return self._transaction_once(func, args, kwargs, isolation, ctx, step, started)
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                if attempt == TRANSACTION_MAX_ATTEMPTS:
                    raise
                logger.debug("transaction retry %d after %s", attempt, type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction_once(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        isolation: psycopg.IsolationLevel,
        ctx: WorkflowContext | None,
        step: StepContext | None,
        started: int | None,
    ) -> Any:
        with self.app_pool.connection() as conn:
            conn.isolation_level = isolation
            try:
                return self._transaction_body(conn, func, args, kwargs, ctx, step, started)
            except psycopg.Error as exc:
                if ctx is not None and (conn.broken or conn.closed):
                    raise OutcomeUnknown(exc) from exc
                raise
            finally:
                if not conn.closed:
                    conn.isolation_level = None

    def _transaction_body(
        self,
        conn: psycopg.Connection[Any],
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: WorkflowContext | None,
        step: StepContext | None,
        started: int | None,
    ) -> Any:
        with conn.transaction():
            session_token = context.sql_session.set(conn)
            step_token = context.current_step.set(step)
            try:
                value = func(*args, **kwargs)
            finally:
                context.current_step.reset(step_token)
                context.sql_session.reset(session_token)
            if ctx is None or step is None:
                return value
            return value, self.record_in_transaction(conn, ctx, step, started, value)

    def record_in_transaction(
        self,
        conn: psycopg.Connection[Any],
        ctx: WorkflowContext,
        step: StepContext,
        started: int | None,
        value: Any,
    ) -> RecordResult:
        """A transaction's checkpoint, written inside it (sync and async transactions). Raising
        rolls the transaction back: fenced, or outcome unknown (the connection died)."""
        output = serialization.serialize(value, f"result of transaction {step.name}")
        try:
            result = self.sysdb.record_step(
                ctx.workflow_id,
                ctx.owner_epoch,
                step.function_id,
                step.name,
                output=output,
                started_at_ms=started,
                completed_at_ms=now_ms(),
                conn=conn,
            )
        except psycopg.errors.SerializationFailure:
            raise
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                raise OutcomeUnknown(exc) from exc
            raise Interrupted(exc) from exc
        tx_record_verdict(ctx, result)
        return result

    # ------------------------------------------------------------------------------------------
    # Results, recovery, management
    # ------------------------------------------------------------------------------------------

    def wait_result(self, wid: str, future: Future[_Outcome] | None = None) -> Any:
        """Wait for a workflow's outcome: from the local run when there is one, else from the
        database; re-raises the workflow's error.

        Outside a workflow a CANCELLED workflow is an answer
        (``DBOSAwaitedWorkflowCancelledError``). Inside one the wait is durable and only a final
        outcome ends it: a cancelled workflow may be resumed, so the waiter keeps waiting, and
        stops (unrecorded) only for its own cancellation, deadline or the runtime's shutdown. So
        a cancellation is never recorded as an outcome that a resumed workflow would replay."""
        ctx = context.current_workflow.get()
        if ctx is not None and context.current_step.get() is not None:
            ctx = None  # in a step: a plain wait
        delay = 0.01
        while True:
            if future is None:
                with self._lock:
                    future = self._running.get(wid)
            if future is not None:
                done, value = local_answer(self._wait_local(ctx, future), ctx is not None)
                if done:
                    return value
                future = None
            row = self.checkpoint(lambda: self.sysdb.get_status_result(wid))
            value = recorded_answer(wid, row, ctx is not None)
            if value is not PENDING_OUTCOME:
                return value
            if ctx is not None:
                self.check_interrupts(ctx)
                self.sleep_interruptibly(ctx, delay)
            else:
                time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _wait_local(self, ctx: WorkflowContext | None, future: Future[_Outcome]) -> _Outcome:
        """The outcome of a local run; a waiting workflow checks its own interrupts meanwhile."""
        if ctx is None:
            return future.result()
        while True:
            try:
                return future.result(timeout=WAIT_SLICE_S)
            except FutureTimeout:
                self.check_interrupts(ctx)

    def get_result_in_workflow(self, wid: str) -> Any:
        """``handle.get_result()`` inside a workflow is a durable operation: the outcome it saw is
        recorded, so a replay sees the same one without waiting again (only final outcomes are
        seen, see ``wait_result``)."""
        ctx = context.current_workflow.get()
        if ctx is None or context.current_step.get() is not None:
            return self.wait_result(wid)
        function_id, rec = self.begin_operation(ctx, GET_RESULT_STEP)
        if rec is not None:
            return replay_outcome(rec)
        started = now_ms()
        try:
            value = self.wait_result(wid)
        except Exception as exc:
            self.record_operation(
                ctx,
                function_id,
                GET_RESULT_STEP,
                error=serialization.serialize_exception(exc),
                child_workflow_id=wid,
                started_at_ms=started,
            )
            raise
        self.record_operation(
            ctx,
            function_id,
            GET_RESULT_STEP,
            output=serialization.serialize(value, "workflow result"),
            child_workflow_id=wid,
            started_at_ms=started,
        )
        return value

    def recover_pending(self, batch: int = 500) -> list[str]:
        """Run this executor's PENDING workflows of this version that no live process owns (a
        process that crashed; not one still running them, as in a rolling restart); returns the
        IDs started. Claims and loads them in batches (two statements per batch)."""
        ids = self.sysdb.pending_workflow_ids(self.executor_id, self.application_version)
        started: list[str] = []
        for first in range(0, len(ids), batch):
            chunk = ids[first : first + batch]
            try:
                runs = self.recover(chunk)
            except DBOSException as exc:
                logger.error("cannot recover pending workflows: %s", exc)
                return started
            started.extend(wid for wid in chunk if wid in runs)
        if ids:
            logger.info(
                "recovered %d of %d pending workflows (the others run in live processes)",
                len(started),
                len(ids),
            )
        return started

    def has_live_runs(self) -> bool:
        """Whether a workflow of this process may still be executing user code."""
        with self._lock:
            return bool(self._contexts)

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once no run of this process is executing user code any more (now,
        or when the last one ends)."""
        with self._lock:
            if self._contexts:
                self._on_idle = callback
                return
        callback()

    def recheck_cancellations(self) -> None:
        """Cancellation notifications may have been missed (the listener reconnected): have every
        local run look at the database before its next operation."""
        with self._lock:
            contexts = list(self._contexts.values())
        for ctx in contexts:
            ctx.cancel_requested.set()

    def cancel(self, wid: str) -> bool:
        """Cancel a PENDING or ENQUEUED workflow; a run stops before its next step."""
        changed = self.sysdb.cancel_workflow(wid)
        if not changed and self.sysdb.get_status_result(wid) is None:
            raise DBOSNonExistentWorkflowError(wid)
        self.on_cancel_notification(wid)
        return changed

    def on_cancel_notification(self, wid: str) -> None:
        """A cancellation was written (by anyone): flag the local run, if there is one."""
        with self._lock:
            ctx = self._contexts.get(wid)
        if ctx is not None:
            ctx.cancel_requested.set()

    def local_future(self, wid: str) -> Future[_Outcome] | None:
        """The outcome of a run of ``wid`` in this process, if one is under way."""
        with self._lock:
            return self._running.get(wid)

    def running_ids(self) -> set[str]:
        """IDs of the workflows this process runs or is about to run."""
        with self._lock:
            return set(self._running)

    def running_in_background(self) -> int:
        """Workflows running on this process's own threads."""
        with self._lock:
            return len(self._threads)

    def running_from_queue(self, queue_name: str) -> int:
        """Workflows of that queue running in this process."""
        with self._lock:
            return self._queue_running[queue_name]

    def shutdown(self, timeout_s: float, step_grace_s: float = 0.5) -> None:
        """Stop running workflows at their next step (they stay PENDING and are recovered by the
        next start), waiting up to ``timeout_s`` for them to finish on their own first, then up
        to ``step_grace_s`` in all for the steps in progress to end."""
        deadline = time.monotonic() + timeout_s
        while timeout_s > 0 and time.monotonic() < deadline:
            with self._lock:
                if not self._threads:
                    break
            time.sleep(0.05)
        self.stopping.set()
        with self._lock:
            threads = list(self._threads)
        grace_ends = max(deadline, time.monotonic()) + step_grace_s
        for thread in threads:
            thread.join(timeout=max(0.0, grace_ends - time.monotonic()))


TRANSACTION_MAX_ATTEMPTS = 50
_T = TypeVar("_T")


# The statuses in which the runner holding the current owner epoch still owns its workflow: running,
# cancelled by an operator (it stops at its next step), or cancelled and already resumed (the
# resume is claimed once this run has stopped and released it).
OWNED_STATUSES = ("PENDING", "CANCELLED", "ENQUEUED")


def owner_verdict(
    ctx: WorkflowContext, status: str | None, owner_epoch: int | None, *, fenced_only: bool = False
) -> None:
    """What a runner does on reading its workflow's status and owner epoch: go on (PENDING, its
    epoch); stop for a cancellation (its epoch, CANCELLED or ENQUEUED again); or stop silently
    (``DBOSWorkflowFencedError``: another runner's epoch, a final status, or the row gone).
    ``fenced_only`` leaves the cancellation to the caller."""
    if owner_epoch != ctx.owner_epoch or status not in OWNED_STATUSES:
        raise DBOSWorkflowFencedError(ctx.workflow_id)
    if status != "PENDING" and not fenced_only:
        raise DBOSWorkflowCancelledError(ctx.workflow_id)


def tx_record_verdict(ctx: WorkflowContext, result: RecordResult) -> None:
    """Inside a transaction, after writing its checkpoint: raising rolls the writes back. If the
    workflow is still ours, an earlier attempt of this very transaction committed (its commit
    reply was lost); else another runner owns it now."""
    if result.recorded:
        return
    owner_verdict(ctx, result.status, result.owner_epoch, fenced_only=True)
    raise OutcomeUnknown(None)


def local_answer(outcome: _Outcome, in_workflow: bool) -> tuple[bool, Any]:
    """What a waiter gets from a local run's outcome: (True, value), or its error raised; (False,
    None) when the record must be read (the run stopped without a final outcome). An interrupted
    run's cause is raised to a waiter outside a workflow (a workflow stops for its own reasons)."""
    if not outcome.detached:
        if outcome.error is not None:
            raise outcome.error
        return True, outcome.value
    if outcome.error is not None and not in_workflow:
        raise outcome.error  # the run was interrupted (shutdown): say why
    return False, None


def recorded_answer(workflow_id: str, row: StatusResult | None, in_workflow: bool) -> Any:
    """What a waiter gets from a workflow's record (status, output, error): its result, its error
    raised, or ``PENDING_OUTCOME`` to wait on. Inside a workflow a CANCELLED one is not an
    answer: it may be resumed, and a cancellation must never become a recorded outcome."""
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if in_workflow and row.status == "CANCELLED":
        return PENDING_OUTCOME
    return outcome_of(workflow_id, row)


def check_same_operation(
    ctx: WorkflowContext, function_id: int, rec: RecordedStep, name: str
) -> None:
    if rec.function_name != name:
        raise DBOSUnexpectedStepError(ctx.workflow_id, function_id, rec.function_name, name)


def replay_outcome(rec: RecordedStep) -> Any:
    if rec.error is not None:
        raise serialization.deserialize_exception(rec.error)
    return serialization.deserialize(rec.output)


def _split_class_arg(
    info: WorkflowInfo, args: tuple[Any, ...]
) -> tuple[str | None, tuple[Any, ...]]:
    """A classmethod's first argument is its class: record its name instead of the object."""
    if info.is_classmethod and args and isinstance(args[0], type):
        cls = args[0]
        return f"{cls.__module__}:{cls.__qualname__}", args[1:]
    return info.class_name, args


def _join_class_arg(
    info: WorkflowInfo, class_name: str | None, args: tuple[Any, ...]
) -> tuple[Any, ...]:
    if not info.is_classmethod:
        return args
    module, _, qualname = (class_name or "").partition(":")
    cls = resolve_class(module, qualname)
    if cls is None:
        raise DBOSWorkflowFunctionNotFoundError(
            f"class {class_name!r} of workflow {info.name!r} is not loaded in this process"
        )
    return (cls, *args)
