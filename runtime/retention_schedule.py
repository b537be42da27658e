"""Automatic retention (the ``workflow_retention`` setting): each launched executor runs a daemon
thread that, soon after launch and then every ``workflow_retention_interval_sec`` seconds,
deletes the finished workflows older than the retention (``runtime.retention``), provided no
other executor is doing so at that moment.

One at a time: a session-level Postgres advisory lock (``pg_try_advisory_lock``) taken on a
connection of its own, opened for the collection and closed after it. Chosen over a lease row
because the server releases it the moment that connection ends, so a collector killed mid-run
never leaves a lease behind for the others to wait out, and because taking it writes nothing.
The connection is not from the pool: a session lock belongs to its connection, and a pooled one
would go back to the pool still holding it. ``try`` rather than wait: an executor finding the lock
taken skips this round (another is collecting the same rows).

Never in the way: launch only starts the thread (the first collection waits a short delay), a
failure (the database down, a statement timeout) is logged and the next round tries again, and
shutdown sets a flag that ends the collection after its current batch.
"""

from __future__ import annotations

import logging
import threading
import time

from runtime import db, retention
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

# The first collection runs this long after launch (or after one interval, if shorter), so that
# launching many executors at once does not start with a burst of deletion.
FIRST_RUN_DELAY_S = 10.0
# The collector rests after each batch as long as the batch took. Deleting competes with the
# workload's checkpoints for WAL flushes, not for locks; measured (bench/gc_bench.py, 300,000
# workflows in batches of 1,000), resting that long cut the median checkpoint latency rise during
# gc from 2.14x to 1.16x and the p99 rise from 1.46x to 1.11x, at 2,829 instead of 7,259
# workflows/s: a background job has the time, the workload does not.
PACE = 1.0
# One lock per system schema: two applications sharing a database collect independently.
TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%(key)s, 0))"


class RetentionSchedule:
    """A daemon thread that collects finished workflows older than ``retention_s`` seconds every
    ``interval_s`` seconds, when this executor holds the collector lock."""

    def __init__(
        self,
        sysdb: SystemDatabase,
        retention_s: float,
        interval_s: float,
        *,
        batch_size: int = retention.DEFAULT_GC_BATCH_SIZE,
    ) -> None:
        self.sysdb = sysdb
        self.retention_s = retention_s
        self.interval_s = interval_s
        self.batch_size = batch_size
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbos-retention", daemon=True)
        #: Collections this executor ran (tests and logs read it).
        self.runs: list[retention.GarbageCollection] = []

    def start(self) -> None:
        """Start the loop (it returns at once: the first collection comes later)."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end and wait briefly: a collection under way ends after its batch."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        delay = min(FIRST_RUN_DELAY_S, self.interval_s)
        while not self._stop.wait(delay):
            delay = self.interval_s
            try:
                self.collect_once()
            except Exception as exc:  # an outage or a timeout: the next round tries again
                if self._stop.is_set():
                    break  # shutting down: the pool closed under the last batch
                logger.warning("automatic retention failed (will retry): %s", exc)

    def collect_once(self) -> retention.GarbageCollection | None:
        """One round: take the lock if free, collect, let go. None when another executor held
        the lock."""
        with db.connect(self.sysdb.url) as conn:
            row = conn.execute(TRY_LOCK, {"key": f"dbos-retention:{self.sysdb.schema}"}).fetchone()
            if row is None or not row[0]:
                return None
            # Closing the connection releases the lock, whatever happens here.
            cutoff = int((time.time() - self.retention_s) * 1000)
            result = retention.garbage_collect(
                self.sysdb, cutoff, None, batch_size=self.batch_size, stop=self._stop, pace=PACE
            )
        self.runs.append(result)
        if result.deleted:
            logger.info(
                "automatic retention deleted %d finished workflows older than %s in %d batches",
                result.deleted,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cutoff / 1000)),
                result.batches,
            )
        return result
