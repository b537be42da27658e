"""A test application for the management commands, served by `dbos start`.

Workflows reach it through the ``mgmt`` queue (enqueued by name with DBOSClient). ``slow(n)`` runs
n steps of 0.2 s, each noting itself in ``mgmt_ledger`` so tests can count executions. A test
holds a ``slow`` workflow in its fourth step for as long as ``mgmt_ledger`` has the row
``(workflow_id, HOLD)``, so that an operator's command lands mid-run however loaded the machine is.
"""

from __future__ import annotations

import time

import psycopg

from runtime import DBOS, Queue

LEDGER_DDL = "CREATE TABLE IF NOT EXISTS mgmt_ledger (workflow_id text, step int)"
HOLD = -1  # the step number of the row that holds a slow workflow in its fourth step

mgmt = Queue("mgmt")


@DBOS.step()
def shout(name: str) -> str:
    return name.upper()


@DBOS.workflow()
def greet(name: str) -> str:
    return f"hello {shout(name)}"


@DBOS.workflow()
def failing(reason: str) -> None:
    raise ValueError(reason)


@DBOS.step()
def tick(i: int) -> int:
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO mgmt_ledger VALUES (%s, %s)", (DBOS.workflow_id, i))
    time.sleep(0.2)
    deadline = time.monotonic() + 30
    while i >= 4 and time.monotonic() < deadline and _held():
        time.sleep(0.05)
    return i


def _held() -> bool:
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM mgmt_ledger WHERE workflow_id = %s AND step = %s",
            (DBOS.workflow_id, HOLD),
        ).fetchone()
    return row is not None


@DBOS.workflow()
def slow(n: int) -> int:
    return sum(tick(i) for i in range(1, n + 1))
