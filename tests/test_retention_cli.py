"""`dbos workflow gc`, run as an operator runs it (the real executable in a subprocess, stdin
closed): the dry run's exact count, the confirmation, -y, --json, and one-line refusals of bad
input that delete nothing."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import psycopg
import pytest

from dbos_cli.app import main
from tests.cli_helpers import dbos
from tests.test_retention import ALL_ROWS, NO_ROWS, add_workflow, rows_of


def gc(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return dbos("workflow", "gc", *args, "--db-url", db_url)


def count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
    assert row is not None
    return int(row[0])


REFUSED = [
    (["--older-than", "30x"], "invalid --older-than '30x': expected a number and a unit"),
    (["--older-than", "0d"], "invalid --older-than '0d'"),
    (["--older-than", "1d", "-S", "SUCCESS", "-S", "enqueued"], "gc never deletes unfinished"),
    (["--older-than", "1d", "-S", "DELAYED"], "gc never deletes unfinished"),
    (["--rows-threshold", "0"], "invalid --rows-threshold 0: out of range"),
    (["--older-than", "1d", "--batch-size", "0"], "invalid --batch-size 0"),
    ([], "give --older-than DURATION"),
]


def test_bad_input_is_one_line_and_deletes_nothing(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        wid = add_workflow(conn, "SUCCESS")
        # The real executable once; the other refusals through its entry point in this process
        # (a refusal happens while the command line is parsed, before any connection).
        result = gc(db_url, "--older-than", "1d", "--status", "PENDING", "-y")
        assert result.returncode == 1
        assert "invalid --status 'PENDING': gc never deletes unfinished" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        for args, message in REFUSED:
            with pytest.raises(SystemExit) as exited:
                main(["workflow", "gc", *args, "-y", "--db-url", db_url])
            assert exited.value.code == 1, args
            err = capsys.readouterr().err
            assert message in err, (args, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert rows_of(conn, wid) == ALL_ROWS


def test_dry_run_confirmation_yes_and_json(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        old = [add_workflow(conn, s) for s in ("SUCCESS", "ERROR", "CANCELLED")]
        parent = add_workflow(conn, "SUCCESS")
        child = add_workflow(conn, "PENDING", parent=parent)
        queued = add_workflow(conn, "ENQUEUED")
        recent = add_workflow(conn, "SUCCESS", created_at=2**52)  # far in the future: kept
        before = count(conn)

        dry = gc(db_url, "--older-than", "1d", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "dry run: 3 workflows created before" in dry.stdout
        assert "kept 1 workflow whose child workflow is still unfinished" in dry.stdout
        dry_json = json.loads(gc(db_url, "--older-than", "1d", "--dry-run", "--json").stdout)
        assert dry_json["would_delete"] == 3 and dry_json["kept_for_children"] == 1
        assert dry_json["dry_run"] is True
        assert count(conn) == before

        # No -y and no answer on stdin: the question is on stderr and nothing is deleted.
        refused = gc(db_url, "--older-than", "1d")
        assert refused.returncode == 1
        assert "Delete 3 workflows created before" in refused.stderr
        assert "aborted; nothing changed" in refused.stderr
        assert count(conn) == before

        narrowed = gc(db_url, "--older-than", "1d", "-S", "error", "-y", "--json")
        assert narrowed.returncode == 0, narrowed.stderr
        assert json.loads(narrowed.stdout)["deleted"] == 1
        assert rows_of(conn, old[1]) == NO_ROWS

        done = gc(db_url, "--older-than", "1d", "-y", "--batch-size", "1")
        assert done.returncode == 0, done.stderr
        assert "deleted 2 workflows in 2 batches in" in done.stdout
        assert "kept 1 workflow whose child workflow is still unfinished" in done.stdout
        for wid in old:
            assert rows_of(conn, wid) == NO_ROWS
        for wid in (parent, child, queued, recent):
            assert rows_of(conn, wid) == ALL_ROWS
