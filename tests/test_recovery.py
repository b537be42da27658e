"""Replay and recovery in one process: a runtime is torn down while a workflow is blocked in a step
(it stays PENDING), then launched again, which recovers it. The blocked thread of the first run is
still alive but its runtime is gone, so it can record nothing. Fencing between two live runners is
shown with real processes in test_kill.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSUnexpectedStepError,
    MaxRecoveryAttemptsExceededError,
    SetWorkflowID,
    SetWorkflowTimeout,
)

Launch = Callable[..., None]


def _wait_for_status(workflow_id: str, wanted: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = DBOS.get_workflow_status(workflow_id)
        if status is not None and status.status == wanted:
            return
        time.sleep(0.02)
    status = DBOS.get_workflow_status(workflow_id)
    raise AssertionError(f"{workflow_id} is {status.status if status else None}, not {wanted}")


def test_recovery_resumes_after_last_completed_step(
    launch_dbos: Launch, crash: Callable[[], None], db_url: str
) -> None:
    executed: list[str] = []
    old_blocked, release_old = threading.Event(), threading.Event()
    new_blocked, release_new = threading.Event(), threading.Event()

    @DBOS.step()
    def reserve() -> str:
        executed.append("reserve")
        return "reserved"

    @DBOS.step()
    def pay() -> str:
        executed.append("pay")
        if executed.count("pay") == 1:  # the first run stalls until the runtime is replaced
            old_blocked.set()
            release_old.wait(10)
            return "paid-by-old-run"
        new_blocked.set()
        release_new.wait(10)
        return "paid"

    @DBOS.step()
    def ship() -> str:
        executed.append("ship")
        return "shipped"

    @DBOS.workflow()
    def checkout() -> list[str]:
        return [reserve(), pay(), ship()]

    launch_dbos()
    with SetWorkflowID("checkout-1"):
        DBOS.start_workflow(checkout)
    assert old_blocked.wait(10)
    crash()  # the "crash": the workflow stays PENDING, its old thread still alive

    launch_dbos()  # recovery claims it with a new owner epoch and re-runs it
    assert new_blocked.wait(10)
    # Both runs are now inside step 2. The old one finishes first: it must record nothing and
    # must not go on to step 3.
    release_old.set()
    time.sleep(0.5)
    assert [s.function_id for s in DBOS.list_workflow_steps("checkout-1")] == [1]
    assert executed == ["reserve", "pay", "pay"]

    release_new.set()
    assert DBOS.retrieve_workflow("checkout-1").get_result() == ["reserved", "paid", "shipped"]
    assert executed == ["reserve", "pay", "pay", "ship"]  # reserve replayed, ship once
    steps = DBOS.list_workflow_steps("checkout-1")
    assert [s.output for s in steps] == ["reserved", "paid", "shipped"]
    status = DBOS.get_workflow_status("checkout-1")
    assert status is not None
    assert status.recovery_attempts == 2  # as DBOS counts: the first run, then one recovery


def test_replay_loads_recorded_outcomes_and_reraises_recorded_errors(
    launch_dbos: Launch, crash: Callable[[], None]
) -> None:
    executed: list[str] = []
    blocked = threading.Event()

    @DBOS.step()
    def failing() -> None:
        executed.append("failing")
        raise ValueError("recorded failure")

    @DBOS.step()
    def block() -> str:
        executed.append("block")
        if executed.count("block") == 1:
            blocked.set()
            threading.Event().wait(30)
        return "done"

    @DBOS.workflow()
    def wf() -> str:
        try:
            failing()
        except ValueError as exc:
            note = str(exc)
        return note + ":" + block()

    launch_dbos()
    with SetWorkflowID("replay-error"):
        DBOS.start_workflow(wf)
    assert blocked.wait(10)
    crash()
    launch_dbos()
    assert DBOS.retrieve_workflow("replay-error").get_result() == "recorded failure:done"
    assert executed == ["failing", "block", "block"]


def test_nondeterministic_replay_raises_unexpected_step(
    launch_dbos: Launch, crash: Callable[[], None]
) -> None:
    branch = {"use_b": False}
    blocked = threading.Event()

    @DBOS.step()
    def step_a() -> str:
        return "a"

    @DBOS.step()
    def step_b() -> str:
        return "b"

    @DBOS.step()
    def block() -> None:
        blocked.set()
        threading.Event().wait(30)

    @DBOS.workflow()
    def wf() -> str:
        first = step_b() if branch["use_b"] else step_a()
        block()
        return first

    launch_dbos()
    with SetWorkflowID("nondeterministic"):
        DBOS.start_workflow(wf)
    assert blocked.wait(10)
    crash()
    branch["use_b"] = True  # the code now takes another path than the recorded run
    launch_dbos()
    with pytest.raises(DBOSUnexpectedStepError) as err:
        DBOS.retrieve_workflow("nondeterministic").get_result()
    message = str(err.value)
    assert step_a.__qualname__ in message and step_b.__qualname__ in message
    assert "step 1" in message


def test_max_recovery_attempts(launch_dbos: Launch, crash: Callable[[], None]) -> None:
    blocked = threading.Event()
    finish = threading.Event()

    @DBOS.step()
    def stuck() -> str:
        blocked.set()
        if not finish.is_set():
            threading.Event().wait(30)
        return "finally"

    @DBOS.workflow(max_recovery_attempts=2)
    def wf() -> str:
        return stuck()

    launch_dbos()
    with SetWorkflowID("poison"):
        DBOS.start_workflow(wf)
    for _ in range(2):  # two recoveries are allowed
        assert blocked.wait(10)
        blocked.clear()
        crash()
        launch_dbos()
    assert blocked.wait(10)
    crash()
    launch_dbos()  # the third recovery exceeds the limit
    _wait_for_status("poison", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
    with pytest.raises(MaxRecoveryAttemptsExceededError):
        DBOS.retrieve_workflow("poison").get_result()
    finish.set()
    handle = DBOS.resume_workflow("poison")  # resume brings it back, attempts reset
    assert handle.get_result() == "finally"
    status = DBOS.get_workflow_status("poison")
    assert status is not None and status.recovery_attempts == 1  # reset, then one run


def test_recovered_parent_attaches_to_the_same_child(
    launch_dbos: Launch, crash: Callable[[], None]
) -> None:
    child_runs: list[int] = []
    blocked = threading.Event()

    @DBOS.workflow()
    def child(x: int) -> int:
        child_runs.append(x)
        return x + 1

    @DBOS.step()
    def block() -> None:
        if not blocked.is_set():
            blocked.set()
            threading.Event().wait(30)

    @DBOS.workflow()
    def parent() -> int:
        value = child(1)
        block()
        return value

    launch_dbos()
    with SetWorkflowID("parent-replay"):
        DBOS.start_workflow(parent)
    assert blocked.wait(10)
    crash()
    launch_dbos()
    assert DBOS.retrieve_workflow("parent-replay").get_result() == 2
    assert child_runs == [1]


def test_cancel_stops_before_next_step_and_resume_finishes(launch_dbos: Launch) -> None:
    executed: list[int] = []
    in_step_two = threading.Event()
    release = threading.Event()

    @DBOS.step()
    def work(i: int) -> int:
        executed.append(i)
        if i == 2:
            in_step_two.set()
            release.wait(10)
        return i

    @DBOS.workflow()
    def wf() -> list[int]:
        return [work(i) for i in range(1, 5)]

    launch_dbos()
    with SetWorkflowID("to-cancel"):
        handle = DBOS.start_workflow(wf)
    assert in_step_two.wait(10)
    DBOS.cancel_workflow("to-cancel")
    release.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert executed == [1, 2]  # step 2 finished and was recorded; step 3 never started
    assert handle.get_status().status == "CANCELLED"
    assert [s.function_id for s in DBOS.list_workflow_steps("to-cancel")] == [1, 2]

    resumed = DBOS.resume_workflow("to-cancel")
    assert resumed.get_result() == [1, 2, 3, 4]
    assert executed == [1, 2, 3, 4]


def test_cancel_written_by_another_process_stops_the_workflow(
    launch_dbos: Launch, db_url: str
) -> None:
    executed: list[int] = []
    started = threading.Event()

    @DBOS.step()
    def tick(i: int) -> int:
        executed.append(i)
        started.set()
        time.sleep(0.05)
        return i

    @DBOS.workflow()
    def wf() -> int:
        for i in range(400):
            tick(i)
        return -1

    launch_dbos()
    with SetWorkflowID("remote-cancel"):
        handle = DBOS.start_workflow(wf)
    assert started.wait(10)
    # Another process (here: a plain SQL client, as the CLI is) writes the cancellation.
    import subprocess
    import sys

    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, psycopg; psycopg.connect(sys.argv[1], autocommit=True).execute("
            "\"UPDATE dbos.workflow_status SET status = 'CANCELLED' "
            "WHERE workflow_uuid = 'remote-cancel'\")",
            db_url,
        ],
        check=True,
    )
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    count = len(executed)
    time.sleep(0.3)
    assert len(executed) == count < 400
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'remote-cancel'"
        ).fetchone()
    assert row is not None and row[0] == count  # every executed step recorded, none after


def test_timeout_cancels_workflow_and_its_children(launch_dbos: Launch) -> None:
    @DBOS.step()
    def nap() -> None:
        time.sleep(0.05)

    @DBOS.workflow()
    def child() -> None:
        while True:
            nap()

    @DBOS.workflow()
    def parent() -> None:
        DBOS.start_workflow(child)
        while True:
            nap()

    launch_dbos()
    with SetWorkflowID("timed"), SetWorkflowTimeout(0.5):
        handle = DBOS.start_workflow(parent)
    started = time.monotonic()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert time.monotonic() - started < 5
    _wait_for_status("timed-1", "CANCELLED")
    status = DBOS.get_workflow_status("timed")
    assert status is not None and status.workflow_deadline_epoch_ms is not None


def test_timeout_holds_even_when_the_workflow_is_stuck_in_a_step(launch_dbos: Launch) -> None:
    @DBOS.step()
    def stuck() -> None:
        time.sleep(3)

    @DBOS.workflow()
    def wf() -> None:
        stuck()

    launch_dbos()
    with SetWorkflowID("stuck"), SetWorkflowTimeout(0.3):
        DBOS.start_workflow(wf)
    # The deadline sweep marks it CANCELLED while the step still runs.
    _wait_for_status("stuck", "CANCELLED", timeout=2.5)


def test_shutdown_never_records_errors_caused_by_the_shutdown(launch_dbos: Launch) -> None:
    """A step that fails while the runtime shuts down (its connections are still open) may be
    failing because of the shutdown; that failure must not be recorded: the workflow stays PENDING
    and the next launch completes it."""
    in_step = threading.Event()
    runs: list[str] = []

    @DBOS.step()
    def outlives_shutdown() -> str:
        runs.append("run")
        if len(runs) == 1:
            engine = DBOS._engine()
            in_step.set()
            assert engine.stopping.wait(10)
            raise RuntimeError("connection reset during shutdown")
        return "second run"

    @DBOS.workflow()
    def wf() -> str:
        return outlives_shutdown()

    launch_dbos()
    with SetWorkflowID("outlives"):
        DBOS.start_workflow(wf)
    assert in_step.wait(10)
    DBOS.destroy(workflow_completion_timeout_sec=0)
    launch_dbos()
    assert DBOS.retrieve_workflow("outlives").get_result() == "second run"
    assert [s.error for s in DBOS.list_workflow_steps("outlives")] == [None]
