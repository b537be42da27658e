"""``DBOSClient``'s managed schedules (DBOS 3's client schedule API): the schedules of an
application managed from outside it, the workflow named rather than passed. The core is
``runtime.schedules``, the same the app's ``DBOS`` calls; a client cannot check that the workflow
exists (it has no registry), so an unknown name is stored and fires nothing until an executor
that has that workflow runs it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from runtime.asyncs import twin
from runtime.errors import DBOSException
from runtime.handles import HandleBackend, WorkflowHandle
from runtime.system_db import SystemDatabase

if TYPE_CHECKING:
    from runtime.schedules import ClientScheduleInput, Schedules, WorkflowSchedule


class ClientScheduleCalls:
    """The schedule methods of ``DBOSClient`` (which sets ``sysdb`` and is the handles'
    backend)."""

    sysdb: SystemDatabase

    def _schedules(self) -> Schedules:
        # Imported here: the schedules' modules (cron parsing, the scheduler) cost every client
        # that never touches a schedule (`dbos workflow list`) ~5 ms.
        from runtime.schedules import Schedules

        return Schedules(self.sysdb)

    def _handle(self, workflow_id: str) -> WorkflowHandle[None]:
        backend: HandleBackend = self  # type: ignore[assignment]  # DBOSClient is one
        return WorkflowHandle(backend, workflow_id)

    def create_schedule(
        self,
        *,
        schedule_name: str,
        workflow_name: str,
        schedule: str,
        context: Any = None,
        workflow_class_name: str | None = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
    ) -> None:
        """Store a cron schedule of the workflow registered as ``workflow_name`` (a classmethod's:
        with ``workflow_class_name``); see ``DBOS.create_schedule``. ``DBOSException``, before
        anything is stored, for a bad name, expression, zone or context, or a taken name."""
        from runtime.schedules import new_schedule

        self._schedules().create(
            new_schedule(
                schedule_name=schedule_name,
                workflow_name=workflow_name,
                workflow_class_name=workflow_class_name,
                schedule=schedule,
                context=context,
                automatic_backfill=automatic_backfill,
                cron_timezone=cron_timezone,
                queue_name=queue_name,
            )
        )

    def list_schedules(
        self,
        *,
        status: str | list[str] | None = None,
        workflow_name: str | list[str] | None = None,
        schedule_name_prefix: str | list[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """The stored schedules, by name, filtered by status, workflow name and name prefix
        (each a string or a list: any of them)."""
        return self._schedules().find(
            status=status, workflow_name=workflow_name, schedule_name_prefix=schedule_name_prefix
        )

    def get_schedule(self, name: str) -> WorkflowSchedule | None:
        """The schedule named ``name``, or None."""
        return self._schedules().get(name)

    def delete_schedule(self, name: str) -> None:
        """Delete the schedule named ``name`` (nothing if there is none). Its runs stay."""
        self._schedules().delete(name)

    def pause_schedule(self, name: str) -> None:
        """Pause the schedule: it fires nothing until resumed (nothing if there is none)."""
        from runtime.schedules import PAUSED

        self._schedules().set_status(name, PAUSED)

    def resume_schedule(self, name: str) -> None:
        """Resume a paused schedule (nothing if there is none)."""
        from runtime.schedules import ACTIVE

        self._schedules().set_status(name, ACTIVE)

    def apply_schedules(self, schedules: list[ClientScheduleInput]) -> None:
        """Create or replace these schedules (each: ``create_schedule``'s keywords) at once; a
        replaced one keeps its status and last tick. ``DBOSException`` for a bad entry, before
        anything is stored."""
        from runtime.schedules import ClientScheduleInput, new_schedule

        rows = []
        for index, entry in enumerate(schedules):
            if not isinstance(entry, dict):
                raise DBOSException(f"Schedule entry {index} is not a dict")
            for key in ("schedule_name", "workflow_name", "schedule"):
                if key not in entry:
                    raise DBOSException(f"Schedule entry {index} is missing required field '{key}'")
            unknown = set(entry) - set(ClientScheduleInput.__annotations__)
            if unknown:
                raise DBOSException(f"Schedule entry {index} has unknown fields {sorted(unknown)}")
            rows.append(new_schedule(**entry))
        self._schedules().apply(rows)

    def backfill_schedule(
        self, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandle[None]]:
        """Enqueue every tick strictly between ``start`` and ``end`` (naive: UTC) that has not
        run (running it again creates nothing); a handle per tick in the window.
        ``DBOSException``, before anything is enqueued, for an unknown schedule, ``end`` before
        ``start``, a window past year 9999, or more than 10,000 ticks in the window (split
        it)."""
        return [self._handle(w) for w in self._schedules().backfill(schedule_name, start, end)]

    def backfill_schedule_report(
        self, schedule_name: str, start: datetime | str, end: datetime | str
    ) -> list[tuple[str, bool]]:
        """``backfill_schedule``, as each tick's workflow ID with whether this call enqueued it
        (False: it was recorded already): what `dbos schedule backfill` reports."""
        return self._schedules().backfill_report(schedule_name, start, end)

    def trigger_schedule(self, schedule_name: str) -> WorkflowHandle[None]:
        """Enqueue a run of the schedule's workflow now; its handle. ``DBOSException`` for an
        unknown schedule."""
        return self._handle(self._schedules().trigger(schedule_name))

    create_schedule_async = twin(create_schedule)
    list_schedules_async = twin(list_schedules)
    get_schedule_async = twin(get_schedule)
    delete_schedule_async = twin(delete_schedule)
    apply_schedules_async = twin(apply_schedules)
