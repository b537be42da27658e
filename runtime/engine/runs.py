"""The runs of this process, in memory: which workflow IDs run (or are about to run, or are parked)
here, their contexts (for cancellation flags), and the queue slots they hold.

Within a process a workflow never runs on two threads at once: an ID is reserved here before its
start is recorded or its claim is written, and whoever finds it reserved attaches to that run.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from runtime.context import WorkflowContext


@dataclass
class Outcome:
    """What a local run produced, for waiters in this process."""

    value: Any = None
    error: BaseException | None = None
    # The run stopped without a final outcome (fenced, interrupted): ask the database.
    detached: bool = False


class LocalRuns:
    """The registry of this process's runs (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Future[Outcome]] = {}
        self._contexts: dict[str, WorkflowContext] = {}
        self._queue_running: Counter[str] = Counter()
        self._on_idle: Callable[[], None] | None = None
        # Set by the queue dispatcher: called when a local run frees a slot of its queue.
        self.on_queue_slot_freed: Callable[[str], None] = lambda queue_name: None
        # IDs someone outside a workflow waits for (``wait_for_run``), set when a run of the ID
        # is reserved or ends here: a queued handle's result then needs no poll.
        self._watched: dict[str, threading.Event] = {}

    # -- reservations ---------------------------------------------------------------------------

    def reserve(self, workflow_id: str) -> tuple[Future[Outcome] | None, Future[Outcome] | None]:
        """Reserve an ID: (the run already under way here, None) or (None, a new reservation)."""
        with self._lock:
            local = self._running.get(workflow_id)
            if local is not None:
                return local, None
            reservation: Future[Outcome] = Future()
            self._running[workflow_id] = reservation
            self._signal(workflow_id)
            return None, reservation

    def reserve_many(
        self, workflow_ids: list[str], held: dict[str, Future[Outcome]]
    ) -> dict[str, Future[Outcome]]:
        """Reserve each ID not in ``held`` (adding the reservations to it); returns the runs
        already under way here for the others."""
        under_way: dict[str, Future[Outcome]] = {}
        with self._lock:
            for wid in dict.fromkeys(workflow_ids):
                if wid in held:
                    continue
                existing = self._running.get(wid)
                if existing is not None:
                    under_way[wid] = existing
                else:
                    held[wid] = self._running[wid] = Future()
                    self._signal(wid)
        return under_way

    def replace(self, workflow_id: str) -> tuple[Future[Outcome], Future[Outcome] | None]:
        """A new reservation that takes the place of any earlier run of the ID here (a claim
        fenced it); returns (the reservation, the earlier run)."""
        future: Future[Outcome] = Future()
        with self._lock:
            previous = self._running.get(workflow_id)
            self._running[workflow_id] = future
            self._signal(workflow_id)
        return future, previous

    def wait_for_run(self, workflow_id: str, timeout_s: float) -> Future[Outcome] | None:
        """The run of the ID here, waiting up to ``timeout_s`` seconds for one to be reserved
        (a dispatcher claiming it) or to end; None when there is none (read the record)."""
        with self._lock:
            local = self._running.get(workflow_id)
            if local is not None:
                return local
            event = self._watched.setdefault(workflow_id, threading.Event())
        try:
            event.wait(timeout_s)
        finally:
            with self._lock:
                if self._watched.get(workflow_id) is event:
                    del self._watched[workflow_id]
        with self._lock:
            return self._running.get(workflow_id)

    def _signal(self, workflow_id: str) -> None:
        """Wake whoever waits for the ID (the lock held)."""
        if self._watched:
            event = self._watched.get(workflow_id)
            if event is not None:
                event.set()

    def forget(self, workflow_id: str, future: Future[Outcome] | None) -> None:
        """Drop a reservation that will not run; anyone attached to it reads the record."""
        if future is None:
            return
        with self._lock:
            if self._running.get(workflow_id) is future:
                del self._running[workflow_id]
        if not future.done():
            future.set_result(Outcome(detached=True))

    # -- runs -----------------------------------------------------------------------------------

    def register(self, ctx: WorkflowContext) -> None:
        """Note a run starting in this process (for cancellation flags and queue slots; a run
        going on after a park still holds its slot)."""
        with self._lock:
            self._contexts[ctx.workflow_id] = ctx
            if ctx.queue_name is not None and not ctx.resumed_from_park:
                self._queue_running[ctx.queue_name] += 1

    def park(self, ctx: WorkflowContext) -> None:
        """A run parked: it executes no user code any more, but keeps its outcome future (the
        workflow still runs here) and its queue slot until it finishes."""
        with self._lock:
            if self._contexts.get(ctx.workflow_id) is ctx:
                del self._contexts[ctx.workflow_id]
            on_idle = None
            if not self._contexts:
                on_idle, self._on_idle = self._on_idle, None
        if on_idle is not None:
            on_idle()

    def finish(self, ctx: WorkflowContext, future: Future[Outcome], outcome: Outcome) -> None:
        """A run ended: hand its outcome to waiters, free its slot, and call the idle callback
        when it was the last run executing user code."""
        with self._lock:
            if ctx.queue_name is not None:
                self._queue_running[ctx.queue_name] -= 1
            if self._contexts.get(ctx.workflow_id) is ctx:
                del self._contexts[ctx.workflow_id]
            if self._running.get(ctx.workflow_id) is future:
                del self._running[ctx.workflow_id]
            self._signal(ctx.workflow_id)
            on_idle = None
            if not self._contexts:
                on_idle, self._on_idle = self._on_idle, None
        if not future.done():
            future.set_result(outcome)
        if on_idle is not None:
            on_idle()
        if ctx.queue_name is not None:
            self.on_queue_slot_freed(ctx.queue_name)

    def flag_cancel(self, workflow_id: str) -> None:
        """A cancellation was written (by anyone): flag the local run, if there is one."""
        with self._lock:
            ctx = self._contexts.get(workflow_id)
        if ctx is not None:
            ctx.cancel_requested.set()

    def flag_all(self) -> None:
        """Cancellation notifications may have been missed (the listener reconnected): have every
        local run look at the database before its next operation."""
        with self._lock:
            contexts = list(self._contexts.values())
        for ctx in contexts:
            ctx.cancel_requested.set()

    # -- what runs here -------------------------------------------------------------------------

    def local_future(self, workflow_id: str) -> Future[Outcome] | None:
        """The outcome of a run of ``workflow_id`` in this process, if one is under way."""
        with self._lock:
            return self._running.get(workflow_id)

    def running_ids(self) -> set[str]:
        """IDs of the workflows this process runs or is about to run."""
        with self._lock:
            return set(self._running)

    def running_from_queue(self, queue_name: str) -> int:
        """Workflows of that queue running (or parked) in this process."""
        with self._lock:
            return self._queue_running[queue_name]

    def has_live_runs(self) -> bool:
        """Whether a workflow of this process may still be executing user code."""
        with self._lock:
            return bool(self._contexts)

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once no run of this process is executing user code any more (now,
        or when the last one ends)."""
        with self._lock:
            if self._contexts:
                self._on_idle = callback
                return
        callback()
