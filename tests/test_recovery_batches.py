"""Recovery at launch claims a dead process's PENDING workflows in batches (one claim statement per
batch, counted by the server itself with pg_stat_statements) and through the bounded pool: it
holds at most ``FEED_DEPTH`` claimed runs per pool thread, leaving the rest unclaimed (with their
dead owner) until the pool has room, and every workflow still finishes exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from runtime import DBOS
from runtime.recovery import FEED_DEPTH

gate = threading.Event()
ran: list[int] = []
ran_lock = threading.Lock()

COUNT = 50
THREADS = 4


@DBOS.step()
def held_step(i: int) -> int:
    gate.wait(30)
    with ran_lock:
        ran.append(i)
    return i


@DBOS.workflow()
def held(i: int) -> int:
    return held_step(i) * 2


def _claim_statements(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE toplevel "
        "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query LIKE %s",
        ("%claimable AS MATERIALIZED%",),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _recovered(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """Workflows claimed since the crash (a claim bumps ``recovery_attempts`` past 1)."""
    row = conn.execute(
        "SELECT count(*) FROM dbos.workflow_status WHERE name LIKE %s AND recovery_attempts > 1",
        ("%held",),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_recovery_claims_in_batches_through_the_bounded_pool(
    launch_dbos: Callable[..., None], crash: Callable[[], None], db_url: str
) -> None:
    gate.clear()
    ran.clear()
    launch_dbos(max_executor_threads=THREADS)
    ids = [DBOS.start_workflow(held, i).workflow_id for i in range(COUNT)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        pending = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE status = 'PENDING' "
            "AND workflow_uuid = ANY(%s)",
            (ids,),
        ).fetchone()
        assert pending == (COUNT,)
        crash()  # the process dies with every workflow PENDING (four inside their step)
        conn.execute("SELECT pg_stat_statements_reset()")
        launch_dbos(max_executor_threads=THREADS)
        try:
            # The new runs wait at the gate: the pool is full, so recovery claims no more than
            # FEED_DEPTH runs per thread however long it waits.
            time.sleep(0.5)
            held_now = _recovered(conn)
            assert 0 < held_now <= FEED_DEPTH * THREADS, held_now
        finally:
            gate.set()
        deadline = time.monotonic() + 30
        while True:
            done = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' "
                "AND workflow_uuid = ANY(%s)",
                (ids,),
            ).fetchone()
            if done == (COUNT,):
                break
            assert time.monotonic() < deadline, f"{done} of {COUNT} finished"
            time.sleep(0.05)
        claims = _claim_statements(conn)
    # A few claim statements for fifty workflows (the launch's, one per refill, and perhaps the
    # takeover loop's), never one per workflow.
    assert 1 <= claims <= 10, claims
    assert [DBOS.retrieve_workflow(w).get_result() for w in ids] == [2 * i for i in range(COUNT)]
    # Each workflow's step ran once in the new process (the old process's four blocked runs may
    # also reach it: they were fenced, and their results are not the ones recorded).
    assert sorted(set(ran)) == list(range(COUNT))
