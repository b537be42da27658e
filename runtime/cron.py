"""Cron ticks: the one place that reads cron expressions and turns them into instants, for
``@DBOS.scheduled`` and for the managed schedules (``DBOS.create_schedule``).

Expressions have five fields (minute precision) or six with seconds first (as in DBOS), parsed and
iterated by croniter. A schedule may name an IANA time zone; its expression is then read in that
zone's wall-clock time, iterated without any time zone (so croniter sees no DST), and each
wall-clock tick is mapped to one instant the way cron does it:

- a wall-clock time that a spring-forward transition skips fires once, at the first instant after
  the gap (02:30 on the night New York jumps from 02:00 to 03:00 fires at 03:00 EDT);
- a wall-clock time that a fall-back transition repeats fires once, at its first occurrence.

So around a transition no tick is skipped and none is doubled. Each tick has a ``key``, the wall
clock time with the zone's offset before any gap (``2026-03-08T02:30:00-05:00``): unique per tick,
equal to the instant's ISO form for every tick outside a gap, and the part of the tick's workflow
ID that makes every executor (and every backfill) choose the same ID.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from runtime.errors import DBOSException

__all__ = ["Tick", "Ticks", "check_timezone", "ticks_between", "validate", "zone"]


def _croniter() -> Any:
    # Loaded on first use: `dbos workflow list` and every other client program import this module
    # (through the client's schedule calls) and most never read a cron expression.
    from croniter import croniter

    return croniter


# Where ``validate`` looks for an expression's first tick.
_PROBE_FROM = datetime(2000, 1, 1)


def _six_fields(cron: str) -> bool:
    return len(cron.split()) == 6


def validate(cron: object) -> None:
    """Refuse an expression croniter cannot read (or that is not a string), or one that never
    fires (``0 0 30 2 *``: 30 February), naming it (``DBOSException``)."""
    if (
        not isinstance(cron, str)
        or len(cron.split()) not in (5, 6)
        or not _croniter().is_valid(cron, second_at_beginning=_six_fields(cron))
    ):
        raise DBOSException(
            f"invalid cron expression {cron!r}: expected 5 fields (minute hour day month weekday) "
            "or 6 with seconds first"
        )
    # Without a year field an expression that fires at all fires within eight years of any
    # instant (29 February skips 2100), so one with no tick after a fixed instant has none.
    # Refused here, the one check every schedule passes, so that no such schedule is ever
    # stored or handed to the scheduler.
    walls = _croniter()(cron, _PROBE_FROM, second_at_beginning=_six_fields(cron))
    try:
        walls.get_next(datetime)
    except Exception:  # croniter's CroniterBadDateError: it searched and found no date
        raise DBOSException(
            f"invalid cron expression {cron!r}: it never fires (no such date)"
        ) from None


def check_timezone(name: object) -> None:
    """Refuse a time zone that is not None or a known IANA name (``"America/New_York"``)."""
    if name is None:
        return
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        ZoneInfo(name)
    except Exception as exc:  # ZoneInfo raises several kinds for a bad key
        raise DBOSException(
            f"invalid cron_timezone {name!r}: expected an IANA time zone name such as "
            "'America/New_York', or None for UTC"
        ) from exc


def zone(name: str | None) -> tzinfo:
    """The zone a schedule's expression is read in: UTC when None."""
    return timezone.utc if name is None else ZoneInfo(name)


@dataclass(frozen=True)
class Tick:
    """One tick: when it fires (``at``, aware, in the schedule's zone) and its unique ``key``."""

    at: datetime
    key: str


def _exists(wall: datetime, tz: tzinfo) -> bool:
    """Whether a naive wall-clock time happens in the zone (it does not inside a DST gap)."""
    there = wall.replace(tzinfo=tz).astimezone(timezone.utc).astimezone(tz)
    return there.replace(tzinfo=None) == wall


def _tick(wall: datetime, tz: tzinfo) -> Tick:
    first = wall.replace(tzinfo=tz, fold=0)  # the first occurrence of a repeated time
    if _exists(wall, tz):
        return Tick(first.astimezone(tz), first.isoformat())
    # In a gap: the first instant whose wall clock is past ``wall`` is the transition itself.
    # It lies between the readings of ``wall`` at the offsets after and before the gap.
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    hi = first.astimezone(timezone.utc)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    transition = hi.replace(microsecond=0)
    if transition.astimezone(tz).replace(tzinfo=None) < wall:
        transition += timedelta(seconds=1)
    return Tick(transition.astimezone(tz), first.isoformat())


class Ticks:
    """The ticks of an expression in a zone strictly after an instant, in order."""

    def __init__(self, cron: str, after: datetime, tz: tzinfo = timezone.utc) -> None:
        validate(cron)
        self.tz = tz
        self.after = after if after.tzinfo is not None else after.replace(tzinfo=timezone.utc)
        wall = self.after.astimezone(tz).replace(tzinfo=None)
        self._walls = _croniter()(cron, wall, second_at_beginning=_six_fields(cron))

    def next(self) -> Tick:
        """The next tick after the previous one (the first: after ``after``)."""
        while True:
            tick = _tick(self._walls.get_next(datetime), self.tz)
            # A wall time already passed in the first occurrence of a repeated hour, when
            # ``after`` falls in its second occurrence, came before ``after``.
            if tick.at > self.after:
                return tick

    def __iter__(self) -> Iterator[Tick]:
        while True:
            yield self.next()


def ticks_between(
    cron: str,
    start: datetime,
    end: datetime,
    tz: tzinfo = timezone.utc,
    limit: int | None = None,
) -> list[Tick]:
    """The ticks strictly after ``start`` and strictly before ``end`` (naive times are UTC).
    ``DBOSException`` when there are more than ``limit`` of them (None: no limit), or when the
    window reaches a tick past the last instant Python represents (year 9999)."""
    end = end if end.tzinfo is not None else end.replace(tzinfo=timezone.utc)
    found: list[Tick] = []
    try:
        for tick in Ticks(cron, start, tz):
            if tick.at >= end:
                return found
            if limit is not None and len(found) == limit:
                raise DBOSException(
                    f"more than {limit} ticks between {start.isoformat()} and "
                    f"{end.isoformat()}: split the window into smaller ones"
                )
            found.append(tick)
    except OverflowError:  # from datetime arithmetic at the ends of its range
        raise DBOSException(
            f"the window {start.isoformat()} .. {end.isoformat()} reaches past the dates "
            "Python represents (years 1 to 9999)"
        ) from None
    return found  # pragma: no cover - the iterator is endless
