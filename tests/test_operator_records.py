"""What the runtime records for operators (issue 21): a step running now is visible (DBOSClient
and the CLI), an error keeps its traceback, the internal queue of resume/restart/fork is not shown
as the workflow's queue, and cancelling the workflow `main()` of a `dbos start` app waits on does
not bring the server down."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import DBOS, DBOSClient, Queue, serialization
from runtime.queues import INTERNAL_QUEUE
from runtime.tracebacks import LIMIT
from tests.apps.mgmt_app import HOLD, LEDGER_DDL
from tests.cli_helpers import DBOS as DBOS_EXE
from tests.cli_helpers import clean_env, dbos

ROOT = Path(__file__).resolve().parent.parent


def _until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def test_a_running_step_is_listed_while_it_runs_then_gone(
    db_url: str, launch_dbos: Callable[..., None]
) -> None:
    gate = threading.Event()

    @DBOS.step()
    def prepare() -> int:
        return 1

    @DBOS.step()
    def wait_for_gate() -> str:
        assert gate.wait(30), "the test never opened the gate"
        return "through"

    @DBOS.workflow()
    def gated() -> str:
        prepare()
        return wait_for_gate()

    # A 3 s lease heartbeats every 0.75 s: the step is published within 1.5 s, and a heartbeat
    # late by up to 3 s (a loaded machine) still counts as alive for the CLI's reads.
    launch_dbos(executor_lease_seconds=3)
    handle = DBOS.start_workflow(gated)
    wid = handle.workflow_id
    client = DBOSClient(db_url)
    try:

        def running() -> list[Any]:
            return [s for s in client.list_workflow_steps(wid, include_running=True) if s.running]

        (step,) = _until(running, 10, "the running step to be published")
        assert (step.function_id, step.function_name) == (2, wait_for_gate.__qualname__)
        assert step.started_at is not None and step.completed_at is None
        assert step.output is None and step.error is None
        # DBOS's listing (the default) has the recorded steps only.
        assert [s.function_id for s in client.list_workflow_steps(wid)] == [1]

        shown = dbos("workflow", "steps", wid, "--json", "--db-url", db_url)
        assert shown.returncode == 0, shown.stderr
        by_id = {s["function_id"]: s for s in json.loads(shown.stdout)}
        assert by_id[1]["status"] == "SUCCESS"
        assert by_id[2]["status"] == "RUNNING" and by_id[2]["completed_at"] is None
        panel = dbos("workflow", "get", wid, "--db-url", db_url)
        assert panel.returncode == 0, panel.stderr
        assert "Running step" in panel.stdout and "wait_for_gate" in panel.stdout

        gate.set()
        assert handle.get_result() == "through"
        steps = client.list_workflow_steps(wid)
        assert [(s.function_id, s.running, s.output) for s in steps] == [
            (1, False, 1),
            (2, False, "through"),
        ]
    finally:
        gate.set()
        client.destroy()


def _fail_deep_inside(reason: str) -> None:
    raise ValueError(reason)


def test_an_error_keeps_its_traceback(db_url: str, launch_dbos: Callable[..., None]) -> None:
    @DBOS.step()
    def breaks() -> None:
        _fail_deep_inside("the card was declined")

    @DBOS.workflow()
    def checkout() -> None:
        breaks()

    launch_dbos()
    handle = DBOS.start_workflow(checkout)
    wid = handle.workflow_id
    with pytest.raises(ValueError) as raised:
        handle.get_result()
    assert "_fail_deep_inside" in raised.value.dbos_traceback  # type: ignore[attr-defined]
    client = DBOSClient(db_url)
    try:
        error = client.get_workflow_status(wid).error  # type: ignore[union-attr]
        trace = error.dbos_traceback  # type: ignore[union-attr]
        assert "_fail_deep_inside" in trace and "ValueError: the card was declined" in trace
        (step,) = client.list_workflow_steps(wid)
        assert "_fail_deep_inside" in step.error.dbos_traceback  # type: ignore[union-attr]
    finally:
        client.destroy()

    as_json = dbos("workflow", "get", wid, "--json", "--db-url", db_url)
    assert as_json.returncode == 0, as_json.stderr
    assert "_fail_deep_inside" in json.loads(as_json.stdout)["traceback"]
    steps = dbos("workflow", "steps", wid, "--json", "--db-url", db_url)
    assert "_fail_deep_inside" in json.loads(steps.stdout)[0]["traceback"]
    panel = dbos("workflow", "get", wid, "--db-url", db_url)
    assert "Traceback" in panel.stdout and "_fail_deep_inside" in panel.stdout


def test_stored_tracebacks_are_bounded_and_old_records_still_read() -> None:
    try:
        _fail_deep_inside("x" * 50_000)
    except ValueError as exc:
        stored = serialization.serialize_exception(exc)
    back = serialization.deserialize_exception(stored)
    assert isinstance(back, ValueError) and str(back) == "x" * 50_000
    assert len(back.dbos_traceback) <= LIMIT  # type: ignore[attr-defined]
    assert back.dbos_traceback.endswith("x" * 100 + "\n")  # type: ignore[attr-defined]
    # The huge message is cut in the middle, so the frames that say where it was raised stay.
    assert "_fail_deep_inside" in back.dbos_traceback  # type: ignore[attr-defined]
    assert "characters left out" in back.dbos_traceback  # type: ignore[attr-defined]
    # A record stored before tracebacks were (no "traceback" key) reads as None.
    old = json.dumps({"type": "ValueError", "module": "builtins", "message": "m", "args": ["m"]})
    assert serialization.deserialize_exception(old).dbos_traceback is None  # type: ignore[attr-defined]
    # Never raised (no __traceback__): nothing stored, and a replayed error keeps its first one.
    assert "traceback" not in json.loads(serialization.serialize_exception(ValueError("n")))
    again = serialization.deserialize_exception(serialization.serialize_exception(back))
    assert again.dbos_traceback == back.dbos_traceback  # type: ignore[attr-defined]


def test_the_internal_queue_is_not_shown_as_a_workflows_queue(
    db_url: str, launch_dbos: Callable[..., None]
) -> None:
    jobs = Queue("jobs")

    @DBOS.workflow()
    def double(x: int) -> int:
        return 2 * x

    launch_dbos()
    original = jobs.enqueue(double, 1)
    plain = DBOS.start_workflow(double, 2)
    assert original.get_result() == 2 and plain.get_result() == 4
    forked = DBOS.fork_workflow(plain.workflow_id, 1)
    assert forked.get_result() == 4
    with psycopg.connect(db_url) as conn:
        (stored,) = conn.execute(
            "SELECT queue_name FROM dbos.workflow_status WHERE workflow_uuid = %s",
            (forked.workflow_id,),
        ).fetchone()  # type: ignore[misc]
    assert stored == INTERNAL_QUEUE  # how it runs (as DBOS stores it) ...
    assert forked.get_status().queue_name is None  # ... is not a queue the app chose
    listed = {w.workflow_id: w.queue_name for w in DBOS.list_workflows()}
    assert listed[forked.workflow_id] is None and listed[original.workflow_id] == "jobs"
    queued = DBOS.list_workflows(queues_only=True, status="SUCCESS")  # type: ignore[call-arg]
    assert [w.workflow_id for w in queued] == [original.workflow_id]
    # An explicit filter on the internal queue still finds what is on it.
    on_internal = DBOS.list_workflows(queue_name=INTERNAL_QUEUE)
    assert [w.workflow_id for w in on_internal] == [forked.workflow_id]
    shown = dbos("workflow", "list", "--json", "--db-url", db_url)
    assert shown.returncode == 0, shown.stderr
    rows = {w["workflow_id"]: w["queue_name"] for w in json.loads(shown.stdout)}
    assert rows[forked.workflow_id] is None and rows[original.workflow_id] == "jobs"
    assert INTERNAL_QUEUE not in shown.stdout


class _Served:
    """A `dbos start APP` process on the test's database, its output read line by line."""

    def __init__(self, db_url: str, app: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [DBOS_EXE, "start", app],
            cwd=ROOT,
            env=clean_env(DBOS_DATABASE_URL=db_url, PYTHONPATH=str(ROOT), **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def line_with(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.proc.poll() is None, f"no {text!r} in {self.seen}"
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_cancelling_the_workflow_main_waits_on_keeps_the_server_up(db_url: str) -> None:
    served = _Served(db_url, "tests/apps/waiting_main_app.py")
    client = DBOSClient(db_url)
    try:
        wid = served.line_with("MAIN WAITING ON").split()[-1]
        client.cancel_workflow(wid)
        served.line_with("still serving")
        # Still serving: a new workflow runs to its end in that process.
        handle = client.enqueue({"workflow_name": "quick_job", "queue_name": INTERNAL_QUEUE}, 21)
        assert handle.get_result() == 42
        assert served.proc.poll() is None
        assert not any("Traceback" in line for line in served.seen), "".join(served.seen)
    finally:
        client.destroy()
        served.stop()


def test_a_killed_process_s_running_step_is_not_shown_and_its_successor_s_is(
    db_url: str,
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
        conn.execute("INSERT INTO mgmt_ledger VALUES ('held', %s)", (HOLD,))
    client = DBOSClient(db_url)
    first = _Served(db_url, "tests/apps/mgmt_app.py", DBOS_EXECUTOR_LEASE_SECONDS="2")
    second = None
    try:
        first.line_with("serving")
        client.enqueue({"workflow_name": "slow", "queue_name": "mgmt", "workflow_id": "held"}, 5)

        def running() -> list[tuple[int, str]]:
            steps = client.list_workflow_steps("held", load_output=False, include_running=True)
            return [(s.function_id, s.function_name) for s in steps if s.running]

        # (steps 1-3 take 0.2 s each: on a loaded machine one may be shown running for a beat)
        _until(lambda: (4, "tick") in running(), 20, "step 4 shown as running")
        assert running() == [(4, "tick")]
        first.proc.kill()  # SIGKILL: no clean stop, its executor row still says it runs
        first.proc.wait()
        # Its lease (2 s) runs out: the step it was in is no longer shown as running.
        _until(lambda: running() == [], 10, "the dead process's step to disappear")
        assert client.get_workflow_status("held").status == "PENDING"  # type: ignore[union-attr]
        second = _Served(db_url, "tests/apps/mgmt_app.py", DBOS_EXECUTOR_LEASE_SECONDS="2")
        second.line_with("serving")
        # Recovered: the successor runs step 4 again, and it is shown once.
        _until(lambda: (4, "tick") in running(), 20, "step 4 running again")
        assert running() == [(4, "tick")]
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM mgmt_ledger WHERE step = %s", (HOLD,))
        assert client.retrieve_workflow("held").get_result() == 15
        assert running() == []
    finally:
        client.destroy()
        first.stop()
        if second is not None:
            second.stop()
