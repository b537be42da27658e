"""Parked waits: a workflow waiting durably gives back its thread, and goes on when woken (at its
deadline, on a message, an event, another workflow's end, a cancellation), by a replay of its
recorded steps. Each kind of wait is one case of the same class: it parks, nothing of the
workflow runs while parked, and after the wake every step has run exactly once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import DBOS, DBOSClient, DBOSException, DBOSUnexpectedStepError, SetWorkflowID
from runtime.engine.pool import ExecutionPool
from tests.cli_helpers import clean_env, dbos

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent


def _parking() -> Any:
    return DBOS._rt().engine.parking


def _wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _status(url: str, wid: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (wid,)
        ).fetchone()
    assert row is not None
    return str(row[0])


# -- each kind of wait parks and is woken --------------------------------------------------------


@pytest.mark.parametrize("kind", ["sleep", "recv", "recv-timeout", "get_event", "child", "handle"])
def test_each_durable_wait_parks_and_goes_on_when_woken(launch_dbos: Launch, kind: str) -> None:
    ran: Counter[str] = Counter()

    @DBOS.step()
    def before(tag: str) -> str:
        ran[f"before-{tag}"] += 1
        return tag

    @DBOS.step()
    def after(value: Any) -> Any:
        ran["after"] += 1
        return value

    @DBOS.workflow()
    def child_wf() -> str:
        DBOS.sleep(2.0)
        return "child-done"

    @DBOS.workflow()
    def publisher() -> None:
        DBOS.sleep(2.0)
        DBOS.set_event("k", "event-value")

    @DBOS.workflow()
    def waiter(tag: str) -> Any:
        before(tag)
        if kind == "sleep":
            DBOS.sleep(2.0)
            got: Any = "slept"
        elif kind == "recv":
            got = DBOS.recv("topic", timeout_seconds=60)
        elif kind == "recv-timeout":
            got = DBOS.recv("topic", timeout_seconds=2.5)
        elif kind == "get_event":
            got = DBOS.get_event("publisher-1", "k", timeout_seconds=60)
        elif kind == "child":
            got = child_wf()
        else:
            got = DBOS.start_workflow(child_wf).get_result()
        return after(got)

    launch_dbos(max_executor_threads=2)
    if kind == "get_event":
        with SetWorkflowID("publisher-1"):
            DBOS.start_workflow(publisher)
    with SetWorkflowID("waiter-1"):
        handle = DBOS.start_workflow(waiter, kind)
    _wait_until(lambda: _parking().count() >= 1)
    if kind == "recv":
        DBOS.send("waiter-1", "message", topic="topic")
    expected = {
        "sleep": "slept",
        "recv": "message",
        "recv-timeout": None,
        "get_event": "event-value",
        "child": "child-done",
        "handle": "child-done",
    }[kind]
    assert handle.get_result() == expected
    assert ran == Counter({f"before-{kind}": 1, "after": 1})
    assert _parking().count() == 0


def test_many_sleepers_run_on_a_bounded_pool(launch_dbos: Launch) -> None:
    launch_dbos(max_executor_threads=4)
    ran: Counter[int] = Counter()

    @DBOS.step()
    def work(i: int) -> int:
        ran[i] += 1
        return i

    @DBOS.workflow()
    def sleeper(i: int) -> int:
        work(i)
        DBOS.sleep(4.0)
        return i

    before = threading.active_count()
    peak = [0]

    def all_parked() -> bool:
        peak[0] = max(peak[0], DBOS._rt().engine.pool.thread_count())
        assert threading.active_count() <= before + 4
        return bool(_parking().count() == 300)

    handles = [DBOS.start_workflow(sleeper, i) for i in range(300)]
    _wait_until(all_parked)
    assert sorted(h.get_result() for h in handles) == list(range(300))
    assert peak[0] <= 4
    assert set(ran.values()) == {1}


def test_async_workflow_parks_and_its_waiter_on_the_callers_loop_gets_the_result(
    launch_dbos: Launch,
) -> None:
    launch_dbos()
    ran: Counter[str] = Counter()

    @DBOS.step()
    async def charge() -> str:
        ran["charge"] += 1
        return "charged"

    @DBOS.workflow()
    async def snooze() -> str:
        await DBOS.sleep_async(1.5)
        return await charge()

    async def main() -> str:
        handle = await DBOS.start_workflow_async(snooze)
        await asyncio.sleep(0.5)
        assert _parking().count() == 1
        return str(await handle.get_result())

    assert asyncio.run(main()) == "charged"
    assert ran["charge"] == 1


def test_an_async_parent_that_parks_does_not_cut_short_the_children_on_its_loop(
    launch_dbos: Launch,
) -> None:
    launch_dbos()
    ran: Counter[str] = Counter()

    @DBOS.step()
    async def slow_charge() -> str:
        ran["charge"] += 1
        await asyncio.sleep(2.5)
        return "charged"

    @DBOS.workflow()
    async def child() -> str:
        return await slow_charge()

    @DBOS.workflow()
    async def parent() -> str:
        handle = await DBOS.start_workflow_async(child)  # a task on the parent's loop
        return str(await handle.get_result())  # parks after 1 s; the child is mid-step

    # Started from sync code: the parent runs on a pool thread's own event loop.
    assert DBOS.start_workflow(parent).get_result() == "charged"
    assert ran["charge"] == 1


def test_a_workflow_that_swallows_its_park_goes_on_after_its_wait(launch_dbos: Launch) -> None:
    launch_dbos()

    @DBOS.workflow()
    def careless() -> str:
        try:
            status = DBOS.recv("payment", timeout_seconds=30)
        except:  # noqa: E722 - the hostile pattern under test
            status = None
        return f"payment status: {status}"

    with SetWorkflowID("careless-1"):
        handle = DBOS.start_workflow(careless)
    _wait_until(lambda: _parking().count() == 1)
    DBOS.send("careless-1", "paid", topic="payment")
    assert handle.get_result() == "payment status: paid"


def test_waiters_are_told_when_the_runtime_stops_while_a_workflow_is_parked(
    launch_dbos: Launch, db_url: str
) -> None:
    launch_dbos()

    @DBOS.workflow()
    def long_nap() -> str:
        DBOS.sleep(60)
        return "rested"

    with SetWorkflowID("nap-1"):
        handle = DBOS.start_workflow(long_nap)
    _wait_until(lambda: _parking().count() == 1)
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            handle.get_result()
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    DBOS.destroy()
    waiter.join(10)
    assert len(raised) == 1 and isinstance(raised[0], DBOSException), raised
    assert "still PENDING" in str(raised[0])
    assert _status(db_url, "nap-1") == "PENDING"


def test_async_workflow_with_concurrent_operations_waits_in_place(launch_dbos: Launch) -> None:
    launch_dbos()
    ran: Counter[str] = Counter()

    @DBOS.step()
    async def slow_step() -> str:
        ran["step"] += 1
        await asyncio.sleep(2.0)
        return "step"

    @DBOS.workflow()
    async def both() -> list[Any]:
        return list(await asyncio.gather(slow_step(), DBOS.sleep_async(1.5)))

    async def main() -> list[Any]:
        handle = await DBOS.start_workflow_async(both)
        await asyncio.sleep(1.2)
        assert _parking().count() == 0  # never parks while a sibling operation runs
        return list(await handle.get_result())

    assert asyncio.run(main()) == ["step", None]
    assert ran["step"] == 1


def test_a_finally_block_cannot_start_an_operation_while_the_workflow_parks(
    launch_dbos: Launch,
) -> None:
    launch_dbos()
    ran: Counter[str] = Counter()

    @DBOS.step()
    def cleanup() -> None:
        ran["cleanup"] += 1

    @DBOS.workflow()
    def wf() -> str:
        try:
            DBOS.sleep(1.5)
        finally:
            cleanup()
        return "done"

    assert DBOS.start_workflow(wf).get_result() == "done"
    assert ran["cleanup"] == 1


def test_a_workflow_that_is_not_deterministic_across_a_wake_fails_as_on_recovery(
    launch_dbos: Launch, db_url: str
) -> None:
    launch_dbos()
    runs: list[int] = []

    @DBOS.step()
    def step_a() -> str:
        return "a"

    @DBOS.step()
    def step_b() -> str:
        return "b"

    @DBOS.workflow()
    def fickle() -> str:
        runs.append(1)
        # Memory outside steps: the first run takes one branch, the replay another.
        (step_a if len(runs) == 1 else step_b)()
        DBOS.sleep(1.5)
        return "never"

    with SetWorkflowID("fickle-1"):
        handle = DBOS.start_workflow(fickle)
    with pytest.raises(DBOSUnexpectedStepError):
        handle.get_result()
    assert _status(db_url, "fickle-1") == "ERROR"


# -- operators act on parked workflows -------------------------------------------------------------


def test_cli_cancels_resumes_and_forks_a_parked_workflow(launch_dbos: Launch, db_url: str) -> None:
    launch_dbos()
    ran: Counter[str] = Counter()

    @DBOS.step()
    def first() -> str:
        ran["first"] += 1
        return "first"

    @DBOS.workflow()
    def patient() -> str:
        first()
        message = DBOS.recv("go", timeout_seconds=120)
        return f"got {message}"

    with SetWorkflowID("patient-1"):
        handle = DBOS.start_workflow(patient)
    _wait_until(lambda: _parking().count() == 1)
    env = clean_env(DBOS_DATABASE_URL=db_url)

    cancel = dbos("workflow", "cancel", "patient-1", env=env)
    assert cancel.returncode == 0, cancel.stderr
    assert _status(db_url, "patient-1") == "CANCELLED"
    _wait_until(lambda: _parking().count() == 0)  # woken, found cancelled, given back

    resume = dbos("workflow", "resume", "patient-1", env=env)
    assert resume.returncode == 0, resume.stderr
    _wait_until(lambda: _parking().count() == 1)  # resumed: waiting in recv again, parked
    DBOS.send("patient-1", "news", topic="go")
    assert handle.get_result() == "got news"
    assert ran["first"] == 1

    fork = dbos(
        "workflow", "fork", "patient-1", "--step", "2", "--forked-workflow-id", "fork-1", env=env
    )
    assert fork.returncode == 0, fork.stderr
    _wait_until(lambda: _parking().count() == 1)
    DBOS.send("fork-1", "again", topic="go")
    assert DBOS.retrieve_workflow("fork-1").get_result() == "got again"
    assert ran["first"] == 1  # the fork replays step 1


_KILL_APP = """
import os, sys, time
from runtime import DBOS

@DBOS.step()
def note(i: int) -> int:
    return i

@DBOS.workflow()
def sleeper(i: int) -> int:
    note(i)
    DBOS.sleep(float(os.environ["SLEEP_S"]))
    return i

DBOS(config={"name": "parked-kill", "database_url": os.environ["DB_URL"],
             "executor_id": "local", "application_version": "v1", "max_executor_threads": 8})
DBOS.launch()
if sys.argv[1] == "start":
    for i in range(int(os.environ["COUNT"])):
        DBOS.start_workflow(sleeper, i)
    while DBOS._rt().engine.parking.count() < int(os.environ["COUNT"]):
        time.sleep(0.05)
    print("parked", flush=True)
    time.sleep(600)
else:
    while True:
        time.sleep(0.2)
"""


def test_a_process_killed_with_many_parked_workflows_recovers_them_all(
    db_url: str, tmp_path: Path
) -> None:
    app = tmp_path / "parked_kill_app.py"
    app.write_text(_KILL_APP)
    env = clean_env(DB_URL=db_url, COUNT="200", SLEEP_S="4", PYTHONPATH=str(ROOT))
    first = subprocess.Popen(
        [sys.executable, str(app), "start"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert first.stdout is not None
    assert first.stdout.readline().strip() == "parked"
    first.send_signal(signal.SIGKILL)
    first.wait()
    with psycopg.connect(db_url, autocommit=True) as conn:  # as a successor on the host sees it
        conn.execute("UPDATE dbos.executors SET stopped_at = 1 WHERE stopped_at IS NULL")
    second = subprocess.Popen([sys.executable, str(app), "serve"], env=env)
    try:
        client = DBOSClient(db_url)
        try:
            deadline = time.monotonic() + 60
            while True:
                done = [w for w in client.list_workflows(status="SUCCESS")]
                if len(done) == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert len(done) == 200
            assert sorted(client.retrieve_workflow(w.workflow_id).get_result() for w in done) == (
                list(range(200))
            )
        finally:
            client.destroy()
    finally:
        second.kill()
        second.wait()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM dbos.operation_outputs WHERE function_name LIKE %s",
            ("%note%",),
        ).fetchone()
    assert rows is not None and rows[0] == 200  # each step recorded once, never re-run


# -- the pool ------------------------------------------------------------------------------------


def test_the_pool_runs_in_order_within_its_bound_and_drops_what_never_started() -> None:
    order: list[int] = []
    dropped: list[int] = []
    gate = threading.Event()
    lock = threading.Lock()

    def task(i: int) -> Callable[[], None]:
        def run() -> None:
            gate.wait()
            with lock:
                order.append(i)

        return run

    def drop(i: int) -> Callable[[], None]:
        return lambda: dropped.append(i)

    single = ExecutionPool(1, idle_thread_s=0.2)
    for i in range(5):
        single.submit(f"t{i}", task(i), drop(i))
    _wait_until(lambda: single.backlog() == 4)  # one task taken by the one thread
    assert single.thread_count() == 1 and single.load() == 5
    gate.set()
    _wait_until(lambda: single.load() == 0)
    assert order == [0, 1, 2, 3, 4]  # first in, first out
    _wait_until(lambda: single.thread_count() == 0)  # an idle thread ends

    pool = ExecutionPool(2)
    gate.clear()
    for i in range(10, 14):
        pool.submit(f"u{i}", task(i), drop(i))
    _wait_until(lambda: pool.backlog() == 2)
    assert pool.thread_count() == 2
    threading.Timer(0.3, gate.set).start()
    pool.stop(5)
    assert sorted(order[5:]) == [10, 11] and dropped == [12, 13]
    pool.submit("late", task(99), drop(99))
    assert dropped == [12, 13, 99]
