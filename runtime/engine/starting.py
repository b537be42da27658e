"""Starting workflows: record the start (one statement), then decide what runs it.

A start's ID is the idempotency key: a new ID is recorded and run here; an ID already recorded
attaches to that workflow (its run here, or its record); a PENDING one that no live process runs
(a child a crash left behind, reached by its parent's replay) is claimed and run here, like any
recovered workflow. A child's ID derives from its parent's ID and step number, so a replay that
crashed before recording the link still finds the same child.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from runtime import context, serialization
from runtime.context import WorkflowContext
from runtime.engine.claiming import Claims
from runtime.engine.protocol import Operations, replay_outcome
from runtime.engine.running import Runner, split_class_arg
from runtime.engine.runs import LocalRuns, Outcome
from runtime.errors import DBOSConflictingWorkflowError, DBOSQueueDeduplicatedError
from runtime.records import NewWorkflow, RecordedStep
from runtime.registry import WorkflowInfo
from runtime.status import WorkflowStatusString


@dataclass(frozen=True)
class EnqueueRequest:
    """Where and how a workflow is enqueued: its queue, priority (lower first), deduplication ID,
    partition (of a partitioned queue), the application version that must run it (None: the
    first executor to dequeue it gives it its own), and the epoch millisecond before which it is
    not dequeued (it is recorded DELAYED until then)."""

    queue_name: str
    priority: int = 0
    deduplication_id: str | None = None
    queue_partition_key: str | None = None
    app_version: str | None = None
    delay_until_ms: int | None = None
    # A debounced enqueue (``runtime.debouncer``): its deduplication ID is a debounce key, and
    # later calls never move its delay past ``debounce_deadline_ms`` (None: no cap).
    is_debounced: bool = False
    debounce_deadline_ms: int | None = None

    @property
    def status(self) -> str:
        """The status it is recorded with: DELAYED when it has a delay, else ENQUEUED."""
        if self.delay_until_ms is not None:
            return WorkflowStatusString.DELAYED.value
        return WorkflowStatusString.ENQUEUED.value


@dataclass
class Prepared:
    """What ``Starter.prepare`` decided for a workflow start: run ``ctx`` here (with ``future``
    its reservation), claim the recorded workflow (``claim``), attach to ``future``, or read the
    record (nothing set)."""

    workflow_id: str
    ctx: WorkflowContext | None = None
    future: Future[Outcome] | None = None
    claim: bool = False
    reclaim_own: bool = False


class Starter:
    """Records and launches workflow starts for one launched runtime."""

    def __init__(
        self,
        ops: Operations,
        runs: LocalRuns,
        runner: Runner,
        claims: Claims,
        *,
        executor_id: str,
        application_version: str,
        process_id: str,
    ) -> None:
        self.ops = ops
        self.runs = runs
        self.runner = runner
        self.claims = claims
        self.executor_id = executor_id
        self.application_version = application_version
        self.process_id = process_id
        # Set by the queue dispatcher: called when work is enqueued here.
        self.on_enqueued: Callable[[str], None] = lambda queue_name: None

    def reserve_child(self, info: WorkflowInfo) -> tuple[int, RecordedStep | None] | None:
        """In a workflow, the parent's step number for starting ``info`` (allocated in call order,
        which async callers do on their event loop before handing the rest to a thread)."""
        parent = context.active_workflow()
        return None if parent is None else self.ops.begin(parent, info.name)

    def prepare(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        enqueue: EnqueueRequest | None = None,
        reserved: tuple[int, RecordedStep | None] | None = None,
    ) -> Prepared:
        """Record a workflow start (one statement) and decide what runs it (see ``Prepared``).
        A workflow started inside a step is an ordinary top-level workflow."""
        parent = context.active_workflow()
        class_name, config_name, stored_args = split_class_arg(info, args)
        # Refuse unserializable inputs before anything is recorded.
        inputs = serialization.serialize_args(stored_args, kwargs, info.param_names)

        attributes = context.current_attributes()
        assigned = context.take_assigned_workflow_id()
        timeout_block, timeout_s = context.take_timeout_block()
        function_id: int | None = None
        recorded_child: str | None = None
        if parent is not None:
            function_id, rec = reserved or self.ops.begin(parent, info.name)
            if rec is not None:
                if rec.error is not None:  # the enqueue was refused (deduplicated): again
                    replay_outcome(rec)
                recorded_child = rec.child_workflow_id
                if parent.check is not None:  # a replay check: the recorded child, untouched
                    return Prepared(recorded_child or f"{parent.workflow_id}-{function_id}")
        wid = recorded_child or assigned
        if wid is None:
            wid = f"{parent.workflow_id}-{function_id}" if parent else str(uuid.uuid4())

        # Reserve the ID in this process before recording it, so that a concurrent start of the
        # same ID here attaches to this run instead of mistaking the row for its own.
        reservation: Future[Outcome] | None = None
        if enqueue is None:
            local, reservation = self.runs.reserve(wid)
        else:
            local = self.runs.local_future(wid)
        try:
            result = self.ops.checkpoint(
                lambda: self.ops.sysdb.insert_workflow(
                    NewWorkflow(
                        workflow_id=wid,
                        status=(enqueue.status if enqueue else WorkflowStatusString.PENDING.value),
                        name=info.name,
                        class_name=class_name,
                        config_name=config_name,
                        inputs=inputs,
                        executor_id=self.executor_id,
                        application_version=(
                            enqueue.app_version if enqueue else self.application_version
                        ),
                        max_recovery_attempts=info.max_recovery_attempts,
                        timeout_ms=int(timeout_s * 1000) if timeout_s else None,
                        # A SetWorkflowTimeout block replaces the inherited deadline.
                        deadline_ms=(parent.deadline_ms if parent and not timeout_block else None),
                        parent_workflow_id=parent.workflow_id if parent else None,
                        queue_name=enqueue.queue_name if enqueue else None,
                        priority=enqueue.priority if enqueue else 0,
                        deduplication_id=enqueue.deduplication_id if enqueue else None,
                        owner_process=self.process_id,
                        queue_partition_key=enqueue.queue_partition_key if enqueue else None,
                        delay_until_epoch_ms=enqueue.delay_until_ms if enqueue else None,
                        attributes=attributes,
                        is_debounced=enqueue.is_debounced if enqueue else False,
                        debounce_deadline_epoch_ms=(
                            enqueue.debounce_deadline_ms if enqueue else None
                        ),
                    )
                ),
                in_workflow=parent is not None,
            )
            if parent is not None and function_id is not None and recorded_child is None:
                self.ops.record(parent, function_id, info.name, child_workflow_id=wid)
        except DBOSQueueDeduplicatedError as exc:
            self.runs.forget(wid, reservation)
            if parent is not None and function_id is not None:
                # The refusal is this step's outcome: a replay raises it again rather than enqueue
                # a copy once the first holder of the deduplication ID has finished.
                error = serialization.serialize_exception(exc)
                self.ops.record(parent, function_id, info.name, error=error)
            raise
        except BaseException:
            self.runs.forget(wid, reservation)
            raise

        if result.created:
            if enqueue is not None:
                self.on_enqueued(enqueue.queue_name)
                return Prepared(wid)
            ctx = WorkflowContext(wid, info.name, result.owner_epoch, result.deadline_ms)
            return Prepared(wid, ctx=ctx, future=reservation)
        if result.name != info.name:
            self.runs.forget(wid, reservation)
            raise DBOSConflictingWorkflowError(
                wid, f"it belongs to workflow {result.name!r}, not {info.name!r}"
            )
        if local is not None:
            return Prepared(wid, future=local)
        if result.status != WorkflowStatusString.PENDING.value:
            self.runs.forget(wid, reservation)
            return Prepared(wid)  # finished, queued or cancelled: the record tells
        # PENDING and not running here, so it must be claimed before it runs, like any recovered
        # workflow (its recorded steps replayed, its epoch bumped). Holding the reservation, a row
        # of this process is ours to claim: our own insert whose reply was lost (the checkpoint
        # retried it), or a run of ours that ended without finishing (a KeyboardInterrupt, a
        # cancelled task, a claim whose reply was lost). Any other is claimed only if no live
        # process owns it (a parent's replay reaching a child a crash left behind).
        own = reservation is not None and result.owner_process == self.process_id
        return Prepared(wid, future=reservation, claim=True, reclaim_own=own)

    def run_prepared(
        self,
        prepared: Prepared,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        background: bool,
    ) -> Future[Outcome] | None:
        """Do what ``prepare`` decided: run the new workflow, claim and run the one it found
        PENDING, or nothing. Returns the local run to wait on, if any."""
        if prepared.ctx is not None and prepared.future is not None:
            self.runner.launch(
                prepared.ctx, info, args, kwargs, prepared.future, background=background
            )
        elif prepared.claim:
            runs = self.claims.claim(
                [prepared.workflow_id],
                reclaim_own=prepared.reclaim_own,
                background=background,
                reserved=prepared.future,
            )
            prepared.future = runs.get(prepared.workflow_id)
        return prepared.future

    def start(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        background: bool,
        enqueue: EnqueueRequest | None = None,
    ) -> tuple[str, Future[Outcome] | None]:
        """Record and launch a start; returns its ID and the local run to wait on, if any."""
        prepared = self.prepare(info, args, kwargs, enqueue)
        return prepared.workflow_id, self.run_prepared(
            prepared, info, args, kwargs, background=background
        )

    # -- from an event loop ---------------------------------------------------------------------

    async def start_async(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        background: bool,
        enqueue: EnqueueRequest | None = None,
    ) -> tuple[str, Future[Outcome] | None]:
        """``start`` without blocking the loop: an async workflow runs on this loop (as a task in
        the background); a synchronous one, or a recorded one to claim, runs on a thread of its
        own while this loop awaits its outcome rather than a blocked thread."""
        prepared = await self._prepare_async(info, args, kwargs, enqueue)
        if prepared.ctx is not None and prepared.future is not None and info.is_async:
            await self.runner.run_on_loop(
                prepared.ctx, info, args, kwargs, prepared.future, background=background
            )
            return prepared.workflow_id, prepared.future
        future = await asyncio.to_thread(
            self.run_prepared, prepared, info, args, kwargs, background=True
        )
        return prepared.workflow_id, future

    async def _prepare_async(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        enqueue: EnqueueRequest | None,
    ) -> Prepared:
        reserved = self.reserve_child(info)  # on the loop: numbered in call order
        prepare = asyncio.ensure_future(
            asyncio.to_thread(self.prepare, info, args, kwargs, enqueue, reserved)
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
                    target=self.run_prepared,
                    args=(done.result(), info, args, kwargs),
                    kwargs={"background": True},
                    name="dbos-abandoned-start",
                    daemon=True,
                ).start()

            prepare.add_done_callback(carry_on)
            raise
