"""A test application run by several `dbos start` processes (executors) at once.

``job(ops, seconds)`` runs ``ops`` transactions; each writes a ledger row and takes ``seconds``
before committing, so a kill or a pause mid-operation leaves nothing behind and the ledger counts
every operation exactly once. The ``fleet`` queue lets each process run at most 4 at a time, so
the work spreads over the processes.
"""

from __future__ import annotations

import os
import time

from runtime import DBOS, Queue

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS fleet_ledger "
    "(workflow_id text, op int, executor text, pid int, UNIQUE (workflow_id, op))"
)

fleet = Queue("fleet", worker_concurrency=4)


@DBOS.transaction()
def operation(op: int, seconds: float) -> int:
    DBOS.sql_session.execute(
        "INSERT INTO fleet_ledger VALUES (%s, %s, %s, %s)",
        (DBOS.workflow_id, op, DBOS.executor_id, os.getpid()),
    )
    time.sleep(seconds)
    return op


@DBOS.workflow()
def job(ops: int, seconds: float) -> int:
    return sum(operation(op, seconds) for op in range(1, ops + 1))
