"""The first five minutes of a new user (issue 21): the README's first example runs as written,
`dbos init`'s "Next:" line works as printed, the package builds without setuptools warnings and
ships its data files, and `dbos postgres status` finds every embedded server left running."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from runtime import embedded_registry
from runtime.embedded import EmbeddedPostgres
from tests.cli_helpers import clean_env, dbos

ROOT = Path(__file__).resolve().parent.parent


def _first_python_block(markdown: str) -> str:
    match = re.search(r"```python\n(.*?)```", markdown, re.DOTALL)
    assert match, "the README has no python example"
    return match.group(1)


def test_the_readme_first_example_runs_as_written(db_url: str, tmp_path: Path) -> None:
    source = _first_python_block((ROOT / "README.md").read_text())
    (tmp_path / "app.py").write_text(source)
    env = clean_env(DBOS_DATABASE_URL=db_url, PYTHONPATH=str(ROOT))
    for _ in range(2):  # the second run is the idempotent one: the same workflow ID, no new work
        done = subprocess.run(
            [sys.executable, "app.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "True"


def test_init_prints_a_next_line_that_works(db_url: str, tmp_path: Path) -> None:
    # The `dbos` of this environment is not on the PATH (as for a user who did not activate
    # .venv): the printed line must still work, pasted into a shell.
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if not (Path(p) / "dbos").exists()
    )
    env = clean_env(PATH=path, DBOS_DATABASE_URL=db_url, PYTHONPATH=str(ROOT))
    created = dbos("init", "starter", cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    (line,) = [x for x in created.stdout.splitlines() if x.startswith("Next: ")]
    shell = subprocess.Popen(
        ["/bin/sh", "-c", line.removeprefix("Next: ")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the app is stopped with its shell
    )
    assert shell.stdout is not None
    seen = []
    try:
        for out in shell.stdout:
            seen.append(out)
            if "batch done: total 100" in out:
                break
        else:
            raise AssertionError("the starter app did not run: " + "".join(seen))
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        try:
            shell.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def test_the_wheel_builds_without_warnings_and_ships_every_package(tmp_path: Path) -> None:
    # The backend pyproject.toml asks for (setuptools >= 68; its `license` string needs 77),
    # fetched as pip's build isolation would, then run on a copy of the project (a build writes
    # build/ and *.egg-info next to the sources).
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(tmp_path)]
        + ["setuptools>=77"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert got.returncode == 0, got.stderr
    (wheel,) = tmp_path.glob("setuptools-*.whl")
    backend = tmp_path / "backend"
    zipfile.ZipFile(wheel).extractall(backend)
    project = tmp_path / "project"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("runtime", "dbos_cli"):
        shutil.copytree(ROOT / folder, project / folder, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    built = subprocess.run(
        [sys.executable, "-W", "always", "-c"]
        + ["import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"]
        + [str(tmp_path / "dist")],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(backend)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    for warning in ("Warning:", "absent from the `packages`", "is not a package"):
        assert warning not in output, output
    names = zipfile.ZipFile(tmp_path / "dist" / built.stdout.split()[-1]).namelist()
    for source in [*ROOT.glob("runtime/**/*"), *ROOT.glob("dbos_cli/**/*")]:
        relative = source.relative_to(ROOT).as_posix()
        if source.is_file() and "__pycache__" not in relative and source.suffix != ".pyc":
            assert relative in names, f"{relative} is not in the wheel"


def test_an_embedded_server_left_running_is_announced_and_listed_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = clean_env(XDG_STATE_HOME=str(tmp_path / "state"))  # this test's own list of servers
    # Not under pytest's tmp_path: run as root, the server runs as another user that must traverse
    # the folders above its data, and every pytest process resets /tmp/pytest-of-root to 0700.
    project = Path(tempfile.mkdtemp(prefix="dbos-test-shop-"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = EmbeddedPostgres.for_project(project)
    try:
        # A read command with no database configured starts the project's embedded server: it
        # says so, in one line on stderr, since the server outlives the command.
        listed = dbos("workflow", "list", cwd=project, env=env)
        (notice,) = [x for x in listed.stderr.splitlines() if "embedded Postgres" in x]
        assert "keeps running" in notice and "dbos postgres stop" in notice
        assert server.status().running

        shown = dbos("postgres", "status", "--json", cwd=elsewhere, env=env)
        assert shown.returncode == 0, shown.stderr
        doc = json.loads(shown.stdout)
        assert doc["running"] is False  # that folder has none of its own ...
        # ... and the server left running in the other folder is found, with how to stop it.
        assert [o["data_dir"] for o in doc["others"]] == [str(server.data_dir)]
        human = dbos("postgres", "status", cwd=elsewhere, env=env)
        assert f"cd {project.resolve()} && dbos postgres stop" in human.stdout

        stopped = dbos("postgres", "stop", cwd=project, env=env)
        assert stopped.returncode == 0, stopped.stderr
        # A server that stopped without saying so (killed, a reboot) is dropped from the list.
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        embedded_registry.remember(tmp_path / "gone")
        assert embedded_registry.known() == [(tmp_path / "gone").resolve()]
        again = dbos("postgres", "status", "--json", cwd=elsewhere, env=env)
        assert json.loads(again.stdout)["others"] == []
        assert embedded_registry.known() == []
    finally:
        server.stop()
        shutil.rmtree(project, ignore_errors=True)
