"""Managed schedules (DBOS 3's ``DBOS.create_schedule`` and its family): cron schedules stored in
``dbos.workflow_schedules``, so that every executor sees them and a client or the CLI manages them.

The core both ``DBOS`` and ``DBOSClient`` call: checking a new schedule before anything is stored,
listing and reading schedules (their context decoded), pausing, resuming, deleting, backfilling a
window and triggering a run now. ``StoredSchedules`` is what the scheduler thread of a launched
process fires: the active schedules of the workflows that process has registered.

Each tick enqueues the schedule's workflow with the arguments ``(scheduled_time, context)`` on the
schedule's queue (default: the internal queue) under the ID ``sched-<schedule name>-<tick key>``
(``runtime.cron``: the tick's time in ISO 8601 with its zone's offset). Every executor and every
backfill derives the same ID for a tick, so a tick is one workflow however many fire it.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict

from typing_extensions import Required

from runtime import cron, serialization
from runtime.cron import Tick
from runtime.errors import DBOSException
from runtime.queues import INTERNAL_QUEUE, check_queue_name
from runtime.records import NewWorkflow
from runtime.schedule_db import ScheduleDatabase, ScheduleRow
from runtime.scheduler import Entry
from runtime.status import WorkflowStatusString
from runtime.system_db import SystemDatabase

__all__ = [
    "ACTIVE",
    "PAUSED",
    "MAX_BACKFILL_TICKS",
    "ClientScheduleInput",
    "ScheduleInput",
    "Schedules",
    "StoredSchedules",
    "WorkflowSchedule",
    "new_schedule",
]

logger = logging.getLogger("dbos")

ACTIVE = "ACTIVE"
PAUSED = "PAUSED"

# The most ticks one backfill call enqueues (DBOS sets none): a window of a 100-year span of a
# daily schedule, or a cron typo, would otherwise enqueue tens of thousands of workflows at once.
# A larger window is split by the caller. An automatic backfill (catching up at launch) has none.
MAX_BACKFILL_TICKS = 10_000


class WorkflowSchedule(TypedDict):
    """A stored schedule, as ``list_schedules`` and ``get_schedule`` return it (DBOS's keys).

    ``schedule`` is the cron expression; ``status`` is ``"ACTIVE"`` or ``"PAUSED"``; ``context``
    the value every run receives (decoded); ``last_fired_at`` the ISO 8601 time of the last tick
    fired, or None; ``cron_timezone`` an IANA zone name (None: UTC); ``queue_name`` the queue its
    runs are enqueued on (None: the internal queue)."""

    schedule_id: str
    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str
    status: str
    context: Any
    last_fired_at: str | None
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None


class ScheduleInput(TypedDict, total=False):
    """One schedule of ``DBOS.apply_schedules``: the keywords of ``DBOS.create_schedule``."""

    schedule_name: Required[str]
    workflow_fn: Required[Callable[..., Any]]
    schedule: Required[str]
    context: Any
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None


class ClientScheduleInput(TypedDict, total=False):
    """One schedule of ``DBOSClient.apply_schedules``: the workflow by name."""

    schedule_name: Required[str]
    workflow_name: Required[str]
    workflow_class_name: str | None
    schedule: Required[str]
    context: Any
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DBOSException(f"invalid {what} {value!r}: expected a non-empty string")
    return value


def new_schedule(
    *,
    schedule_name: object,
    workflow_name: object,
    workflow_class_name: object = None,
    schedule: object,
    context: Any = None,
    automatic_backfill: object = False,
    cron_timezone: object = None,
    queue_name: object = None,
) -> ScheduleRow:
    """A new ACTIVE schedule, every part checked (``DBOSException`` naming the bad one): a name
    and a workflow name (non-empty strings), a cron expression croniter reads (5 fields, or 6
    with seconds first) that fires (not ``0 0 30 2 *``), an IANA zone or None, a
    JSON-serializable context, a queue name or None."""
    name = _check_name(schedule_name, "schedule_name")
    workflow = _check_name(workflow_name, "workflow_name")
    if workflow_class_name is not None:
        _check_name(workflow_class_name, "workflow_class_name")
    cron.validate(schedule)
    cron.check_timezone(cron_timezone)
    if not isinstance(automatic_backfill, bool):
        raise DBOSException(f"invalid automatic_backfill {automatic_backfill!r}: expected a bool")
    if queue_name is not None:
        check_queue_name(queue_name)
    return ScheduleRow(
        schedule_id=str(uuid.uuid4()),
        schedule_name=name,
        workflow_name=workflow,
        workflow_class_name=workflow_class_name,  # type: ignore[arg-type]  # checked above
        schedule=schedule,  # type: ignore[arg-type]  # checked by cron.validate
        status=ACTIVE,
        context=serialization.serialize(context, "schedule context"),
        last_fired_at=None,
        automatic_backfill=automatic_backfill,
        cron_timezone=cron_timezone,  # type: ignore[arg-type]  # checked above
        queue_name=queue_name,  # type: ignore[arg-type]  # checked above
    )


def _decoded(row: ScheduleRow) -> WorkflowSchedule:
    try:
        context = serialization.deserialize(row.context)
    except Exception:  # as DBOS: an undecodable context is shown as stored, never fatal
        logger.warning("the context of schedule %r cannot be decoded", row.schedule_name)
        context = row.context
    return WorkflowSchedule(
        schedule_id=row.schedule_id,
        schedule_name=row.schedule_name,
        workflow_name=row.workflow_name,
        workflow_class_name=row.workflow_class_name,
        schedule=row.schedule,
        status=row.status,
        context=context,
        last_fired_at=row.last_fired_at,
        automatic_backfill=row.automatic_backfill,
        cron_timezone=row.cron_timezone,
        queue_name=row.queue_name,
    )


def _one_or_many(value: object, what: str) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise DBOSException(f"invalid {what} {value!r}: expected a string or a list of strings")
    return list(values)


def _instant(value: object, what: str) -> datetime:
    """A datetime (naive: UTC) or an ISO 8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise DBOSException(f"invalid {what} {value!r}: expected an ISO 8601 time") from None
    if not isinstance(value, datetime):
        raise DBOSException(f"invalid {what} {value!r}: expected a datetime")
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def tick_workflow_id(schedule_name: str, tick: Tick) -> str:
    """The one ID of a managed schedule's tick, the same in every process and backfill."""
    return f"sched-{schedule_name}-{tick.key}"


class Schedules:
    """The managed schedules of one system database."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb
        self.db = ScheduleDatabase(sysdb)

    def create(self, row: ScheduleRow) -> None:
        """Store a new schedule; ``DBOSException`` when its name is taken."""
        if not self.db.create(row):
            raise DBOSException(f"Schedule '{row.schedule_name}' already exists")

    def apply(self, rows: Sequence[ScheduleRow]) -> None:
        """Create or replace these schedules at once (all or none); a replaced one keeps its
        status and last tick."""
        names = [r.schedule_name for r in rows]
        if len(set(names)) != len(names):
            raise DBOSException(f"apply_schedules names a schedule twice: {names}")
        self.db.upsert_all(list(rows))

    def find(
        self, *, status: object = None, workflow_name: object = None, schedule_name_prefix: object
    ) -> list[WorkflowSchedule]:
        """The schedules matching every filter given (each a string or a list: any of them)."""
        rows = self.db.find(
            _one_or_many(status, "status"),
            _one_or_many(workflow_name, "workflow_name"),
            _one_or_many(schedule_name_prefix, "schedule_name_prefix"),
        )
        return [_decoded(r) for r in rows]

    def get(self, name: str) -> WorkflowSchedule | None:
        """The schedule named ``name``, or None."""
        row = self.db.get(_check_name(name, "schedule name"))
        return None if row is None else _decoded(row)

    def set_status(self, name: str, status: str) -> bool:
        """Pause (``PAUSED``) or resume (``ACTIVE``); False when there is no such schedule."""
        return self.db.set_status(_check_name(name, "schedule name"), status)

    def delete(self, name: str) -> None:
        """Delete the schedule (nothing when there is none); its runs stay as they are."""
        self.db.delete(_check_name(name, "schedule name"))

    def _existing(self, name: object) -> ScheduleRow:
        row = self.db.get(_check_name(name, "schedule name"))
        if row is None:
            raise DBOSException(f"Schedule '{name}' does not exist")
        return row

    def fire(self, row: ScheduleRow, at: datetime, workflow_id: str) -> str:
        """Enqueue the schedule's workflow with ``(at, context)`` under ``workflow_id``; nothing
        when that ID is recorded already. Returns the ID."""
        self._enqueue(row, at, workflow_id)
        return workflow_id

    def _enqueue(self, row: ScheduleRow, at: datetime, workflow_id: str) -> bool:
        """``fire``; True when this call recorded the workflow, False when it was already."""
        return self.sysdb.insert_workflow(
            NewWorkflow(
                workflow_id=workflow_id,
                status=WorkflowStatusString.ENQUEUED,
                name=row.workflow_name,
                class_name=row.workflow_class_name,
                inputs=serialization.serialize_args((at, _decoded(row)["context"]), {}),
                executor_id=None,
                application_version=None,  # the executor that dequeues it gives its own
                queue_name=row.queue_name or INTERNAL_QUEUE,
                schedule_name=row.schedule_name,
            )
        ).created

    def backfill(
        self, name: object, start: object, end: object, limit: int | None = MAX_BACKFILL_TICKS
    ) -> list[str]:
        """Enqueue every tick strictly between ``start`` and ``end`` (datetimes, naive = UTC, or
        ISO 8601) that is not recorded yet; returns the IDs of all of them, in order."""
        return [wid for wid, _ in self.backfill_report(name, start, end, limit)]

    def backfill_report(
        self, name: object, start: object, end: object, limit: int | None = MAX_BACKFILL_TICKS
    ) -> list[tuple[str, bool]]:
        """``backfill``, each tick's ID with whether this call enqueued it (False: recorded
        already). ``DBOSException``, before anything is enqueued, for an unknown schedule, a
        window that ends before it starts or reaches past year 9999, or more than ``limit``
        ticks (None: no limit)."""
        row = self._existing(name)
        begin, finish = _instant(start, "start"), _instant(end, "end")
        if finish < begin:
            raise DBOSException(f"backfill end {finish.isoformat()} is before its start")
        zone = cron.zone(row.cron_timezone)
        ticks = cron.ticks_between(row.schedule, begin, finish, zone, limit)
        report = []
        for tick in ticks:
            workflow_id = tick_workflow_id(row.schedule_name, tick)
            report.append((workflow_id, self._enqueue(row, tick.at, workflow_id)))
        return report

    def trigger(self, name: object) -> str:
        """Enqueue a run now (ID ``sched-<name>-trigger-<now>``); returns its ID."""
        row = self._existing(name)
        now = datetime.now(timezone.utc)
        return self.fire(row, now, f"sched-{row.schedule_name}-trigger-{now.isoformat()}")


class StoredSchedules:
    """The scheduler's view of the managed schedules: the ACTIVE ones whose workflow this
    process has registered (``has_workflow``). A schedule seen active for the first time (at
    launch, or resumed) with ``automatic_backfill`` first catches up on the ticks since its
    last one."""

    def __init__(self, schedules: Schedules, has_workflow: Callable[[str], bool]) -> None:
        self.schedules = schedules
        self.has_workflow = has_workflow
        self._active: set[str] = set()

    def entries(self) -> list[Entry]:
        """The scheduler's entries for the schedules this process runs."""
        rows = [
            r
            for r in self.schedules.db.find(statuses=[ACTIVE])
            if self.has_workflow(r.workflow_name)
        ]
        now = datetime.now(timezone.utc)
        for row in rows:
            if row.schedule_name not in self._active:
                self._catch_up(row, now)
        self._active = {r.schedule_name for r in rows}
        # Live ticks start where the catch-up ended (it excludes ``now``, they include it).
        after = now - timedelta(microseconds=1)
        return [self._entry(r, after) for r in rows]

    def _catch_up(self, row: ScheduleRow, now: datetime) -> None:
        if not (row.automatic_backfill and row.last_fired_at):
            return
        try:
            self.schedules.backfill(row.schedule_name, row.last_fired_at, now, limit=None)
        except Exception as exc:
            logger.warning("automatic backfill of schedule %r failed: %s", row.schedule_name, exc)

    def _entry(self, row: ScheduleRow, after: datetime) -> Entry:
        definition = _definition(row)

        def fire(tick: Tick) -> None:
            # Read again: a pause, delete or change since the last poll wins over this tick.
            current = self.schedules.db.get(row.schedule_name)
            if current is None or current.status != ACTIVE or _definition(current) != definition:
                return
            self.schedules.fire(current, tick.at, tick_workflow_id(row.schedule_name, tick))
            self.schedules.db.set_last_fired(row.schedule_name, tick.at.isoformat())

        return Entry(
            f"managed:{row.schedule_name}", row.schedule, row.cron_timezone, definition, fire, after
        )


def _definition(row: ScheduleRow) -> ScheduleRow:
    """A schedule without its run-time state (status, last tick): what its ticks depend on."""
    return dataclasses.replace(row, status=ACTIVE, last_fired_at=None)
