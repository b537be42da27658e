"""A test application for steps started as workflows and for ``DBOS.wait_first``, killed and
recovered in real processes.

Run as ``python -m tests.apps.steps_app MODE DB_URL WORKFLOW_ID``:
- ``start-step``: launch, start the step ``tally`` as a workflow of its own under that ID; with
  ``KILL_AT=in-step`` the process SIGKILLs itself inside the step (after its side effect).
- ``start-race``: launch, run the ``race`` workflow under that ID; with ``KILL_AT=after-wait`` the
  process SIGKILLs itself once ``wait_first`` has answered (and is recorded).
- ``recover``: launch (which recovers this executor's pending workflows), print the result.

The ``slow`` child waits forever while ``SLOW_HANGS`` is set (the first run) and returns at once
otherwise (the recovered run). With ``HOLD_FOR_SLOW`` set, ``race`` waits (plain code, not a
durable operation) until ``slow`` has finished before it calls ``wait_first``: then only its
record can make the recovered run answer what the first run did.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import psycopg

from runtime import DBOS, SetWorkflowID


def _kill_if(point: str) -> None:
    if os.environ.get("KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


@DBOS.step()
def tally(label: str) -> str:
    with psycopg.connect(os.environ["APP_DB_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO tally (label, pid) VALUES (%s, %s)", (label, os.getpid()))
    _kill_if("in-step")
    return f"{label}-{os.getpid()}"


@DBOS.workflow()
def fast() -> str:
    return "fast"


@DBOS.workflow()
def slow() -> str:
    while os.environ.get("SLOW_HANGS"):
        time.sleep(0.1)
    return "slow"


def _finished(workflow_id: str) -> bool:
    status = DBOS.get_workflow_status(workflow_id)
    return status is not None and status.status == "SUCCESS"


@DBOS.workflow()
def race() -> str:
    wid = DBOS.workflow_id
    with SetWorkflowID(f"{wid}-slow"):
        slow_handle = DBOS.start_workflow(slow)
    with SetWorkflowID(f"{wid}-fast"):
        fast_handle = DBOS.start_workflow(fast)
    if os.environ.get("HOLD_FOR_SLOW"):
        while not _finished(f"{wid}-slow"):
            time.sleep(0.05)
    first = DBOS.wait_first([slow_handle, fast_handle], polling_interval_sec=0.1)
    _kill_if("after-wait")
    return first.workflow_id


def main() -> None:
    mode, db_url, workflow_id = sys.argv[1:4]
    os.environ["APP_DB_URL"] = db_url
    DBOS(config={"name": "steps", "database_url": db_url, "application_version": "steps-v1"})
    DBOS.launch()
    try:
        if mode == "start-step":
            with SetWorkflowID(workflow_id):
                result = DBOS.start_workflow(tally, "once").get_result()
        elif mode == "start-race":
            with SetWorkflowID(workflow_id):
                result = race()
        else:
            result = DBOS.retrieve_workflow(workflow_id).get_result()
        print(result, flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
