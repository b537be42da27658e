"""An app whose ``main()`` waits on a workflow's result, served by `dbos start`: a test cancels that
workflow and checks that the server keeps serving (tests/test_operator_records.py)."""

from __future__ import annotations

import time

from runtime import DBOS


@DBOS.step()
def nap() -> None:
    time.sleep(0.1)


@DBOS.workflow()
def long_job() -> str:
    for _ in range(600):
        nap()
    return "done"


@DBOS.workflow()
def quick_job(x: int) -> int:
    return x * 2


def main() -> None:
    handle = DBOS.start_workflow(long_job)
    print(f"MAIN WAITING ON {handle.workflow_id}", flush=True)
    print(f"MAIN GOT {handle.get_result()}", flush=True)
