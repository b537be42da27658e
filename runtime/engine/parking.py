"""Parking: a workflow that waits durably gives back its thread (or task) and its connection.

A workflow spends most of its life waiting: in ``DBOS.sleep``, ``recv``, ``get_event``, or for
another workflow's result. Each of these waits is already durable (its end time, or the step it
waits at, is recorded), so nothing needs to stay in memory while it waits but a note of what
wakes it. When such a wait would last longer than ``PARK_AFTER_S`` (or at once, when other ready
work is waiting for a thread), the wait raises ``Parked``: the workflow's stack unwinds to its
body, which keeps the run's outcome future (waiters in this process keep waiting on it) and its
queue slot, and hands this module a ``ParkedRun``. The thread goes back to the pool.

What wakes a parked workflow (``Wake``): a timer (the end of its sleep or timeout), a message on
its topic or an event it waits for (the process's one LISTEN connection feeds them here), the end
of a local run it waits for, or the end of another process's workflow (polled in one query for all
of them), and a cancellation. Lost notifications are covered by a sweep (one query per kind, for
all parked workflows) after every listener reconnect and every ``SWEEP_S``.

Woken, the workflow runs again from its recorded inputs, replaying its recorded outcomes (read in
one query, as a recovered run does) up to the wait, and goes on. That is safe for the same reason
recovery is: a workflow's code must be deterministic, with its side effects in steps (DBOS's rule):
a replay then takes the same path and meets the same step numbers. A workflow that does not gets
``DBOSUnexpectedStepError``, as it would on recovery. Code in a ``finally`` block that runs while
the stack unwinds cannot start durable operations (they re-raise ``Parked``).

A workflow parks only when its wait is the only durable operation it has in progress: an async
workflow that has run operations from another task (``asyncio.gather``, tasks) waits in place
instead. (A task it created that has not yet started an operation when it parks goes on running
plain code until its first durable operation, which re-raises ``Parked``.) A woken async
workflow goes on on a pool thread's event loop, as a recovered one does: the loop it started on
may be ending.

User code that swallows ``Parked`` (a bare ``except:``) and returns is caught by the body: what it
returned is ignored, and the workflow goes on after its wait when woken.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from runtime.context import WorkflowContext, now_ms
from runtime.engine.runs import Outcome
from runtime.listener import event_key, message_key
from runtime.records import WakeSignals
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

# A durable wait longer than this gives its thread back (a shorter one waits in place, where a
# quick reply costs no replay). At once while ready work waits for a thread.
PARK_AFTER_S = 1.0
# Parked waits on workflows of other processes look at their records this often (one query).
AWAIT_POLL_S = 1.0
# The sweep for notifications lost in a listener reconnect; much faster while it is down.
SWEEP_S = 30.0
SWEEP_NOT_LISTENING_S = 2.0
# Woken workflows are re-run in batches of at most this many (one read for each batch).
WAKE_BATCH = 500
# After a failed read of woken workflows (the database is away), they are retried this often.
RETRY_S = 1.0


@dataclass
class Wake:
    """What wakes a parked workflow (any of them; a cancellation always does)."""

    #: Epoch ms at which the wait ends (its recorded end, or the workflow's deadline).
    at_ms: int | None = None
    #: (workflow, topic) of the message it waits for.
    message: tuple[str, str | None] | None = None
    #: (workflow, key) of the event it waits for.
    event: tuple[str, str] | None = None
    #: Another workflow whose final outcome it waits for (its record is polled).
    workflow: str | None = None
    #: The run in this process it waits for.
    local: Future[Outcome] | None = None


@dataclass(eq=False)
class ParkedRun:
    """A parked workflow: its context (ID, owner epoch, queue), what wakes it, and what its run
    needs to go on (filled in when its body has unwound: ``activate``)."""

    ctx: WorkflowContext
    wake: Wake
    future: Future[Outcome] | None = None
    #: Woken before its body finished unwinding: re-run as soon as it has.
    woken: bool = False
    active: bool = False
    done: bool = False
    seq: int = field(default_factory=itertools.count().__next__)

    @property
    def workflow_id(self) -> str:
        return self.ctx.workflow_id


class Parked(BaseException):
    """Raised by a durable wait that gives its thread back; unwinds the workflow to its body. A
    ``BaseException``, like a cancelled task: ``except Exception`` in the workflow does not stop
    it."""

    def __init__(self, run: ParkedRun) -> None:
        super().__init__(f"workflow {run.workflow_id} parked")
        self.run = run


def _where() -> object:
    """Where code runs: the asyncio task, else the thread. (On the hot path: once per step.)"""
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else threading.get_ident()


def note_home(ctx: WorkflowContext) -> None:
    """At the start of a run: the task (or thread) that runs the workflow's body."""
    ctx.home = _where()


def note_operation(ctx: WorkflowContext) -> None:
    """At the start of each durable operation: one started from another task or thread means the
    workflow runs operations concurrently, and this run does not park. A parked run (its stack
    unwinding through a ``finally``) starts none."""
    if ctx.parked is not None:
        raise Parked(ctx.parked)
    if ctx.home is not None and not ctx.concurrent and _where() != ctx.home:
        ctx.concurrent = True


class Parking:
    """The parked workflows of one process and what wakes them (thread-safe)."""

    def __init__(
        self,
        sysdb: SystemDatabase,
        *,
        process_id: str,
        backlog: Callable[[], int],
        park_after_s: float = PARK_AFTER_S,
    ) -> None:
        self.sysdb = sysdb
        self.process_id = process_id
        self.backlog = backlog
        self.park_after_s = park_after_s
        # Set by the engine: re-runs a batch of woken workflows (or drops the stale ones).
        self.rerun: Callable[[list[ParkedRun]], None] = lambda runs: None
        # Set by the engine: tells a run's waiters that the runtime stopped while it was parked.
        self.on_stopped: Callable[[ParkedRun], None] = lambda run: None
        self.is_listening: Callable[[], bool] = lambda: True
        self._cond = threading.Condition()
        self._runs: dict[str, ParkedRun] = {}
        self._messages: dict[str, ParkedRun] = {}
        self._events: dict[str, set[ParkedRun]] = {}
        self._awaited: dict[str, set[ParkedRun]] = {}
        self._timers: list[tuple[int, int, ParkedRun]] = []
        self._due: deque[ParkedRun] = deque()
        self._sweep_now = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="dbos-parking", daemon=True)

    # -- deciding ---------------------------------------------------------------------------------

    def can_park(self, ctx: WorkflowContext) -> bool:
        """Whether a wait of ``ctx`` here may park (see the module docstring)."""
        return (
            not self._stopped
            and ctx.home is not None
            and not ctx.concurrent
            and ctx.parked is None
            and _where() == ctx.home
        )

    def wait_in_place_s(self, ctx: WorkflowContext) -> float:
        """How long a wait of unknown length waits in place before it parks: ``park_after_s``,
        none while ready work waits for a thread, forever when it cannot park."""
        if not self.can_park(ctx):
            return float("inf")
        return 0.0 if self.backlog() > 0 else self.park_after_s

    def park(self, ctx: WorkflowContext, wake: Wake, still_waiting: Callable[[], bool]) -> None:
        """Park ``ctx``'s wait: note what wakes it, then raise ``Parked``, unless
        ``still_waiting()`` (asked once the note is in place, so that no wake-up can slip between
        the two) says it has already ended; then return, and the caller looks again."""
        run = ParkedRun(ctx, wake)
        with self._cond:
            if self._stopped or ctx.workflow_id in self._runs:
                return
            self._runs[ctx.workflow_id] = run
            if wake.message is not None:
                self._messages[message_key(*wake.message)] = run
            if wake.event is not None:
                self._events.setdefault(event_key(*wake.event), set()).add(run)
            if wake.workflow is not None and wake.local is None:
                self._awaited.setdefault(wake.workflow, set()).add(run)
            at_ms = _earliest(wake.at_ms, ctx.deadline_ms)
            if at_ms is not None:
                heapq.heappush(self._timers, (at_ms, run.seq, run))
                if self._timers[0][2] is run:  # the earliest now: the thread's wait is too long
                    self._cond.notify()
        if wake.local is not None:
            wake.local.add_done_callback(lambda _: self._wake(run))
        if not still_waiting() or ctx.cancel_requested.is_set():
            self._forget(run)
            return
        ctx.parked = run
        raise Parked(run)

    # -- the body has unwound ----------------------------------------------------------------------

    def activate(self, run: ParkedRun, future: Future[Outcome]) -> None:
        """The parked workflow's body has unwound: from now on a wake-up re-runs it."""
        run.ctx.recorded = {}  # a re-run reads them again; 100,000 parked runs need not hold them
        with self._cond:
            run.future, run.active = future, True
            stopped = self._stopped and not run.done
            if stopped:
                run.done = True
            elif run.woken and not run.done:
                self._due.append(run)
                self._cond.notify()
        if stopped:
            self.on_stopped(run)

    def count(self) -> int:
        """Workflows parked in this process."""
        with self._cond:
            return len(self._runs)

    # -- wake-ups ---------------------------------------------------------------------------------

    def on_message(self, key: str) -> None:
        """A NOTIFY for a message (payload ``message_key``)."""
        with self._cond:
            run = self._messages.get(key)
        if run is not None:
            self._wake(run)

    def on_event(self, key: str) -> None:
        """A NOTIFY for an event (payload ``event_key``)."""
        with self._cond:
            runs = list(self._events.get(key, ()))
        for run in runs:
            self._wake(run)

    def on_cancel(self, workflow_id: str) -> None:
        """A cancellation of ``workflow_id`` (a NOTIFY, or a local cancel)."""
        with self._cond:
            run = self._runs.get(workflow_id)
        if run is not None:
            self._wake(run)

    def sweep_soon(self) -> None:
        """Look for missed wake-ups now (the listener reconnected)."""
        with self._cond:
            self._sweep_now = True
            self._cond.notify()

    def _wake(self, run: ParkedRun) -> None:
        with self._cond:
            self._wake_locked(run)

    def _wake_locked(self, run: ParkedRun) -> None:
        """(Under the lock.) Mark ``run`` woken: re-run it now, or once its body has unwound."""
        if run.done or run.woken:
            return
        run.woken = True
        self._unindex(run)
        if run.active:
            self._due.append(run)
            self._cond.notify()

    def _forget(self, run: ParkedRun) -> None:
        with self._cond:
            run.done = True
            self._unindex(run)

    def _unindex(self, run: ParkedRun) -> None:
        """Drop ``run`` from the indexes (its timer stays in the heap and is skipped)."""
        wake, wid = run.wake, run.workflow_id
        if self._runs.get(wid) is run:
            del self._runs[wid]
        if wake.message is not None:
            mkey = message_key(*wake.message)
            if self._messages.get(mkey) is run:
                del self._messages[mkey]
        event = event_key(*wake.event) if wake.event is not None else None
        for index, key in ((self._events, event), (self._awaited, wake.workflow)):
            if key is not None and (group := index.get(key)) is not None:
                group.discard(run)
                if not group:
                    del index[key]

    # -- the thread -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread that fires timers, polls, and re-runs woken workflows."""
        self._thread.start()

    def stop(self) -> None:
        """Stop waking workflows. The parked ones stay PENDING (recovered by the next start, or
        taken over); waiters in this process are told the runtime is shutting down."""
        with self._cond:
            self._stopped = True
            runs = [r for r in (*self._runs.values(), *self._due) if r.active and not r.done]
            for run in runs:
                run.done = True
            self._runs.clear()
            self._messages.clear()
            self._events.clear()
            self._awaited.clear()
            self._timers.clear()
            self._due.clear()
            self._cond.notify_all()
        for run in runs:
            self.on_stopped(run)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        next_sweep = time.monotonic() + SWEEP_S
        next_poll = time.monotonic() + AWAIT_POLL_S
        while True:
            with self._cond:
                if self._stopped:
                    return
                self._fire_timers()
                now = time.monotonic()
                if not self._due and not self._sweep_now:
                    wait = min(next_sweep, next_poll) - now
                    if self._timers:
                        wait = min(wait, (self._timers[0][0] - now_ms()) / 1000)
                    if wait > 0:
                        self._cond.wait(wait)
                        continue
                batch = [self._due.popleft() for _ in range(min(len(self._due), WAKE_BATCH))]
                sweep, self._sweep_now = self._sweep_now, False
            if batch:
                self._rerun(batch)
            now = time.monotonic()
            if sweep or now >= next_sweep:
                self._look(everything=True)
                next_sweep = now + (SWEEP_S if self.is_listening() else SWEEP_NOT_LISTENING_S)
            if now >= next_poll:
                self._look(everything=False)
                next_poll = now + AWAIT_POLL_S

    def _fire_timers(self) -> None:
        """(Under the lock.) Wake the runs whose timer is due."""
        now = now_ms()
        while self._timers and self._timers[0][0] <= now:
            self._wake_locked(heapq.heappop(self._timers)[2])

    def _rerun(self, batch: list[ParkedRun]) -> None:
        for run in batch:
            run.done = True
        try:
            self.rerun(batch)
        except Exception as exc:  # the database is away: try again shortly
            logger.warning("could not wake %d parked workflows (%s); retrying", len(batch), exc)
            time.sleep(RETRY_S)
            with self._cond:
                for run in batch:
                    run.done = False
                self._due.extend(batch)

    def _look(self, *, everything: bool) -> None:
        """Ask the database what woke: the awaited workflows of other processes (always), and
        with ``everything`` messages, events and changed statuses (missed notifications)."""
        runs: list[ParkedRun] = []
        with self._cond:
            awaited = list(self._awaited)
            if everything:
                runs = list(self._runs.values())
        if not awaited and not runs:
            return
        try:
            signals = self.sysdb.parked_wake_signals(
                self.process_id,
                awaited=awaited,
                parked=[r.workflow_id for r in runs],
                messages=[r.wake.message for r in runs if r.wake.message is not None],
                events=[r.wake.event for r in runs if r.wake.event is not None],
            )
        except Exception as exc:
            logger.warning("could not look for wake-ups of parked workflows: %s", exc)
            return
        self._apply(signals)

    def _apply(self, signals: WakeSignals) -> None:
        with self._cond:
            woken: list[ParkedRun] = []
            for wid in signals.finished:
                woken.extend(self._awaited.get(wid, ()))
            for wid in signals.changed:
                if (run := self._runs.get(wid)) is not None:
                    woken.append(run)
            for key in signals.messages:
                if (run := self._messages.get(key)) is not None:
                    woken.append(run)
            for key in signals.events:
                woken.extend(self._events.get(key, ()))
        for run in woken:
            self._wake(run)


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
