"""Deleting workflows, and finding a workflow's descendants: the SQL behind
``DBOS.delete_workflows`` and ``DBOSClient.delete_workflows`` (and ``delete_children``). Apart
from ``SystemDatabase`` because its one job is removing rows, through the same pool."""

from __future__ import annotations

from psycopg import sql

from runtime import db
from runtime.checkpoint_db import LOCK_IN_KEY_ORDER
from runtime.system_db import SystemDatabase

# Every workflow below the given ones through parent_workflow_id, however deep (the partial index
# on parent_workflow_id serves each level). UNION, not UNION ALL: a cycle (impossible by
# construction, but cheap to be safe from) ends instead of looping.
SELECT_DESCENDANTS = """
WITH RECURSIVE below(workflow_uuid) AS (
    SELECT w.workflow_uuid FROM dbos.workflow_status w
    WHERE w.parent_workflow_id = ANY(%(workflow_ids)s)
    UNION
    SELECT w.workflow_uuid FROM dbos.workflow_status w
    JOIN below b ON w.parent_workflow_id = b.workflow_uuid
)
SELECT workflow_uuid FROM below
"""

# A workflow still live is cancelled first, in the same transaction, so that its runner (in this
# process or another: the cancel trigger notifies every executor) stops at its next step instead
# of running on against rows that are gone; its checkpoint writes, fenced on the row, then record
# nothing. Then the row goes, and with it (ON DELETE CASCADE) its steps, the messages sent to it,
# its events and the idempotency keys of sends to it.
CANCEL_LIVE = """
UPDATE dbos.workflow_status SET status = 'CANCELLED', deduplication_id = NULL
WHERE workflow_uuid = ANY(%(workflow_ids)s) AND status IN ('PENDING', 'ENQUEUED')
"""
# Every table of the system schema but its version record (reset_system_database's truncate).
SYSTEM_TABLES = """
SELECT tablename FROM pg_tables WHERE schemaname = %(schema)s AND tablename <> 'schema_version'
"""
DELETE_WORKFLOWS = """
DELETE FROM dbos.workflow_status WHERE workflow_uuid = ANY(%(workflow_ids)s)
RETURNING workflow_uuid
"""


class WorkflowAdmin:
    """Bulk removal of workflows, through a system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def descendants(self, workflow_ids: list[str]) -> list[str]:
        """The IDs of every child, grandchild, ... of the given workflows (not the workflows
        themselves, unless one is another's descendant), in no particular order."""
        if not workflow_ids:
            return []
        with self.sysdb.connection() as conn:
            rows = conn.execute(SELECT_DESCENDANTS, {"workflow_ids": workflow_ids}).fetchall()
        return [r[0] for r in rows]

    def delete(self, workflow_ids: list[str]) -> list[str]:
        """Delete the workflows and every row that belongs to them, in one transaction; live ones
        are cancelled first. Returns the IDs that existed (and are gone now)."""
        if not workflow_ids:
            return []
        params = {"workflow_ids": workflow_ids}
        with self.sysdb.connection() as conn, conn.transaction():
            conn.execute(LOCK_IN_KEY_ORDER, params)  # before the multi-row UPDATE and DELETE
            conn.execute(CANCEL_LIVE, params)
            rows = conn.execute(DELETE_WORKFLOWS, params).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def truncate_all(url: str, schema: str = "dbos") -> None:
        """Empty every system table of ``schema`` (the schema and its version stay): a fresh
        system database without a migration. Nothing happens when the schema is not there."""
        with db.connect(url) as conn, db.translated(url):
            found = conn.execute(SYSTEM_TABLES, {"schema": schema}).fetchall()
            tables = [r[0] for r in found]
            if tables:
                names = sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
                conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(names))
