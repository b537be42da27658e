"""`dbos workflow ...` run as the real executable against workflows made by a real app process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import DBOSClient
from tests.apps.mgmt_app import HOLD, LEDGER_DDL
from tests.cli_helpers import DBOS as DBOS_EXE
from tests.cli_helpers import clean_env, dbos

ROOT = Path(__file__).resolve().parent.parent

WORKFLOW_FIELDS = {
    "workflow_id",
    "status",
    "name",
    "class_name",
    "config_name",  # the configured instance an instance-method workflow runs on
    "queue_name",
    "executor_id",
    "app_version",
    "created_at",
    "updated_at",
    "recovery_attempts",
    "parent_workflow_id",
    "forked_from",
    "priority",
    "deduplication_id",
    "was_forked_from",  # DBOS's status fields
    "queue_partition_key",
    "delay_until_epoch_ms",
    "dequeued_at",  # local time, as created_at: when a queue handed it to a process
    "attributes",  # DBOS's custom key/values (SetWorkflowAttributes); null when none
    "schedule_name",  # the managed schedule that enqueued it; null for other workflows
    "waiting",  # what a PENDING or ENQUEUED workflow waits for; null for the others
}
STEP_FIELDS = {
    "function_id",
    "function_name",
    "status",
    "output",
    "error",
    "child_workflow_id",
    "started_at",
    "completed_at",
    "duration_ms",
    "traceback",  # the recorded error's traceback (its end); null without one
    "failed_attempts",  # a retried step's failed attempts; [] without
}


class App:
    """A `dbos start` process serving tests/apps/mgmt_app.py, and a client to feed it."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        env = clean_env(DBOS_DATABASE_URL=db_url)
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [DBOS_EXE, "start", "tests/apps/mgmt_app.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "serving" in line:
                break
        else:
            raise AssertionError("the app did not start")
        self.client = DBOSClient(db_url)

    def run(self, name: str, *args: Any, wid: str | None = None, queue: str = "mgmt") -> str:
        options: dict[str, Any] = {"workflow_name": name, "queue_name": queue}
        if wid:
            options["workflow_id"] = wid
        return self.client.enqueue(options, *args).workflow_id  # type: ignore[arg-type]

    def wait(self, wid: str, status: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.client.retrieve_workflow(wid).get_status().status) != status:
            assert time.monotonic() < deadline, f"{wid} is {current}, not {status}"
            time.sleep(0.05)

    def hold(self, wid: str) -> None:
        """Hold the slow workflow ``wid`` in its fourth step (see tests/apps/mgmt_app.py)."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(LEDGER_DDL)
            conn.execute("INSERT INTO mgmt_ledger VALUES (%s, %s)", (wid, HOLD))

    def release(self, wid: str) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                "DELETE FROM mgmt_ledger WHERE workflow_id = %s AND step = %s", (wid, HOLD)
            )

    def ledger(self, wid: str) -> list[int]:
        with psycopg.connect(self.db_url) as conn:
            rows = conn.execute(
                "SELECT step FROM mgmt_ledger WHERE workflow_id = %s AND step > 0 ORDER BY step",
                (wid,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def stop(self) -> None:
        self.client.destroy()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    running = App(db_url)
    try:
        yield running
    finally:
        running.stop()


def cli(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    return dbos(*args, "--db-url", app.db_url)


def cli_json(app: App, *args: str) -> Any:
    result = cli(app, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["workflow_id"] for r in rows]


def test_list_get_and_steps_with_every_filter(app: App) -> None:
    greets = [app.run("greet", name, wid=f"greet-{name}") for name in ("ann", "bo", "cy")]
    for wid in greets:
        app.wait(wid, "SUCCESS")
    bad = app.run("failing", "boom", wid="fails")
    app.wait(bad, "ERROR")

    everything = cli_json(app, "workflow", "list", "--sort", "asc")
    assert ids(everything) == [*greets, bad]  # oldest first
    assert set(everything[0]) == WORKFLOW_FIELDS
    first = everything[0]
    assert first["was_forked_from"] is False and first["queue_partition_key"] is None
    assert first["delay_until_epoch_ms"] is None and first["dequeued_at"] != ""
    assert ids(cli_json(app, "workflow", "list")) == [bad, *reversed(greets)]  # newest first
    assert ids(cli_json(app, "workflow", "list", "--sort-desc")) == [bad, *reversed(greets)]
    assert ids(cli_json(app, "workflow", "list", "-S", "ERROR")) == [bad]
    assert len(cli_json(app, "workflow", "list", "-S", "success", "-S", "ERROR")) == 4
    assert ids(cli_json(app, "workflow", "list", "--name", "failing")) == [bad]
    assert len(cli_json(app, "workflow", "list", "--queue", "mgmt")) == 4
    assert cli_json(app, "workflow", "list", "--queue", "other") == []
    version = everything[0]["app_version"]
    assert len(cli_json(app, "workflow", "list", "--app-version", version)) == 4
    assert cli_json(app, "workflow", "list", "-v", "no-such-version") == []
    assert cli_json(app, "workflow", "list", "--start-time", "2999-01-01") == []
    assert cli_json(app, "workflow", "list", "--end-time", "2000-01-01T00:00:00Z") == []
    assert len(cli_json(app, "workflow", "list", "--start-time", "2000-01-01")) == 4
    assert ids(cli_json(app, "workflow", "list", "--limit", "2", "--sort", "asc")) == greets[:2]
    assert ids(cli_json(app, "workflow", "list", "-o", "3", "--sort", "asc")) == [bad]

    human = cli(app, "workflow", "list")
    assert human.returncode == 0 and "greet-ann" in human.stdout and "ERROR" in human.stdout

    record = cli_json(app, "workflow", "get", "greet-ann")
    assert set(record) == WORKFLOW_FIELDS | {
        "input",
        "output",
        "error",
        "traceback",
        "running_steps",
    }
    assert record["input"] == {"args": ["ann"], "kwargs": {}}
    assert record["output"] == "hello ANN"
    failed = cli_json(app, "workflow", "get", "fails")
    assert failed["status"] == "ERROR" and failed["error"] == "ValueError: boom"
    shown = cli(app, "workflow", "get", "fails")
    assert "ValueError: boom" in shown.stdout

    steps = cli_json(app, "workflow", "steps", "greet-ann")
    assert [(s["function_id"], s["function_name"], s["output"]) for s in steps] == [
        (1, "shout", "ANN")
    ]
    assert set(steps[0]) == STEP_FIELDS
    assert "shout" in cli(app, "workflow", "steps", "greet-ann").stdout


def test_bad_input_gets_one_clear_line(app: App, empty_db_url: str) -> None:
    for args, expected in [
        (("workflow", "get", "nope"), "does not exist"),
        (("workflow", "steps", "nope"), "does not exist"),
        (("workflow", "list", "--status", "DONE"), "invalid status 'DONE'"),
        (("workflow", "list", "--start-time", "yesterday"), "invalid --start-time"),
        (("workflow", "restart", "nope"), "does not exist"),
        (("workflow", "cancel", "nope"), "no such workflow"),
    ]:
        result = cli(app, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert expected in result.stderr + result.stdout, (args, result.stderr)
        assert "Traceback" not in result.stderr
    missing = dbos("workflow", "list", "--db-url", empty_db_url)
    assert missing.returncode == 1
    assert "run `dbos migrate`" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_cancel_resume_restart_and_fork(app: App) -> None:
    wid = "slow-1"
    app.hold(wid)  # held in its fourth step until the cancel has landed
    app.run("slow", 10, wid=wid)
    deadline = time.monotonic() + 30
    while len(app.ledger(wid)) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = cli(app, "workflow", "cancel", wid)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled 1 workflow" in cancelled.stdout
    app.wait(wid, "CANCELLED")
    app.release(wid)
    time.sleep(0.6)
    stopped_at = app.ledger(wid)
    assert len(stopped_at) < 10  # it stopped at a step boundary
    assert app.ledger(wid) == stopped_at  # and stays stopped

    resumed = cli(app, "workflow", "resume", wid)
    assert resumed.returncode == 0 and "resumed 1 workflow" in resumed.stdout
    app.wait(wid, "SUCCESS")
    ledger = app.ledger(wid)
    # Completed steps were not run again; at most the step running at the cancel repeated.
    assert sorted(set(ledger)) == list(range(1, 11))
    assert len(ledger) - 10 <= 1

    again = cli(app, "workflow", "resume", wid)  # finished: skipped, and told why
    assert again.returncode == 0
    assert (
        "already SUCCESS" in again.stdout + again.stderr and "fork" in again.stdout + again.stderr
    )

    new = cli_json(app, "workflow", "restart", wid)
    assert new["workflow_id"] != wid
    app.wait(new["workflow_id"], "SUCCESS")
    restarted = cli_json(app, "workflow", "get", new["workflow_id"])
    assert restarted["input"] == {"args": [10], "kwargs": {}}
    assert restarted["forked_from"] == wid
    assert app.ledger(new["workflow_id"]) == list(range(1, 11))

    forked = cli(app, "workflow", "fork", wid, "--step", "4", "--forked-workflow-id", "fork-1")
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout.strip() == "fork-1"
    app.wait("fork-1", "SUCCESS")
    assert app.ledger("fork-1") == list(range(4, 11))  # steps 1-3 kept their outcomes
    assert cli_json(app, "workflow", "get", "fork-1")["output"] == 55

    # As in DBOS, a step past the last one keeps every recorded outcome (nothing re-runs).
    beyond = cli(app, "workflow", "fork", wid, "--step", "99", "--forked-workflow-id", "fork-all")
    assert beyond.returncode == 0, beyond.stderr
    app.wait("fork-all", "SUCCESS")
    assert cli_json(app, "workflow", "get", "fork-all")["output"] == 55


def test_bulk_cancel_by_filter_with_dry_run(app: App) -> None:
    # Workflows nobody serves stay ENQUEUED: a function name the app does not have.
    parked = [app.run("not_served", i, queue="parked") for i in range(5)]
    done = app.run("greet", "dee", wid="done-one")
    app.wait(done, "SUCCESS")

    queued = cli_json(app, "queue", "list", "--queue", "parked")
    assert sorted(ids(queued)) == sorted(parked)
    assert ids(cli_json(app, "workflow", "queue", "list", "-q", "parked")) == ids(queued)

    dry = cli(app, "workflow", "cancel", "--queue", "parked", "--dry-run")
    assert dry.returncode == 0 and "5 workflows would be cancelled" in dry.stdout
    assert len(cli_json(app, "workflow", "list", "-S", "ENQUEUED")) == 5  # nothing changed

    refused = cli(app, "workflow", "cancel", "--queue", "parked")  # no -y, no answer: aborted
    assert refused.returncode == 1
    assert len(cli_json(app, "workflow", "list", "-S", "ENQUEUED")) == 5

    summary = cli_json(app, "workflow", "cancel", "--queue", "parked", "-y")
    assert sorted(summary["cancelled"]) == sorted(parked)
    assert len(cli_json(app, "workflow", "list", "-S", "CANCELLED")) == 5

    mixed = cli(app, "workflow", "cancel", parked[0], done)
    assert mixed.returncode == 0
    assert "cancelled 0 workflows" in mixed.stdout
    assert "already CANCELLED" in mixed.stdout and "already SUCCESS" in mixed.stdout
