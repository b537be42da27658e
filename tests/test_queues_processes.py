"""Queues and schedules shared by several `dbos start` processes on one database."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runtime import DBOSClient
from tests.apps.queue_app import LEDGER_DDL
from tests.cli_helpers import DBOS as DBOS_EXE
from tests.cli_helpers import clean_env
from tests.test_queues import max_overlap, run_intervals, run_intervals_by

ROOT = Path(__file__).resolve().parent.parent
APP = "tests/apps/queue_app.py"


class Workers:
    """`dbos start` processes serving the queue app."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, vmid: str, **extra: str) -> subprocess.Popen[str]:
        env = clean_env(DBOS_DATABASE_URL=self.db_url, DBOS__VMID=vmid, **extra)
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen(
            [DBOS_EXE, "start", APP],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs[vmid] = proc
        return proc

    def wait_ready(self) -> None:
        for vmid, proc in self.procs.items():
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            for line in proc.stdout:
                if "serving" in line:
                    break
                assert time.monotonic() < deadline, f"{vmid} did not start"
            else:
                raise AssertionError(f"{vmid} exited: {proc.wait()}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(db_url: str) -> Iterator[Workers]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    pool = Workers(db_url)
    try:
        yield pool
    finally:
        pool.stop_all()


def _enqueue(db_url: str, queue: str, count: int, seconds: float) -> list[str]:
    with DBOSClient(db_url) as client:
        return [
            client.enqueue({"workflow_name": "job", "queue_name": queue}, seconds).workflow_id
            for _ in range(count)
        ]


def _wait_all(db_url: str, ids: list[str], timeout: float = 120) -> None:
    with DBOSClient(db_url) as client:
        deadline = time.monotonic() + timeout
        for wid in ids:
            handle = client.retrieve_workflow(wid)
            while handle.get_status().status != "SUCCESS":
                assert time.monotonic() < deadline, f"{wid}: {handle.get_status().status}"
                time.sleep(0.05)


def _intervals_by_executor(db_url: str, queue: str) -> dict[str, list[tuple[int, int]]]:
    return run_intervals_by(db_url, queue, "executor_id", status=None)


def test_three_processes_share_concurrency_and_worker_limits(workers: Workers) -> None:
    for vmid in ("w1", "w2", "w3"):
        workers.start(vmid)
    workers.wait_ready()
    shared = _enqueue(workers.db_url, "shared", 12, 0.1)
    per_worker = _enqueue(workers.db_url, "per_worker", 12, 0.1)
    _wait_all(workers.db_url, shared + per_worker)

    intervals = run_intervals(workers.db_url, "shared")
    assert len(intervals) == 12
    assert max_overlap(intervals) <= 2
    by_executor = _intervals_by_executor(workers.db_url, "per_worker")
    assert sum(len(v) for v in by_executor.values()) == 12
    assert len(by_executor) >= 2  # the work was spread over processes
    for executor, runs in by_executor.items():
        assert max_overlap(runs) == 1, executor


def test_rate_limit_holds_across_processes(workers: Workers) -> None:
    for vmid in ("w1", "w2"):
        workers.start(vmid)
    workers.wait_ready()
    ids = _enqueue(workers.db_url, "limited", 50, 0.0)
    _wait_all(workers.db_url, ids, timeout=90)
    starts = sorted(s for s, _ in run_intervals(workers.db_url, "limited"))
    assert len(starts) == 50
    for i, first in enumerate(starts):
        assert len([s for s in starts[i:] if s < first + 2000]) <= 5
    assert starts[-1] - starts[0] >= 18000  # 50 starts at 5 per 2 s take at least 18 s


def test_killed_process_holding_dequeued_work_is_recovered_exactly_once(workers: Workers) -> None:
    victim = workers.start("w1")
    workers.wait_ready()
    ids = _enqueue(workers.db_url, "shared", 4, 1.0)
    # Wait until the victim is inside the first step of two workflows, then kill it.
    with psycopg.connect(workers.db_url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM queue_ledger").fetchone() != (2,):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    workers.start("w1")  # the same executor ID: it recovers what the dead process held
    workers.wait_ready()
    _wait_all(workers.db_url, ids)
    with psycopg.connect(workers.db_url) as conn:
        counts = conn.execute(
            "SELECT workflow_id, step, count(*) FROM queue_ledger GROUP BY 1, 2"
        ).fetchall()
        done = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = 'shared' "
            "AND status = 'SUCCESS'"
        ).fetchone()
    assert done == (4,)
    by_step = {(w, s): c for w, s, c in counts}
    assert len(by_step) == 8  # every workflow ran both steps
    # Step 1 of the two killed workflows was interrupted and ran again; nothing else repeated.
    assert sorted(by_step.values()) == [1] * 6 + [2] * 2
    assert max_overlap(run_intervals(workers.db_url, "shared")) <= 2


def test_schedule_runs_once_per_tick_with_two_processes(workers: Workers) -> None:
    for vmid in ("s1", "s2"):
        workers.start(vmid, SCHEDULE="1")
    workers.wait_ready()
    time.sleep(10)
    workers.stop_all()
    with psycopg.connect(workers.db_url) as conn:
        rows = conn.execute(
            "SELECT tick, count(*) FROM queue_ledger WHERE step = 0 GROUP BY tick ORDER BY tick"
        ).fetchall()
    assert 8 <= len(rows) <= 12, rows
    assert all(count == 1 for _, count in rows), rows
    ticks = [t for t, _ in rows]
    assert all((b - a).total_seconds() == 1 for a, b in zip(ticks, ticks[1:], strict=False))
