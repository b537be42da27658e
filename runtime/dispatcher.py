"""The queue dispatcher: the thread of each launched process that starts queued workflows.

It claims ready workflows of every declared queue with ``FOR UPDATE SKIP LOCKED``, in priority
then arrival order, within the queue's limits (see ``runtime.queues``), and hands them to the
engine's claim path. A wake names the queue it is about (a NOTIFY's payload: an enqueue anywhere,
or a queued workflow stopping anywhere; a local enqueue or finish) and only that queue is looked
at, so an idle queue costs nothing per wake-up; a local finish also looks again at the queues whose
last claim this process's own capacity cut short. Each queue is also polled on its own as a
fallback (its ``polling_interval_sec``; ``POLL_INTERVAL_S`` for the default), and a rate-limited
one when its window reopens. One claim takes as many workflows as there are free slots.

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
# The least time between two passes (seconds): the wake-ups of a busy queue (a slot freeing per
# finish) are gathered into one claim of several workflows.
GATHER_S = 0.005
# After a failed pass (the database unreachable), the pause before the next.
RETRY_S = 1.0


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
        self._lock = threading.Lock()
        # The queues named by wake-ups since the last pass; None: every queue.
        self._dirty: set[str] | None = None
        # Queues whose last claim this process's capacity (threads, worker_concurrency) cut
        # short: a local finish frees capacity for them too.
        self._hungry: set[str] = set()
        # When each queue is next polled (time.monotonic()), wake-ups or not.
        self._next_poll: dict[str, float] = {}

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
        """Look at a queue now (a NOTIFY's payload, a local enqueue); every queue when
        ``queue_name`` is empty (a reconnect, a management command)."""
        with self._lock:
            if not queue_name:
                self._dirty = None
            elif self._dirty is not None:
                self._dirty.add(queue_name)
        self._wake.set()

    def slot_freed(self, queue_name: str) -> None:
        """A workflow of ``queue_name`` stopped running here: its queue has a free slot (the
        thread it frees wakes the queues waiting for one: ``thread_freed``)."""
        self.wake(queue_name)

    def thread_freed(self) -> None:
        """A thread of the execution pool came free (any run ended or parked, queued or not):
        the queues that found no free thread may claim again. Called after every run, so the
        common case (no queue waits for a thread) is one read of a set, without the lock."""
        if not self._hungry:
            return
        with self._lock:
            if self._dirty is not None:
                self._dirty.update(self._hungry)
        self._wake.set()

    def _run(self) -> None:
        last_pass = 0.0
        while not self._stop.is_set():
            # Passes close together are spaced by GATHER_S: slots that free meanwhile are taken
            # by one claim, not one claim each. A wake-up after a quiet spell is served at once.
            gap = GATHER_S - (time.monotonic() - last_pass)
            if gap > 0:
                self._stop.wait(gap)
            last_pass = time.monotonic()
            self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            failed = False
            try:
                next_due = self.dispatch_once(dirty)
            except DBOSException as exc:
                logger.warning("queue dispatch failed (will retry): %s", exc)
                next_due, failed = None, True
            except Exception:
                logger.exception("queue dispatch failed (will retry)")
                next_due, failed = None, True
            if failed:  # look at the same queues again after a pause, not in a tight loop
                with self._lock:
                    if dirty is None or self._dirty is None:
                        self._dirty = None
                    else:
                        self._dirty.update(dirty)
            self._wake.wait(RETRY_S if failed else self._sleep_s(next_due))

    def _sleep_s(self, next_due: int | None) -> float:
        """Seconds until the next queue poll or rate window reopening."""
        served = {q.name for q in served_queues()}
        now = time.monotonic()
        polls = [t for name, t in self._next_poll.items() if name in served]
        timeout = max(0.0, min(polls, default=now + POLL_INTERVAL_S) - now)
        # Every rate window still closed, whether or not its queue was looked at in this pass.
        reopening = [t for (name, _), t in self._not_before.items() if name in served]
        if next_due is not None:
            reopening.append(next_due)
        if reopening:
            timeout = min(timeout, max(0.0, (min(reopening) - _now_ms()) / 1000))
        return timeout

    def dispatch_once(self, only: set[str] | None = None) -> int | None:
        """One pass over the served queues (``only``: those named, plus the ones whose poll or
        rate window is due); returns when a rate-limited queue can next start work."""
        names = registry.workflow_names()
        queues = served_queues()
        next_due: int | None = None
        now = time.monotonic()
        if _now_ms() >= self._next_promote_ms:
            self._next_promote_ms = _now_ms() + int(POLL_INTERVAL_S * 1000)
            promoted = self.queue_db.promote_delayed([q.name for q in queues])
            if only is not None:
                only.update(promoted)
        for queue in queues:
            if only is not None and queue.name not in only and not self._due(queue, now):
                continue
            self._next_poll[queue.name] = now + _poll_interval(queue)
            self._set_hungry(queue.name, False)
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
            # A reopened window of a partition that has nothing ready any more: forget it.
            now_ms = _now_ms()
            for key in [k for k, t in self._not_before.items() if k[0] == queue.name]:
                if self._not_before[key] <= now_ms:
                    del self._not_before[key]
        return next_due

    def _due(self, queue: Queue, now: float) -> bool:
        """Whether a queue's fallback poll, or a reopening of its rate window, is due."""
        if self._next_poll.get(queue.name, 0.0) <= now:
            return True
        now_ms = _now_ms()
        return any(name == queue.name and t <= now_ms for (name, _), t in self._not_before.items())

    def _dispatch(self, queue: Queue, partition: str | None, names: list[str]) -> int | None:
        """Claim and start what one queue (or one partition of it) may start now; returns when a
        rate limit lets it start more, if one holds it back."""
        not_before = self._not_before.get((queue.name, partition))
        if not_before is not None:
            if not_before > _now_ms():
                return not_before
            del self._not_before[(queue.name, partition)]
        if (
            partition is None
            and queue.concurrency is not None
            and self.engine.runs.running_from_queue(queue.name) >= queue.concurrency
        ):
            # This process alone fills the queue's slots (they count in the database too, until
            # their final write): a claim would take nothing, so no round trip. Each of them
            # wakes the dispatcher when it stops (``slot_freed``).
            return None
        threads = self.max_threads - self.engine.pool.load()
        capacity = threads
        if queue.worker_concurrency is not None:
            capacity = min(
                capacity, queue.worker_concurrency - self._running_here(queue, partition)
            )
        if capacity <= 0:
            if threads <= 0:  # a worker_concurrency limit is lifted by slot_freed instead
                self._wants_threads(queue.name)
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
        if len(batch.workflows) >= capacity == threads:  # maybe more ready than threads to run
            self._wants_threads(queue.name)
        for dequeued in batch.workflows:
            if partition is not None:
                wid = dequeued.claimed.workflow_id
                self._partition_runs.setdefault((queue.name, partition), set()).add(wid)
            try:
                self.engine.claims.run_dequeued(dequeued)
            except DBOSException as exc:
                logger.error("cannot start dequeued workflow: %s", exc)
        return batch.next_start_at_ms

    def _set_hungry(self, queue_name: str, hungry: bool) -> None:
        with self._lock:
            if hungry:
                self._hungry.add(queue_name)
            else:
                self._hungry.discard(queue_name)

    def _wants_threads(self, queue_name: str) -> None:
        """Mark a queue that found no free thread, for ``thread_freed`` to wake. A thread freed
        before the mark (while the claim was in flight, or since the load was read) found no
        mark to act on, so the load is read again after marking: room now means look again."""
        self._set_hungry(queue_name, True)
        if self.max_threads - self.engine.pool.load() > 0:
            self.wake(queue_name)

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


def _poll_interval(queue: Queue) -> float:
    """How often a queue is polled when no wake-up names it: its own ``polling_interval_sec``, or
    the dispatcher's ``POLL_INTERVAL_S`` for a queue left at the default."""
    if queue.polling_interval_sec != DEFAULT_POLLING_INTERVAL_S:
        return queue.polling_interval_sec
    return POLL_INTERVAL_S
