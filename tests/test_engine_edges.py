"""The edges of the engine's one control loop (runtime/engine/drive.py): what passes through an
operation reaches the user as it was raised, resources an operation acquires go back when its
caller gives up, and a transaction keeps the context it was called in.

Each test is a class of faults with its cases: every kind of operation a user exception passes
through (step, nested step, transaction, workflow body, result wait, replay), sync and async."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from runtime import DBOS, SetWorkflowID

Launch = Callable[..., None]


def _first(items: list[int]) -> int:
    return next(iter(items))  # StopIteration on an empty list


# -- a user's StopIteration is itself everywhere (Python turns one that leaves a generator frame
#    into RuntimeError; the engine's operations are generators) --------------------------------


def test_stop_iteration_from_steps_and_transactions_reaches_the_caller(launch_dbos: Launch) -> None:
    @DBOS.step()
    def step(items: list[int]) -> int:
        return _first(items)

    @DBOS.step()
    def outer_step() -> int:
        return step([])  # nested in a step: a plain call

    @DBOS.transaction()
    def tx(items: list[int]) -> int:
        DBOS.sql_session.execute("SELECT 1")
        return _first(items)

    caught: list[str] = []

    @DBOS.workflow()
    def wf() -> list[str]:
        for call in (lambda: step([]), outer_step, lambda: tx([])):
            try:
                call()
            except StopIteration:
                caught.append("StopIteration")
            except Exception as exc:  # the regression: RuntimeError("generator raised ...")
                caught.append(repr(exc))
        return caught

    launch_dbos()
    for plain in (lambda: step([]), outer_step, lambda: tx([])):  # outside a workflow
        with pytest.raises(StopIteration):
            plain()
    with SetWorkflowID("stop-iter"):
        assert wf() == ["StopIteration"] * 3
    recorded = [type(s.error).__name__ for s in DBOS.list_workflow_steps("stop-iter")]
    assert recorded == ["StopIteration"] * 3
    # Replayed from the record (a fork keeps the steps before step 4): the same errors.
    caught.clear()
    fork = DBOS.fork_workflow("stop-iter", 4)
    assert fork.get_result() == ["StopIteration"] * 3


def test_a_workflow_failing_with_stop_iteration_is_recorded_and_awaited_as_such(
    launch_dbos: Launch,
) -> None:
    @DBOS.workflow()
    def wf() -> int:
        return _first([])

    @DBOS.workflow()
    def parent() -> str:
        handle = DBOS.start_workflow(wf)
        try:
            handle.get_result()  # recorded inside a workflow
        except StopIteration:
            return "child failed with StopIteration"
        return "no error"

    launch_dbos()
    with pytest.raises(StopIteration):
        with SetWorkflowID("wf-stop"):
            wf()
    with pytest.raises(StopIteration):
        DBOS.retrieve_workflow("wf-stop").get_result()
    status = DBOS.get_workflow_status("wf-stop")
    assert status is not None and isinstance(status.error, StopIteration)
    assert parent() == "child failed with StopIteration"


# -- what an operation acquired goes back when its awaiting task is cancelled ------------------


def test_cancelling_an_async_transaction_waiting_for_a_connection_returns_it(
    launch_dbos: Launch,
) -> None:
    @DBOS.transaction()
    def hold() -> None:
        DBOS.sql_session.execute("SELECT pg_sleep(1.5)")

    @DBOS.transaction()
    async def quick() -> int:
        row = (await DBOS.sql_session.execute("SELECT 1")).fetchone()
        return int(row[0])

    launch_dbos(max_executor_threads=4)
    pool = DBOS._rt().app_pool
    holders = [threading.Thread(target=hold) for _ in range(pool.max_size)]
    for holder in holders:
        holder.start()
    time.sleep(0.5)  # every connection is held: quick() waits for one

    async def give_up() -> None:
        task = asyncio.create_task(quick())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(give_up())
    for holder in holders:
        holder.join()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats = pool.get_stats()
        if stats["pool_available"] == stats["pool_size"]:
            break
        time.sleep(0.05)
    stats = pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"], stats
    assert asyncio.run(quick()) == 1


# -- a transaction keeps the context it is called in -------------------------------------------


def test_a_transaction_called_from_a_step_is_part_of_that_step(launch_dbos: Launch) -> None:
    seen: list[Any] = []

    @DBOS.step()
    def inner() -> str:
        return "inner"

    @DBOS.transaction()
    def tx() -> str:
        seen.append(DBOS.step_id)
        return inner()  # plain: we are inside the outer step

    @DBOS.step()
    def outer() -> str:
        return tx()

    @DBOS.workflow()
    def wf() -> str:
        return outer()

    launch_dbos()
    with SetWorkflowID("tx-in-step"):
        assert wf() == "inner"
    assert seen == [1]  # the enclosing step's number
    assert [s.function_name for s in DBOS.list_workflow_steps("tx-in-step")] == [outer.__qualname__]
    assert DBOS.fork_workflow("tx-in-step", 1).get_result() == "inner"  # replays cleanly


def test_psycopg_rollback_rolls_back_quietly_sync_and_async(
    launch_dbos: Launch, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE rolled (v int)")

    @DBOS.transaction()
    def tx() -> str:
        DBOS.sql_session.execute("INSERT INTO rolled VALUES (1)")
        raise psycopg.Rollback()

    @DBOS.transaction()
    async def tx_async() -> str:
        await DBOS.sql_session.execute("INSERT INTO rolled VALUES (2)")
        raise psycopg.Rollback()

    @DBOS.workflow()
    def wf() -> list[Any]:
        return [tx(), "after"]

    @DBOS.workflow()
    async def wf_async() -> list[Any]:
        return [await tx_async(), "after"]

    launch_dbos()
    assert tx() is None
    assert asyncio.run(tx_async()) is None
    with SetWorkflowID("rb"):
        assert wf() == [None, "after"]
    with SetWorkflowID("rb-async"):
        assert asyncio.run(wf_async()) == [None, "after"]
    for wid in ("rb", "rb-async"):
        [step] = DBOS.list_workflow_steps(wid)
        assert step.output is None and step.error is None
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM rolled").fetchone() == (0,)
