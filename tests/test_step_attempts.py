"""A retried step keeps its failed attempts: stored with its outcome in its one checkpoint write
(migration 14), read back as ``StepInfo.attempts``, shown by `dbos workflow steps` (human and
``--json``) and by the dashboard's workflow page. A step that did not retry has none."""

from __future__ import annotations

import json
from collections.abc import Callable
from html import unescape

import psycopg
import pytest
from starlette.testclient import TestClient

from dbos_cli.ui.app import create_app
from runtime import DBOS, DBOSClient, SetWorkflowID
from runtime.attempts import MAX_ERROR_CHARS, decode
from runtime.errors import DBOSMaxStepRetriesExceeded
from tests.cli_helpers import dbos

calls: dict[str, int] = {}


@DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0.01, backoff_rate=1.0)
def flaky(key: str, failures: int) -> str:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= failures:
        raise ConnectionError(f"<b>try {calls[key]}</b> " + "x" * (3 * MAX_ERROR_CHARS))
    return f"ok after {calls[key]}"


@DBOS.step()
def once() -> str:
    raise ValueError("no retries here")


@DBOS.workflow()
def work(key: str, failures: int) -> str:
    return flaky(key, failures)


@DBOS.workflow()
def fails_once() -> None:
    once()


def test_failed_attempts_are_stored_with_the_outcome_and_shown(
    launch_dbos: Callable[..., None], db_url: str
) -> None:
    launch_dbos()
    with SetWorkflowID("retried-2"):
        assert DBOS.start_workflow(work, "a", 2).get_result() == "ok after 3"
    with SetWorkflowID("gave-up"), pytest.raises(DBOSMaxStepRetriesExceeded):
        DBOS.start_workflow(work, "b", 99).get_result()
    with SetWorkflowID("first-time"):
        assert DBOS.start_workflow(work, "c", 0).get_result() == "ok after 1"
    with SetWorkflowID("no-retries"), pytest.raises(ValueError):
        DBOS.start_workflow(fails_once).get_result()

    with DBOSClient(db_url) as client:
        [step] = client.list_workflow_steps("retried-2")
        assert [a["attempt"] for a in step.attempts] == [1, 2]
        for a in step.attempts:
            assert a["error"].startswith("ConnectionError: <b>try ")
            assert len(a["error"]) <= MAX_ERROR_CHARS  # bounded
            assert a["started_at"] <= a["completed_at"] <= step.completed_at
        assert step.output == "ok after 3"
        [gave_up] = client.list_workflow_steps("gave-up")
        assert [a["attempt"] for a in gave_up.attempts] == [1, 2, 3, 4, 5]
        assert isinstance(gave_up.error, DBOSMaxStepRetriesExceeded)
        assert client.list_workflow_steps("first-time")[0].attempts == []
        assert client.list_workflow_steps("no-retries")[0].attempts == []
        # Not one of DBOS's StepInfo keys: the dict view is unchanged.
        assert "attempts" not in dict(step)

    listed = dbos("workflow", "steps", "retried-2", "--json", "--db-url", db_url)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert [a["attempt"] for a in row["failed_attempts"]] == [1, 2]
    human = dbos("workflow", "steps", "retried-2", "--db-url", db_url)
    assert "after 2 failed attempts" in human.stdout, human.stdout

    with TestClient(create_app(db_url), follow_redirects=False) as http:
        page = http.get("/workflows/retried-2?live=0")
        assert page.status_code == 200
        text = unescape(page.text)
        assert "2 failed attempts" in text
        assert "ConnectionError: <b>try 1</b>" in text  # shown as text
        assert "<b>try 1</b>" not in page.text  # never as markup
        assert "failed attempt" not in unescape(http.get("/workflows/first-time?live=0").text)


def test_odd_stored_attempts_are_left_out_not_fatal(
    launch_dbos: Callable[..., None], db_url: str
) -> None:
    assert decode(None) == [] and decode("not json") == [] and decode('{"a": 1}') == []
    good = {"attempt": 1, "started_at": 1, "completed_at": 2, "error": "E: x"}
    odd = [good, {"attempt": "1", "started_at": 1, "completed_at": 2, "error": "E"}, 7, None]
    assert decode(json.dumps(odd)) == [good]
    launch_dbos()
    with SetWorkflowID("odd"):
        DBOS.start_workflow(work, "d", 1).get_result()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE dbos.operation_outputs SET attempts = %s WHERE workflow_uuid = 'odd'",
            (json.dumps(odd),),
        )
    with DBOSClient(db_url) as client:
        assert client.list_workflow_steps("odd")[0].attempts == [good]
    with TestClient(create_app(db_url), follow_redirects=False) as http:
        assert http.get("/workflows/odd?live=0").status_code == 200
