"""Messages, events and durable sleep across real processes, with SIGKILL."""

from __future__ import annotations

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

from runtime import DBOS, DBOSClient, SetWorkflowID
from tests.apps.messaging_app import LEDGER_DDL, event_setter

ROOT = Path(__file__).resolve().parent.parent
APP = [sys.executable, "-m", "tests.apps.messaging_app"]

Launch = Callable[..., None]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "KILL_AT", "GO_FILE"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _popen(*args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*APP, *args],
        env=_env(**extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_started(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "STARTED", (line, proc.stderr.read() if proc.stderr else "")


def _result(proc: subprocess.Popen[str], timeout: float = 120) -> Any:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _ledger(url: str, wid: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT item FROM msg_ledger WHERE workflow_id = %s ORDER BY id", (wid,)
            ).fetchall()
        ]


@pytest.fixture
def msg_db(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    return db_url


def test_sleep_of_30s_killed_at_10s_finishes_20s_after_restart(msg_db: str) -> None:
    proc = _popen("start", "sleeper", msg_db, "sleeper", "30")
    _wait_started(proc)
    time.sleep(10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    restarted_at = time.monotonic()
    recovered = _popen("recover", "sleeper", msg_db, "sleeper")
    _result(recovered)
    remaining = time.monotonic() - restarted_at
    # About 20 s (the process start adds a little), certainly not another 30.
    assert 18 < remaining < 25, remaining


def test_recv_across_processes_with_a_kill_loses_and_duplicates_nothing(msg_db: str) -> None:
    wid = "receiver"
    proc = _popen("start", "receiver", msg_db, wid, "10", KILL_AT="after-recv-3")
    _wait_started(proc)
    sent: list[str] = []
    with DBOSClient(msg_db) as client:  # another process than the receiver
        for i in range(5):
            for topic in ("a", "b"):
                message = f"{topic}{i}"
                client.send(wid, message, topic=topic)
                sent.append(message)
                time.sleep(0.05)  # some arrive while it waits, some while it is dead
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert _ledger(msg_db, wid) == ["a0", "b0"]  # killed after the 3rd recv, before noting it

    result = _result(_popen("recover", "receiver", msg_db, wid))
    assert result == sent  # a0 b0 a1 b1 ...: in order per topic, nothing lost
    assert _ledger(msg_db, wid) == sent  # and nothing received twice
    with psycopg.connect(msg_db) as conn:
        left = conn.execute(
            "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = %s", (wid,)
        ).fetchone()
    assert left == (0,)


def test_recv_timeout_replays_as_none_even_if_a_message_arrives_later(
    msg_db: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    proc = _popen("start", "recv_timeout", msg_db, "timeout", "0.5", GO_FILE=str(go))
    _wait_started(proc)
    deadline = time.monotonic() + 30
    while _ledger(msg_db, "timeout") != ["received None"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with DBOSClient(msg_db) as client:
        client.send("timeout", "too late", topic="t")
    go.touch()
    assert _result(_popen("recover", "recv_timeout", msg_db, "timeout", GO_FILE=str(go))) is None
    assert _ledger(msg_db, "timeout") == ["received None"]


def test_event_replay_sees_the_recorded_value_after_the_event_changed(
    msg_db: str, tmp_path: Path, launch_dbos: Launch
) -> None:
    # The publisher runs in this process; the reader in a subprocess that gets killed.
    launch_dbos()
    with SetWorkflowID("setter"):
        DBOS.start_workflow(event_setter)
    go = tmp_path / "go"
    proc = _popen("start", "event_reader", msg_db, "reader", '"setter"', GO_FILE=str(go))
    _wait_started(proc)
    deadline = time.monotonic() + 30
    while _ledger(msg_db, "reader") != ["read 'first'"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    DBOS.send("setter", "go", topic="go")
    DBOS.retrieve_workflow("setter").get_result()
    assert DBOS.get_event("setter", "k", timeout_seconds=1) == "second"

    go.touch()
    result = _result(_popen("recover", "event_reader", msg_db, "reader", GO_FILE=str(go)))
    assert result == "first"
