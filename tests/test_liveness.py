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
import threading
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
    ids = _enqueue_slow(fleet, 2, 8, 0.8)  # 6.4 s each: the old process stops half-way
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
    assert sorted(steps) == sorted({(w, s) for w in ids for s in range(1, 9)})  # each once
    new_pid = fleet.procs["new"].pid
    assert any(pid == new_pid for _, _, pid, _, _ in rows)  # the new process finished them
    assert all(start <= stopped_at for _, _, pid, start, _ in rows if pid == old_pid)
    for wid in ids:  # per workflow, the new process began after the old one's last step ended
        old_end = max((end for w, _, p, _, end in rows if w == wid and p == old_pid), default=0)
        new_start = min((s for w, _, p, s, _ in rows if w == wid and p == new_pid), default=None)
        assert new_start is None or new_start >= old_end


def test_a_frozen_guarded_write_stalls_neither_claims_nor_the_heartbeat(
    launch_dbos: Callable[..., None], db_url: str
) -> None:
    @DBOS.workflow()
    def held() -> str:
        return "taken over"

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, executor_id, "
            "application_version, owner_process) VALUES ('held', 'PENDING', %s, "
            """'{"args":[],"kwargs":{}}', 'local', 'test-version', 'dead-process')""",
            (held.__qualname__,),
        )
    # A process froze inside a step's fencing-token transaction: its share lock stays on the row.
    frozen = psycopg.connect(db_url)
    frozen.execute("SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = 'held' FOR SHARE")
    try:
        started = time.monotonic()
        launch_dbos(executor_lease_seconds=1)  # recovery at launch skips the locked row
        assert time.monotonic() - started < 5
        time.sleep(3)  # three leases: the takeover loop keeps meeting the lock
        with psycopg.connect(db_url) as conn:
            alive = conn.execute(
                "SELECT count(*) FROM dbos.executors WHERE stopped_at IS NULL "
                "AND last_heartbeat_at > (extract(epoch FROM clock_timestamp()) * 1000) - 1000"
            ).fetchone()
            owner = conn.execute(
                "SELECT owner_process FROM dbos.workflow_status WHERE workflow_uuid = 'held'"
            ).fetchone()
        assert alive == (1,), "this process's heartbeat stalled behind the lock"
        assert owner == ("dead-process",)
    finally:
        frozen.rollback()
        frozen.close()
    assert DBOS.retrieve_workflow("held").get_result() == "taken over"


def test_workflows_holding_every_pooled_connection_do_not_stop_the_heartbeat(
    launch_dbos: Callable[..., None], db_url: str
) -> None:
    launch_dbos(max_executor_threads=4, executor_lease_seconds=1)  # a pool of 4 connections
    pool = DBOS._rt().sysdb.pool
    # What long transactions (or lock waits) of the app's workflows do to the shared pool.
    held = [pool.getconn() for _ in range(pool.max_size)]
    try:
        time.sleep(2.5)  # more than two leases with no pooled connection free
        with psycopg.connect(db_url) as conn:
            alive = conn.execute(
                "SELECT count(*) FROM dbos.executors WHERE stopped_at IS NULL "
                "AND last_heartbeat_at > (extract(epoch FROM clock_timestamp()) * 1000) - 1000"
            ).fetchone()
    finally:
        for conn in held:
            pool.putconn(conn)
    assert alive == (1,), "this process's heartbeat waited for a pooled connection"


def test_a_script_that_exits_during_a_step_is_dead_at_once_on_its_host(db_url: str) -> None:
    # Its step ran until the process ended (other atexit handlers may run after the runtime's),
    # so it was alive until then; once it is gone, its pid says so at once.
    env = clean_env(DBOS_DATABASE_URL=db_url, DBOS__VMID="local", DBOS_EXECUTOR_LEASE_SECONDS="60")
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run(
        [sys.executable, "-m", "tests.apps.script_app", "exit-in-step"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert [e["state"] for e in _executors(db_url)] == ["DEAD"]


def test_a_database_url_that_is_not_text_is_one_line_of_error(db_url: str) -> None:
    bad = db_url + "\udc80"  # a byte that is not UTF-8, as a shell would pass it
    result = dbos("workflow", "list", "--db-url", bad)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_process_is_gone_only_when_its_pid_says_so() -> None:
    from runtime import liveness
    from runtime.records import PeerProcess

    own = liveness.process_identity()
    assert own is not None  # Linux
    boot, namespace, pid, ticks = own.split("/")
    host = "this-host"

    def peer(identity: str | None, pid: int = 1) -> PeerProcess:
        return PeerProcess("p", "e", host, pid, identity)

    this = int(pid)
    assert not liveness.gone_on_this_host(peer(own, this), host, own)  # this very process
    assert liveness.gone_on_this_host(peer(f"{boot}/{namespace}/{this}/0", this), host, own)
    assert liveness.gone_on_this_host(peer(f"{boot}/{namespace}/4194304/1", 4194304), host, own)
    assert not liveness.gone_on_this_host(peer(f"other-boot/{namespace}/1/1"), host, own)
    assert not liveness.gone_on_this_host(peer(own, this), "another-host", own)

    def unreadable(pid: int) -> str:
        raise PermissionError("hidepid, or another user's process")

    original = liveness._start_ticks
    liveness._start_ticks = unreadable  # type: ignore[assignment]
    try:  # what cannot be read is unknown, never gone
        assert not liveness.gone_on_this_host(peer(f"{boot}/{namespace}/{this}/0", this), host, own)
    finally:
        liveness._start_ticks = original  # type: ignore[assignment]


def test_destroy_during_a_step_keeps_the_process_alive_until_the_step_ends(
    launch_dbos: Callable[..., None], db_url: str
) -> None:
    in_step = threading.Event()

    @DBOS.step()
    def long_step() -> None:
        in_step.set()
        time.sleep(3)

    @DBOS.workflow()
    def wf() -> None:
        long_step()

    launch_dbos(executor_lease_seconds=1)
    DBOS.start_workflow(wf)
    assert in_step.wait(5)
    DBOS.destroy(step_grace_sec=0.1)  # the step runs on: no one else may run it meanwhile

    def state() -> tuple[object, ...] | None:
        with psycopg.connect(db_url) as conn:
            return conn.execute(
                "SELECT stopped_at IS NULL, last_heartbeat_at > "
                "(extract(epoch FROM clock_timestamp()) * 1000) - lease_ms FROM dbos.executors"
            ).fetchone()

    time.sleep(2)  # two leases
    assert state() == (True, True), "the process let its lease run out while its step ran"
    deadline = time.monotonic() + 10
    while state() != (False, False):  # once the step ended: stopped, its work free
        assert time.monotonic() < deadline, state()
        time.sleep(0.1)
