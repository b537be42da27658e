"""Running a workflow body and settling how it ended.

A run executes the user's function with the workflow's context set, then ``settle`` records the
outcome in one statement (SUCCESS with the result, ERROR with the exception), or nothing when the
run was cancelled, fenced or interrupted: then the record stays as it is, and the workflow is
resumed, taken over or recovered from its last recorded step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from runtime import context, registry, serialization
from runtime.context import WorkflowContext, now_ms
from runtime.engine.drive import Blocking, Call, Operation, run_async, run_sync, uncarry
from runtime.engine.parking import Parked, ParkedRun, Wake, note_home
from runtime.engine.pool import ExecutionPool
from runtime.engine.protocol import OWNED_STATUSES, Interrupted, Operations, shut_down
from runtime.engine.runs import LocalRuns, Outcome
from runtime.errors import (
    DBOSException,
    DBOSWorkflowCancelledError,
    DBOSWorkflowFencedError,
    DBOSWorkflowFunctionNotFoundError,
)
from runtime.records import ClaimedWorkflow, RecordedStep
from runtime.registry import WorkflowInfo, get_workflow, resolve_class
from runtime.status import WorkflowStatusString

logger = logging.getLogger("dbos")

# Background async workflows are tasks on the caller's loop; keep them referenced until done.
_tasks: set[asyncio.Task[None]] = set()


async def _then_drain(run: Coroutine[Any, Any, None]) -> None:
    """Run a workflow on an event loop of its own, then keep the loop until the workflows it
    started on it as tasks (children started with ``start_workflow_async``) have ended or parked:
    ``asyncio.run`` would cancel them mid-step when the parent ends or parks."""
    await run
    loop = asyncio.get_running_loop()
    while pending := [t for t in _tasks if t.get_loop() is loop and not t.done()]:
        await asyncio.wait(pending)


class Runner:
    """Runs workflow bodies for one launched runtime."""

    def __init__(
        self, ops: Operations, runs: LocalRuns, pool: ExecutionPool, *, process_id: str
    ) -> None:
        self.ops = ops
        self.runs = runs
        self.pool = pool
        self.parking = ops.parking
        self.process_id = process_id

    # -- launching ------------------------------------------------------------------------------

    def launch(
        self,
        ctx: WorkflowContext,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Outcome],
        *,
        background: bool,
    ) -> None:
        """Run the body: in this thread (``background=False``, a sync workflow) or on a thread of
        the execution pool; an async workflow reached from synchronous code (recovery, dispatch, a
        sync caller) runs on an event loop of its own in that thread."""
        self.runs.register(ctx)
        body = self.body(ctx, info, args, kwargs, future)
        if not background and not info.is_async:
            run_sync(body)
            return

        def target() -> None:
            if info.is_async:
                asyncio.run(_then_drain(run_async(body)))
            else:
                run_sync(body)

        if not background:
            # A sync caller awaiting an async workflow: a thread of its own, never the pool's
            # (the caller may itself hold a pool thread).
            thread = threading.Thread(
                target=target, name=f"dbos-workflow-{ctx.workflow_id}", daemon=True
            )
            thread.start()
            thread.join()
            return

        def drop() -> None:  # the pool stopped before the run started: it stays PENDING
            body.close()
            self.runs.finish(ctx, future, Outcome(error=shut_down(ctx.workflow_id), detached=True))

        self.pool.submit(ctx.workflow_id, target, drop)

    async def run_on_loop(
        self,
        ctx: WorkflowContext,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Outcome],
        *,
        background: bool,
    ) -> None:
        """Run an async workflow's body on the running event loop: awaited here, or as a task of
        the loop in the background."""
        self.runs.register(ctx)
        run = run_async(self.body(ctx, info, args, kwargs, future))
        if not background:
            await run
            return
        ctx.hand_off_on_cancel = True
        task = asyncio.get_running_loop().create_task(run)
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    def body(
        self,
        ctx: WorkflowContext,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Outcome],
    ) -> Operation[None]:
        """The run: the user's function with the workflow's context set, then ``settle``; or,
        when a wait parked it, nothing more until it is woken (``rerun``)."""
        outcome = Outcome()
        parked: ParkedRun | None = None
        wf_token = context.current_workflow.set(ctx)
        step_token = context.current_step.set(None)
        note_home(ctx)
        try:
            try:
                value, raised = (yield Call(info.func, args, kwargs)), None
            except Parked as stop:
                value, raised, parked = None, None, stop.run
            except BaseException as exc:
                value, raised = None, uncarry(exc)
            if parked is None and ctx.parked is not None:
                logger.warning(
                    "workflow %s caught the exception that parks it during a wait (a bare "
                    "`except:` or `except BaseException`?) and went on; what it returned is "
                    "ignored, and it goes on after its wait when woken",
                    ctx.workflow_id,
                )
                parked = ctx.parked
            if parked is None and isinstance(raised, asyncio.CancelledError):
                parked = self._hand_off(ctx)
            if parked is None:
                try:
                    yield Blocking(lambda: self.settle(ctx, outcome, value, raised))
                except BaseException:  # not settled (the loop is closing...): the record tells
                    outcome.detached = True
                    raise
        finally:
            context.current_step.reset(step_token)
            context.current_workflow.reset(wf_token)
            if parked is None:
                self.runs.finish(ctx, future, outcome)
        if parked is not None:
            self.runs.park(ctx)
            self.parking.activate(parked, future)

    def _hand_off(self, ctx: WorkflowContext) -> ParkedRun | None:
        """A background task on a caller's loop was cancelled, not by DBOS: its loop is ending
        (``asyncio.run`` cancels the tasks left when its main coroutine returns). The workflow
        goes on on the pool, from its record, as a woken parked run does (parked, due now)."""
        if not ctx.hand_off_on_cancel or ctx.cancel_requested.is_set():
            return None
        try:
            self.parking.park(ctx, Wake(at_ms=now_ms()), lambda: True)
        except Parked as stop:
            return stop.run
        return None

    def rerun(self, parked: list[ParkedRun]) -> None:
        """Run woken workflows again from their recorded inputs, replaying their recorded steps
        (one read for the batch). One whose record says it is no longer ours to run is not:
        cancelled meanwhile (it is given back, for a resume), or taken over, or finished."""
        wids = [p.workflow_id for p in parked]
        rows = {c.workflow_id: c for c in self.ops.sysdb.load_workflows_to_run(wids)}
        ready = [
            p.workflow_id
            for p in parked
            if (c := rows.get(p.workflow_id)) is not None
            and c.owner_epoch == p.ctx.owner_epoch
            and c.status == WorkflowStatusString.PENDING.value
        ]
        recorded = self.ops.sysdb.load_recorded_steps_batch(ready) if ready else {}
        for p in parked:
            future = p.future
            assert future is not None  # set when it was activated
            claimed = rows.get(p.workflow_id)
            if claimed is None or p.workflow_id not in recorded:
                if claimed is not None and claimed.owner_epoch == p.ctx.owner_epoch:
                    if claimed.status in OWNED_STATUSES:  # cancelled while parked
                        self.release(p.ctx)
                self.runs.finish(p.ctx, future, Outcome(detached=True))
                continue
            try:
                self.run_claimed(
                    claimed, future, recorded[p.workflow_id], background=True, after_park=p
                )
            except DBOSException as exc:
                logger.error("cannot wake workflow %s: %s", p.workflow_id, exc)

    def run_claimed(
        self,
        claimed: ClaimedWorkflow,
        future: Future[Outcome],
        recorded: dict[int, RecordedStep],
        *,
        background: bool,
        after_park: ParkedRun | None = None,
    ) -> None:
        """Run a workflow this process has claimed (or that ``after_park`` parked here),
        replaying ``recorded``. After a park, an async workflow goes on on an event loop of the
        pool's, as a recovered one does (the loop it started on may be ending)."""
        wid = claimed.workflow_id
        try:
            info = get_workflow(claimed.name)
            if info is None:
                raise DBOSWorkflowFunctionNotFoundError(
                    f"workflow {wid!r} runs {claimed.name!r}, which this process has not "
                    "registered (is the module that defines it imported?)"
                )
            args, kwargs = serialization.deserialize_args(claimed.inputs)
            args = join_class_arg(info, claimed.class_name, claimed.config_name, args)
        except BaseException:
            if after_park is None:
                self.runs.forget(wid, future)
            else:  # it also gives back the queue slot the parked run held
                self.runs.finish(after_park.ctx, future, Outcome(detached=True))
            raise
        ctx = WorkflowContext(
            wid,
            info.name,
            claimed.owner_epoch,
            claimed.deadline_ms,
            recorded,
            queue_name=claimed.queue_name,
            resumed_from_park=after_park is not None,
        )
        self.launch(ctx, info, args, kwargs, future, background=background)

    # -- settling -------------------------------------------------------------------------------

    def settle(
        self, ctx: WorkflowContext, outcome: Outcome, value: Any, raised: BaseException | None
    ) -> None:
        """Record how a run ended: SUCCESS with its result, ERROR with its exception, or nothing
        when it was cancelled, taken over or interrupted. What a local waiter gets always agrees
        with the record: when the final write is refused (cancelled meanwhile), the outcome is
        left to the database. Re-raises what must stop the process (KeyboardInterrupt,
        SystemExit, task cancellation)."""
        try:
            try:
                if raised is not None:
                    raise raised
                output = serialization.serialize(value, "workflow result")
                self._complete(
                    ctx, outcome, WorkflowStatusString.SUCCESS.value, value=value, output=output
                )
            except Exception as exc:  # the workflow failed: record ERROR; it is not recovered
                self.ops.not_while_stopping(exc)
                error = serialization.serialize_exception(exc)
                self._complete(
                    ctx, outcome, WorkflowStatusString.ERROR.value, error_value=exc, error=error
                )
        except (DBOSWorkflowCancelledError, DBOSWorkflowFencedError, Interrupted) as stop:
            outcome.detached = True
            if isinstance(stop, Interrupted):
                outcome.error = stop.cause
            elif isinstance(stop, DBOSWorkflowCancelledError):
                # Nothing is recorded: a resume continues from the last recorded step. The run
                # gives the workflow back so that the resume can claim it.
                self.release(ctx)
            else:
                logger.warning(
                    "workflow %s was taken over by another runner; this run stopped",
                    ctx.workflow_id,
                )
        except BaseException as exc:  # the process (or the task) is going down: stay PENDING
            outcome.error = exc
            outcome.detached = True
            raise

    def release(self, ctx: WorkflowContext) -> None:
        """Give the workflow back (it stopped without finishing) so that a resume can claim it."""
        try:
            self.ops.sysdb.release_workflow(ctx.workflow_id, ctx.owner_epoch, self.process_id)
        except DBOSException as exc:  # the executor loop releases what this could not
            logger.warning("could not release workflow %s: %s", ctx.workflow_id, exc)

    def _complete(
        self,
        ctx: WorkflowContext,
        outcome: Outcome,
        status: str,
        *,
        value: Any = None,
        output: str | None = None,
        error_value: BaseException | None = None,
        error: str | None = None,
    ) -> None:
        done = self.ops.checkpoint(
            lambda: self.ops.sysdb.complete_workflow(
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
        self.release(ctx)


def split_class_arg(
    info: WorkflowInfo, args: tuple[Any, ...]
) -> tuple[str | None, str | None, tuple[Any, ...]]:
    """What a start records instead of a method's first argument: ``(class_name, config_name,
    the inputs to store)``. A classmethod's class is recorded by name; an instance method's
    configured instance by its class's registered name and its ``config_name`` (never stored as
    an input). Raises ``DBOSException`` for an instance that a re-run could not find again, and
    for a method whose class is not registered with ``@DBOS.dbos_class``."""
    if info.is_instance_method:
        if not args or isinstance(args[0], type):
            raise DBOSException(
                f"workflow {info.name!r} is an instance method: call it on a configured "
                "instance (obj.method(...), or DBOS.start_workflow(obj.method, ...))"
            )
        class_name, config_name = registry.instance_key(args[0])
        return class_name, config_name, args[1:]
    if info.is_classmethod and args and isinstance(args[0], type):
        return registry.class_name_for_class_arg(args[0]), None, args[1:]
    if args and not isinstance(args[0], type) and info.takes_self:
        raise DBOSException(
            f"Function target appears to be a class instance, but is not properly registered: "
            f"decorate the class of {info.name!r} with @DBOS.dbos_class() and make it a "
            "DBOSConfiguredInstance"
        )
    return info.class_name, None, args


def join_class_arg(
    info: WorkflowInfo, class_name: str | None, config_name: str | None, args: tuple[Any, ...]
) -> tuple[Any, ...]:
    """The inverse of ``split_class_arg``: the configured instance or the class, found again by
    the names recorded. Raises ``DBOSWorkflowFunctionNotFoundError`` when this process has not
    registered it (the workflow is left as it is, for a process that has)."""
    if config_name is not None or info.is_instance_method:
        inst = registry.get_instance(class_name or "", config_name or "")
        if inst is None:
            raise DBOSWorkflowFunctionNotFoundError(
                f"configured class instance '{class_name}/{config_name}' of workflow "
                f"{info.name!r} is not registered in this process (create it before "
                "DBOS.launch())"
            )
        return (inst, *args)
    if not info.is_classmethod:
        return args
    cls = registry.get_class(class_name or "")
    if cls is None:
        module, _, qualname = (class_name or "").partition(":")
        cls = resolve_class(module, qualname)
    if cls is None:
        raise DBOSWorkflowFunctionNotFoundError(
            f"class {class_name!r} of workflow {info.name!r} is not loaded in this process"
        )
    return (cls, *args)
