"""The bounded execution pool: the threads that run this process's background workflows.

At most ``max_executor_threads`` threads (DBOS's configuration name) run workflow bodies; more
ready work than threads waits its turn in memory, first in first out, without errors. Threads are
started as work arrives and end after a while without work, so an idle process holds none. A
workflow that waits durably (sleep, recv, get_event, a result) gives its thread back
(``runtime.engine.parking``), so the threads are spent on work that is ready to run.

Each task runs in a fresh ``contextvars`` context, as it would on a thread of its own: nothing a
workflow sets in a context variable leaks into the next one run by the same thread.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("dbos")

# A thread without work for this long ends (a burst's threads do not linger).
IDLE_THREAD_S = 30.0


@dataclass
class _Task:
    name: str
    run: Callable[[], None]
    # Called instead of ``run`` when the pool stops before the task started.
    drop: Callable[[], None]


class ExecutionPool:
    """A first-in-first-out pool of at most ``max_threads`` daemon threads (thread-safe)."""

    def __init__(self, max_threads: int, *, idle_thread_s: float = IDLE_THREAD_S) -> None:
        if max_threads < 1:
            raise ValueError("max_executor_threads must be at least 1")
        self.max_threads = max_threads
        self.idle_thread_s = idle_thread_s
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        # Waiters for the load to fall (a feeder of recovered work), on the same lock; woken
        # only when a run ends at or below the highest level one of them waits for.
        self._room = threading.Condition(lock)
        self._room_levels: list[int] = []
        self._ready: deque[_Task] = deque()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._busy = 0
        self._closed = False
        # Called (on the pool's thread, no lock held) each time a task ends and gives its thread
        # back, whatever the task was: the queue dispatcher claims for the queues that found no
        # free thread.
        self.on_thread_freed: Callable[[], None] = lambda: None

    def submit(self, name: str, run: Callable[[], None], drop: Callable[[], None]) -> None:
        """Run ``run`` on a pool thread when one is free (in submission order); if the pool is
        stopped before it starts, ``drop`` is called instead (at once when already stopped)."""
        with self._cond:
            if not self._closed:
                self._ready.append(_Task(name, run, drop))
                if self._idle > len(self._ready) - 1:
                    self._cond.notify()
                elif len(self._threads) < self.max_threads:
                    thread = threading.Thread(target=self._work, name="dbos-executor", daemon=True)
                    self._threads.add(thread)
                    thread.start()
                return
        drop()

    def load(self) -> int:
        """Workflows running on the pool's threads plus those waiting for one."""
        with self._cond:
            return self._busy + len(self._ready)

    def wait_for_load(self, level: int, timeout_s: float) -> int:
        """Wait until at most ``level`` workflows run or wait here (``load``), up to ``timeout_s``
        seconds or until the pool stops; returns the load then (above ``level`` on a timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._room_levels.append(level)
            try:
                while (load := self._busy + len(self._ready)) > level and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._room.wait(left)
                return load
            finally:
                self._room_levels.remove(level)

    def backlog(self) -> int:
        """Ready work waiting for a thread (a waiting workflow gives its thread back at once
        while there is any)."""
        with self._cond:
            return max(0, len(self._ready) - self._idle)

    def thread_count(self) -> int:
        """The pool's threads alive now."""
        with self._cond:
            return len(self._threads)

    def stop(self, timeout_s: float) -> None:
        """Take no more work, drop what has not started, and wait up to ``timeout_s`` for the
        running tasks to end."""
        with self._cond:
            self._closed = True
            dropped = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
            self._room.notify_all()
            threads = list(self._threads)
        for task in dropped:
            _quietly(task.drop, task.name)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._ready:
                    if self._closed:
                        self._threads.discard(me)
                        return
                    self._idle += 1
                    woken = self._cond.wait(self.idle_thread_s)
                    self._idle -= 1
                    if not woken and not self._ready:
                        self._threads.discard(me)
                        return
                task = self._ready.popleft()
                self._busy += 1
            me.name = f"dbos-workflow-{task.name}"
            try:
                # A fresh context per task, as a thread of its own would have.
                contextvars.Context().run(_quietly, task.run, task.name)
            finally:
                me.name = "dbos-executor"
                with self._cond:
                    self._busy -= 1
                    if self._room_levels and self._busy + len(self._ready) <= max(
                        self._room_levels
                    ):
                        self._room.notify_all()
                _quietly(self.on_thread_freed, "on_thread_freed")


def _quietly(fn: Callable[[], None], name: str) -> None:
    """Run a task: what escapes it (a run re-raises what must stop a thread) ends the task, not
    the pool's thread."""
    try:
        fn()
    except BaseException:
        logger.exception("workflow run %s ended with an unexpected error", name)
