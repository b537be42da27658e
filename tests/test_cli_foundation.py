"""The foundation commands, run as the real `dbos` executable."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psycopg

from tests.cli_helpers import DBOS, clean_env, dbos


def test_version() -> None:
    r = dbos("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("dbos ")


def test_migrate_twice_second_changes_nothing(empty_db_url: str, tmp_path: Path) -> None:
    first = dbos("migrate", "--db-url", empty_db_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied migration 1" in first.stdout
    second = dbos("migrate", "-D", empty_db_url, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert "applied" not in second.stdout


def test_unreachable_database_one_line_no_secret(tmp_path: Path) -> None:
    r = dbos("migrate", "--db-url", "postgresql://nobody:secret@127.0.0.1:1/x", cwd=tmp_path)
    assert r.returncode == 1
    assert "secret" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "cannot reach the database" in lines[0]


def test_debug_shows_traceback(tmp_path: Path) -> None:
    r = dbos(
        "--debug", "migrate", "--db-url", "postgresql://nobody:secret@127.0.0.1:1/x", cwd=tmp_path
    )
    assert r.returncode == 1
    assert "Traceback" in r.stderr


def test_bad_url_is_one_clear_line(tmp_path: Path) -> None:
    r = dbos("migrate", "--db-url", "postgresql://u:hunter2@[bad", cwd=tmp_path)
    assert r.returncode == 1
    assert "hunter2" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1


def test_bad_config_file_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "dbos.toml").write_text("[database]\nurl = 5\n")
    r = dbos("migrate", cwd=tmp_path)
    assert r.returncode == 1
    assert "dbos.toml" in r.stderr and "url" in r.stderr
    assert "Traceback" not in r.stderr


def test_usage_error_exits_2(tmp_path: Path) -> None:
    r = dbos("migrate", "--no-such-option", cwd=tmp_path)
    assert r.returncode == 2


def test_reset_requires_confirmation_and_drops(db_url: str, tmp_path: Path) -> None:
    refused = dbos("reset", "--db-url", db_url, cwd=tmp_path)  # stdin is empty: the prompt aborts
    assert refused.returncode == 1
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('dbos.workflow_status')").fetchone() != (None,)
    done = dbos("reset", "-y", "--db-url", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('dbos.workflow_status')").fetchone() == (None,)


def test_database_url_from_environment(empty_db_url: str, tmp_path: Path) -> None:
    r = dbos("migrate", cwd=tmp_path, env=clean_env(DBOS_DATABASE_URL=empty_db_url))
    assert r.returncode == 0, r.stderr
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('dbos.workflow_status')").fetchone() != (None,)


def test_zero_config_embedded_postgres(tmp_path: Path) -> None:
    """In an empty folder with no configuration at all, migrate starts the embedded server."""
    project = tmp_path / "empty project"
    project.mkdir()
    try:
        r = dbos("migrate", cwd=project, timeout=180)
        assert r.returncode == 0, r.stderr
        assert (project / ".dbos" / "pgdata" / "PG_VERSION").exists()
        st = dbos("postgres", "status", "--json", cwd=project)
        assert st.returncode == 0, st.stderr
        info = json.loads(st.stdout)
        assert info["running"] is True
        url = dbos("postgres", "url", cwd=project).stdout.strip()
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT to_regclass('dbos.workflow_status')").fetchone()
            assert row is not None and row[0] is not None
        human = dbos("postgres", "status", cwd=project)
        assert "runs" in human.stdout
        again = dbos("postgres", "start", cwd=project)
        assert "already runs" in again.stdout
    finally:
        stop = dbos("postgres", "stop", cwd=project)
    assert stop.returncode == 0, stop.stderr
    assert "Stopped" in stop.stdout
    after = json.loads(dbos("postgres", "status", "--json", cwd=project).stdout)
    assert after["running"] is False


def test_init_then_start_runs_the_starter_app_on_embedded_postgres(tmp_path: Path) -> None:
    created = dbos("init", "demo", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "demo"
    assert (project / "app.py").exists() and (project / "dbos.toml").exists()
    again = dbos("init", "demo", cwd=tmp_path)
    assert again.returncode == 1 and "not empty" in again.stderr

    proc = subprocess.Popen(
        [DBOS, "start"],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "batch done: total 100" in line:
                break
        else:
            raise AssertionError("".join(seen))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        dbos("postgres", "stop", cwd=project)
    listed = json.loads(dbos("workflow", "list", "--json", cwd=project).stdout or "[]")
    dbos("postgres", "stop", cwd=project)
    assert {w["status"] for w in listed} == {"SUCCESS"} and len(listed) == 5
