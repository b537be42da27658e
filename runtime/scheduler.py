"""The scheduler thread: starts scheduled workflows at their cron ticks, for ``@DBOS.scheduled``
workflows (registered in code) and for the managed schedules stored in the database (polled; see
``runtime.schedules``).

Every launched process runs the scheduler, and each tick runs exactly once across all of them: the
workflow ID is derived from the schedule and the tick, so the first process to record it wins and
the others find it recorded. Ticks missed while no process ran, or more than ``LATE_GRACE_S``
late, are not replayed (a managed schedule with ``automatic_backfill`` catches up when first
seen); the schedule continues from the first tick after launch.

Cron expressions and their ticks (time zones, DST) are ``runtime.cron``'s. ``@DBOS.scheduled``
reads its expression in UTC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from runtime import cron
from runtime.cron import Tick, Ticks
from runtime.errors import DBOSException

logger = logging.getLogger("dbos")

validate = cron.validate

# As DBOS: the stored schedules are read every 30 s, and every second for the first minute after
# launch, so that schedules created around launch start promptly. A schedule created, changed,
# paused or resumed in this process wakes the scheduler at once.
POLL_INTERVAL_S = 30.0
STARTUP_POLL_INTERVAL_S = 1.0
STARTUP_FAST_POLL_S = 60.0
# How late a tick may fire: later than this, it is skipped.
LATE_GRACE_S = 10.0


@dataclass(frozen=True)
class Schedule:
    """A workflow and its cron expression (``@DBOS.scheduled``)."""

    workflow_name: str
    cron: str
    start: Callable[[str, datetime], None]  # starts the tick's workflow under the given ID


@dataclass(frozen=True)
class Entry:
    """What the scheduler fires: a cron expression read in a zone, and what a tick does. Two
    entries with the same key, expression, zone and ``signature`` are the same schedule; one that
    differs replaces it and ticks from then on."""

    key: str
    cron: str
    timezone: str | None
    signature: object
    fire: Callable[[Tick], None] = field(compare=False)
    # A new entry's first tick is the first one strictly after this (default: now).
    after: datetime | None = field(default=None, compare=False)


_schedules: dict[str, Schedule] = {}
# The running schedulers' wake-ups, called when a schedule is registered, created or changed.
_watchers: list[Callable[[], None]] = []
_lock = threading.Lock()


def register(schedule: Schedule) -> None:
    """Add (or replace) the schedule of a workflow. A running scheduler picks it up at once: a
    workflow declared after ``DBOS.launch()`` is scheduled too."""
    validate(schedule.cron)
    with _lock:
        _schedules[schedule.workflow_name] = schedule
    wake()


def wake() -> None:
    """Have the running schedulers look at their schedules again now (stored ones included)."""
    with _lock:
        watchers = list(_watchers)
    for watcher in watchers:
        watcher()


def schedules() -> list[Schedule]:
    """Every registered schedule."""
    with _lock:
        return list(_schedules.values())


def tick_workflow_id(workflow_name: str, tick: datetime) -> str:
    """The one ID of a ``@DBOS.scheduled`` tick's run, the same in every process."""
    return f"sched-{workflow_name}-{tick.astimezone(timezone.utc).isoformat()}"


def _decorated_entry(schedule: Schedule) -> Entry:
    def fire(tick: Tick) -> None:
        schedule.start(tick_workflow_id(schedule.workflow_name, tick.at), tick.at)

    return Entry(f"@{schedule.workflow_name}", schedule.cron, None, schedule, fire)


class Scheduler:
    """The thread that fires schedules at their ticks. It runs from the first schedule on,
    whether that was registered before launch or after; with ``stored`` (the entries of the
    managed schedules, read again at every poll) it runs from ``start()``."""

    def __init__(self, stored: Callable[[], list[Entry]] | None = None) -> None:
        self._stored = stored
        self._stored_entries: list[Entry] = []
        # Entries whose ticks cannot be computed, skipped until they change (or go).
        self._broken: dict[str, Entry] = {}
        self._read_failed = False
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._started = False
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="dbos-scheduler", daemon=True)

    def start(self) -> None:
        """Start watching for schedules; the thread starts with the first one."""
        self._began = time.monotonic()
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
        """A schedule was registered or changed: start the thread if this is the first, else
        wake it."""
        self._changed.set()
        with _lock:
            wanted = bool(_schedules) or self._stored is not None
            start = not self._started and wanted and not self._stop.is_set()
            self._started = self._started or start
        if start:
            self._thread.start()

    def _poll_interval(self) -> float:
        fast = time.monotonic() - self._began < STARTUP_FAST_POLL_S
        return STARTUP_POLL_INTERVAL_S if fast else POLL_INTERVAL_S

    def _read_stored(self) -> None:
        if self._stored is None:
            return
        try:
            self._stored_entries = self._stored()
            self._read_failed = False
        except Exception:  # the database may be away for a while: keep the last known ones
            if not self._read_failed:  # once per outage, not at every poll
                logger.warning("reading the stored schedules failed", exc_info=True)
            self._read_failed = True

    def _refresh(self, upcoming: dict[str, tuple[Tick, Ticks, Entry]]) -> None:
        """Start new entries (from their first tick after now), restart changed ones, drop the
        ones gone."""
        now = datetime.now(timezone.utc)
        entries = {e.key: e for e in [*map(_decorated_entry, schedules()), *self._stored_entries]}
        for key in [k for k in upcoming if k not in entries]:
            del upcoming[key]
        for key in [k for k in self._broken if k not in entries]:
            del self._broken[key]
        for key, entry in entries.items():
            known = upcoming.get(key)
            if (known is None or known[2] != entry) and self._broken.get(key) != entry:
                try:
                    ticks = Ticks(entry.cron, entry.after or now, cron.zone(entry.timezone))
                    upcoming[key] = (ticks.next(), ticks, entry)
                except Exception as exc:
                    self._set_aside(upcoming, key, entry, exc)

    def _set_aside(
        self,
        upcoming: dict[str, tuple[Tick, Ticks, Entry]],
        key: str,
        entry: Entry,
        exc: Exception,
    ) -> None:
        """Stop firing an entry whose ticks cannot be computed (a row an older version or SQL
        wrote: an expression that never fires, an unknown zone), logged once, until it changes.
        One bad entry must never stop the thread, which fires every other schedule."""
        logger.error(
            "schedule %s cannot be scheduled and is skipped until it changes: %s",
            key,
            exc,
            exc_info=not isinstance(exc, DBOSException),  # a known refusal needs no traceback
        )
        self._broken[key] = entry
        upcoming.pop(key, None)

    def _run(self) -> None:
        upcoming: dict[str, tuple[Tick, Ticks, Entry]] = {}
        next_poll = 0.0
        while not self._stop.is_set():
            polling = self._stored is not None and time.monotonic() >= next_poll
            if self._changed.is_set() or polling:
                self._changed.clear()
                self._read_stored()
                next_poll = time.monotonic() + self._poll_interval()
                self._refresh(upcoming)
            waits = [] if self._stored is None else [next_poll - time.monotonic()]
            due: tuple[str, tuple[Tick, Ticks, Entry]] | None = None
            if upcoming:
                due = min(upcoming.items(), key=lambda kv: kv[1][0].at)
                waits.append((due[1][0].at - datetime.now(timezone.utc)).total_seconds())
            if not waits:
                self._changed.wait()
                continue
            # Woken early by a change: look again, a new schedule may tick first.
            if min(waits) > 0 and self._changed.wait(min(waits)):
                continue
            if self._stop.is_set():
                return
            if due is not None and due[1][0].at <= datetime.now(timezone.utc):
                self._fire(upcoming, due[0], *due[1])

    def _fire(
        self,
        upcoming: dict[str, tuple[Tick, Ticks, Entry]],
        key: str,
        tick: Tick,
        ticks: Ticks,
        entry: Entry,
    ) -> None:
        try:
            entry.fire(tick)
        except DBOSException as exc:
            logger.warning("schedule %s at %s not started: %s", key, tick.at, exc)
        except Exception:
            logger.exception("schedule %s at %s not started", key, tick.at)
        # A tick that came due while this one was starting still fires (a busy second is not a
        # missed tick); ticks long past (the process was suspended) are skipped, never replayed
        # as a backlog.
        try:
            following = ticks.next()
            while following.at < datetime.now(timezone.utc) - timedelta(seconds=LATE_GRACE_S):
                following = ticks.next()
        except Exception as exc:
            self._set_aside(upcoming, key, entry, exc)
            return
        upcoming[key] = (following, ticks, entry)
