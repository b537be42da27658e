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
from typing import Any
from urllib.parse import urlsplit

import psycopg
import typer
import typer.main

from dbos_cli import checks
from dbos_cli.app import app as cli_app
from runtime import DBOSClient, serialization
from tests.cli_helpers import clean_env
from tests.rows import insert_workflows

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
    argvs: list[list[str]], cwd: Path = ROOT, columns: int = 200
) -> list[tuple[subprocess.CompletedProcess[str], float]]:
    """Each command line's outcome (and wall time), run by ``_MANY`` on a terminal ``columns``
    wide; nothing may be logged."""
    env = clean_env(
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        COLUMNS=str(columns),
    )
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


# -- listings: newest first, a footer counting the rest ------------------------------------------

UUIDS = [f"{i:08d}-5e1c-4b7a-9c1d-0123456789ab" for i in range(6)]


def test_list_is_newest_first_with_a_footer_counting_the_rest(db_url: str) -> None:
    """`workflow list` and `queue list` show the newest first (--sort asc: oldest), and say how
    many more match the same filters beyond the page; --json stays a plain list."""
    _seed(db_url, [(wid, "ENQUEUED" if i % 2 else "SUCCESS", None) for i, wid in enumerate(UUIDS)])
    runs = _run_many(
        [
            ["workflow", "list", "-l", "2", "-D", db_url],
            ["workflow", "list", "-l", "2", "--sort", "asc", "-D", db_url],
            ["workflow", "list", "-l", "2", "-o", "2", "-S", "ENQUEUED", "-D", db_url],
            ["queue", "list", "-l", "1", "-D", db_url],
            ["workflow", "list", "-l", "2", "--json", "-D", db_url],
            ["workflow", "list", "-S", "ERROR", "-D", db_url],
        ]
    )
    (newest, _), (oldest, _), (filtered, _), (queued, _), (as_json, _), (none, _) = runs
    assert all(run.returncode == 0 for run, _ in runs), [run.stderr for run, _ in runs]
    assert newest.stdout.index(UUIDS[5]) < newest.stdout.index(UUIDS[4])
    assert UUIDS[3] not in newest.stdout
    assert "1-2 of 6 (newest first); 4 more: --offset 2" in newest.stdout
    assert oldest.stdout.index(UUIDS[0]) < oldest.stdout.index(UUIDS[1])
    assert "1-2 of 6 (oldest first); 4 more: --offset 2" in oldest.stdout
    assert [u for u in UUIDS if u in filtered.stdout] == [UUIDS[1]]  # the third-newest ENQUEUED
    assert "3-3 of 3 (newest first)" in filtered.stdout and "more" not in filtered.stdout
    assert "1-1 of 3 (newest first); 2 more: --offset 1" in queued.stdout
    rows = json.loads(as_json.stdout)
    assert [r["workflow_id"] for r in rows] == [UUIDS[5], UUIDS[4]]
    assert "no workflows match" in none.stdout and " of " not in none.stdout


# -- bulk actions: the dry run is the real run's own predicate -----------------------------------


def test_bulk_dry_run_and_prompt_report_what_the_real_run_does(db_url: str) -> None:
    """`cancel --status SUCCESS --dry-run` said "4 would be cancelled" and the real run cancelled
    0; `resume --dry-run -S SUCCESS` listed workflows the real run skips. Now the dry run (and
    the confirmation's count) come from the runtime's dry run: what the real run then does."""
    hostile = "evil\x1b]0;pwned\x07"
    _seed(
        db_url,
        [
            ("done-1", "SUCCESS", None),
            ("done-2", "SUCCESS", None),
            ("stopped", "CANCELLED", None),
            (hostile, "ENQUEUED", None),
            ("busy", "PENDING", "alive"),
        ],
    )
    runs = _run_many(
        [
            ["workflow", "cancel", "-S", "SUCCESS", "--dry-run", "-D", db_url],
            ["workflow", "resume", "-S", "SUCCESS", "--dry-run", "--json", "-D", db_url],
            ["workflow", "resume", "-S", "SUCCESS", "-y", "--json", "-D", db_url],
            [
                "workflow",
                "cancel",
                "-S",
                "SUCCESS",
                "-S",
                "ENQUEUED",
                "-S",
                "PENDING",
                "-D",
                db_url,
            ],
            ["workflow", "cancel", "-S", "ENQUEUED", "-S", "PENDING", "--dry-run", "--json"]
            + ["-D", db_url],
            ["workflow", "cancel", "-S", "ENQUEUED", "-S", "PENDING", "-y", "--json", "-D", db_url],
            # Nothing to do, no -y: still one JSON document, and no prompt.
            ["workflow", "cancel", "-S", "SUCCESS", "--json", "-D", db_url],
        ]
    )
    (cancel_dry, _), (resume_dry, _), (resume_real, _), (prompt, _), (dry, _), (real, _) = runs[:6]
    nothing = json.loads(runs[6][0].stdout)
    assert nothing["cancelled"] == [] and len(nothing["skipped"]) == 2
    assert "0 workflows would be cancelled" in cancel_dry.stdout, cancel_dry.stdout
    assert "would skip 2: 2 already SUCCESS" in cancel_dry.stderr
    dry_resume = json.loads(resume_dry.stdout)
    assert dry_resume["would_resumed"] == [] and len(dry_resume["skipped"]) == 2
    assert json.loads(resume_real.stdout) == {
        "resumed": [],
        "skipped": dry_resume["skipped"],
    }
    # Five match the filters; two can be cancelled: the prompt names the action and the two.
    assert "Cancel 2 workflows?" in prompt.stderr and prompt.returncode == 1
    assert prompt.stdout == ""  # stdout carries only the result
    would = json.loads(dry.stdout)
    assert [w["workflow_id"] for w in would["would_cancelled"]] == [hostile, "busy"]
    assert json.loads(real.stdout)["cancelled"] == [hostile, "busy"]
    for run, _ in runs:
        assert "\x1b" not in run.stdout + run.stderr and "\x07" not in run.stdout + run.stderr
    assert _statuses(db_url)["busy"] == "CANCELLED"


# -- arguments are checked before the database sees them ----------------------------------------


def test_numbers_and_times_are_checked_before_the_database(db_url: str) -> None:
    """Out-of-range numbers, unreadable or ancient times and bare epoch numbers are one line
    (exit 1, as other bad input) naming the option (before: a 48-line traceback, "bigint out
    of range", or 1700000000 read as a date in 1710); epoch seconds and milliseconds written
    explicitly (@N, @Nms) select the same workflows."""
    bad = {
        ("workflow", "list", "-t", "0001-01-01"): "'--start-time'",
        ("workflow", "list", "-l", "999999999999999999999"): "'--limit'",
        ("workflow", "list", "-o", "99999999999999999999"): "'--offset'",
        ("workflow", "list", "-e", "1700000000"): "'--end-time'",
        ("workflow", "list", "--sort", "up"): "'--sort'",
        ("workflow", "cancel", "-t", "yesterday"): "'--start-time'",
        ("queue", "list", "-l", "-1"): "'--limit'",
        ("workflow", "fork", "x", "-s", "99999999999999999999"): "'--step'",
        ("workflow", "stream", "x", "k", "--from-offset", "-5"): "'--from-offset'",
        ("schedule", "backfill", "s", "2026-01-01", "99999-01-01"): "'END'",
        ("ui", "--port", "70000"): "'--port'",
        # Well-formed but past 9999 (in UTC, or as an epoch): out of range, not "malformed".
        ("workflow", "list", "-t", "9999-12-31T23:59:59-05:00"): "'--start-time'",
        ("workflow", "list", "-e", "@253402300800"): "'--end-time'",
        ("workflow", "stream", "x", "k", "--from-offset", str(2**63 - 1)): "'--from-offset'",
    }
    runs = _run_many([[*argv, "-D", db_url] for argv in bad])
    for (run, _), (argv, option) in zip(runs, bad.items(), strict=True):
        line = _one_line_error(run)
        assert run.returncode == 1 and f"invalid {option.strip(chr(39))} " in line, (argv, line)
        assert "--help" in line, line
        if "9999-12-31" in argv or "@253402300800" in argv or str(2**63 - 1) in argv:
            assert "out of range" in line, line
    # An empty --db-url (an unset variable) is refused, not taken as "use the configuration".
    [(empty, _)] = _run_many([["workflow", "list", "-D", ""]])
    assert empty.returncode == 1 and "invalid --db-url" in _one_line_error(empty)
    _seed(db_url, [("old", "SUCCESS", None), ("new", "SUCCESS", None)], base_ms=1_700_000_000_000)
    seconds, millis = _run_many(
        [
            ["workflow", "list", "-t", "@1700000000.5", "--json", "-D", db_url],
            ["workflow", "list", "-t", "@1700000000500ms", "--json", "-D", db_url],
        ]
    )
    for run, _ in (seconds, millis):
        assert [r["workflow_id"] for r in json.loads(run.stdout)] == ["new"], run.stderr
    # Past the end of the matches: the footer says how many match, the table says nothing.
    [(past, _)] = _run_many([["workflow", "list", "-o", "5", "-D", db_url]])
    assert "no workflows match" not in past.stdout and "none past offset 5: 2 match" in past.stdout


def _params() -> list[tuple[str, Any]]:
    """Every parameter of every `dbos` command, with the command's path."""
    found: list[tuple[str, Any]] = []

    def walk(command: Any, path: str) -> None:
        found.extend((path, p) for p in command.params)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(cli_app), "dbos")
    return found


def test_every_number_and_time_goes_through_one_validator() -> None:
    """No option or argument of any command parses a number or a time but through
    dbos_cli.checks (so none can reach the database unchecked)."""
    numeric = ("Int", "Float", "DateTime")
    for path, param in _params():
        kind = type(param.type).__name__
        func = getattr(param.type, "func", None)
        assert not kind.startswith(numeric), (path, param.name, kind)
        if param.name in ("limit", "offset", "start_time", "end_time", "step", "port", "sort"):
            assert getattr(func, checks.CHECKED, False), (path, param.name)


# -- tables and help at 80 columns ----------------------------------------------------------------


def test_tables_and_help_fit_80_columns(db_url: str) -> None:
    """At 80 columns: no line is wider, a UUID is never broken over lines, no header is cut to
    ``Vers…``, a failed step keeps its name, and no help text breaks a sentence mid-line."""
    _seed(db_url, [(wid, "ERROR", None) for wid in UUIDS[:3]])
    error = serialization.serialize_exception(ValueError("card declined by the issuer " * 4))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, "
            "error, started_at_epoch_ms, completed_at_epoch_ms) "
            "VALUES (%s, 1, 'charge_the_customer_card', %s, 1000, 1500)",
            (UUIDS[0], error),
        )
    tables = [
        ["workflow", "list"],
        ["queue", "list"],
        ["workflow", "steps", UUIDS[0]],
        ["workflow", "cancel", *UUIDS[:2], "--dry-run"],
        ["executors"],
        ["version", "list"],
        ["schedule", "list"],
    ]
    helps = sorted({path for path, _ in _params()})
    runs = _run_many(
        [[*argv, "-D", db_url] for argv in tables] + [[*p.split()[1:], "--help"] for p in helps],
        columns=80,
    )
    for (run, _), argv in zip(runs, tables + [p.split() for p in helps], strict=True):
        assert run.returncode == 0, (argv, run.stderr)
        lines = run.stdout.splitlines()
        assert all(len(line.rstrip()) <= 80 for line in lines), (argv, run.stdout)
        assert "…┃" not in run.stdout.replace(" ", ""), (argv, run.stdout)  # a cut header
    listing = runs[0][0].stdout
    assert all(any(wid in line for line in listing.splitlines()) for wid in UUIDS[:3]), listing
    assert "charge_the" in runs[2][0].stdout and "ValueError" in runs[2][0].stdout
    for path, _ in _params():
        command: Any = typer.main.get_command(cli_app)
        for word in path.split()[1:]:
            command = command.commands[word]
        assert "\n" not in (command.help or "").replace("\n\n", ""), (path, command.help)


def test_footer_counts_at_most_ten_thousand_past_the_page(db_url: str) -> None:
    """Past 10,000 beyond the page, the footer says "more than N" (a count of a million rows on
    every listing cost more than the listing): exact below the bound, bounded above it, for
    `workflow list` and `queue list` alike."""
    insert_workflows(db_url, 5, "many-", ("ENQUEUED",), "q")
    insert_workflows(db_url, 10095, "many-", ("SUCCESS",), "q", start=6)
    runs = _run_many(
        [
            ["workflow", "list", "-l", "2", "-D", db_url],
            ["workflow", "list", "-l", "3", "-o", "50", "--sort", "asc", "-D", db_url],
            ["workflow", "list", "-l", "0", "-D", db_url],
            ["workflow", "list", "-l", "2", "-o", "98", "-D", db_url],
            ["queue", "list", "-l", "2", "-D", db_url],
        ]
    )
    (first, _), (later, _), (none, _), (exact, _), (queued, _) = runs
    assert all(run.returncode == 0 for run, _ in runs), [run.stderr for run, _ in runs]
    assert "1-2 of more than 10002 (newest first); more: --offset 2" in first.stdout
    assert "many-010100" in first.stdout and "many-010099" in first.stdout
    assert "51-53 of more than 10053 (oldest first); more: --offset 53" in later.stdout
    assert "more than 10000 match; none shown (--limit 0)" in none.stdout
    # 98 + 2 + 10,000 reaches every row exactly: the count is exact.
    assert "99-100 of 10100 (newest first); 10000 more: --offset 100" in exact.stdout
    assert "1-2 of 5 (newest first); 3 more: --offset 2" in queued.stdout
