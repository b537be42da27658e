"""Reads behind the dashboard's pages that ``list_workflows`` does not answer: a page of a listing
in either direction with a name-prefix filter, the counts per status for a listing's filters, and
a workflow's events and the messages waiting for it. Kept out of ``SystemDatabase`` (one job per
class); it shares that pool.

The filters are the ones ``management.list_workflows`` builds (``management.workflow_filters``:
its checks and its meaning), so a page, its counts and the CLI's listing always agree on what
"matching" means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.serialization import check_text, deserialize
from runtime.status import WorkflowStatus
from runtime.system_db import SystemDatabase
from runtime.workflow_list import list_workflows_query

__all__ = ["DashboardReads", "PendingMessage"]

PENDING_MESSAGES = """
SELECT topic, message, created_at_epoch_ms FROM dbos.notifications
WHERE destination_uuid = %(workflow_uuid)s
ORDER BY seq
LIMIT %(limit)s
"""

EVENTS = """
SELECT key, value FROM dbos.workflow_events WHERE workflow_uuid = %(workflow_uuid)s ORDER BY key
"""


@dataclass(frozen=True)
class PendingMessage:
    """A message sent to a workflow that no ``recv`` has consumed yet."""

    topic: str | None
    value: Any
    created_at: int  # epoch milliseconds


def name_prefix_pattern(prefix: str) -> str:
    """A LIKE pattern for names starting with ``prefix`` (its own wildcards escaped)."""
    check_text(prefix, "name prefix")
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class DashboardReads:
    """The dashboard's reads, over the system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def page(
        self,
        filters: dict[str, Any],
        *,
        limit: int,
        before: tuple[int, str] | None = None,
        after: tuple[int, str] | None = None,
        load_output: bool = True,
    ) -> list[WorkflowStatus]:
        """Up to ``limit`` workflows matching ``filters`` (``management.workflow_filters``),
        newest first: those older than ``before`` or, with ``after``, the ones just newer than it
        (a page back). Keys are ``(created_at epoch ms, workflow_id)``."""
        chosen = dict(filters)
        if before is not None:
            chosen["before"] = {"before_ts": before[0], "before_id": before[1]}
        if after is not None:
            chosen["after"] = {"after_ts": after[0], "after_id": after[1]}
        found = self.sysdb.list_workflow_statuses(
            chosen,
            sort_desc=after is None,
            limit=limit,
            offset=None,
            load_input=False,
            load_output=load_output,
        )
        return found if after is None else found[::-1]

    def count_by_status(self, filters: dict[str, Any]) -> dict[str, int]:
        """How many workflows match ``filters`` (any status filter in it ignored), by status."""
        chosen = {k: v for k, v in filters.items() if k != "status"}
        query, params = list_workflows_query(
            chosen, sort_desc=False, limit=None, offset=None, load_input=False, load_output=False
        )
        counted = f"SELECT status, count(*) FROM ({query}) AS listed GROUP BY status"  # noqa: S608
        with self.sysdb.connection() as conn:
            rows = conn.execute(counted, params).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def events(self, workflow_id: str) -> dict[str, Any]:
        """Every event the workflow has set, key to decoded value, by key."""
        check_text(workflow_id, "workflow ID")
        with self.sysdb.connection() as conn:
            rows = conn.execute(EVENTS, {"workflow_uuid": workflow_id}).fetchall()
        return {str(r[0]): deserialize(r[1]) for r in rows}

    def pending_messages(self, workflow_id: str, limit: int = 100) -> list[PendingMessage]:
        """The oldest ``limit`` messages sent to the workflow and not yet received, in arrival
        order."""
        check_text(workflow_id, "workflow ID")
        params = {"workflow_uuid": workflow_id, "limit": limit}
        with self.sysdb.connection() as conn:
            rows = conn.execute(PENDING_MESSAGES, params).fetchall()
        return [PendingMessage(r[0], deserialize(r[1]), int(r[2])) for r in rows]
