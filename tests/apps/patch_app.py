"""A test application with three versions of one workflow's code, to test patching across a real
process kill. ``PATCH_CODE`` picks the code: ``v1`` (no patch), ``v2`` (``DBOS.patch("x")``
chooses a new first step), ``v3`` (the old branch removed, ``DBOS.deprecate_patch("x")``).

Run as ``python -m tests.apps.patch_app DB_URL ARG...``: an ``ARG`` ``+ID`` starts a workflow
under ID; a plain ``ID`` is one this launch recovers. Prints the results as JSON by ID. With
``READY_DIR``, the gate step touches ``READY_DIR/ID`` and blocks (the test SIGKILLs then).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from runtime import DBOS, SetWorkflowID

CODE = os.environ.get("PATCH_CODE", "v1")


@DBOS.step(name="one")
def one() -> str:
    return "one"


@DBOS.step(name="two")
def two() -> str:
    return "two"


@DBOS.step(name="three")
def three() -> str:
    return "three"


@DBOS.step(name="gate")
def gate() -> None:
    ready = os.environ.get("READY_DIR")
    if ready:
        Path(ready, str(DBOS.workflow_id)).touch()
        time.sleep(300)


if CODE == "v1":

    @DBOS.workflow(name="patched_workflow")
    def patched_workflow() -> list[str]:
        first = one()
        gate()
        return [first, two()]

elif CODE == "v2":

    @DBOS.workflow(name="patched_workflow")
    def patched_workflow() -> list[str]:
        first = three() if DBOS.patch("x") else one()
        gate()
        return [first, two()]

else:

    @DBOS.workflow(name="patched_workflow")
    def patched_workflow() -> list[str]:
        DBOS.deprecate_patch("x")
        first = three()
        gate()
        return [first, two()]


def main() -> None:
    db_url, args = sys.argv[1], sys.argv[2:]
    DBOS(
        config={
            "name": "patch-app",
            "database_url": db_url,
            "executor_id": "local",
            "enable_patching": True,
        }
    )
    DBOS.launch()
    ids = []
    for arg in args:
        if arg.startswith("+"):
            with SetWorkflowID(arg[1:]):
                DBOS.start_workflow(patched_workflow)
        ids.append(arg.lstrip("+"))
    results = {wid: DBOS.retrieve_workflow(wid).get_result() for wid in ids}
    print(json.dumps(results), flush=True)
    DBOS.destroy()


if __name__ == "__main__":
    main()
