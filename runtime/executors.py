"""Executor liveness and takeover: many processes on one database recover each other's work.

Every launched process registers a row in ``dbos.executors`` and heartbeats it every quarter of its
lease. An executor ID is dead when none of its processes has heartbeated within the lease (or all
of them stopped cleanly); every live process then takes over the PENDING workflows of dead
executors of its own application version. A workflow is claimed only if it is still recorded for
the dead executor, so exactly one taker wins; the claim bumps the owner epoch, so a process that was
only paused and comes back records nothing more for it.

A clean shutdown marks the process stopped and NOTIFYs the others, who take over at once rather
than after the lease. Two live processes with one executor ID are a configuration mistake (each
would recover the other's workflows at its next start): both log a warning, and the executors view
shows it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import partial

from runtime.engine import Engine
from runtime.errors import DBOSException
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

EXECUTOR_CHANNEL = "dbos_executor_channel"
# Every this many heartbeats, look for our own orphaned workflows (rare: only lost replies).
SELF_HEAL_EVERY = 8


class ExecutorRegistry:
    """This process's executor row, its heartbeat, and takeover of dead executors' workflows."""

    def __init__(
        self,
        engine: Engine,
        sysdb: SystemDatabase,
        *,
        executor_id: str,
        application_version: str,
        lease_s: float,
        max_threads: int,
        process_id: str,
    ) -> None:
        self.engine = engine
        self.sysdb = sysdb
        self.executor_id = executor_id
        self.application_version = application_version
        self.lease_ms = int(lease_s * 1000)
        self.interval_s = max(0.25, lease_s / 4)
        self.max_threads = max_threads
        self.process_id = process_id
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbos-executor", daemon=True)
        self._warned: set[str] = set()

    def register(self) -> None:
        """Record this process as a live executor (before it recovers anything)."""
        self.sysdb.register_executor(
            self.process_id,
            self.executor_id,
            socket.gethostname(),
            os.getpid(),
            self.application_version,
            self.lease_ms,
        )

    def start(self) -> None:
        """Start heartbeating and watching for dead executors."""
        self._thread.start()

    def stop(self) -> None:
        """Stop heartbeating, then mark this process stopped so others take over at once."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.sysdb.stop_executor(self.process_id)
        except DBOSException as exc:
            logger.warning("could not mark this executor stopped: %s", exc)

    def wake(self, _payload: str = "") -> None:
        """Another executor stopped: look for workflows to take over now."""
        self._wake.set()

    def _run(self) -> None:
        passes = 0
        while not self._stop.is_set():
            passes += 1
            try:
                self._heartbeat()
                self.take_over()
                if passes % SELF_HEAL_EVERY == 0:
                    self.reclaim_own()
            except DBOSException as exc:
                logger.warning("executor heartbeat or takeover failed (will retry): %s", exc)
            except Exception:
                logger.exception("executor heartbeat or takeover failed (will retry)")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def _heartbeat(self) -> None:
        for process_id, host, pid in self.sysdb.heartbeat(self.process_id):
            if process_id not in self._warned:
                self._warned.add(process_id)
                logger.warning(
                    "another live process uses executor ID %r (host %s, pid %d): each will "
                    "recover the other's workflows at its next start; give every process its "
                    "own DBOS__VMID",
                    self.executor_id,
                    host,
                    pid,
                )

    def reclaim_own(self) -> list[str]:
        """Run this process's own PENDING workflows that it is not running: claims (a dequeue, a
        takeover, a start) whose reply was lost in a connection failure leave them so."""
        grace_ms = int(self.interval_s * 1000 * SELF_HEAL_EVERY)
        running = self.engine.running_ids()
        taken = []
        for workflow_id in self.sysdb.own_pending(self.process_id, grace_ms):
            if workflow_id in running:
                continue
            try:
                claim = partial(self.engine.claim_from, process=self.process_id)
                if self.engine.claim_and_run(workflow_id, claim):
                    taken.append(workflow_id)
                    logger.warning("resumed workflow %s, orphaned by a lost reply", workflow_id)
            except DBOSException as exc:
                logger.error("cannot resume workflow %s: %s", workflow_id, exc)
        return taken

    def take_over(self) -> list[str]:
        """Claim and run the PENDING workflows of dead executors of this version, as many as this
        process has room for. Returns the IDs taken over."""
        room = self.max_threads - self.engine.running_in_background()
        if room <= 0:
            return []
        taken: list[str] = []
        candidates = self.sysdb.takeover_candidates(self.process_id, self.application_version, room)
        for workflow_id, dead in candidates:
            try:
                if self.engine.claim_and_run(
                    workflow_id, partial(self.engine.claim_from, process=dead)
                ):
                    taken.append(workflow_id)
                    logger.info("took over workflow %s from dead process %s", workflow_id, dead)
            except DBOSException as exc:
                logger.error("cannot take over workflow %s: %s", workflow_id, exc)
        return taken
