"""A test application run by several `dbos start` processes (executors) at once.

``slow_steps(steps, seconds)`` runs steps that note each body's start and end in ``fleet_steps``.
``job(ops, seconds)`` runs ``ops`` transactions; each writes a ledger row and takes ``seconds``
before committing, so a kill or a pause mid-operation leaves nothing behind and the ledger counts
every operation exactly once. The ``fleet`` queue lets each process run at most 4 at a time, so
the work spreads over the processes.
"""

from __future__ import annotations

import os
import time

import psycopg

from runtime import DBOS, Queue

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS fleet_ledger "
    "(workflow_id text, op int, executor text, pid int, UNIQUE (workflow_id, op));"
    "CREATE TABLE IF NOT EXISTS fleet_steps "
    "(workflow_id text, step int, pid int, started_ms bigint, ended_ms bigint)"
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


@DBOS.step()
def slow_step(seconds: float) -> None:
    # Noted on a connection of its own (no unique key), so a step body that ran twice, or in two
    # processes at once, shows up.
    started = int(time.time() * 1000)
    time.sleep(seconds)
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO fleet_steps VALUES (%s, %s, %s, %s, %s)",
            (DBOS.workflow_id, DBOS.step_id, os.getpid(), started, int(time.time() * 1000)),
        )


@DBOS.workflow()
def slow_steps(steps: int, seconds: float) -> int:
    for _ in range(steps):
        slow_step(seconds)
    return os.getpid()
