"""Durability with real processes: SIGKILL at step boundaries and inside a transaction, and two live
processes running one workflow at once (fencing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.apps.ledger_app import LEDGER_DDL

APP = [sys.executable, "-m", "tests.apps.ledger_app"]
ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "KILL_AT"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(mode: str, db_url: str, wid: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*APP, mode, db_url, wid],
        env=_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def _ledger(db_url: str, wid: str) -> list[tuple[int, str, int]]:
    with psycopg.connect(db_url) as conn:
        return [
            (int(op), str(kind), int(pid))
            for op, kind, pid in conn.execute(
                "SELECT op, kind, pid FROM ledger WHERE workflow_id = %s ORDER BY id", (wid,)
            ).fetchall()
        ]


def _recorded(db_url: str, wid: str) -> list[tuple[int, str]]:
    with psycopg.connect(db_url) as conn:
        return [
            (int(fid), json.loads(out))
            for fid, out in conn.execute(
                "SELECT function_id, output FROM dbos.operation_outputs "
                "WHERE workflow_uuid = %s ORDER BY function_id",
                (wid,),
            ).fetchall()
        ]


@pytest.fixture
def ledger_db(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    return db_url


@pytest.mark.parametrize("kill_at", ["after-1", "after-2", "mid-tx-4", "after-5"])
def test_sigkill_then_restart_completes_with_every_operation_once(
    ledger_db: str, kill_at: str
) -> None:
    wid = f"kill-{kill_at}"
    crashed = _run("start", ledger_db, wid, KILL_AT=kill_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    before = _ledger(ledger_db, wid)

    restarted = _run("recover", ledger_db, wid)
    assert restarted.returncode == 0, restarted.stderr
    ledger = _ledger(ledger_db, wid)
    # Every operation ran exactly once over both processes (the killed transaction rolled back).
    assert sorted(op for op, _, _ in ledger) == [1, 2, 3, 4, 5], ledger
    # Operations completed before the kill were not run again by the second process.
    assert ledger[: len(before)] == before
    first_pid = before[0][2] if before else None
    done_before = {"after-1": 1, "after-2": 2, "mid-tx-4": 3, "after-5": 5}[kill_at]
    assert [pid == first_pid for _, _, pid in ledger] == [op <= done_before for op in range(1, 6)]
    assert [fid for fid, _ in _recorded(ledger_db, wid)] == [1, 2, 3, 4, 5]
    assert restarted.stdout.split() == [out for _, out in _recorded(ledger_db, wid)]


def test_paused_runner_is_fenced_when_another_takes_its_workflow(
    ledger_db: str, tmp_path: Path
) -> None:
    """Process A is paused (SIGSTOP) inside step 3; process B starts with the same executor ID,
    takes the workflow over once A's lease has run out (not before: A still counts as a live
    process until then) and stalls in step 3 too. A is resumed (SIGCONT) and finishes its step
    first: it must record nothing and must not go on to step 4. Then B finishes the workflow."""
    wid = "fenced"
    ready, gate = tmp_path / "a-in-step-3", tmp_path / "release-b"
    proc_a = subprocess.Popen(
        [*APP, "start", ledger_db, wid],
        env=_env(READY_FILE=str(ready), DBOS_EXECUTOR_LEASE_SECONDS="2"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and proc_a.poll() is None
            time.sleep(0.01)
        proc_a.send_signal(signal.SIGSTOP)

        proc_b = subprocess.Popen(
            [*APP, "recover", ledger_db, wid],
            env=_env(WAIT_FILE=str(gate)),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while len([e for e in _ledger(ledger_db, wid) if e[0] == 3]) < 2:
            assert time.monotonic() < deadline and proc_b.poll() is None
            time.sleep(0.02)
        # Both processes are inside step 3 now. Let A finish its step first.
        proc_a.send_signal(signal.SIGCONT)
        time.sleep(3)
        assert [fid for fid, _ in _recorded(ledger_db, wid)] == [1, 2], "A recorded a step"
        assert all(op <= 3 for op, _, _ in _ledger(ledger_db, wid)), "A went on to step 4"

        gate.touch()
        out, err = proc_b.communicate(timeout=60)
        assert proc_b.returncode == 0, err
    finally:
        if proc_a.poll() is None:
            proc_a.send_signal(signal.SIGCONT)
            proc_a.kill()
        proc_a.wait(10)

    ledger = _ledger(ledger_db, wid)
    assert [op for op, _, _ in ledger] == [1, 2, 3, 3, 4, 5]
    b_pid = ledger[-1][2]
    assert {pid for op, _, pid in ledger if op >= 4} == {b_pid}
    recorded = _recorded(ledger_db, wid)
    assert recorded[2][1] == f"step-3-{b_pid}"  # step 3's recorded outcome is B's
    assert out.split() == [o for _, o in recorded]
