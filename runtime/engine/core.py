"""The engine of one launched runtime: its parts, built and wired in one place.

``Engine`` holds one instance of each part and offers the calls that span several (starting and
waiting, cancelling, shutting down); everything else is reached through its parts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from psycopg_pool import ConnectionPool

from runtime.engine.claiming import Claims
from runtime.engine.parking import ParkedRun, Parking
from runtime.engine.patching import Patching
from runtime.engine.pool import ExecutionPool
from runtime.engine.protocol import Operations, shut_down
from runtime.engine.results import Results
from runtime.engine.running import Runner
from runtime.engine.runs import LocalRuns, Outcome
from runtime.engine.starting import EnqueueRequest, Starter
from runtime.engine.steps import Steps
from runtime.engine.transactions import Transactions
from runtime.errors import DBOSNonExistentWorkflowError
from runtime.registry import WorkflowInfo
from runtime.system_db import SystemDatabase


class Engine:
    """The execution engine of one launched runtime.

    Its parts: ``pool`` (the bounded execution pool), ``parking`` (parked waits), ``ops`` (the
    durable-operation protocol), ``runs`` (this process's runs),
    ``runner`` (running and settling bodies), ``claims`` (the claim path), ``starter``
    (recording starts), ``steps``, ``transactions``, ``results`` and ``patching``."""

    def __init__(
        self,
        sysdb: SystemDatabase,
        app_pool: ConnectionPool,
        *,
        executor_id: str,
        application_version: str,
        same_database: bool,
        process_id: str,
        max_threads: int,
        confirm_ownership_after_s: float = 5.0,
    ) -> None:
        self.sysdb = sysdb
        self.pool = ExecutionPool(max_threads)
        self.parking = Parking(sysdb, process_id=process_id, backlog=self.pool.backlog)
        self.ops = Operations(
            sysdb, self.parking, confirm_ownership_after_s=confirm_ownership_after_s
        )
        self.runs = LocalRuns()
        self.runner = Runner(self.ops, self.runs, self.pool, process_id=process_id)
        self.parking.rerun = self.runner.rerun
        self.parking.on_stopped = self._parked_at_stop
        self.claims = Claims(
            sysdb,
            self.runs,
            self.runner,
            executor_id=executor_id,
            process_id=process_id,
            application_version=application_version,
        )
        self.starter = Starter(
            self.ops,
            self.runs,
            self.runner,
            self.claims,
            executor_id=executor_id,
            application_version=application_version,
            process_id=process_id,
        )
        self.steps = Steps(self.ops)
        self.transactions = Transactions(self.ops, app_pool, same_database=same_database)
        self.results = Results(self.ops, self.runs)
        self.patching = Patching(self.ops)

    @property
    def stopping(self) -> threading.Event:
        """Set when the runtime shuts down: runs stop at their next operation."""
        return self.ops.stopping

    # -- starting -------------------------------------------------------------------------------

    def call_workflow(
        self, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A workflow function called directly: run it durably in this thread, return its result."""
        wid, future = self.starter.start(info, args, kwargs, background=False)
        return self.results.wait(wid, future)

    async def call_workflow_async(
        self, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``await workflow(...)``: run it durably on this loop and return its result."""
        wid, future = await self.starter.start_async(info, args, kwargs, background=False)
        return await self.results.wait_async(wid, future)

    def start_workflow(
        self, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        """Record the workflow and run it in a background thread; returns its ID once its inputs
        are durably recorded."""
        return self.starter.start(info, args, kwargs, background=True)[0]

    async def start_workflow_async(
        self, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        """``start_workflow`` from an event loop (an async workflow runs as a task on it)."""
        return (await self.starter.start_async(info, args, kwargs, background=True))[0]

    def enqueue_workflow(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        request: EnqueueRequest,
    ) -> str:
        """Record the workflow as ENQUEUED on a queue; a dispatcher of any executor starts it when
        the queue's limits allow. Returns its ID once it is durably enqueued."""
        return self.starter.start(info, args, kwargs, background=True, enqueue=request)[0]

    async def enqueue_workflow_async(
        self,
        info: WorkflowInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        request: EnqueueRequest,
    ) -> str:
        """``enqueue_workflow`` from an event loop, without blocking it."""
        started = await self.starter.start_async(
            info, args, kwargs, background=True, enqueue=request
        )
        return started[0]

    # -- steering -------------------------------------------------------------------------------

    def cancel(self, workflow_id: str) -> bool:
        """Cancel a PENDING or ENQUEUED workflow; a run stops before its next step."""
        changed = self.sysdb.cancel_workflow(workflow_id)
        if not changed and self.sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        self.flag_cancel(workflow_id)
        return changed

    def flag_cancel(self, workflow_id: str) -> None:
        """A cancellation was written (by anyone): the local run stops at its next operation, a
        parked one is woken (and given back)."""
        self.runs.flag_cancel(workflow_id)
        self.parking.on_cancel(workflow_id)

    def start(self) -> None:
        """Start waking parked workflows."""
        self.parking.start()

    def shutdown(self, timeout_s: float, step_grace_s: float = 0.5) -> None:
        """Stop running workflows at their next step (they stay PENDING and are recovered by the
        next start, parked ones too), waiting up to ``timeout_s`` for the running ones to finish
        on their own first, then up to ``step_grace_s`` in all for the steps in progress to
        end."""
        deadline = time.monotonic() + timeout_s
        while timeout_s > 0 and time.monotonic() < deadline:
            if not self.pool.load():
                break
            time.sleep(0.05)
        self.ops.stopping.set()
        self.parking.stop()
        grace_ends = max(deadline, time.monotonic()) + step_grace_s
        self.pool.stop(max(0.0, grace_ends - time.monotonic()))

    def _parked_at_stop(self, run: ParkedRun) -> None:
        """The runtime stopped while ``run`` was parked: it stays PENDING; waiters here are told."""
        if run.future is not None:
            error = shut_down(run.workflow_id)
            self.runs.finish(run.ctx, run.future, Outcome(error=error, detached=True))
