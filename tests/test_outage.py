"""The runtime survives its database going away: workflows pause on their next checkpoint and go
on when the server is back; background loops (dispatch, listener, heartbeat) recover too. Each test
runs its own Postgres, since it restarts it."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import DBOS, Queue, SetWorkflowID
from runtime.embedded import EmbeddedPostgres


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    base = Path(tempfile.mkdtemp(prefix="dbos-outage-"))
    # Default durability (unlike the shared test server): an immediate shutdown is a crash, and
    # only a server that flushes its commits keeps them through one.
    server = EmbeddedPostgres(base)
    server.start()
    try:
        yield server
    finally:
        DBOS.destroy()
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_workflow_waits_out_a_database_restart(own_server: EmbeddedPostgres, mode: str) -> None:
    executed: list[int] = []
    reached = threading.Event()

    @DBOS.step()
    def tick(i: int) -> int:
        executed.append(i)
        if i == 5:
            reached.set()
        time.sleep(0.05)
        return i

    @DBOS.workflow()
    def counting(n: int) -> int:
        return sum(tick(i) for i in range(1, n + 1))

    queue = Queue(f"after-outage-{mode}")  # a queue name is declared once per process

    @DBOS.workflow()
    def later() -> str:
        return "dispatched"

    DBOS(
        config={
            "name": "outage",
            "database_url": own_server.url(),
            "application_version": "outage",
            "executor_lease_seconds": 30,
        }
    )
    DBOS.launch()
    with SetWorkflowID(f"through-{mode}"):
        handle = DBOS.start_workflow(counting, 40)
    assert reached.wait(10)
    own_server.stop(mode)
    time.sleep(2)  # the workflow's next checkpoint cannot be written meanwhile
    stalled_at = len(executed)
    time.sleep(1)
    assert len(executed) <= stalled_at + 1  # it waits (at most the step in flight finishes)
    own_server.start()

    assert handle.get_result() == sum(range(1, 41))
    # Steps recorded before the outage were not run again; the one in flight may have been.
    assert sorted(set(executed)) == list(range(1, 41))
    assert len(executed) - 40 <= 1
    status = DBOS.get_workflow_status(f"through-{mode}")
    assert status is not None and status.status == "SUCCESS"

    # The background loops came back: queue dispatch (woken through the listener) works.
    assert queue.enqueue(later).get_result() == "dispatched"
