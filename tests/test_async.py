"""The async API mirrors the sync one: workflows, steps, transactions, messaging, events, sleep,
handles, children, cancellation, and deterministic replay of gathered steps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    SetWorkflowID,
)

Launch = Callable[..., None]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_async_workflow_steps_and_transaction(launch_dbos: Launch, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (v int)")

    @DBOS.step()
    async def double(x: int) -> int:
        await asyncio.sleep(0.001)
        return x * 2

    @DBOS.transaction()
    async def insert(x: int) -> int:
        await DBOS.sql_session.execute("INSERT INTO items VALUES (%s)", (x,))
        row = (await DBOS.sql_session.execute("SELECT count(*) FROM items")).fetchone()
        return int(row[0])

    @DBOS.workflow()
    async def wf(x: int) -> tuple[int, int, str | None]:
        a = await double(x)
        return a, await insert(a), DBOS.workflow_id

    launch_dbos()

    async def main() -> Any:
        with SetWorkflowID("async-1"):
            first = await wf(3)
        with SetWorkflowID("async-1"):  # idempotent
            again = await wf(3)
        return first, again

    first, again = run(main())
    assert first == again == (6, 1, "async-1")
    assert _count(db_url, "SELECT count(*) FROM items") == 1
    steps = DBOS.list_workflow_steps("async-1")
    assert [(s.function_id, s.output) for s in steps] == [(1, 6), (2, 1)]


def test_gathered_steps_are_numbered_in_call_order(launch_dbos: Launch) -> None:
    @DBOS.step()
    async def delayed(i: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return i

    @DBOS.workflow()
    async def fan_out() -> list[int]:
        # The later calls finish first; numbering follows the calls, not the completions.
        return list(await asyncio.gather(*(delayed(i, 0.05 - i * 0.01) for i in range(5))))

    launch_dbos()
    with SetWorkflowID("fan"):
        assert run(fan_out()) == [0, 1, 2, 3, 4]
    assert [(s.function_id, s.output) for s in DBOS.list_workflow_steps("fan")] == [
        (i + 1, i) for i in range(5)
    ]


def test_recovered_workflow_with_gathered_steps_replays_correctly(
    launch_dbos: Launch, crash: Callable[[], None]
) -> None:
    executed: list[int] = []
    blocked = threading.Event()

    @DBOS.step()
    async def part(i: int) -> int:
        executed.append(i)
        if i == 2 and executed.count(2) == 1:
            blocked.set()
            await asyncio.sleep(30)  # the process "dies" here
        await asyncio.sleep(0.02 * (4 - i))
        return i * 10

    @DBOS.workflow()
    async def gathered() -> list[int]:
        first = list(await asyncio.gather(part(0), part(1), part(2), part(3)))
        return first + [await part(4)]

    launch_dbos()
    with SetWorkflowID("gathered"):
        DBOS.start_workflow(gathered)  # from sync code: runs on a loop of its own
    assert blocked.wait(10)
    time.sleep(0.3)  # the other gathered steps finish and are recorded
    crash()
    launch_dbos()
    assert DBOS.retrieve_workflow("gathered").get_result() == [0, 10, 20, 30, 40]
    steps = DBOS.list_workflow_steps("gathered")
    assert [(s.function_id, s.output) for s in steps] == [(i + 1, i * 10) for i in range(5)]
    # Steps 0, 1 and 3 completed before the crash and were replayed, not re-run.
    assert sorted(executed) == [0, 1, 2, 2, 3, 4]


def test_async_step_retries(launch_dbos: Launch) -> None:
    tries: list[int] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3)
    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("again")
        return "ok"

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=2)
    async def hopeless() -> None:
        raise ConnectionError("never")

    @DBOS.workflow()
    async def wf() -> str:
        result = await flaky()
        try:
            await hopeless()
        except DBOSMaxStepRetriesExceeded:
            result += " then gave up"
        return result

    launch_dbos()
    assert run(wf()) == "ok then gave up"
    assert len(tries) == 3


class Declined(Exception):
    """A user error that comes back from the record as itself."""


def test_async_errors_children_and_handles(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    async def child(x: int) -> int:
        return x + 100

    @DBOS.workflow()
    async def failing() -> None:
        raise Declined("no")

    @DBOS.workflow()
    async def parent() -> list[int]:
        direct = await child(1)
        handle = await DBOS.start_workflow_async(child, 2)
        return [direct, await handle.get_result()]

    @DBOS.workflow()
    async def other() -> None:
        return None

    launch_dbos()

    async def main() -> None:
        with SetWorkflowID("async-parent"):
            assert await parent() == [101, 102]
        handle = await DBOS.retrieve_workflow_async("async-parent")
        assert await handle.get_result() == [101, 102]
        assert (await handle.get_status()).status == "SUCCESS"
        with SetWorkflowID("async-fail"), pytest.raises(Declined):
            await failing()
        with pytest.raises(Declined):
            await (await DBOS.retrieve_workflow_async("async-fail")).get_result()
        with pytest.raises(DBOSNonExistentWorkflowError):
            await DBOS.retrieve_workflow_async("missing")
        with SetWorkflowID("async-parent"), pytest.raises(DBOSConflictingWorkflowError):
            await other()
        with pytest.raises(DBOSSerializationError):
            await DBOS.start_workflow_async(child, object())  # type: ignore[arg-type]

    run(main())
    steps = DBOS.list_workflow_steps("async-parent")
    assert [s.child_workflow_id for s in steps[:2]] == ["async-parent-1", "async-parent-2"]


def test_async_messages_events_and_sleep(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    async def receiver() -> list[Any]:
        await DBOS.set_event_async("ready", True)
        got = [await DBOS.recv_async("t", timeout_seconds=10) for _ in range(3)]
        got.append(await DBOS.recv_async("t", timeout_seconds=0.2))  # times out
        await DBOS.sleep_async(0.1)
        return got

    @DBOS.workflow()
    async def sender(target: str) -> None:
        for i in range(3):
            await DBOS.send_async(target, i, topic="t")

    launch_dbos()

    async def main() -> list[Any]:
        with SetWorkflowID("async-receiver"):
            handle = await DBOS.start_workflow_async(receiver)
        assert await DBOS.get_event_async("async-receiver", "ready", 10) is True
        await sender("async-receiver")
        return await handle.get_result()

    assert run(main()) == [0, 1, 2, None]
    names = [s.function_name for s in DBOS.list_workflow_steps("async-receiver")]
    assert names[0] == "DBOS.setEvent" and names.count("DBOS.recv") == 4
    assert "DBOS.sleep" in names


def test_many_waiting_receivers_do_not_exhaust_threads(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    async def waiter() -> Any:
        return await DBOS.recv_async(timeout_seconds=30)

    launch_dbos()

    async def main() -> list[Any]:
        handles = []
        for i in range(40):  # far more than asyncio's default thread pool
            with SetWorkflowID(f"waiter-{i}"):
                handles.append(await DBOS.start_workflow_async(waiter))
        await asyncio.sleep(0.5)
        for i in range(40):
            await DBOS.send_async(f"waiter-{i}", i)
        return list(await asyncio.gather(*(h.get_result() for h in handles)))

    started = time.monotonic()
    assert run(main()) == list(range(40))
    assert time.monotonic() - started < 20


def test_async_cancellation(launch_dbos: Launch) -> None:
    ticks: list[int] = []

    @DBOS.step()
    async def tick(i: int) -> None:
        ticks.append(i)
        await asyncio.sleep(0.05)

    @DBOS.workflow()
    async def long() -> None:
        for i in range(200):
            await tick(i)

    launch_dbos()

    async def main() -> None:
        with SetWorkflowID("async-cancel"):
            handle = await DBOS.start_workflow_async(long)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(DBOS.cancel_workflow, "async-cancel")
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handle.get_result()

    run(main())
    count = len(ticks)
    time.sleep(0.3)
    assert len(ticks) == count < 200
