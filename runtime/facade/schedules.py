"""Managed schedules from the facade (DBOS 3's schedule API): create, list, read, pause, resume,
delete, apply, backfill and trigger cron schedules stored in the database. Each method delegates
to ``runtime.schedules`` (the same core ``DBOSClient`` uses). In a workflow, the calls that DBOS
records as steps are steps here too (named as DBOS names them), so a replay returns what the
first run saw; backfill, trigger and apply refuse to run in a workflow, as in DBOS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from runtime import context, queues, scheduler
from runtime.asyncs import twin
from runtime.errors import DBOSException
from runtime.facade.base import BACKEND, FacadeBase, workflow_of
from runtime.handles import WorkflowHandle
from runtime.schedule_db import ScheduleRow
from runtime.schedules import (
    ACTIVE,
    PAUSED,
    ScheduleInput,
    Schedules,
    WorkflowSchedule,
    new_schedule,
)


def _schedules() -> Schedules:
    return FacadeBase._rt().schedules


def _as_step(name: str, func: Callable[[], Any]) -> Any:
    """``func()``, recorded as the step ``name`` when called in a workflow."""
    return FacadeBase._engine().steps.run_step({"name": name}, func, (), {})


def _outside_workflow(what: str) -> None:
    if context.active_workflow() is not None:
        raise DBOSException(f"DBOS.{what} cannot be called from within a workflow")


def _row_for(workflow_fn: Callable[..., Any], queue_name: str | None, **fields: Any) -> ScheduleRow:
    """A new schedule of a registered workflow (not a configured instance's method, which a tick
    has no instance for) on a queue declared here or by another executor of the app."""
    info, _ = workflow_of(workflow_fn, ())
    if info.takes_self:
        raise DBOSException("Configured instance methods cannot be used as scheduled workflows")
    row = new_schedule(
        workflow_name=info.name,
        workflow_class_name=info.class_name if info.is_classmethod else None,
        queue_name=queue_name,
        **fields,
    )
    if queue_name is not None and queues.get_queue(queue_name) is None:
        known = {q.name for q in FacadeBase._rt().sysdb.queue_overview()}
        if queue_name not in known:
            raise DBOSException(
                f"Queue '{queue_name}' is not declared. Please create the queue before using it "
                "in a schedule."
            )
    return row


class ScheduleCalls(FacadeBase):
    """DBOS's managed schedules."""

    @classmethod
    def create_schedule(
        cls,
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
    ) -> None:
        """Store a cron schedule that runs ``workflow_fn(scheduled_time, context)`` at each tick
        (exactly once across every executor that has the workflow). ``schedule``: 5 cron fields,
        or 6 with seconds first; ``cron_timezone``: the IANA zone it is read in (None: UTC; DST
        transitions skip and double no tick); ``automatic_backfill``: at launch, run the ticks
        missed since the last one fired; ``queue_name``: a declared queue (None: the internal
        one). ``DBOSException``, before anything is stored, for a bad expression or zone, a
        function that is not a registered workflow, an undeclared queue, or a taken name."""
        row = _row_for(
            workflow_fn,
            queue_name,
            schedule_name=schedule_name,
            schedule=schedule,
            context=context,
            automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone,
        )
        _as_step("DBOS.createSchedule", lambda: _schedules().create(row))
        scheduler.wake()

    @classmethod
    def list_schedules(
        cls,
        *,
        status: str | list[str] | None = None,
        workflow_name: str | list[str] | None = None,
        schedule_name_prefix: str | list[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """The stored schedules, by name, filtered by status (``"ACTIVE"``, ``"PAUSED"``),
        workflow name and name prefix (each a string or a list: any of them)."""
        found: list[WorkflowSchedule] = _as_step(
            "DBOS.listSchedules",
            lambda: _schedules().find(
                status=status,
                workflow_name=workflow_name,
                schedule_name_prefix=schedule_name_prefix,
            ),
        )
        return found

    @classmethod
    def get_schedule(cls, name: str) -> WorkflowSchedule | None:
        """The schedule named ``name``, or None."""
        found: WorkflowSchedule | None = _as_step(
            "DBOS.getSchedule", lambda: _schedules().get(name)
        )
        return found

    @classmethod
    def delete_schedule(cls, name: str) -> None:
        """Delete the schedule named ``name`` (nothing if there is none). Its runs stay."""
        _as_step("DBOS.deleteSchedule", lambda: _schedules().delete(name))
        scheduler.wake()

    @classmethod
    def pause_schedule(cls, name: str) -> None:
        """Pause the schedule: it fires nothing until resumed (nothing if there is none)."""
        _as_step("DBOS.pauseSchedule", lambda: _schedules().set_status(name, PAUSED))
        scheduler.wake()

    @classmethod
    def resume_schedule(cls, name: str) -> None:
        """Resume a paused schedule: it fires again from its next tick (with
        ``automatic_backfill``, the ticks missed while paused run first)."""
        _as_step("DBOS.resumeSchedule", lambda: _schedules().set_status(name, ACTIVE))
        scheduler.wake()

    @classmethod
    def apply_schedules(cls, schedules: list[ScheduleInput]) -> None:
        """Create or replace these schedules (each: ``create_schedule``'s keywords) at once; a
        replaced one keeps its status and last tick. Not in a workflow; ``DBOSException`` for a
        bad entry, before anything is stored."""
        _outside_workflow("apply_schedules")
        rows = [_row_for(**_entry(i, s)) for i, s in enumerate(schedules)]
        _schedules().apply(rows)
        scheduler.wake()

    @classmethod
    def backfill_schedule(
        cls, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandle[None]]:
        """Enqueue every tick of the schedule strictly between ``start`` and ``end`` (naive:
        UTC) that has not run, under the IDs the live scheduler uses: running it again creates
        nothing. Returns a handle per tick in the window. Not in a workflow; ``DBOSException``,
        before anything is enqueued, for an unknown schedule, ``end`` before ``start``, a window
        past year 9999, or more than 10,000 ticks in the window (split it)."""
        _outside_workflow("backfill_schedule")
        ids = _schedules().backfill(schedule_name, start, end)
        return [WorkflowHandle(BACKEND, wid) for wid in ids]

    @classmethod
    def trigger_schedule(cls, schedule_name: str) -> WorkflowHandle[None]:
        """Enqueue a run of the schedule's workflow now; returns its handle. Not in a workflow;
        ``DBOSException`` for an unknown schedule."""
        _outside_workflow("trigger_schedule")
        return WorkflowHandle(BACKEND, _schedules().trigger(schedule_name))


class AsyncScheduleCalls(ScheduleCalls):
    """The ``*_async`` twins DBOS has of the schedule calls, each run in a worker thread."""

    create_schedule_async = staticmethod(twin(ScheduleCalls.create_schedule))
    list_schedules_async = staticmethod(twin(ScheduleCalls.list_schedules))
    get_schedule_async = staticmethod(twin(ScheduleCalls.get_schedule))
    delete_schedule_async = staticmethod(twin(ScheduleCalls.delete_schedule))
    apply_schedules_async = staticmethod(twin(ScheduleCalls.apply_schedules))


def _entry(index: int, entry: object) -> dict[str, Any]:
    """``create_schedule``'s keywords from an ``apply_schedules`` entry, its required keys
    checked."""
    if not isinstance(entry, dict):
        raise DBOSException(f"Schedule entry {index} is not a dict")
    for key in ("schedule_name", "workflow_fn", "schedule"):
        if key not in entry:
            raise DBOSException(f"Schedule entry {index} is missing required field '{key}'")
    unknown = set(entry) - set(ScheduleInput.__annotations__)
    if unknown:
        raise DBOSException(f"Schedule entry {index} has unknown fields {sorted(unknown)}")
    fields = dict(entry)
    return {"queue_name": fields.pop("queue_name", None), **fields}
