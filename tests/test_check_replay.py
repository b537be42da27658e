"""`dbos workflow check-replay` and ``runtime.replay_check.check_replay``: before a deploy, replay
the recorded workflows against the new code, running no step and writing nothing.

The acceptance test runs v1 of an app (tests/apps/replay_v1.py) in a process, kills it with its
workflows mid-run (in a recv, a durable sleep, waiting on a child), then checks them with the
real `dbos` executable against a compatible v2 (all ok, exit 0) and an incompatible one (each
incompatibility reported at its step, exit 1), and checks that the database did not change.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from runtime import DBOS, DBOSClient, SetWorkflowID
from runtime.errors import DBOSException
from runtime.replay_check import check_replay
from tests.cli_helpers import clean_env, dbos

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "shop"

# Where v1's workflows block, by the step rows their blocking leaves (a recv's or a sleep's
# deadline is recorded while it waits): the process is killed once all are there.
BLOCKED = {
    f"{PREFIX}-checkout": 4,
    f"{PREFIX}-checkout_async": 3,
    f"{PREFIX}-sleeper": 2,
    f"{PREFIX}-till": 3,
    f"{PREFIX}-parent_direct-2": 2,
    f"{PREFIX}-parent_handle-2": 2,
}


def _snapshot(db_url: str) -> dict[str, str]:
    """Every row of every system table (its text, hashed per table): any write changes it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'dbos' ORDER BY 1"
            )
        ]
        return {
            t: str(
                conn.execute(
                    sql.SQL(
                        "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' "
                        "ORDER BY x::text)), '') FROM dbos.{} x"
                    ).format(sql.Identifier(t))
                ).fetchone()
            )
            for t in tables
        }


def _run_v1(db_url: str) -> None:
    """Start v1's workflows in a process, wait until each is blocked, and SIGKILL it."""
    env = clean_env(DBOS_DATABASE_URL=db_url)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "tests/apps/replay_v1.py", PREFIX],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "started" in line, line + proc.stdout.read()
        deadline = time.monotonic() + 30
        with psycopg.connect(db_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                rows = conn.execute(
                    "SELECT workflow_uuid, max(function_id) FROM dbos.operation_outputs "
                    "GROUP BY workflow_uuid"
                ).fetchall()
                if all(dict(rows).get(w, 0) >= n for w, n in BLOCKED.items()):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"v1 did not block as expected: {rows}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _check(db_url: str, app: str, *extra: str) -> tuple[int, dict[str, Any]]:
    env = clean_env()
    env["PYTHONPATH"] = str(ROOT)
    run = dbos(
        "workflow", "check-replay", "--app", app, "--db-url", db_url, "--json", *extra,
        cwd=ROOT, env=env,
    )  # fmt: skip
    assert run.stderr == "", run.stderr
    return run.returncode, json.loads(run.stdout)


def _by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["workflow_id"].removeprefix(f"{PREFIX}-"): w for w in report["workflows"]}


def test_v2_compatible_passes_and_incompatible_fails_after_v1_was_killed(db_url: str) -> None:
    _run_v1(db_url)
    before = _snapshot(db_url)

    code, report = _check(db_url, "tests/apps/replay_v2_ok.py")
    found = _by_id(report)
    assert code == 0 and report["ok"], report
    # The pending ones (the finished one is not selected by default), all replaying cleanly:
    # mid-recv, mid-sleep, mid-child (called directly, and through a handle), async, children.
    assert sorted(found) == sorted(
        [
            "checkout",
            "checkout_async",
            "sleeper",
            "parent_direct",
            "parent_handle",
            "parent_direct-2",
            "parent_handle-2",
            "till",
        ]
    )
    assert {w["verdict"] for w in found.values()} == {"ok"}
    assert (found["checkout"]["step"], found["checkout"]["new_name"]) == (3, "DBOS.recv")
    assert found["checkout"]["replayed_steps"] == 2
    assert (found["checkout_async"]["step"], found["checkout_async"]["new_name"]) == (
        2,
        "DBOS.recv",
    )
    assert (found["sleeper"]["step"], found["sleeper"]["new_name"]) == (3, "charge")
    assert "waits for workflow 'shop-parent_direct-2'" in found["parent_direct"]["reason"]
    assert (found["parent_handle"]["step"], found["parent_handle"]["new_name"]) == (
        3,
        "DBOS.getResult",
    )

    code, report = _check(db_url, "tests/apps/replay_v2_bad.py")
    found = _by_id(report)
    assert code == 1 and not report["ok"], report
    inserted = found["checkout"]  # a step inserted before the recorded ones
    assert (inserted["verdict"], inserted["step"]) == ("diverges", 1)
    assert (inserted["recorded_name"], inserted["new_name"]) == ("reserve", "audit")
    assert inserted["where"].startswith("replay_v2_bad.py:") and "in checkout" in inserted["where"]
    renamed = found["checkout_async"]  # a step renamed (async)
    assert (renamed["verdict"], renamed["step"]) == ("diverges", 1)
    assert (renamed["recorded_name"], renamed["new_name"]) == ("reserve_async", "reserve_stock")
    assert found["sleeper"]["verdict"] == "missing function"  # the workflow removed
    assert "'sleeper'" in found["sleeper"]["reason"]
    assert found["parent_handle"]["verdict"] == "bad signature"  # a parameter without default
    assert "priority" in found["parent_handle"]["reason"]
    raised = found["parent_direct"]  # new code raising where v1 went on
    assert (raised["verdict"], raised["step"]) == ("error", 1)
    assert "ValueError: bad order id 'o3'" in raised["reason"]
    assert raised["where"].startswith("replay_v2_bad.py:")
    assert found["parent_direct-2"]["verdict"] == "ok"  # unchanged code still replays
    assert found["till"]["verdict"] == "missing function"  # its configured instance is gone
    assert "configured class instance" in found["till"]["reason"]
    assert report["counts"] == {
        "diverges": 2,
        "missing function": 2,
        "bad signature": 1,
        "error": 1,
        "ok": 2,
    }

    # Chosen by ID, any status: the finished workflow replays to its end.
    code, report = _check(
        db_url, "tests/apps/replay_v2_ok.py", "--workflow-id", f"{PREFIX}-finished"
    )
    assert code == 0 and [w["verdict"] for w in report["workflows"]] == ["ok"]
    assert "to the workflow's end" in report["workflows"][0]["reason"]

    # The human table: verdicts, the place, the summary line; exit 1.
    env = clean_env()
    env["PYTHONPATH"] = str(ROOT)
    run = dbos(
        "workflow", "check-replay", "-a", "tests/apps/replay_v2_bad.py", "-D", db_url,
        "--status", "pending", "--name", "checkout",
        cwd=ROOT, env=env,
    )  # fmt: skip
    assert run.returncode == 1
    assert "diverges" in run.stdout and "audit" in run.stdout and "shop-checkout" in run.stdout
    assert "1 workflows checked: 1 diverges" in run.stderr

    # Nothing was written by any of the checks.
    assert _snapshot(db_url) == before


# -- in-process: the Python API, next to a launched runtime ---------------------------------------

VERSION = {"code": 1}
CALLS = {"n": 0}
GATE = threading.Event()


@DBOS.step()
def rc_first() -> str:
    return "first"


@DBOS.step()
def rc_second() -> str:
    return "second"


@DBOS.workflow()
def rc_versioned(wait: bool) -> str:
    rc_first()
    if VERSION["code"] == 1:
        rc_second()
    if VERSION["code"] == 3:
        GATE.wait(10)  # blocks outside any durable operation
    if wait:
        DBOS.recv("go", timeout_seconds=60)
    return "done"


@DBOS.workflow()
def rc_flaky() -> str:
    CALLS["n"] += 1
    stamp = time.time()  # read outside a step: a recovery would read another value
    if CALLS["n"] % 2:
        rc_first()
    else:
        rc_second()
    DBOS.recv("go", timeout_seconds=60)
    return str(stamp > 0)


@DBOS.step()
def rc_fail() -> None:
    raise KeyError("gone")


@DBOS.workflow()
def rc_failing() -> None:
    rc_first()
    rc_fail()


def _wait_steps(workflow_id: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(DBOS.list_workflow_steps(workflow_id)) < n:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_python_api_verdicts_beside_a_launched_runtime(db_url: str, launch_dbos: Any) -> None:
    launch_dbos()
    VERSION["code"] = 1
    with SetWorkflowID("rc-done"):
        assert rc_versioned(False) == "done"
    with SetWorkflowID("rc-waiting"):
        waiting = DBOS.start_workflow(rc_versioned, True)
    with SetWorkflowID("rc-flaky"):
        flaky = DBOS.start_workflow(rc_flaky)
    _wait_steps("rc-waiting", 3)  # rc_first, rc_second, the recv's deadline
    _wait_steps("rc-flaky", 2)

    with SetWorkflowID("rc-failed"), pytest.raises(KeyError):
        rc_failing()

    # The replay raising the error the record ended with (replayed from step 2) is a clean one.
    report = check_replay(db_url, workflow_ids=["rc-done", "rc-waiting", "rc-failed"])
    assert report.ok and [r.verdict for r in report.results] == ["ok", "ok", "ok"], report

    VERSION["code"] = 2  # rc_second removed from the code
    by_id = {r.workflow_id: r for r in check_replay(db_url, name="rc_versioned").results}
    assert list(by_id) == ["rc-waiting"]  # pending only, by default
    removed = by_id["rc-waiting"]
    assert (removed.verdict, removed.step) == ("diverges", 2)
    assert (removed.recorded_name, removed.new_name) == ("rc_second", "DBOS.recv")
    ended = check_replay(db_url, workflow_ids=["rc-done"]).results[0]
    assert (ended.verdict, ended.step, ended.recorded_name) == ("diverges", 2, "rc_second")
    assert "ends before recorded step 2" in ended.reason

    # A path that differs between two replays of the same history; the clock read is named.
    flaky_result = check_replay(db_url, workflow_ids=["rc-flaky"]).results[0]
    assert flaky_result.verdict == "nondeterministic", flaky_result
    assert any(
        w.startswith("time.time() at test_check_replay.py:") and "in rc_flaky" in w
        for w in flaky_result.warnings
    ), flaky_result.warnings

    # Workflow code that blocks outside durable operations: an error after the timeout.
    VERSION["code"] = 3
    stuck = check_replay(db_url, workflow_ids=["rc-waiting"], timeout_seconds=0.3).results[0]
    GATE.set()
    assert stuck.verdict == "error" and "did not finish within 0.3s" in stuck.reason

    # The launched runtime's own runs were not disturbed by the checks beside them.
    VERSION["code"] = 1
    DBOS.send("rc-waiting", "x", "go")
    assert waiting.get_result() == "done"
    DBOS.send("rc-flaky", "x", "go")
    assert flaky.get_result() == "True"

    with pytest.raises(DBOSException, match="replays >= 1"):
        check_replay(db_url, replays=0)


# -- every recorded operation must be reached: gaps, concurrency, swallowed stops -----------------

SHAPE = {"code": 1}
SLOW = threading.Event()


@DBOS.step()
async def rc_slow() -> str:
    await asyncio.to_thread(SLOW.wait, 10)
    return "slow"


@DBOS.step()
async def rc_fast() -> str:
    return "fast"


@DBOS.step()
async def rc_fast_renamed() -> str:
    return "fast"


@DBOS.workflow()
async def rc_gather() -> list[str]:
    # Two steps at once: the run records the fast one (step 2) while the slow one (1) runs.
    fast = rc_fast() if SHAPE["code"] == 1 else rc_fast_renamed()
    return list(await asyncio.gather(rc_slow(), fast))


@DBOS.workflow()
def rc_gap() -> str:
    rc_first()
    if SHAPE["code"] == 2:
        rc_second()  # inserted before the recv: the recv's recorded timeout is never reached
    DBOS.recv("go", timeout_seconds=60)  # waiting: only its timeout (step 3) is recorded
    return "done"


@DBOS.workflow()
def rc_swallow() -> str:
    for _ in range(1000):  # a retry loop that swallows everything, the check's stop included
        try:
            return rc_first() if SHAPE["code"] == 1 else rc_second()
        except:  # noqa: E722
            time.sleep(0.001)
    return "gave up"


SLOW2 = threading.Event()


@DBOS.step()
async def rc_slow2() -> str:
    await asyncio.to_thread(SLOW2.wait, 10)
    return "slow"


@DBOS.workflow()
def rc_waited() -> str:
    got = DBOS.recv("first", timeout_seconds=60)  # returned after waiting: its timeout row is 2
    try:
        DBOS.recv("second", timeout_seconds=60)  # waiting: only its timeout row (4) is recorded
    finally:
        rc_second()  # a cleanup the run has not reached yet
    return str(got)


async def _retrying_slow() -> str:
    for _ in range(1000):  # a branch that swallows everything, the check's stop included
        try:
            return await rc_slow2()
        except:  # noqa: E722
            await asyncio.sleep(0)
    return "gave up"


@DBOS.workflow()
async def rc_gather_waits() -> list[Any]:
    # v1: a branch mid-step (1), a recv waiting (2, its timeout row 3), a step done (4).
    first = _retrying_slow() if SHAPE["code"] == 1 else DBOS.recv_async("x", timeout_seconds=60)
    return list(await asyncio.gather(first, DBOS.recv_async("go", timeout_seconds=60), rc_fast()))


def test_waits_and_their_timeout_rows_replay_as_recovery_numbers_them(
    db_url: str, launch_dbos: Any
) -> None:
    """A recv or get_event takes two numbers (its own, and its timeout row's, recorded when it
    waits): a replayed wait owns its timeout row, a wait still in progress takes both numbers,
    and a task that swallows its stop (a retry loop, a finally) is not followed past it."""
    launch_dbos()
    SHAPE["code"] = 1
    with SetWorkflowID("rc-waited"):
        waited = DBOS.start_workflow(rc_waited)
    with SetWorkflowID("rc-gather-waits"):
        gathered = DBOS.start_workflow(rc_gather_waits)
    _wait_steps("rc-waited", 1)  # the first recv's timeout row: it waits
    DBOS.send("rc-waited", "hello", "first")
    _wait_steps("rc-waited", 3)  # recv, its timeout row, the second recv's timeout row
    _wait_steps("rc-gather-waits", 2)  # the recv's timeout row (3) and rc_fast (4)
    ids = ["rc-waited", "rc-gather-waits"]
    try:
        report = check_replay(db_url, workflow_ids=ids, timeout_seconds=5)
        assert [r.verdict for r in report.results] == ["ok", "ok"], report
        # The branch that was mid-step now starts with a recv: it takes 1 and 2, so the waiting
        # recv is at 3, where a timeout row is recorded: a recovery fails there, so does the check.
        SHAPE["code"] = 2
        [moved] = check_replay(db_url, workflow_ids=["rc-gather-waits"]).results
        assert (moved.verdict, moved.step) == ("diverges", 3), moved
    finally:
        SHAPE["code"] = 1
        SLOW2.set()
        DBOS.send("rc-waited", "x", "second")
        DBOS.send("rc-gather-waits", "y", "go")
    assert waited.get_result() == "hello"
    assert gathered.get_result() == ["slow", "y", "fast"]


def test_a_replay_must_reach_every_recorded_operation(db_url: str, launch_dbos: Any) -> None:
    """A history's recorded operations are not all below its first unrecorded number (a waiting
    recv records only its timeout; concurrent steps finish out of order), so "the end of the
    history" is not where the first number is missing: an operation the new code never
    reaches is a divergence, as a recovery would find, never new work."""
    launch_dbos()
    SHAPE["code"] = 1
    with SetWorkflowID("rc-gap"):
        gap = DBOS.start_workflow(rc_gap)
    with SetWorkflowID("rc-gather"):
        gathered = DBOS.start_workflow(rc_gather)
    with SetWorkflowID("rc-swallow"):
        assert rc_swallow() == "first"
    _wait_steps("rc-gap", 2)  # rc_first and the recv's timeout at 3 (the recv's own 2 is not)
    _wait_steps("rc-gather", 1)  # rc_fast at 2, rc_slow at 1 still running
    ids = ["rc-gap", "rc-gather", "rc-swallow"]
    try:
        # The same code: everything recorded is reached (the recv owns its timeout's row).
        report = check_replay(db_url, workflow_ids=ids, timeout_seconds=5)
        assert [r.verdict for r in report.results] == ["ok"] * 3, report

        SHAPE["code"] = 2
        by_id = {r.workflow_id: r for r in check_replay(db_url, workflow_ids=ids).results}
        inserted = by_id["rc-gap"]
        assert (inserted.verdict, inserted.step, inserted.recorded_name) == (
            "diverges", 3, "DBOS.sleep",
        ), inserted  # fmt: skip
        assert "stops replaying at step 2 ('rc_second'" in inserted.reason
        renamed = by_id["rc-gather"]
        assert (renamed.verdict, renamed.step) == ("diverges", 2), renamed
        assert (renamed.recorded_name, renamed.new_name) == ("rc_fast", "rc_fast_renamed")
        # The swallowed divergence is reported as one, at once, not as a loop that timed out.
        swallowed = by_id["rc-swallow"]
        assert (swallowed.verdict, swallowed.step) == ("diverges", 1), swallowed
    finally:
        SHAPE["code"] = 1
        SLOW.set()
        DBOS.send("rc-gap", "x", "go")
    assert gap.get_result() == "done"
    assert gathered.get_result() == ["slow", "fast"]


def test_cli_bad_input_and_hostile_text(db_url: str, tmp_path: Path) -> None:
    env = clean_env()
    env["PYTHONPATH"] = str(ROOT)
    run = dbos(
        "workflow", "check-replay", "--app", "tests/apps/nope.py", "-D", db_url, cwd=ROOT, env=env
    )
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "does not exist" in run.stderr
    run = dbos(
        "workflow", "check-replay", "-a", "tests/apps/replay_v2_ok.py", "-D", db_url,
        "--status", "BOGUS", cwd=ROOT, env=env,
    )  # fmt: skip
    assert run.returncode == 1 and "unknown status 'BOGUS'" in run.stderr
    assert "Traceback" not in run.stderr

    # An app that launches on import is refused before it launches (nothing recovered or written).
    before = _snapshot(db_url)
    run = dbos(
        "workflow", "check-replay", "-a", "tests/apps/replay_launches.py", "-D", db_url,
        cwd=ROOT, env=env,
    )  # fmt: skip
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert "launches DBOS when imported" in run.stderr and "Traceback" not in run.stderr
    assert _snapshot(db_url) == before

    # An app that exits while imported gives no verdict: an error, never a silent pass.
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(0)\n")
    run = dbos("workflow", "check-replay", "-a", str(exits), "-D", db_url, cwd=ROOT, env=env)
    assert run.returncode == 1 and "exited (sys.exit(0))" in run.stderr, run.stderr

    # Also when it launches from a thread it starts (a context would not reach that thread).
    # Or from a timer that fires after the import: the refusal lasts as long as the process.
    threaded = tmp_path / "threaded.py"
    threaded.write_text(
        "import threading\nfrom runtime import DBOS\n"
        "t = threading.Thread(target=DBOS.launch)\nt.start()\nt.join()\n"
        "threading.Timer(0.3, DBOS.launch).start()\n"
    )
    run = dbos("workflow", "check-replay", "-a", str(threaded), "-D", db_url, cwd=ROOT, env=env)
    assert run.returncode == 1 and "tried to launch DBOS while imported" in run.stderr
    assert _snapshot(db_url) == before

    # A deploy gate naming a workflow that has no record does not pass.
    run = dbos(
        "workflow", "check-replay", "-a", "tests/apps/replay_v2_ok.py", "-D", db_url,
        "-w", "no-such-workflow", "--json", cwd=ROOT, env=env,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert json.loads(run.stdout)["workflows"][0]["verdict"] == "not found"

    # A workflow whose ID and name hold markup and terminal control characters.
    hostile = "evil-\x1b[31m[bold]red"
    client = DBOSClient(db_url)
    try:
        client.enqueue({"queue_name": "q", "workflow_name": hostile, "workflow_id": hostile})
    finally:
        client.destroy()
    run = dbos(
        "workflow", "check-replay", "-a", "tests/apps/replay_v2_ok.py", "-D", db_url,
        cwd=ROOT, env=env,
    )  # fmt: skip
    assert run.returncode == 1
    assert "\x1b" not in run.stdout and "\\x1b[31m[bold]red" in run.stdout
    assert "missing function" in run.stdout
