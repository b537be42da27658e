"""DBOS's step and call API: run_step, wait_first, send_bulk, get_all_events, step_status, step
options (should_retry, timeout_seconds), starting a step as a workflow, and fixed bugs around
async children, cancelled waits, idempotent sends, SetWorkflowTimeout(None) and set_event in a
step."""

from __future__ import annotations

import asyncio
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

from runtime import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSStepTimeoutError,
    Queue,
    SendMessage,
    SetWorkflowID,
    SetWorkflowTimeout,
)

Launch = Callable[..., None]


def _wait_status(workflow_id: str, want: str, timeout: float = 15.0) -> str | None:
    end = time.monotonic() + timeout
    status = None
    while time.monotonic() < end:
        found = DBOS.get_workflow_status(workflow_id)
        status = found.status if found else None
        if status == want:
            return status
        time.sleep(0.05)
    return status


# -- bug fixes -----------------------------------------------------------------------------------


def test_unawaited_async_child_runs_to_completion(launch_dbos: Launch) -> None:
    """(1) A child started with start_workflow_async and never awaited is not cancelled when the
    parent's loop ends: it completes."""

    @DBOS.workflow()
    async def child() -> str:
        await asyncio.sleep(0.5)
        return "child done"

    @DBOS.workflow()
    async def parent() -> str:
        with SetWorkflowID("orphan-child"):
            await DBOS.start_workflow_async(child)
        return "parent done"

    launch_dbos()

    async def main() -> str:
        return await parent()

    assert asyncio.run(main()) == "parent done"
    assert _wait_status("orphan-child", "SUCCESS") == "SUCCESS"
    assert DBOS.retrieve_workflow("orphan-child").get_result() == "child done"


def test_cancelled_get_result_does_not_poison_later_waits(launch_dbos: Launch) -> None:
    """(2) Cancelling one awaiting task does not make a later, separate wait raise."""

    @DBOS.workflow()
    async def slow() -> int:
        await asyncio.sleep(0.6)
        return 7

    launch_dbos()

    async def main() -> int:
        handle = await DBOS.start_workflow_async(slow)
        first = asyncio.ensure_future(handle.get_result())
        await asyncio.sleep(0.1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return int(await handle.get_result())

    assert asyncio.run(main()) == 7


def test_set_workflow_timeout_none_removes_inherited_deadline(launch_dbos: Launch) -> None:
    """(4) ``SetWorkflowTimeout(None)`` around a child start: the child has no deadline."""

    @DBOS.workflow()
    def child() -> str:
        DBOS.sleep(1.5)
        return "child done"

    @DBOS.workflow()
    def parent() -> str:
        with SetWorkflowTimeout(None):
            with SetWorkflowID("free-child"):
                DBOS.start_workflow(child)
        with SetWorkflowID("bound-child"):
            DBOS.start_workflow(child)
        return "parent done"

    launch_dbos()
    with SetWorkflowTimeout(0.7):
        assert DBOS.start_workflow(parent).get_result() == "parent done"
    status = DBOS.get_workflow_status("free-child")
    assert status is not None and status.workflow_deadline_epoch_ms is None
    bound = DBOS.get_workflow_status("bound-child")
    assert bound is not None and bound.workflow_deadline_epoch_ms is not None
    assert DBOS.retrieve_workflow("free-child").get_result() == "child done"
    assert _wait_status("bound-child", "CANCELLED") == "CANCELLED"


def test_cancelling_a_waiter_leaves_the_outcome_future_alone() -> None:
    """(2) The mechanism behind a poisoned ``get_result``: the asyncio future a waiter awaits is
    tied to the run's outcome future. With ``asyncio.wrap_future``, cancelling the waiter's
    future cancels the outcome future itself, and every later waiter gets CancelledError."""
    from concurrent.futures import Future

    from runtime.engine.results import watch_future
    from runtime.engine.runs import Outcome

    outcome: Future[Outcome] = Future()

    async def main() -> Outcome:
        first = watch_future(outcome)
        first.cancel()
        await asyncio.sleep(0)
        assert not outcome.cancelled()
        second = watch_future(outcome)
        outcome.set_result(Outcome(value=5))
        return await second

    assert asyncio.run(main()).value == 5


def test_keyed_send_from_a_workflow_delivers_once(launch_dbos: Launch) -> None:
    """(3) ``send(..., idempotency_key=k)`` twice in a workflow delivers one message, and a send
    from outside with the same key delivers nothing more."""

    @DBOS.workflow()
    def receiver() -> list[Any]:
        return [DBOS.recv("t", timeout_seconds=2) for _ in range(3)]

    @DBOS.workflow()
    def sender(dest: str) -> None:
        DBOS.send(dest, "a", "t", idempotency_key="k1")
        DBOS.send(dest, "a again", "t", idempotency_key="k1")
        DBOS.send(dest, "b", "t", idempotency_key="k2")

    launch_dbos()
    with SetWorkflowID("keyed-receiver"):
        handle = DBOS.start_workflow(receiver)
    with SetWorkflowID("keyed-sender"):
        DBOS.start_workflow(sender, "keyed-receiver").get_result()
    DBOS.send("keyed-receiver", "outside", "t", idempotency_key="k1")
    assert handle.get_result() == ["a", "b", None]
    names = [s.function_name for s in DBOS.list_workflow_steps("keyed-sender")]
    assert names == ["DBOS.send", "DBOS.send", "DBOS.send"]


def test_set_event_from_a_step(launch_dbos: Launch) -> None:
    """(7) ``set_event`` inside a step publishes the event (DBOS allows it), without a step of
    its own; outside any workflow it is refused."""

    @DBOS.step()
    def publish(value: int) -> int:
        DBOS.set_event("progress", value)
        return value

    @DBOS.workflow()
    def wf() -> int:
        return publish(3) + publish(4)

    launch_dbos()
    with SetWorkflowID("event-from-step"):
        assert wf() == 7
    assert DBOS.get_event("event-from-step", "progress", timeout_seconds=0) == 4
    names = [s.function_name for s in DBOS.list_workflow_steps("event-from-step")]
    assert names == [publish.__qualname__, publish.__qualname__]
    with pytest.raises(DBOSException, match="inside a workflow or a step"):
        DBOS.set_event("x", 1)


# -- run_step --------------------------------------------------------------------------------------


def test_run_step_checkpoints_an_undecorated_function(launch_dbos: Launch) -> None:
    calls: list[int] = []

    def add(a: int, b: int = 0) -> int:
        calls.append(a)
        return a + b

    async def mul(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a * b

    @DBOS.workflow()
    def wf() -> tuple[int, int]:
        return DBOS.run_step({"name": "adder"}, add, 1, b=2), DBOS.run_step(None, mul, 3, 4)

    @DBOS.workflow()
    async def awf() -> tuple[int, int]:
        return (
            await DBOS.run_step_async(None, add, 5, 6),
            await DBOS.run_step_async({"retries_allowed": True}, mul, 2, 2),
        )

    launch_dbos()
    with SetWorkflowID("run-step"):
        assert wf() == (3, 12)
    with SetWorkflowID("run-step"):  # the recorded outcome: nothing runs again
        assert wf() == (3, 12)
    assert calls == [1]
    steps = DBOS.list_workflow_steps("run-step")
    assert [(s.function_name, s.output) for s in steps] == [
        ("adder", 3),
        (mul.__qualname__, 12),
    ]
    with SetWorkflowID("run-step-async"):
        assert asyncio.run(awf()) == (11, 4)
    assert [s.output for s in DBOS.list_workflow_steps("run-step-async")] == [11, 4]
    assert DBOS.run_step(None, add, 7) == 7  # outside a workflow: a plain call
    assert asyncio.run(DBOS.run_step_async(None, add, 8)) == 8
    with pytest.raises(DBOSException, match="unknown step options"):
        DBOS.run_step({"retries": True}, add, 1)  # type: ignore[typeddict-unknown-key]
    with pytest.raises(DBOSException, match="sync but timeout_seconds"):
        DBOS.run_step({"timeout_seconds": 1.0}, add, 1)
    with pytest.raises(DBOSException, match="name must be a string"):
        DBOS.run_step({"name": 5}, add, 1)  # type: ignore[typeddict-item]


# -- step options ----------------------------------------------------------------------------------


def test_step_status_fields(launch_dbos: Launch) -> None:
    seen: list[tuple[int, int | None, int | None, int]] = []

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01)
    def flaky() -> str:
        status = DBOS.step_status
        assert status is not None
        seen.append((status.step_id, status.current_attempt, status.max_attempts, status.attempt))
        if len(seen) < 3:
            raise RuntimeError("not yet")
        return "ok"

    @DBOS.step()
    def plain() -> tuple[int, int | None, int | None]:
        status = DBOS.step_status
        assert status is not None
        return status.step_id, status.current_attempt, status.max_attempts

    @DBOS.workflow()
    def wf() -> tuple[str, tuple[int, int | None, int | None]]:
        return flaky(), plain()

    launch_dbos()
    assert wf() == ("ok", (2, None, None))
    assert seen == [(1, 0, 3, 1), (1, 1, 3, 2), (1, 2, 3, 3)]
    assert DBOS.step_status is None


def test_should_retry_decides_from_the_exception(launch_dbos: Launch) -> None:
    attempts: list[str] = []

    @DBOS.step(
        retries_allowed=True,
        max_attempts=4,
        interval_seconds=0.01,
        should_retry=lambda exc: isinstance(exc, TimeoutError),
    )
    def call(kind: str) -> None:
        attempts.append(kind)
        raise TimeoutError("slow") if kind == "transient" else ValueError("bad input")

    async def transient_only(exc: BaseException) -> bool:
        await asyncio.sleep(0)
        return isinstance(exc, TimeoutError)

    @DBOS.step(
        retries_allowed=True,
        max_attempts=3,
        interval_seconds=0.01,
        should_retry=transient_only,
    )
    async def acall() -> None:
        attempts.append("async")
        raise ValueError("bad input")

    @DBOS.workflow()
    def wf(kind: str) -> str:
        try:
            call(kind)
        except Exception as exc:
            return type(exc).__name__
        return "no error"

    @DBOS.workflow()
    async def awf() -> str:
        try:
            await acall()
        except Exception as exc:
            return type(exc).__name__
        return "no error"

    launch_dbos()
    assert wf("permanent") == "ValueError"  # not retried: the exception itself, at once
    assert attempts == ["permanent"]
    attempts.clear()
    assert wf("transient") == "DBOSMaxStepRetriesExceeded"
    assert attempts == ["transient"] * 4
    attempts.clear()
    assert asyncio.run(awf()) == "ValueError"
    assert attempts == ["async"]
    with pytest.raises(DBOSException, match="should_retry is async"):

        @DBOS.step(retries_allowed=True, should_retry=transient_only)
        def sync_step() -> None:
            pass


def test_step_timeout_cancels_an_async_step(launch_dbos: Launch) -> None:
    cleaned: list[str] = []
    tries: list[int] = []

    @DBOS.step(timeout_seconds=0.3)
    async def hangs() -> str:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("hangs")
        return "never"

    @DBOS.step(timeout_seconds=0.3, retries_allowed=True, max_attempts=3, interval_seconds=0.01)
    async def slow_then_quick() -> str:
        tries.append(1)
        await asyncio.sleep(0.25 if len(tries) > 1 else 5)  # each attempt has its own limit
        return "quick"

    @DBOS.workflow()
    async def wf() -> tuple[str, str]:
        try:
            await hangs()
            first = "no timeout"
        except DBOSStepTimeoutError as exc:
            first = f"timeout {exc.timeout_seconds}"
        return first, await slow_then_quick()

    launch_dbos()
    started = time.monotonic()
    with SetWorkflowID("step-timeout"):
        assert asyncio.run(wf()) == ("timeout 0.3", "quick")
    assert time.monotonic() - started < 5
    assert cleaned == ["hangs"]
    assert len(tries) == 2
    steps = DBOS.list_workflow_steps("step-timeout")
    assert isinstance(steps[0].error, DBOSStepTimeoutError)
    assert steps[1].output == "quick"

    async def outside() -> str:  # inert outside a workflow: a plain call
        return await slow_then_quick()

    tries.clear()
    tries.append(1)
    assert asyncio.run(outside()) == "quick"
    with pytest.raises(DBOSException, match="sync but timeout_seconds"):

        @DBOS.step(timeout_seconds=1)
        def sync_step() -> None:
            pass

    with pytest.raises(DBOSException, match="positive and finite"):

        @DBOS.step(timeout_seconds=-1)
        async def negative() -> None:
            pass


# -- wait_first ------------------------------------------------------------------------------------


def test_wait_first_returns_the_first_handle_to_finish(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def napper(seconds: float) -> float:
        DBOS.sleep(seconds)
        return seconds

    @DBOS.workflow()
    def chooser() -> str:
        slow = DBOS.start_workflow(napper, 3.0)
        quick = DBOS.start_workflow(napper, 0.2)
        return DBOS.wait_first([slow, quick], polling_interval_sec=0.05).workflow_id

    launch_dbos()
    slow = DBOS.start_workflow(napper, 3.0)
    quick = DBOS.start_workflow(napper, 0.3)
    assert DBOS.wait_first([slow, quick], polling_interval_sec=0.05) is quick
    with SetWorkflowID("chooser"):
        assert chooser() == "chooser-2"
    steps = DBOS.list_workflow_steps("chooser")
    assert [(s.function_name, s.output) for s in steps][-1] == ("DBOS.waitFirst", "chooser-2")

    async def main() -> str:
        a = await DBOS.start_workflow_async(napper, 3.0)
        b = await DBOS.start_workflow_async(napper, 0.2)
        return (await DBOS.wait_first_async([a, b], polling_interval_sec=0.05)).workflow_id

    assert asyncio.run(main()) != slow.workflow_id
    with pytest.raises(ValueError, match="empty"):
        DBOS.wait_first([])
    with pytest.raises(ValueError, match="duplicate"):
        DBOS.wait_first([quick, DBOS.retrieve_workflow(quick.workflow_id)])
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.wait_first([DBOS.retrieve_workflow("nobody", existing_workflow=False)])


# -- send_bulk and get_all_events ------------------------------------------------------------------


def test_send_bulk_and_get_all_events(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def inbox(n: int) -> list[Any]:
        DBOS.set_event("a", 1)
        DBOS.set_event("b", {"x": [1, 2]})
        return [DBOS.recv("t", timeout_seconds=2) for _ in range(n)]

    @DBOS.workflow()
    def broadcaster(dests: list[str]) -> dict[str, Any]:
        DBOS.send_bulk([SendMessage(d, f"from wf to {d}", "t", idempotency_key=d) for d in dests])
        return DBOS.get_all_events(dests[0])

    launch_dbos()
    with SetWorkflowID("inbox-1"):
        one = DBOS.start_workflow(inbox, 3)
    with SetWorkflowID("inbox-2"):
        two = DBOS.start_workflow(inbox, 2)
    DBOS.send_bulk(
        [
            SendMessage("inbox-1", "first", "t"),
            SendMessage("inbox-1", "keyed", "t", idempotency_key="k"),
        ]
    )
    # A key is scoped per destination: delivered to inbox-2, not again to inbox-1.
    DBOS.send_bulk(
        [
            SendMessage("inbox-1", "keyed again", "t", idempotency_key="k"),
            SendMessage("inbox-2", "other", "t", idempotency_key="k2"),
        ]
    )
    DBOS.send("inbox-2", "other again", "t", idempotency_key="k2")
    with pytest.raises(DBOSNonExistentWorkflowError):  # nothing delivered
        DBOS.send_bulk([SendMessage("inbox-1", "lost", "t"), SendMessage("nobody", "x", "t")])
    with pytest.raises(DBOSException, match="duplicate idempotency keys"):
        DBOS.send_bulk([SendMessage("inbox-1", 1, idempotency_key="d")] * 2)
    with SetWorkflowID("broadcaster"):
        events = broadcaster(["inbox-1", "inbox-2"])
    assert events == {"a": 1, "b": {"x": [1, 2]}}
    assert one.get_result() == ["first", "keyed", "from wf to inbox-1"]
    assert two.get_result() == ["other", "from wf to inbox-2"]
    steps = DBOS.list_workflow_steps("broadcaster")
    assert [(s.function_name, s.output) for s in steps] == [
        ("DBOS.send_bulk", None),
        ("DBOS.get_events", events),
    ]
    assert DBOS.get_all_events("inbox-2") == events
    assert DBOS.get_all_events("nobody") == {}

    async def main() -> dict[str, Any]:
        await DBOS.send_bulk_async([SendMessage("inbox-1", "late", "t")])
        return await DBOS.get_all_events_async("inbox-1")

    assert asyncio.run(main()) == events


# -- steps and transactions started as workflows ---------------------------------------------------


def test_steps_and_transactions_start_as_one_step_workflows(
    launch_dbos: Launch, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tx_rows (v int)")

    @DBOS.step(name="doubler")
    def double(x: int) -> int:
        return x * 2

    @DBOS.step()
    async def triple(x: int) -> int:
        return x * 3

    @DBOS.transaction()
    def insert(v: int) -> int:
        DBOS.sql_session.execute("INSERT INTO tx_rows VALUES (%s)", (v,))
        return v

    queue = Queue("steps-queue")
    launch_dbos()
    with SetWorkflowID("step-wf"):
        assert DBOS.start_workflow(double, 4).get_result() == 8
    status = DBOS.get_workflow_status("step-wf")
    assert status is not None and status.name == "<temp>.doubler"
    assert [s.function_name for s in DBOS.list_workflow_steps("step-wf")] == ["doubler"]
    assert queue.enqueue(double, 5).get_result() == 10
    tx = DBOS.start_workflow(insert, 7)
    assert tx.get_result() == 7
    tx_status = DBOS.get_workflow_status(tx.workflow_id)
    assert tx_status is not None and tx_status.name == f"<temp>.{insert.__qualname__}"

    async def main() -> int:
        handle = await DBOS.start_workflow_async(triple, 3)
        return int(await handle.get_result())

    assert asyncio.run(main()) == 9
    client = DBOSClient(db_url)
    try:
        handle = client.enqueue(
            {"workflow_name": "<temp>.doubler", "queue_name": "steps-queue"}, 21
        )
        assert handle.get_result() == 42
    finally:
        client.destroy()

    def plain() -> None:
        pass

    with pytest.raises(DBOSException, match="@DBOS.step"):
        DBOS.start_workflow(plain)


ROOT = Path(__file__).resolve().parent.parent


def _app(mode: str, db_url: str, wid: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "KILL_AT"))}
    environment.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "tests.apps.steps_app", mode, db_url, wid],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_step_started_as_workflow_is_recovered_after_sigkill(db_url: str) -> None:
    """A step started as a workflow is a registered workflow: a process killed inside it
    leaves it PENDING, and the restarted process recovers and finishes it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tally (label text, pid int)")
    killed = _app("start-step", db_url, "tally-1", KILL_AT="in-step")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    recovered = _app("recover", db_url, "tally-1")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.strip().startswith("once-")
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*) FROM tally").fetchone()
        status = conn.execute(
            "SELECT name, status FROM dbos.workflow_status WHERE workflow_uuid = 'tally-1'"
        ).fetchone()
    assert rows is not None and rows[0] == 2  # the killed attempt, then the recovered one
    assert status == ("<temp>.tally", "SUCCESS")


def test_wait_first_replays_its_recorded_answer_after_sigkill(db_url: str) -> None:
    """``wait_first`` in a workflow is recorded: after a SIGKILL, the recovered run returns the
    handle the first run chose, although now another one (first in the list) has finished."""
    killed = _app("start-race", db_url, "race-1", KILL_AT="after-wait", SLOW_HANGS="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    recovered = _app("recover", db_url, "race-1", HOLD_FOR_SLOW="1")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.strip() == "race-1-fast"
    slow = _app("recover", db_url, "race-1-slow")
    assert slow.stdout.strip() == "slow"
