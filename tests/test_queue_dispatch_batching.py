"""Queue dispatch in batches and by notification (issue 22): one claim takes every free slot in one
statement (the concurrency count inside it), a wake-up looks only at the queue it names, a
saturated queue costs no claim per enqueue, and a workflow finishing in another process wakes this
process's dispatcher at once although its queue polls rarely."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import DBOS, DBOSClient, Queue
from runtime import dispatcher as dispatcher_mod
from runtime.records import DequeueResult
from runtime.system_db import SystemDatabase

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every claim the dispatcher makes: (queue name, workflows claimed)."""
    made: list[tuple[str, int]] = []
    real = SystemDatabase.dequeue

    def logged(self: SystemDatabase, queue_name: str, **kw: Any) -> DequeueResult:
        result = real(self, queue_name, **kw)
        made.append((queue_name, len(result.workflows)))
        return result

    monkeypatch.setattr(SystemDatabase, "dequeue", logged)
    yield made


def _statement_calls(conn: psycopg.Connection[Any], prefix: str) -> int:
    rows = conn.execute(
        "SELECT query, calls FROM pg_stat_statements WHERE toplevel AND dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall()
    return sum(int(c) for q, c in rows if " ".join(str(q).split()).startswith(prefix))


def _wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_free_slots_are_claimed_in_one_statement_that_counts_them(
    launch_dbos: Launch, db_url: str, claims: list[tuple[str, int]]
) -> None:
    Queue("qdb_batch", concurrency=5)
    gate = threading.Event()
    started: list[int] = []

    @DBOS.workflow()
    def job(i: int) -> int:
        started.append(i)
        gate.wait(10)
        return i

    launch_dbos()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # Five become ready in one statement (the delayed ones promoted together), with five
        # slots free: one claim must take all five.
        with DBOSClient(db_url) as client:
            options = {"workflow_name": job.__qualname__, "queue_name": "qdb_batch"}
            ids = [
                client.enqueue({**options, "delay_seconds": 0.3}, i).workflow_id for i in range(5)
            ]
        conn.execute("SELECT pg_stat_statements_reset()")
        try:
            assert _wait_for(lambda: len(started) == 5, 10)
            counts = [n for name, n in claims if name == "qdb_batch" and n]
            assert counts == [5], counts
            # The free slots are counted inside the claim: no separate count statement.
            assert _statement_calls(conn, "SELECT (SELECT count(*) FROM dbos.workflow_status") == 0
            assert _statement_calls(conn, "WITH picked AS MATERIALIZED") >= 1
        finally:
            gate.set()
    assert sorted(DBOS.retrieve_workflow(w).get_result() for w in ids) == [0, 1, 2, 3, 4]


def test_a_wake_up_claims_only_from_the_queue_it_names(
    launch_dbos: Launch, claims: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_mod, "POLL_INTERVAL_S", 60.0)  # no fallback polls meanwhile
    busy = Queue("qdb_busy")
    Queue("qdb_quiet")

    @DBOS.workflow()
    def job(i: int) -> int:
        return i

    launch_dbos()
    assert _wait_for(lambda: {"qdb_busy", "qdb_quiet"} <= {name for name, _ in claims}, 5)
    time.sleep(0.2)  # the launch pass over every queue is over
    claims.clear()
    assert [busy.enqueue(job, i).get_result() for i in range(5)] == list(range(5))
    looked_at = {name for name, _ in claims}
    assert looked_at == {"qdb_busy"}, claims  # not the idle queue, nor the internal one


def test_a_saturated_queue_costs_no_claim_per_enqueue(
    launch_dbos: Launch, claims: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_mod, "POLL_INTERVAL_S", 60.0)
    full = Queue("qdb_full", concurrency=2)
    gate = threading.Event()

    @DBOS.workflow()
    def job(i: int) -> int:
        gate.wait(10)
        return i

    launch_dbos()
    running = [full.enqueue(job, i) for i in range(2)]
    assert _wait_for(lambda: all(h.get_status().status == "PENDING" for h in running), 5)
    time.sleep(0.2)
    claims.clear()
    waiting = [full.enqueue(job, i) for i in range(2, 12)]
    time.sleep(0.3)
    try:
        # Both slots are this process's own runs: ten enqueues wake the dispatcher, none claims.
        assert [c for c in claims if c[0] == "qdb_full"] == []
    finally:
        gate.set()
    assert [h.get_result() for h in running + waiting] == list(range(12))


FINISH_ELSEWHERE = """
import sys
from runtime import serialization
from runtime.system_db import SystemDatabase
db = SystemDatabase(sys.argv[1], pool_size=1)
assert db.complete_workflow(sys.argv[2], int(sys.argv[3]), "SUCCESS",
                            output=serialization.serialize(None))
db.close()
"""


def test_a_finish_in_another_process_wakes_the_dispatcher_by_notify(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the queue nor the dispatcher polls within the test: only a NOTIFY can start `job`.
    monkeypatch.setattr(dispatcher_mod, "POLL_INTERVAL_S", 60.0)
    gated = Queue("qdb_gated", concurrency=1, polling_interval_sec=60.0)

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    launch_dbos()
    # Another executor holds the queue's one slot (a workflow this process does not register).
    with DBOSClient(db_url) as client:
        client.enqueue({"workflow_name": "elsewhere_only", "queue_name": "qdb_gated"})
    other = SystemDatabase(db_url, pool_size=1)
    try:
        [held] = other.dequeue(
            "qdb_gated",
            executor_id="other",
            process_id="other-process",
            application_version="v-other",
            names=["elsewhere_only"],
            max_claim=1,
            concurrency=1,
            limiter=None,
        ).workflows
    finally:
        other.close()
    handle = gated.enqueue(job)
    time.sleep(0.5)
    assert handle.get_status().status == "ENQUEUED"  # the slot is taken elsewhere
    finished = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-c",
            FINISH_ELSEWHERE,
            db_url,
            held.claimed.workflow_id,
            str(held.claimed.owner_epoch),
        ],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        check=True,
        timeout=30,
    )
    assert handle.get_result() == "ran"
    assert time.monotonic() - finished < 10  # not the 60 s poll


def test_a_queued_handle_returns_when_its_workflow_ends_here_not_at_a_poll(
    launch_dbos: Launch,
) -> None:
    slot = Queue("qdb_one_slot", concurrency=1)
    gate = threading.Event()

    @DBOS.workflow()
    def blocker() -> str:
        gate.wait(10)
        return "blocker"

    @DBOS.workflow()
    def quick() -> str:
        return "quick"

    launch_dbos()
    late: list[float] = []
    for _ in range(2):
        gate.clear()
        first = slot.enqueue(blocker)
        handle = slot.enqueue(quick)  # ENQUEUED behind the blocker
        done = threading.Event()
        threading.Thread(target=lambda h=handle, d=done: (h.get_result(), d.set())).start()
        time.sleep(1.2)  # the waiter's reads have backed off: the next is ~0.4 s away
        released = time.monotonic()
        gate.set()
        assert done.wait(5)
        late.append(time.monotonic() - released)
        assert first.get_result() == "blocker"
    # The handle's wait ends when the run starts and ends here, not at its next read.
    assert max(late) < 0.2, late


def test_a_thread_freed_by_any_run_wakes_a_queue_that_found_none(launch_dbos: Launch) -> None:
    """Two direct workflows fill both threads; a queue that polls every 30 s finds no thread for
    its enqueued workflow. When the direct ones end, it starts at once, not at its next poll."""
    slow = Queue("qdb_slow_poll", polling_interval_sec=30.0)
    gate = threading.Event()

    @DBOS.workflow()
    def hold() -> str:
        gate.wait(10)
        return "held"

    @DBOS.workflow()
    def queued() -> str:
        return "queued"

    launch_dbos(max_executor_threads=2)
    holders = [DBOS.start_workflow(hold) for _ in range(2)]
    handle = slow.enqueue(queued)
    time.sleep(0.5)  # the dispatcher looked, and found no thread
    assert handle.get_status().status == "ENQUEUED"
    released = time.monotonic()
    gate.set()
    assert [h.get_result() for h in holders] == ["held", "held"]
    assert handle.get_result() == "queued"
    assert time.monotonic() - released < 5  # its poll would have come 30 s after the last
