"""A workflow's recovery limit is the one its decorator declares, also when a client enqueued it
by name (the client records none; DBOS applies the decorator's `max_recovery_attempts` when it
recovers the workflow), and the row's own limit when it has one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from runtime import DBOS, DBOSClient, Queue

gate = threading.Event()
entered = threading.Event()


@DBOS.step()
def blocks() -> str:
    entered.set()
    gate.wait(30)
    return "done"


@DBOS.workflow(max_recovery_attempts=0)
def fragile() -> str:
    return blocks()


def _status(client: DBOSClient, wid: str) -> str | None:
    found = client.get_workflow_status(wid)
    return None if found is None else found.status


def test_a_client_enqueued_workflow_gets_its_decorators_recovery_limit(
    launch_dbos: Callable[..., None], crash: Callable[[], None], db_url: str
) -> None:
    Queue("limits-q")
    launch_dbos()
    try:
        with DBOSClient(db_url) as client:
            wid = client.enqueue({"workflow_name": fragile.__qualname__, "queue_name": "limits-q"})
            wid_id = wid.workflow_id
            own = client.enqueue(
                {
                    "workflow_name": fragile.__qualname__,
                    "queue_name": "limits-q",
                    "max_recovery_attempts": 5,  # the row's own limit wins over the decorator's
                }
            ).workflow_id
            assert entered.wait(20)
            deadline = time.monotonic() + 20
            while _status(client, own) != "PENDING" or _status(client, wid_id) != "PENDING":
                assert time.monotonic() < deadline, "both to start"
                time.sleep(0.05)
            crash()
            launch_dbos()  # recovery: the first re-run is past a limit of 0
            deadline = time.monotonic() + 20
            while _status(client, wid_id) != "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
                assert time.monotonic() < deadline, _status(client, wid_id)
                time.sleep(0.05)
            assert _status(client, own) == "PENDING"  # within its own limit of 5: recovered
    finally:
        gate.set()
