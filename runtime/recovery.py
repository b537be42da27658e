"""Everything that re-runs pending work in this process: recovery at launch, takeover of dead
processes' workflows, and reclaiming this process's own orphans. All of it claims through the one
claim path, ``Claims.claim`` (``runtime.engine.claiming``), which only takes workflows no live
process owns and bumps their owner epoch.

- **At launch**: this executor's PENDING workflows of this version that no live process owns (a
  process that crashed; not one still running them, as in a rolling restart). They are claimed
  in batches as the bounded pool has room (``FEED_DEPTH``), by a feeder thread after the first
  batch, so that launch returns at once and no claimed run waits long in memory: a run that
  waited past the ownership check's interval would spend a query confirming it still owns its
  workflow, and one claimed but not started holds it from processes that have room.
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
# Recovery at launch holds at most this many claimed runs per pool thread (running or waiting for
# a thread), and claims the next batch when the load falls to half of that: each claim is one
# statement for a batch of at least ``FEED_DEPTH / 2 * max_threads`` workflows, and the pool
# does not run dry while a claim is under way.
FEED_DEPTH = 4
# The feeder looks again this often while the pool stays full (runs that wait in steps).
FEED_WAIT_S = 0.5


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
        self._feed_stop = threading.Event()
        self._feeder: threading.Thread | None = None

    def recover_at_launch(self) -> list[str]:
        """Run this executor's PENDING workflows of this version that no live process owns.
        Claims as many as the pool has room for now (``FEED_DEPTH`` runs per thread) and leaves
        the rest to a feeder thread, which claims the next batch each time the pool's load falls
        to half of that; each batch is two statements (the claim, and one read of the
        batch's recorded steps). Returns the IDs started now."""
        ids = self.sysdb.pending_workflow_ids(self.executor_id, self.application_version)
        if not ids:
            return []
        room = max(0, self._room())
        started = self._claim_batch(ids[:room])
        if started is None:
            return []
        if len(ids) > room:
            self._feeder = threading.Thread(
                target=self._feed,
                args=(ids[room:], len(ids), len(started)),
                name="dbos-recovery",
                daemon=True,
            )
            self._feeder.start()
        else:
            _log_recovered(len(started), len(ids))
        return started

    def _room(self) -> int:
        return FEED_DEPTH * self.max_threads - self.engine.pool.load()

    def _claim_batch(self, ids: list[str]) -> list[str] | None:
        """Claim and start ``ids``; the IDs started, or None when the claim failed (the rest is
        left to the takeover loop: their owner is dead)."""
        if not ids:
            return []
        try:
            runs = self.engine.claims.claim(ids)
        except DBOSException as exc:
            logger.error("cannot recover pending workflows: %s", exc)
            return None
        return [wid for wid in ids if wid in runs]

    def _feed(self, ids: list[str], total: int, started: int) -> None:
        """Claim ``ids`` batch by batch as the pool has room, until done or stopped."""
        pool, stopping = self.engine.pool, self.engine.ops.stopping
        first = 0
        while first < len(ids):
            pool.wait_for_load(FEED_DEPTH * self.max_threads // 2, FEED_WAIT_S)
            if self._feed_stop.is_set() or stopping.is_set():
                return
            room = self._room()
            if room <= 0:
                continue
            batch = self._claim_batch(ids[first : first + room])
            if batch is None:
                return
            first += room
            started += len(batch)
        _log_recovered(started, total)

    # -- the takeover loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching for dead executors' workflows."""
        self._thread.start()

    def stop_feeding(self) -> None:
        """Claim no more of the workflows found at launch (a shutdown begins: those not claimed
        yet stay with their dead owner, for the next process to recover)."""
        self._feed_stop.set()
        feeder = self._feeder
        if feeder is not None and feeder is not threading.current_thread():
            feeder.join(timeout=5)

    def stop(self) -> None:
        """Stop taking over work and wait for the loop."""
        self.stop_feeding()
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


def _log_recovered(started: int, total: int) -> None:
    logger.info(
        "recovered %d of %d pending workflows (the others run in live processes)", started, total
    )
