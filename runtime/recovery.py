"""Everything that re-runs pending work in this process: recovery at launch, takeover of dead
processes' workflows, and reclaiming this process's own orphans. All of it claims through the one
claim path, ``Claims.claim`` (``runtime.engine.claiming``), which only takes workflows no live
process owns and bumps their owner epoch.

- **At launch**: this executor's PENDING workflows of this version that no live process owns (a
  process that crashed; not one still running them, as in a rolling restart).
- **Takeover**: a loop that, every quarter of the lease (or at once when another executor
  stops), claims PENDING workflows of this version whose owner process is dead, as many as this
  process has room for. Liveness itself (heartbeats, who is dead) is ``runtime.executors``.
- **Self-heal**: every few passes, this process's own PENDING workflows that it does not run (a
  claim whose reply was lost leaves them so), and the release of cancelled or resumed workflows
  that it (or a dead process) still holds.
"""

from __future__ import annotations

import logging
import threading

from runtime.engine import Engine
from runtime.errors import DBOSException
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

# Every this many takeover passes, look for our own orphaned workflows (rare: only lost replies).
SELF_HEAL_EVERY = 8
LAUNCH_BATCH = 500


class Recovery:
    """Recovery and takeover for one launched runtime."""

    def __init__(
        self,
        engine: Engine,
        sysdb: SystemDatabase,
        *,
        executor_id: str,
        process_id: str,
        application_version: str,
        interval_s: float,
        max_threads: int,
    ) -> None:
        self.engine = engine
        self.sysdb = sysdb
        self.executor_id = executor_id
        self.process_id = process_id
        self.application_version = application_version
        self.interval_s = interval_s
        self.max_threads = max_threads
        self._stop = threading.Event()
        self._wake = threading.Event()
        # On a thread of its own: a takeover may wait (for a pooled connection, for the database),
        # and the heartbeat must never wait behind it.
        self._thread = threading.Thread(target=self._run, name="dbos-takeover", daemon=True)

    def recover_at_launch(self, batch: int = LAUNCH_BATCH) -> list[str]:
        """Run this executor's PENDING workflows of this version that no live process owns;
        returns the IDs started. Claims and loads them in batches (two statements per batch)."""
        ids = self.sysdb.pending_workflow_ids(self.executor_id, self.application_version)
        started: list[str] = []
        for first in range(0, len(ids), batch):
            chunk = ids[first : first + batch]
            try:
                runs = self.engine.claims.claim(chunk)
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

    # -- the takeover loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching for dead executors' workflows."""
        self._thread.start()

    def stop(self) -> None:
        """Stop taking over work and wait for the loop."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def wake(self, _payload: str = "") -> None:
        """Another executor stopped: look for workflows to take over now."""
        self._wake.set()

    def _run(self) -> None:
        passes = 0
        while not self._stop.is_set():
            passes += 1
            try:
                self.take_over()
                if passes % SELF_HEAL_EVERY == 0:
                    self.reclaim_own()
            except DBOSException as exc:
                logger.warning("executor takeover failed (will retry): %s", exc)
            except Exception:
                logger.exception("executor takeover failed (will retry)")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def take_over(self) -> list[str]:
        """Claim and run the PENDING workflows of this version that no live process owns, as many
        as this process has room for. Returns the IDs taken over."""
        room = self.max_threads - self.engine.pool.load()
        if room <= 0:
            return []
        candidates = self.sysdb.takeover_candidates(self.process_id, self.application_version, room)
        if not candidates:
            return []
        taken = [wid for wid in self.engine.claims.claim(candidates) if wid in candidates]
        if taken:
            logger.info("took over %d workflows from dead processes", len(taken))
        return taken

    def reclaim_own(self) -> list[str]:
        """Run this process's own PENDING workflows that it is not running (claims whose reply
        was lost leave them so), and release the cancelled or resumed workflows it holds without
        running them, or that dead processes hold."""
        grace_ms = int(self.interval_s * 1000 * SELF_HEAL_EVERY)
        running = self.engine.runs.running_ids()
        orphans = [
            wid for wid in self.sysdb.own_pending(self.process_id, grace_ms) if wid not in running
        ]
        self.sysdb.release_abandoned(self.process_id, sorted(running))
        if not orphans:
            return []
        taken = list(self.engine.claims.claim(orphans, reclaim_own=True))
        for workflow_id in taken:
            logger.warning("resumed workflow %s, orphaned by a lost reply", workflow_id)
        return taken
