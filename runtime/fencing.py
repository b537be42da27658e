"""Fencing tokens: how a step's side effect can refuse a runner that has lost its workflow.

The runtime fences its own writes: every checkpoint carries the owner epoch the runner claimed the
workflow with, and a runner whose epoch has moved on (another process took the workflow over
while this one was paused or cut off) records nothing more. But a step's *side effect* happens
before its checkpoint. A runner frozen between its last ownership check and the first line of a
step can wake after the takeover, run the side effect once more, and only then find its
checkpoint refused. No check inside the runtime can close that window; only the target of the
side effect can, by refusing stale writers (the classic fencing token, as in leases of
distributed lock services).

Inside a workflow, ``DBOS.fencing_token`` gives the running workflow's ID and owner epoch. The
epoch only grows for a workflow, so:

- when the side effect is a write to the Postgres database that holds the system tables, call
  ``token.check(conn)`` inside the same transaction as the write: it share-locks the workflow's
  row (a takeover, which updates that row, skips it until the commit) and raises
  ``DBOSWorkflowFencedError`` if the epoch has moved on, so the write rolls back. Unless the
  connection already limits it, the transaction is also given the runtime's
  ``idle_in_transaction_session_timeout``, so a process that freezes inside it cannot keep its
  workflow from being taken over forever;
- for any other system, send ``token.owner_epoch`` along with the write and have the target
  refuse a value lower than the highest it has seen for that workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from runtime import sysschema
from runtime.errors import DBOSException, DBOSWorkflowFencedError

# A share lock on the workflow's row, held until the caller's transaction ends: a concurrent
# takeover (an UPDATE of that row) waits, and one that committed first has bumped the epoch, which
# Postgres re-checks on the row's latest version under READ COMMITTED.
_CHECK_OWNER = """
SELECT 1 FROM dbos.workflow_status
WHERE workflow_uuid = %s AND owner_epoch = %s AND status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
FOR SHARE
"""


# For this transaction only, and only when the session has no limit of its own.
_LIMIT_IDLE = """
SELECT CASE WHEN current_setting('idle_in_transaction_session_timeout') = '0'
            THEN set_config('idle_in_transaction_session_timeout', %s, true) END
"""


@dataclass(frozen=True)
class FencingToken:
    """The running workflow's ID and the owner epoch this runner claimed it with.
    ``idle_timeout_ms`` (set by the runtime: twice the executor lease, at least 5 s) bounds how
    long a guarded transaction left idle keeps its lock."""

    workflow_id: str
    owner_epoch: int
    idle_timeout_ms: int | None = None
    #: The schema of the system tables (``dbos_system_schema``): ``conn`` is the caller's own
    #: connection, which does not rewrite statements as the runtime's do.
    schema: str = sysschema.DEFAULT_SCHEMA

    def check(self, conn: Any) -> None:
        """Raise ``DBOSWorkflowFencedError`` unless this runner still owns the workflow, and keep
        it owned until ``conn``'s transaction ends. ``conn`` is a psycopg connection (sync) to
        the database that holds the system tables, inside the transaction of the guarded write."""
        _require_transaction(conn)
        if self.idle_timeout_ms:
            conn.execute(_LIMIT_IDLE, (f"{self.idle_timeout_ms}ms",))
        check = sysschema.rewrite(_CHECK_OWNER, self.schema)
        if conn.execute(check, (self.workflow_id, self.owner_epoch)).fetchone() is None:
            raise DBOSWorkflowFencedError(self.workflow_id)

    async def check_async(self, conn: Any) -> None:
        """``check`` for a psycopg ``AsyncConnection``."""
        _require_transaction(conn)
        if self.idle_timeout_ms:
            await conn.execute(_LIMIT_IDLE, (f"{self.idle_timeout_ms}ms",))
        check = sysschema.rewrite(_CHECK_OWNER, self.schema)
        cur = await conn.execute(check, (self.workflow_id, self.owner_epoch))
        if await cur.fetchone() is None:
            raise DBOSWorkflowFencedError(self.workflow_id)


def _require_transaction(conn: Any) -> None:
    # On an autocommit connection outside a transaction block the lock would end with the check
    # itself, and the write after it would be unguarded: refuse rather than look safe.
    if conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        raise DBOSException(
            "FencingToken.check needs the guarded write's transaction: call it inside "
            "`with conn.transaction():` (or on a connection that is not in autocommit mode)"
        )
