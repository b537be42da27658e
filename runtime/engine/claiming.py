"""The one claim path: how a recorded PENDING workflow comes to run in this process.

Recovery at launch, takeover of a dead process's work, a parent's replay reaching a child a crash
left behind, a start that finds its ID recorded, and this process's orphans all claim through
``Claims.claim``; queue dispatch claims in its own statement (``SystemDatabase.dequeue``) and hands
the result to ``Claims.run_dequeued``. A claim bumps the owner epoch, so the previous runner (if
it only paused) records nothing more. It lives in the engine, beneath ``runtime.recovery``, because
a start needs it too; the policies that decide what to claim are in ``runtime.recovery``.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

from runtime import registry
from runtime.engine.running import Runner
from runtime.engine.runs import LocalRuns, Outcome
from runtime.errors import DBOSException
from runtime.records import DequeuedWorkflow
from runtime.status import WorkflowStatusString
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

DEFAULT_MAX_RECOVERY_ATTEMPTS = 100
_PENDING = WorkflowStatusString.PENDING.value


class Claims:
    """Claims recorded workflows for this process and starts their runs."""

    def __init__(
        self,
        sysdb: SystemDatabase,
        runs: LocalRuns,
        runner: Runner,
        *,
        executor_id: str,
        process_id: str,
        application_version: str,
    ) -> None:
        self.sysdb = sysdb
        self.runs = runs
        self.runner = runner
        self.executor_id = executor_id
        self.process_id = process_id
        self.application_version = application_version

    def claim(
        self,
        workflow_ids: list[str],
        *,
        reclaim_own: bool = False,
        background: bool = True,
        reserved: Future[Outcome] | None = None,
    ) -> dict[str, Future[Outcome]]:
        """Claim and run recorded PENDING workflows here.

        Each ID is first reserved in this process (one already running here is left to that run),
        then all are claimed in one statement that only takes workflows no live process owns (with
        ``reclaim_own``, also this process's own that it does not run: claims whose reply was
        lost), and their recorded steps are loaded in one query. Returns the runs of the given IDs
        in this process: those started and those already under way. ``reserved`` is a
        reservation the caller already holds for its one ID."""
        futures: dict[str, Future[Outcome]] = {}
        if reserved is not None:
            futures[workflow_ids[0]] = reserved
        runs = self.runs.reserve_many(workflow_ids, futures)
        if not futures:
            return runs
        try:
            claimed = self.sysdb.claim_pending(
                list(futures),
                executor_id=self.executor_id,
                process_id=self.process_id,
                application_version=self.application_version,
                default_max_attempts=DEFAULT_MAX_RECOVERY_ATTEMPTS,
                name_limits=_registered_limits(),
                reclaim_from=self.process_id if reclaim_own else None,
            )
            ready = [c.workflow_id for c in claimed if c.status == _PENDING]
            recorded = self.sysdb.load_recorded_steps_batch(ready) if ready else {}
        except BaseException:
            for wid, future in futures.items():
                self.runs.forget(wid, future)
            raise
        for c in claimed:
            future = futures.pop(c.workflow_id)
            if c.status != _PENDING:
                self.runs.forget(c.workflow_id, future)
                logger.warning(
                    "workflow %s exceeded its maximum recovery attempts (%d); "
                    "it is now MAX_RECOVERY_ATTEMPTS_EXCEEDED",
                    c.workflow_id,
                    c.recovery_attempts - 2,  # the first run was attempt 1
                )
                continue
            try:
                self.runner.run_claimed(
                    c, future, recorded.get(c.workflow_id, {}), background=background
                )
                runs[c.workflow_id] = future
            except DBOSException as exc:
                logger.error("cannot run workflow %s: %s", c.workflow_id, exc)
        for wid, future in futures.items():  # a live process owns it, or it is no longer PENDING
            self.runs.forget(wid, future)
        return runs

    def run_dequeued(self, dequeued: DequeuedWorkflow) -> None:
        """Run a workflow a queue dispatcher just claimed for this process. Should an earlier run
        of the same ID still be winding down here (the claim fenced it), this one starts when it
        has ended: within a process, a workflow never runs on two threads at once."""
        wid = dequeued.claimed.workflow_id
        future, previous = self.runs.replace(wid)

        def run(_: object = None) -> None:
            try:
                try:
                    recorded = self.sysdb.load_recorded_steps(wid) if dequeued.has_steps else {}
                except BaseException:
                    self.runs.forget(wid, future)
                    raise
                self.runner.run_claimed(dequeued.claimed, future, recorded, background=True)
            except DBOSException as exc:
                logger.error("cannot start dequeued workflow %s: %s", wid, exc)

        if previous is None:
            run()
        else:
            logger.info("workflow %s starts when its previous run here has stopped", wid)
            previous.add_done_callback(run)


def _registered_limits() -> dict[str, int]:
    """The recovery limits this process registers workflow names with, where they differ from
    the default: a row enqueued by a client records none, and DBOS applies the decorator's."""
    limits = {}
    for name in registry.workflow_names():
        info = registry.get_workflow(name)
        if info is not None and info.max_recovery_attempts != DEFAULT_MAX_RECOVERY_ATTEMPTS:
            limits[name] = info.max_recovery_attempts
    return limits
