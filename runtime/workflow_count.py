"""Counting the workflows a listing's filters match (a listing's "N more" footer), with the
listing's own WHERE clause (``workflow_list.count_workflows_query``). Apart from
``SystemDatabase`` (at its size limit); it shares that object's pool and only reads."""

from __future__ import annotations

from typing import Any

from runtime.system_db import SystemDatabase
from runtime.workflow_list import count_workflows_query


class WorkflowCount:
    """``SELECT count(*)`` over the workflow table, through a system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def count(self, filters: dict[str, Any], at_most: int | None = None) -> int:
        """How many workflows match ``filters`` (keys of ``workflow_list.LIST_FILTERS``); with
        ``at_most``, at most that many (the count stops reading there)."""
        query, params = count_workflows_query(filters, at_most)
        with self.sysdb.connection() as conn:
            row = conn.execute(query, params).fetchone()
        return int(row[0]) if row is not None else 0
