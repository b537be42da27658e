"""Scheduled workflows: ``@DBOS.scheduled(cron)`` runs a workflow once per cron tick.

Every launched process runs the scheduler, and each tick runs exactly once across all of them: the
workflow ID is derived from the workflow's name and the tick time, so the first process to record
it wins and the others attach to that run. Ticks missed while no process ran are not replayed; the
schedule continues from the first tick after launch.

Cron expressions have five fields (minute precision) or six with seconds first (as in DBOS), and
are parsed and iterated by croniter. Times are UTC.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from croniter import croniter

from runtime.errors import DBOSException

logger = logging.getLogger("dbos")


@dataclass(frozen=True)
class Schedule:
    """A workflow and its cron expression."""

    workflow_name: str
    cron: str
    start: Callable[[str, datetime], None]  # starts the tick's workflow under the given ID


_schedules: dict[str, Schedule] = {}
# The running schedulers' wake-ups, called when a schedule is registered or replaced.
_watchers: list[Callable[[], None]] = []
_lock = threading.Lock()


def _iterator(cron: str, after: datetime) -> croniter:
    fields = len(cron.split())
    return croniter(cron, after, second_at_beginning=fields == 6)


def validate(cron: str) -> None:
    """Refuse an expression croniter cannot read, naming it."""
    if len(cron.split()) not in (5, 6) or not croniter.is_valid(
        cron, second_at_beginning=len(cron.split()) == 6
    ):
        raise DBOSException(
            f"invalid cron expression {cron!r}: expected 5 fields (minute hour day month weekday) "
            "or 6 with seconds first"
        )


def register(schedule: Schedule) -> None:
    """Add (or replace) the schedule of a workflow. A running scheduler picks it up at once: a
    workflow declared after ``DBOS.launch()`` is scheduled too."""
    validate(schedule.cron)
    with _lock:
        _schedules[schedule.workflow_name] = schedule
        watchers = list(_watchers)
    for watcher in watchers:
        watcher()


def schedules() -> list[Schedule]:
    """Every registered schedule."""
    with _lock:
        return list(_schedules.values())


def tick_workflow_id(workflow_name: str, tick: datetime) -> str:
    """The one ID of a tick's run, the same in every process."""
    return f"sched-{workflow_name}-{tick.astimezone(timezone.utc).isoformat()}"


class Scheduler:
    """The thread that starts scheduled workflows at their ticks. It runs from the first schedule
    on, whether that was registered before launch or after."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._started = False
        self._thread = threading.Thread(target=self._run, name="dbos-scheduler", daemon=True)

    def start(self) -> None:
        """Start watching for schedules; the thread starts with the first one."""
        with _lock:
            _watchers.append(self._on_change)
        self._on_change()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        with _lock:
            if self._on_change in _watchers:
                _watchers.remove(self._on_change)
        self._stop.set()
        self._changed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _on_change(self) -> None:
        """A schedule was registered: start the thread if this is the first, else wake it."""
        self._changed.set()
        with _lock:
            start = not self._started and bool(_schedules) and not self._stop.is_set()
            self._started = self._started or start
        if start:
            self._thread.start()

    def _refresh(self, upcoming: dict[str, tuple[datetime, croniter, Schedule]]) -> None:
        """Add new schedules (from their first tick after now) and apply replaced ones."""
        now = datetime.now(timezone.utc)
        for schedule in schedules():
            known = upcoming.get(schedule.workflow_name)
            if known is None or known[2] != schedule:
                it = _iterator(schedule.cron, now)
                upcoming[schedule.workflow_name] = (it.get_next(datetime), it, schedule)

    def _run(self) -> None:
        upcoming: dict[str, tuple[datetime, croniter, Schedule]] = {}
        while not self._stop.is_set():
            if self._changed.is_set():
                self._changed.clear()
                self._refresh(upcoming)
            if not upcoming:
                self._changed.wait()
                continue
            name, (tick, it, schedule) = min(upcoming.items(), key=lambda kv: kv[1][0])
            wait_s = (tick - datetime.now(timezone.utc)).total_seconds()
            # Woken early by a new schedule: look again, it may tick first.
            if wait_s > 0 and self._changed.wait(wait_s):
                continue
            if self._stop.is_set():
                return
            try:
                schedule.start(tick_workflow_id(name, tick), tick)
            except DBOSException as exc:
                logger.warning("scheduled workflow %s at %s not started: %s", name, tick, exc)
            except Exception:
                logger.exception("scheduled workflow %s at %s not started", name, tick)
            # Skip ticks that passed while this one was starting (never replay a backlog).
            following = it.get_next(datetime)
            while following <= datetime.now(timezone.utc):
                following = it.get_next(datetime)
            upcoming[name] = (following, it, schedule)
