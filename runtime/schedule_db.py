"""The statements of managed schedules (``dbos.workflow_schedules``, migration 0008): create,
upsert, list, get, pause/resume, delete, and noting the last tick fired.

Kept out of ``SystemDatabase`` (which is at its size limit); it shares that object's connection
pool. Each method is one round trip; rows come back as ``ScheduleRow`` records with the context
still serialized (``runtime.schedules`` decodes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.serialization import check_text
from runtime.system_db import SystemDatabase

_COLUMNS = (
    "schedule_id, schedule_name, workflow_name, workflow_class_name, schedule, status, context, "
    "last_fired_at, automatic_backfill, cron_timezone, queue_name"
)

INSERT = f"""
INSERT INTO dbos.workflow_schedules ({_COLUMNS})
VALUES (%(schedule_id)s, %(schedule_name)s, %(workflow_name)s, %(workflow_class_name)s,
        %(schedule)s, %(status)s, %(context)s, NULL, %(automatic_backfill)s, %(cron_timezone)s,
        %(queue_name)s)
ON CONFLICT (schedule_name) DO NOTHING
RETURNING schedule_id"""  # noqa: S608 - the only interpolation is the constant column list

# Replacing a schedule keeps its ID, status and last tick (as DBOS's apply_schedules does): a
# paused schedule stays paused, and an automatic backfill still starts where it stopped.
UPSERT = (
    INSERT.replace(" DO NOTHING", "")
    .replace("RETURNING schedule_id", "")
    .replace(
        "ON CONFLICT (schedule_name)",
        """ON CONFLICT (schedule_name) DO UPDATE SET
    workflow_name = EXCLUDED.workflow_name, workflow_class_name = EXCLUDED.workflow_class_name,
    schedule = EXCLUDED.schedule, context = EXCLUDED.context,
    automatic_backfill = EXCLUDED.automatic_backfill, cron_timezone = EXCLUDED.cron_timezone,
    queue_name = EXCLUDED.queue_name""",
    )
)

# A filter that is NULL does not filter. Prefixes arrive as LIKE patterns, already escaped.
LIST = f"""
SELECT {_COLUMNS} FROM dbos.workflow_schedules
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(workflow_names)s::text[] IS NULL OR workflow_name = ANY(%(workflow_names)s::text[]))
  AND (%(patterns)s::text[] IS NULL OR schedule_name LIKE ANY(%(patterns)s::text[]))
ORDER BY schedule_name"""  # noqa: S608 - the only interpolation is the constant column list

GET = f"SELECT {_COLUMNS} FROM dbos.workflow_schedules WHERE schedule_name = %(name)s"  # noqa: S608

SET_STATUS = """
UPDATE dbos.workflow_schedules SET status = %(status)s WHERE schedule_name = %(name)s
RETURNING schedule_id"""

DELETE = "DELETE FROM dbos.workflow_schedules WHERE schedule_name = %(name)s"

# Only forward: two executors noting the same tick, or an older one arriving late, never move
# the start of the next automatic backfill back. ISO 8601 text does not order across offsets,
# so the comparison is on the instants. (The text is sent twice: one parameter used both as text
# and as a time would be sent as a time, and stored in the server's format.)
SET_LAST_FIRED = """
UPDATE dbos.workflow_schedules SET last_fired_at = %(text)s::text
WHERE schedule_name = %(name)s
  AND (last_fired_at IS NULL OR last_fired_at::timestamptz < %(at)s::timestamptz)"""


@dataclass(frozen=True)
class ScheduleRow:
    """A stored schedule, as read (``context`` still serialized)."""

    schedule_id: str
    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str
    status: str
    context: str
    last_fired_at: str | None
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None

    def params(self) -> dict[str, Any]:
        return {
            "schedule_id": self.schedule_id,
            "schedule_name": self.schedule_name,
            "workflow_name": self.workflow_name,
            "workflow_class_name": self.workflow_class_name,
            "schedule": self.schedule,
            "status": self.status,
            "context": self.context,
            "automatic_backfill": self.automatic_backfill,
            "cron_timezone": self.cron_timezone,
            "queue_name": self.queue_name,
        }


def _row(values: Any) -> ScheduleRow:
    (sid, name, workflow, class_name, cron, status, context, fired, backfill, zone, queue) = values
    return ScheduleRow(
        sid, name, workflow, class_name, cron, status, context, fired, bool(backfill), zone, queue
    )


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class ScheduleDatabase:
    """The managed schedules' statements, on the system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def create(self, row: ScheduleRow) -> bool:
        """Store a new schedule; False (nothing stored) when its name is taken."""
        for text, what in ((row.schedule_name, "schedule name"), (row.context, "context")):
            check_text(text, what)
        with self.sysdb.connection() as conn:
            return conn.execute(INSERT, row.params()).fetchone() is not None

    def upsert_all(self, rows: list[ScheduleRow]) -> None:
        """Create or replace these schedules, all or none (one transaction)."""
        for row in rows:
            check_text(row.schedule_name, "schedule name")
            check_text(row.context, "context")
        with self.sysdb.connection() as conn, conn.transaction():
            for row in rows:
                conn.execute(UPSERT, row.params())

    def find(
        self,
        statuses: list[str] | None = None,
        workflow_names: list[str] | None = None,
        prefixes: list[str] | None = None,
    ) -> list[ScheduleRow]:
        """The schedules matching every given filter (each: any of its values), by name."""
        params = {
            "statuses": statuses,
            "workflow_names": workflow_names,
            "patterns": None if prefixes is None else [_like_prefix(p) for p in prefixes],
        }
        with self.sysdb.connection() as conn:
            return [_row(r) for r in conn.execute(LIST, params).fetchall()]

    def get(self, name: str) -> ScheduleRow | None:
        """The schedule named ``name``, or None."""
        with self.sysdb.connection() as conn:
            found = conn.execute(GET, {"name": name}).fetchone()
        return None if found is None else _row(found)

    def set_status(self, name: str, status: str) -> bool:
        """Set a schedule's status; False when there is no such schedule."""
        with self.sysdb.connection() as conn:
            params = {"name": name, "status": status}
            return conn.execute(SET_STATUS, params).fetchone() is not None

    def delete(self, name: str) -> None:
        """Delete a schedule (nothing when there is none)."""
        with self.sysdb.connection() as conn:
            conn.execute(DELETE, {"name": name})

    def set_last_fired(self, name: str, at_iso: str) -> None:
        """Note a fired tick (ISO 8601), unless a later one is noted already."""
        with self.sysdb.connection() as conn:
            conn.execute(SET_LAST_FIRED, {"name": name, "text": at_iso, "at": at_iso})
