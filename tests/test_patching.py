"""Patching (``DBOS.patch``, ``DBOS.deprecate_patch``): workflows that started on old code replay
their old branch, new ones take the new branch, across a real SIGKILL and relaunch on new code;
and in-process, DBOS's own scenario (forks of old and new histories), the async twins, and the
errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import DBOS, DBOSException

ROOT = Path(__file__).resolve().parent.parent
APP = [sys.executable, "-m", "tests.apps.patch_app"]


def _names(workflow_id: str) -> list[str]:
    return [s["function_name"] for s in DBOS.list_workflow_steps(workflow_id)]


def test_dbos_patch_scenario_in_process(launch_dbos: Callable[..., None], db_url: str) -> None:
    """DBOS's test_patch, in-process: v1 code, then a patch, then a second patch, then the first
    patch deprecated; forks of each history take the branch their history recorded."""

    @DBOS.step()
    def one() -> int:
        return 1

    @DBOS.step()
    def two() -> int:
        return 2

    @DBOS.step()
    def three() -> int:
        return 3

    @DBOS.workflow(name="patched")
    def v1() -> int:
        return one() + two()

    # DBOS's enable_patching: every deployment is one version (no application_version given).
    DBOS(config={"name": "test-app", "database_url": db_url, "enable_patching": True})
    DBOS.launch()
    assert DBOS.application_version == "PATCHING_ENABLED"
    v1_id = DBOS.start_workflow(v1).workflow_id
    assert DBOS.retrieve_workflow(v1_id).get_result() == 3

    @DBOS.workflow(name="patched")
    def v2() -> int:
        a = three() if DBOS.patch("v2") else one()
        return a + two()

    v2_id = DBOS.start_workflow(v2).workflow_id
    assert DBOS.retrieve_workflow(v2_id).get_result() == 5
    assert _names(v2_id)[0] == "DBOS.patch-v2" and len(_names(v2_id)) == 3
    # A history with the marker replays past it; one without (v1's) takes the old branch and
    # records no marker.
    assert DBOS.fork_workflow(v2_id, 3).get_result() == 5
    old = DBOS.fork_workflow(v1_id, 2)
    assert old.get_result() == 3
    assert _names(old.workflow_id) == [_names(v1_id)[0], _names(v1_id)[1]]

    @DBOS.workflow(name="patched")
    def v3() -> int:
        if DBOS.patch("v3"):
            a = two()
        elif DBOS.patch("v2"):
            a = three()
        else:
            a = one()
        return a + two()

    v3_id = DBOS.start_workflow(v3).workflow_id
    assert DBOS.retrieve_workflow(v3_id).get_result() == 4
    assert _names(v3_id)[0] == "DBOS.patch-v3"
    forked_v2 = DBOS.fork_workflow(v2_id, 3)
    assert forked_v2.get_result() == 5
    assert _names(forked_v2.workflow_id)[0] == "DBOS.patch-v2"
    assert DBOS.fork_workflow(v1_id, 2).get_result() == 3

    @DBOS.workflow(name="patched")
    def v4() -> int:
        DBOS.deprecate_patch("v3")
        return two() + two()

    v4_id = DBOS.start_workflow(v4).workflow_id
    assert DBOS.retrieve_workflow(v4_id).get_result() == 4
    assert "DBOS.patch-v3" not in _names(v4_id) and len(_names(v4_id)) == 2
    # A run that recorded the v3 marker takes it again and replays its steps after it.
    forked_v3 = DBOS.fork_workflow(v3_id, 3)
    assert forked_v3.get_result() == 4
    assert _names(forked_v3.workflow_id)[0] == "DBOS.patch-v3"


def test_patch_async_twins(launch_dbos: Callable[..., None]) -> None:
    @DBOS.step()
    async def fetch(x: int) -> int:
        return x

    @DBOS.workflow()
    async def async_patched() -> list[Any]:
        patched = await DBOS.patch_async("a")
        deprecated = await DBOS.deprecate_patch_async("gone")
        return [patched, deprecated, await fetch(7)]

    launch_dbos()
    handle = DBOS.start_workflow(async_patched)
    assert handle.get_result() == [True, True, 7]
    assert _names(handle.workflow_id) == ["DBOS.patch-a", _names(handle.workflow_id)[1]]
    assert DBOS.fork_workflow(handle.workflow_id, 2).get_result() == [True, True, 7]


def test_patch_outside_a_workflow_is_dbos_error(launch_dbos: Callable[..., None]) -> None:
    @DBOS.step()
    def patch_in_step() -> bool:
        return DBOS.patch("x")

    @DBOS.workflow()
    def bad_name() -> bool:
        return DBOS.patch("")

    launch_dbos()
    with pytest.raises(DBOSException, match="DBOS.patch must be called from a workflow"):
        DBOS.patch("x")
    with pytest.raises(DBOSException, match="DBOS.deprecate_patch must be called from a workflow"):
        DBOS.deprecate_patch("x")
    with pytest.raises(DBOSException, match="must be called from a workflow"):
        asyncio.run(DBOS.patch_async("x"))
    with pytest.raises(DBOSException, match="DBOS.patch must be called from a workflow"):
        patch_in_step()
    with pytest.raises(DBOSException, match="invalid patch name"):
        DBOS.start_workflow(bad_name).get_result()


# -- across a real process kill ----------------------------------------------------------------


def _env(code: str, ready_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["PYTHONPATH"] = str(ROOT)
    env["PATCH_CODE"] = code
    if ready_dir is not None:
        env["READY_DIR"] = str(ready_dir)
    return env


def _run_until_ready(db_url: str, code: str, ready_dir: Path, ids: list[str]) -> None:
    """Start workflows on ``code``, wait until each is blocked in its gate step, SIGKILL."""
    proc = subprocess.Popen(
        [*APP, db_url, *[f"+{i}" for i in ids]],
        env=_env(code, ready_dir),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while not all((ready_dir / i).exists() for i in ids):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "workflows never reached their gate"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()


def _recover(db_url: str, code: str, recovered: list[str], new: list[str]) -> dict[str, Any]:
    """Relaunch on ``code``: wait for the recovered workflows, run new ones; their results."""
    done = subprocess.run(
        [*APP, db_url, *recovered, *[f"+{i}" for i in new]],
        env=_env(code, None),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _steps(db_url: str, wid: str) -> list[str]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT function_name FROM dbos.operation_outputs WHERE workflow_uuid = %s "
            "ORDER BY function_id",
            (wid,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_in_flight_workflows_finish_on_old_branch_after_kill(db_url: str, tmp_path: Path) -> None:
    """v1 (no patch) is SIGKILLed mid-workflow; v2 (``if DBOS.patch("x")``) recovers those on
    the old branch and runs new ones on the new branch; a v2 workflow killed mid-way is
    recovered by v3 (``deprecate_patch("x")``) past its marker, and new v3 ones record none."""
    ready = tmp_path / "ready"
    ready.mkdir()
    _run_until_ready(db_url, "v1", ready, ["old-1", "old-2"])
    assert _steps(db_url, "old-1") == ["one"]

    out = _recover(db_url, "v2", ["old-1", "old-2"], ["new-v2"])
    assert out["old-1"] == out["old-2"] == ["one", "two"]
    assert _steps(db_url, "old-1") == ["one", "gate", "two"]
    assert out["new-v2"] == ["three", "two"]
    assert _steps(db_url, "new-v2") == ["DBOS.patch-x", "three", "gate", "two"]

    _run_until_ready(db_url, "v2", ready, ["mid-v2"])
    assert _steps(db_url, "mid-v2") == ["DBOS.patch-x", "three"]
    out = _recover(db_url, "v3", ["mid-v2"], ["new-v3"])
    assert out["mid-v2"] == ["three", "two"]
    assert _steps(db_url, "mid-v2") == ["DBOS.patch-x", "three", "gate", "two"]
    assert out["new-v3"] == ["three", "two"]
    assert _steps(db_url, "new-v3") == ["three", "gate", "two"]
