"""A test application whose operations append to a ledger, so tests can count executions.

Run as ``python -m tests.apps.ledger_app MODE DB_URL WORKFLOW_ID``:
- ``start``: launch, run the ledger workflow under that ID, print its result.
- ``recover``: launch (which recovers this executor's pending workflows), wait for the workflow.

Fault hooks come from the environment, so only the run that should crash does:
- ``KILL_AT=after-K`` SIGKILLs the process in the workflow body after operation K returned;
  ``KILL_AT=mid-tx-4`` SIGKILLs it inside transaction 4 after its INSERT, before COMMIT.
- ``READY_FILE`` (step 3 writes it, then dawdles) and ``WAIT_FILE`` (step 3 waits for it) let a
  test pause a process at a known point.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psycopg

from runtime import DBOS, SetWorkflowID

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    id bigserial PRIMARY KEY, workflow_id text, op int, kind text, pid int
)
"""


def _kill_if(point: str) -> None:
    if os.environ.get("KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _external_effect(op: int) -> None:
    # A step's side effect happens outside any transaction, like an email or a payment call.
    with psycopg.connect(os.environ["LEDGER_DB_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ledger (workflow_id, op, kind, pid) VALUES (%s, %s, 'step', %s)",
            (DBOS.workflow_id, op, os.getpid()),
        )


@DBOS.step()
def step_op(op: int) -> str:
    _external_effect(op)
    if op == 3:
        ready, wait = os.environ.get("READY_FILE"), os.environ.get("WAIT_FILE")
        if ready:
            Path(ready).touch()
            time.sleep(1.5)
        if wait:
            while not Path(wait).exists():
                time.sleep(0.02)
    return f"step-{op}-{os.getpid()}"


@DBOS.transaction()
def tx_op(op: int) -> str:
    DBOS.sql_session.execute(
        "INSERT INTO ledger (workflow_id, op, kind, pid) VALUES (%s, %s, 'tx', %s)",
        (DBOS.workflow_id, op, os.getpid()),
    )
    _kill_if(f"mid-tx-{op}")
    return f"tx-{op}-{os.getpid()}"


@DBOS.workflow()
def ledger_workflow() -> list[str]:
    results = []
    for op, kind in enumerate(["step", "tx", "step", "tx", "step"], start=1):
        results.append(step_op(op) if kind == "step" else tx_op(op))
        _kill_if(f"after-{op}")
    return results


def main() -> None:
    mode, db_url, workflow_id = sys.argv[1:4]
    os.environ["LEDGER_DB_URL"] = db_url
    DBOS(config={"name": "ledger", "database_url": db_url, "application_version": "ledger-v1"})
    DBOS.launch()
    try:
        if mode == "start":
            with SetWorkflowID(workflow_id):
                result = ledger_workflow()
        else:
            result = DBOS.retrieve_workflow(workflow_id).get_result()
        print(" ".join(result), flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
