"""The CLI tells the truth (issue 21): bulk dry runs report what the real run does, listings are
newest first with a count of what lies beyond the page, database trouble is one line, arguments
are checked before the database sees them, and tables fit 80 columns. Through the real `dbos`
executable where the CLI is concerned."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from runtime import DBOSClient
from tests.cli_helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent

ARGS = '{"args":[],"kwargs":{}}'


def _seed(db_url: str, rows: list[tuple[str, str, str | None]], base_ms: int = 1_000) -> None:
    """Workflow rows (id, status, owner process), created 1 s apart in the given order; a live
    executor process ``alive`` owns what names it."""
    now = int(time.time() * 1000)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.executors (process_id, executor_id, hostname, pid, "
            "application_version, lease_ms, started_at, last_heartbeat_at) "
            "VALUES ('alive', 'e', 'h', 1, 'v', 600000, %s, %s) ON CONFLICT DO NOTHING",
            (now, now),
        )
        for i, (wid, status, owner) in enumerate(rows):
            conn.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, "
                "application_version, owner_process, queue_name, created_at, updated_at) "
                "VALUES (%s, %s, 'job', %s, 'v', %s, 'q', %s, %s)",
                (wid, status, ARGS, owner, base_ms + i * 1000, base_ms + i * 1000),
            )


def _statuses(db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT workflow_uuid, status FROM dbos.workflow_status").fetchall()
    return {r[0]: r[1] for r in rows}


MIXED = [
    ("ok", "SUCCESS", None),
    ("failed", "ERROR", None),
    ("stopped", "CANCELLED", None),
    ("waiting", "ENQUEUED", None),
    ("running", "PENDING", "alive"),
    ("orphan", "PENDING", "dead-process"),
    ("tired", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", None),
]


def test_dry_run_of_cancel_and_resume_is_exactly_the_real_run(db_url: str) -> None:
    """cancel_each/resume_each(dry_run=True) write nothing and return the very list the real run
    then returns, for every status, a live and a dead owner, an unknown and a repeated ID."""
    _seed(db_url, MIXED)
    ids = [wid for wid, _, _ in MIXED] + ["nobody", "waiting"]
    with DBOSClient(db_url) as client:
        before = _statuses(db_url)
        dry_resume = client.resume_each(ids, dry_run=True)
        dry_cancel = client.cancel_each(ids, dry_run=True)
        assert _statuses(db_url) == before
        assert [c.workflow_id for c in dry_cancel if c.changed] == [
            "waiting",
            "running",
            "orphan",
        ]
        assert client.resume_each(ids) == dry_resume
        # After the resume, the cancel's picture changed: preview it again, then run it.
        dry_cancel = client.cancel_each(ids, dry_run=True)
        assert client.cancel_each(ids) == dry_cancel
    assert [c.workflow_id for c in dry_resume if c.changed] == [
        "stopped",
        "waiting",
        "orphan",
        "tired",
        "waiting",
    ]
    assert next(c for c in dry_resume if c.workflow_id == "nobody").missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", str(parts.port or 5432)


# Runs many `dbos` command lines through the CLI's entry point, dbos_cli.app.main, in ONE fresh
# process (a process per command line costs ~0.7 s of interpreter start on the CI's 2 cores):
# each gets its own stdout/stderr and its wall time; whatever any of them logs is collected apart.
_MANY = """
import contextlib, io, json, logging, sys, time
logs = io.StringIO()
logging.basicConfig(stream=logs, level=logging.WARNING)
from dbos_cli.app import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    results.append([code, out.getvalue(), err.getvalue(), time.monotonic() - started])
print(json.dumps({"results": results, "logs": logs.getvalue()}))
"""


def _run_many(
    argvs: list[list[str]], cwd: Path = ROOT
) -> list[tuple[subprocess.CompletedProcess[str], float]]:
    """Each command line's outcome (and wall time), run by ``_MANY``; nothing may be logged."""
    env = clean_env(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [sys.executable, "-c", _MANY, json.dumps(argvs)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["logs"] == "", report["logs"]
    return [
        (subprocess.CompletedProcess(argv, code, out, err), elapsed)
        for argv, (code, out, err, elapsed) in zip(argvs, report["results"], strict=True)
    ]


def _one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode != 0 and len(lines) == 1, run.stderr
    assert "WARNING" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    return lines[0]


def test_each_kind_of_database_trouble_is_one_line_within_seconds(
    pg_server_url: str, tmp_path: Path
) -> None:
    """Nothing listening, a refused login, a missing database, SSL required of a server without
    it, an unresolvable host name: one line naming host:port/database and the cause, no pool
    warnings, no traceback, well within 3 s (before: ~10 s and four WARNING blocks each)."""
    host, port = _server(pg_server_url)
    cases = {
        f"postgresql://u:topsecret@127.0.0.1:{_free_port()}/app": "connection refused",
        # The test server trusts every local login: a role that does not exist is its refusal.
        f"postgresql://nobody:topsecret@{host}:{port}/postgres": "authentication failed",
        f"postgresql://postgres@{host}:{port}/no_such_db": "'no_such_db' does not exist",
        f"postgresql://postgres@{host}:{port}/postgres?sslmode=require": "does not support SSL",
        "postgresql://u:topsecret@no-such-host.invalid/app": "cannot resolve the host name",
    }
    runs = _run_many([["workflow", "list", "-D", url] for url in cases], cwd=tmp_path)
    for (run, elapsed), (url, cause) in zip(runs, cases.items(), strict=True):
        line = _one_line_error(run)
        assert cause in line and "topsecret" not in line, line
        assert "cannot reach the database at " in line and "/" in line, line
        assert elapsed < 3, (url, elapsed)


def test_a_password_with_an_unencoded_at_sign_leaks_nothing(tmp_path: Path) -> None:
    """postgresql://u:p@ss@host/db is parsed by libpq as the host ``ss@host``: the message
    shows the redacted URL and says what is wrong, never ``ss`` (before: "failed to resolve host
    'ss@no-such-host.invalid'")."""
    urls = [
        "postgresql://u:pa@ssw0rd@no-such-host.invalid/db",
        "postgresql://u:pa/ssw0rd@no-such-host.invalid/db",
    ]
    for run, _ in _run_many([["workflow", "list", "-D", url] for url in urls], cwd=tmp_path):
        line = _one_line_error(run)
        assert "ssw0rd" not in line and "ambiguous" in line and "%40" in line, line


def test_every_command_checks_the_database_first(tmp_path: Path) -> None:
    """Every command touching the database fails the same way, `dbos ui` before printing its
    URL (before: the URL, then a 34-line traceback)."""
    url = f"postgresql://u:topsecret@127.0.0.1:{_free_port()}/app"
    commands = [
        ["workflow", "get", "x"],
        ["workflow", "steps", "x"],
        ["workflow", "cancel", "x"],
        ["workflow", "resume", "-S", "CANCELLED", "--dry-run"],
        ["workflow", "restart", "x"],
        ["workflow", "fork", "x", "-s", "1"],
        ["workflow", "stream", "x", "k"],
        ["workflow", "check-replay", "--app", "tests/apps/replay_v1.py"],
        ["queue", "list"],
        ["executors"],
        ["schedule", "list"],
        ["version", "list"],
        ["migrate"],
        ["ui", "--port", str(_free_port())],
    ]
    runs = _run_many([[*cmd, "-D", url] for cmd in commands])
    for (run, _), cmd in zip(runs, commands, strict=True):
        line = _one_line_error(run)
        assert "connection refused" in line and run.stdout == "", (cmd, run.stdout, run.stderr)
