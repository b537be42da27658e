"""The queue dispatcher: the thread of each launched process that starts queued workflows.

It claims ready workflows of every declared queue with ``FOR UPDATE SKIP LOCKED``, in priority
then arrival order, within the queue's limits (see ``runtime.queues``), and hands them to the
engine's claim path. It wakes on a NOTIFY (enqueue anywhere, or a queued workflow stopping
anywhere), on a local enqueue or finish, when a rate window reopens, and otherwise polls slowly as
a fallback (each queue's ``polling_interval_sec`` at the latest).

It serves the queues this process listens to (``DBOS.listen_queues``; all declared ones by
default). A partitioned queue is dispatched partition by partition, each with the queue's limits
(one claim per partition with work). DELAYED workflows whose delay has passed are turned ENQUEUED
once per poll interval (one statement for all served queues).
"""

from __future__ import annotations

import logging
import threading
import time

from runtime import registry
from runtime.engine import Engine
from runtime.errors import DBOSException
from runtime.queue_db import QueueDatabase
from runtime.queues import DEFAULT_POLLING_INTERVAL_S, Queue, served_queues
from runtime.records import DequeueResult
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
        self.queue_db = QueueDatabase(sysdb)
        # Epoch ms before which a rate-limited queue (or partition) cannot start anything more.
        self._not_before: dict[tuple[str, str | None], int] = {}
        # What this process dequeued from each partition, for its per-partition worker limit.
        self._partition_runs: dict[tuple[str, str], set[str]] = {}
        self._next_promote_ms = 0

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
            # A queue declared with a shorter polling interval than the default shortens the
            # poll; the others follow the dispatcher's (NOTIFYs wake it sooner anyway).
            timeout = min(
                [POLL_INTERVAL_S]
                + [
                    q.polling_interval_sec
                    for q in served_queues()
                    if q.polling_interval_sec != DEFAULT_POLLING_INTERVAL_S
                ]
            )
            if next_due is not None:
                timeout = min(timeout, max(0.0, (next_due - _now_ms()) / 1000))
            self._wake.wait(timeout)

    def dispatch_once(self) -> int | None:
        """One pass over the queues; returns when a rate-limited queue can next start work."""
        names = registry.workflow_names()
        queues = served_queues()
        next_due: int | None = None
        if _now_ms() >= self._next_promote_ms:
            self._next_promote_ms = _now_ms() + int(POLL_INTERVAL_S * 1000)
            self.queue_db.promote_delayed([q.name for q in queues])
        for queue in queues:
            partitions: list[str | None] = (
                list(self.queue_db.ready_partitions(queue.name))
                if queue.partition_queue
                else [None]
            )
            for partition in partitions:
                if self._stop.is_set() or self.engine.stopping.is_set():
                    return None
                due = self._dispatch(queue, partition, names)
                if due is not None:
                    next_due = due if next_due is None else min(next_due, due)
        return next_due

    def _dispatch(self, queue: Queue, partition: str | None, names: list[str]) -> int | None:
        """Claim and start what one queue (or one partition of it) may start now; returns when a
        rate limit lets it start more, if one holds it back."""
        not_before = self._not_before.get((queue.name, partition), 0)
        if not_before > _now_ms():
            return not_before
        capacity = self.max_threads - self.engine.pool.load()
        if queue.worker_concurrency is not None:
            capacity = min(
                capacity, queue.worker_concurrency - self._running_here(queue, partition)
            )
        if capacity <= 0:
            return None
        limiter = (
            (queue.limiter["limit"], float(queue.limiter["period"])) if queue.limiter else None
        )
        batch: DequeueResult = self.sysdb.dequeue(
            queue.name,
            executor_id=self.executor_id,
            process_id=self.process_id,
            application_version=self.application_version,
            names=names,
            max_claim=capacity,
            concurrency=queue.concurrency,
            limiter=limiter,
            partition=partition,
        )
        if batch.next_start_at_ms is not None:
            self._not_before[(queue.name, partition)] = batch.next_start_at_ms
        for dequeued in batch.workflows:
            if partition is not None:
                wid = dequeued.claimed.workflow_id
                self._partition_runs.setdefault((queue.name, partition), set()).add(wid)
            try:
                self.engine.claims.run_dequeued(dequeued)
            except DBOSException as exc:
                logger.error("cannot start dequeued workflow: %s", exc)
        return batch.next_start_at_ms

    def _running_here(self, queue: Queue, partition: str | None) -> int:
        """Workflows of the queue (or of one partition of it) running in this process."""
        if partition is None:
            return self.engine.runs.running_from_queue(queue.name)
        key = (queue.name, partition)
        dequeued = self._partition_runs.get(key, set())
        # A partition's count is what this dispatcher started there and is still running.
        dequeued.intersection_update(self.engine.runs.running_ids())
        if not dequeued:
            self._partition_runs.pop(key, None)  # many short-lived partitions: keep it small
        return len(dequeued)


def _now_ms() -> int:
    return int(time.time() * 1000)
