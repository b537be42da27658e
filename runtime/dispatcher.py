"""The queue dispatcher: the thread of each launched process that starts queued workflows.

It claims ready workflows of every declared queue with ``FOR UPDATE SKIP LOCKED``, in priority
then arrival order, within the queue's limits (see ``runtime.queues``), and hands them to the
engine's claim path. It wakes on a NOTIFY (enqueue anywhere, or a queued workflow stopping
anywhere), on a local enqueue or finish, when a rate window reopens, and otherwise polls slowly as
a fallback.
"""

from __future__ import annotations

import logging
import threading
import time

from runtime import registry
from runtime.engine import Engine
from runtime.errors import DBOSException
from runtime.queues import declared_queues
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

POLL_INTERVAL_S = 1.0


class QueueDispatcher:
    """The thread that starts queued workflows in this process."""

    def __init__(
        self,
        engine: Engine,
        sysdb: SystemDatabase,
        *,
        executor_id: str,
        process_id: str,
        application_version: str,
        max_threads: int,
    ) -> None:
        self.engine = engine
        self.sysdb = sysdb
        self.executor_id = executor_id
        self.process_id = process_id
        self.application_version = application_version
        self.max_threads = max_threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbos-queue-dispatcher", daemon=True)
        # Epoch ms before which a rate-limited queue cannot start anything more.
        self._not_before: dict[str, int] = {}

    def start(self) -> None:
        """Start dispatching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching and wait for the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def wake(self, queue_name: str = "") -> None:
        """Look at the queues now (a NOTIFY, a local enqueue, or a freed slot)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                next_due = self.dispatch_once()
            except DBOSException as exc:
                logger.warning("queue dispatch failed (will retry): %s", exc)
                next_due = None
            except Exception:
                logger.exception("queue dispatch failed (will retry)")
                next_due = None
            timeout = POLL_INTERVAL_S
            if next_due is not None:
                timeout = min(timeout, max(0.0, (next_due - _now_ms()) / 1000))
            self._wake.wait(timeout)

    def dispatch_once(self) -> int | None:
        """One pass over the queues; returns when a rate-limited queue can next start work."""
        names = registry.workflow_names()
        next_due: int | None = None
        for queue in declared_queues():
            if self._stop.is_set() or self.engine.stopping.is_set():
                return None
            not_before = self._not_before.get(queue.name, 0)
            if not_before > _now_ms():
                next_due = not_before if next_due is None else min(next_due, not_before)
                continue
            capacity = self.max_threads - self.engine.pool.load()
            if queue.worker_concurrency is not None:
                capacity = min(
                    capacity,
                    queue.worker_concurrency - self.engine.runs.running_from_queue(queue.name),
                )
            if capacity <= 0:
                continue
            limiter = (
                (queue.limiter["limit"], float(queue.limiter["period"])) if queue.limiter else None
            )
            batch = self.sysdb.dequeue(
                queue.name,
                executor_id=self.executor_id,
                process_id=self.process_id,
                application_version=self.application_version,
                names=names,
                max_claim=capacity,
                concurrency=queue.concurrency,
                limiter=limiter,
            )
            claimed, possible_at = batch.workflows, batch.next_start_at_ms
            if possible_at is not None:
                self._not_before[queue.name] = possible_at
                next_due = possible_at if next_due is None else min(next_due, possible_at)
            for dequeued in claimed:
                try:
                    self.engine.claims.run_dequeued(dequeued)
                except DBOSException as exc:
                    logger.error("cannot start dequeued workflow: %s", exc)
        return next_due


def _now_ms() -> int:
    return int(time.time() * 1000)
