"""Recovery at launch claims a dead process's PENDING workflows in batches (one claim statement per
batch, counted by the server itself with pg_stat_statements) and through the bounded pool: it
holds at most ``FEED_DEPTH`` claimed runs per pool thread, leaving the rest unclaimed (with their
dead owner) until the pool has room, and every workflow still finishes exactly once, also when
the recovering process is itself SIGKILLed part way through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from runtime import DBOS
from runtime.recovery import FEED_DEPTH

gate = threading.Event()
ran: list[int] = []
ran_lock = threading.Lock()

COUNT = 50
THREADS = 4
ROOT = Path(__file__).resolve().parent.parent


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


def _app(mode: str, db_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.apps.recovery_batches_app", mode, db_url],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_for(conn: psycopg.Connection[tuple[object, ...]], sql: str, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        row = conn.execute(sql).fetchone()
        if row is not None and int(str(row[0])) >= at_least:
            return
        assert time.monotonic() < deadline, f"{sql}: {row}"
        time.sleep(0.02)


def test_sigkill_while_recovery_feeds_the_pool(db_url: str) -> None:
    from tests.apps.recovery_batches_app import COUNT, LEDGER_DDL, THREADS

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
        seed = _app("seed", db_url)
        try:
            assert seed.stdout is not None and seed.stdout.readline().startswith("SEEDED")
            _wait_for(
                conn, "SELECT count(*) FROM dbos.workflow_status WHERE status = 'PENDING'", COUNT
            )
        finally:
            seed.kill()
            seed.wait()
        first = _app("recover", db_url)
        try:  # killed while recovery is part way through, feeding two threads
            _wait_for(conn, "SELECT count(*) FROM batch_ledger", 6)
        finally:
            first.kill()
            first.wait()
        recorded = {
            int(json.loads(str(out)))
            for (out,) in conn.execute(
                "SELECT output FROM dbos.operation_outputs WHERE function_name LIKE '%effect'"
            ).fetchall()
        }
        unclaimed = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE recovery_attempts <= 1"
        ).fetchone()
        # The dead process had claimed only a few batches: most were never taken from the seed.
        assert unclaimed is not None and int(str(unclaimed[0])) > COUNT // 2, unclaimed
        second = _app("recover", db_url)
        try:
            out, _ = second.communicate(timeout=60)
        finally:
            second.kill()
        assert "DONE" in out
        results = conn.execute("SELECT status, output FROM dbos.workflow_status").fetchall()
        assert sorted((s, json.loads(str(o))) for s, o in results) == [
            ("SUCCESS", i + 1) for i in range(COUNT)
        ]
        ledger = conn.execute("SELECT workflow, pid FROM batch_ledger").fetchall()
    runs: dict[int, list[int]] = {}
    for workflow, pid in ledger:
        runs.setdefault(int(str(workflow)), []).append(int(str(pid)))
    assert sorted(runs) == list(range(COUNT))
    # A step whose checkpoint the killed process recorded never ran again; only the steps in
    # flight at the kill (at most the claimed runs it held) ran twice.
    assert not [i for i in recorded if second.pid in runs[i]]
    assert len([i for i, pids in runs.items() if len(pids) > 1]) <= FEED_DEPTH * THREADS
