"""Executor liveness tells the truth, and a rolling restart never runs a step in two processes.

A process that exits normally is STOPPED at once; one that was killed is DEAD (at once when a
process on its host sees its pid gone, else when its lease runs out) and its work is taken over;
each process counts the PENDING workflows it owns; old rows are pruned. A new process with the same
executor ID next to a live one (a rolling restart) leaves the live one's running work alone until
it stops. Step bodies note themselves in ``fleet_steps`` over their own connection.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from runtime import DBOS
from tests.cli_helpers import clean_env, dbos
from tests.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent


def _executors(db_url: str) -> list[dict[str, object]]:
    result = dbos("executors", "--json", "--db-url", db_url)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, object]] = json.loads(result.stdout)["executors"]
    return found


def _step_rows(fleet: Fleet) -> list[tuple[str, int, int, int, int]]:
    return [
        (str(w), int(s), int(p), int(a), int(b))
        for w, s, p, a, b in fleet.query(
            "SELECT workflow_id, step, pid, started_ms, ended_ms FROM fleet_steps ORDER BY 4"
        )
    ]


def _enqueue_slow(
    fleet: Fleet, count: int, steps: int, seconds: float, version: str | None = None
) -> list[str]:
    from runtime import DBOSClient
    from runtime.client import EnqueueOptions

    options: EnqueueOptions = {"workflow_name": "slow_steps", "queue_name": "fleet"}
    if version:
        options["app_version"] = version
    with DBOSClient(fleet.db_url) as client:
        return [client.enqueue(options, steps, seconds).workflow_id for _ in range(count)]


def test_a_script_that_exits_without_destroy_is_stopped_not_a_live_duplicate(db_url: str) -> None:
    env = clean_env(DBOS_DATABASE_URL=db_url, DBOS__VMID="local")
    env["PYTHONPATH"] = str(ROOT)
    runs = [
        subprocess.run(
            [sys.executable, "-m", "tests.apps.script_app"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "hello world"
        assert "another live process" not in run.stderr
    found = _executors(db_url)
    assert [e["state"] for e in found] == ["STOPPED", "STOPPED"]
    assert [e["pending_workflows"] for e in found] == [0, 0]
    assert not any(e["duplicate_id"] for e in found)


def test_a_killed_process_is_found_dead_and_its_work_resumes_at_once(fleet: Fleet) -> None:
    fleet.start("web", lease=60)  # a long lease: recovery must not wait for it
    ids = _enqueue_slow(fleet, 2, 3, 0.5)
    fleet.wait_until(lambda: len(_step_rows(fleet)) >= 2, 20, "first steps")
    fleet.signal("web", signal.SIGKILL)
    fleet.procs["web"].wait()
    killed_at = time.monotonic()
    fleet.start("web", lease=60)
    fleet.wait_until(
        lambda: set(fleet.statuses(ids).values()) == {"SUCCESS"}, 30, "the killed work"
    )
    assert time.monotonic() - killed_at < 20  # far less than the 60 s lease
    assert "another live process" not in "".join(fleet.output["web"])
    states = sorted(
        (str(e["state"]), int(str(e["pending_workflows"]))) for e in _executors(fleet.db_url)
    )
    assert states == [("ALIVE", 0), ("DEAD", 0)]
    # Each step ran once, except the ones the kill interrupted (at most one per workflow).
    runs: dict[tuple[str, int], int] = {}
    for wid, step, *_ in _step_rows(fleet):
        runs[(wid, step)] = runs.get((wid, step), 0) + 1
    assert len(runs) == 6 and sum(runs.values()) <= 8


def test_each_process_counts_only_the_workflows_it_owns(fleet: Fleet) -> None:
    fleet.start("a", lease=60, DBOS__APPVERSION="v-a")
    fleet.start("b", lease=60, DBOS__APPVERSION="v-b")
    ids = _enqueue_slow(fleet, 2, 2, 1.0, version="v-a")
    fleet.wait_until(lambda: set(fleet.statuses(ids).values()) == {"PENDING"}, 20, "both running")
    found = {
        str(e["executor_id"]): int(str(e["pending_workflows"])) for e in _executors(fleet.db_url)
    }
    assert found == {"a": 2, "b": 0}


def test_old_rows_are_pruned_unless_they_own_work(
    launch_dbos: Callable[..., None], db_url: str
) -> None:
    two_hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    with psycopg.connect(db_url, autocommit=True) as conn:
        for pid, owner in (("gone-1", False), ("gone-2", False), ("owner", True)):
            conn.execute(
                "INSERT INTO dbos.executors (process_id, executor_id, hostname, pid, "
                "application_version, lease_ms, started_at, last_heartbeat_at, stopped_at) "
                "VALUES (%s, 'old', 'h', 1, 'v', 1000, %s, %s, %s)",
                (pid, two_hours_ago, two_hours_ago, two_hours_ago if not owner else None),
            )
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, "
            "application_version, owner_process) VALUES ('held', 'PENDING', 'x', '{}', 'v', "
            "'owner')"
        )
    launch_dbos()
    with psycopg.connect(db_url) as conn:
        left = {r[0] for r in conn.execute("SELECT process_id FROM dbos.executors").fetchall()}
    assert "gone-1" not in left and "gone-2" not in left
    assert "owner" in left  # still owns a PENDING workflow: the operator should see it
    DBOS.destroy()


def test_rolling_restart_never_runs_a_step_in_two_processes(fleet: Fleet) -> None:
    fleet.start("old", vmid="web", lease=60)
    ids = _enqueue_slow(fleet, 2, 4, 0.8)
    fleet.wait_until(lambda: set(fleet.statuses(ids).values()) == {"PENDING"}, 20, "both running")
    fleet.start("new", vmid="web", lease=60)  # same executor ID, while the old one runs
    time.sleep(2.0)
    old_pid = fleet.procs["old"].pid
    assert {pid for _, _, pid, _, _ in _step_rows(fleet)} <= {old_pid}
    assert set(fleet.statuses(ids).values()) == {"PENDING"}
    fleet.signal("old", signal.SIGTERM)  # it ends its current steps, then stops
    assert fleet.procs["old"].wait(30) == 0
    stopped_at = time.time() * 1000
    fleet.wait_until(lambda: set(fleet.statuses(ids).values()) == {"SUCCESS"}, 30, "taken over")
    rows = _step_rows(fleet)
    steps = [(wid, step) for wid, step, *_ in rows]
    assert sorted(steps) == sorted({(w, s) for w in ids for s in range(1, 5)})  # each once
    new_pid = fleet.procs["new"].pid
    assert any(pid == new_pid for _, _, pid, _, _ in rows)  # the new process finished them
    assert all(start <= stopped_at for _, _, pid, start, _ in rows if pid == old_pid)
    for wid in ids:  # per workflow, the new process began after the old one's last step ended
        old_end = max((end for w, _, p, _, end in rows if w == wid and p == old_pid), default=0)
        new_start = min((s for w, _, p, s, _ in rows if w == wid and p == new_pid), default=None)
        assert new_start is None or new_start >= old_end
