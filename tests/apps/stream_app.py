"""A test application whose workflow writes a stream with a step between each value.

Run as ``python -m tests.apps.stream_app MODE DB_URL WORKFLOW_ID``:
- ``start``: launch, run the streaming workflow under that ID, print its result.
- ``recover``: launch (which recovers this executor's pending workflows), wait for the workflow.

``KILL_AT=after-write-K`` SIGKILLs the process in the workflow body right after value K was
written (its write recorded, the next step not started).
"""

from __future__ import annotations

import os
import signal
import sys

from runtime import DBOS, SetWorkflowID

VALUES = 6


@DBOS.step()
def between(i: int) -> int:
    return i * 10


@DBOS.workflow()
def streaming_workflow() -> int:
    total = 0
    for i in range(VALUES):
        DBOS.write_stream("out", {"i": i})
        if os.environ.get("KILL_AT") == f"after-write-{i}":
            os.kill(os.getpid(), signal.SIGKILL)
        total += between(i)
    DBOS.close_stream("out")
    return total


def main() -> None:
    mode, db_url, workflow_id = sys.argv[1:4]
    DBOS(config={"name": "streams", "database_url": db_url, "application_version": "streams-v1"})
    DBOS.launch()
    try:
        if mode == "start":
            with SetWorkflowID(workflow_id):
                result = streaming_workflow()
        else:
            result = DBOS.retrieve_workflow(workflow_id).get_result()
        print(result, flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
