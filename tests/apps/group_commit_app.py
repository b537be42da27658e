"""Many workflows checkpointing at once, their steps batched (group commit), for a kill test.

Run as ``python -m tests.apps.group_commit_app MODE DB_URL COUNT``:
- ``start``: launch with one checkpoint write in flight at a time (so concurrent ones batch),
  start COUNT workflows ``gc-0``... and wait (the test SIGKILLs the process meanwhile);
- ``recover``: launch (recovering this executor's pending workflows) and wait for all of them.

Each step appends a row to ``gc_ledger`` before it returns, with how many multi-row batches had
been written by then: a step ran again iff its operation has two rows.
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

from runtime import DBOS, SetWorkflowID

LEDGER_DDL = "CREATE TABLE IF NOT EXISTS gc_ledger (workflow_id text, op int, pid int, batches int)"
STEPS = 4


def _batches() -> int:
    sizes = DBOS._engine().ops.checkpoints.batch_sizes
    return sum(n for size, n in sizes.items() if size > 1)


@DBOS.step()
def op(i: int) -> int:
    with psycopg.connect(os.environ["GC_DB_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO gc_ledger VALUES (%s, %s, %s, %s)",
            (DBOS.workflow_id, i, os.getpid(), _batches()),
        )
    time.sleep(0.002)
    return i


@DBOS.workflow()
def batched(n: int) -> int:
    return sum(op(i) for i in range(STEPS)) + n


def main() -> None:
    mode, db_url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ["GC_DB_URL"] = db_url
    DBOS(config={"name": "gc", "database_url": db_url, "application_version": "gc-v1"})
    DBOS.launch()
    try:
        if mode == "start":
            DBOS._engine().ops.checkpoints.max_in_flight = 1
            for n in range(count):
                with SetWorkflowID(f"gc-{n}"):
                    DBOS.start_workflow(batched, n)
            time.sleep(120)  # killed before this ends
        else:
            results = [DBOS.retrieve_workflow(f"gc-{n}").get_result() for n in range(count)]
            print(" ".join(str(r) for r in results), flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
