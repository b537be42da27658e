"""DBOS 2.x's management API, on ``DBOS`` and on ``DBOSClient``, sync and async: deleting
workflows (every row, children, a running one), bulk cancel and resume, the list filters, fork's
start step, timeout and ID, recovery_attempts as DBOS counts it, StepInfo as DBOS's dict,
reset_system_database and the client's constructor."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSNonExistentWorkflowError,
    Queue,
    SetWorkflowID,
    WorkflowHandle,
    WorkflowHandleAsync,
)

Launch = Callable[..., None]

TABLES = {
    "workflow_status": "workflow_uuid",
    "operation_outputs": "workflow_uuid",
    "notifications": "destination_uuid",
    "idempotent_sends": "destination_uuid",
    "workflow_events": "workflow_uuid",
}


def _rows(db_url: str, workflow_id: str) -> dict[str, int]:
    """How many rows each system table holds for ``workflow_id``."""
    with psycopg.connect(db_url) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM dbos.{table} WHERE {column} = %s",  # noqa: S608 (fixed names)
                (workflow_id,),
            ).fetchone()[0]  # type: ignore[index]
            for table, column in TABLES.items()
        }


def _wait_status(workflow_id: str, status: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = DBOS.get_workflow_status(workflow_id)
        if found is not None and found.status == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{workflow_id} never reached {status}")


# -- delete ----------------------------------------------------------------------------------------


def test_delete_workflow_removes_its_rows_in_every_system_table(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.step()
    def one() -> int:
        return 1

    @DBOS.workflow()
    def talker() -> int:
        DBOS.set_event("progress", "half")
        got = DBOS.recv("t", timeout_seconds=10)
        return one() + int(got)

    launch_dbos()
    with SetWorkflowID("victim"):
        handle = DBOS.start_workflow(talker)
    with DBOSClient(db_url) as client:
        client.send("victim", 1, "t", idempotency_key="k1")
        client.send("victim", 9, "unread")  # never consumed: stays in notifications
    assert handle.get_result() == 2
    with SetWorkflowID("bystander"):
        DBOS.start_workflow(talker)
    DBOS.send("bystander", 5, "t")
    assert DBOS.retrieve_workflow("bystander").get_result() == 6
    before = _rows(db_url, "victim")
    assert all(n > 0 for n in before.values()), before

    DBOS.delete_workflow("victim")

    assert _rows(db_url, "victim") == dict.fromkeys(TABLES, 0)
    assert DBOS.get_workflow_status("victim") is None
    assert DBOS.get_workflow_status("bystander") is not None  # others untouched
    # set_event, recv, one (and the recv's timeout row when it had to wait: timing decides)
    kept = [s.function_name for s in DBOS.list_workflow_steps("bystander")]
    assert [n for n in kept if n != "DBOS.sleep"] == [
        "DBOS.setEvent",
        "DBOS.recv",
        one.__qualname__,
    ]
    DBOS.delete_workflow("no-such-workflow")  # unknown IDs are ignored, as in DBOS


def test_delete_children_recursively_only_when_asked(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def leaf() -> str:
        return "leaf"

    @DBOS.workflow()
    def middle() -> str:
        with SetWorkflowID(f"{DBOS.workflow_id}-leaf"):
            return leaf()

    @DBOS.workflow()
    def top() -> str:
        with SetWorkflowID(f"{DBOS.workflow_id}-middle"):
            return middle()

    launch_dbos()
    for wid in ("a", "b"):
        with SetWorkflowID(wid):
            assert top() == "leaf"
    assert {w.workflow_id for w in DBOS.list_workflows(parent_workflow_id="a")} == {"a-middle"}

    DBOS.delete_workflow("a")  # children stay
    assert DBOS.get_workflow_status("a") is None
    assert DBOS.get_workflow_status("a-middle") is not None
    assert DBOS.get_workflow_status("a-middle-leaf") is not None

    DBOS.delete_workflows(["b"], delete_children=True)  # the whole tree goes
    for wid in ("b", "b-middle", "b-middle-leaf"):
        assert DBOS.get_workflow_status(wid) is None, wid


def test_deleting_a_running_workflow_stops_its_run_and_nothing_is_recorded_after(
    launch_dbos: Launch, db_url: str
) -> None:
    inside = threading.Event()
    release = threading.Event()
    after: list[str] = []

    @DBOS.step()
    def blocking() -> str:
        inside.set()
        release.wait(10)
        return "done"

    @DBOS.step()
    def later() -> str:
        after.append("ran")
        return "later"

    @DBOS.workflow()
    def long_one() -> str:
        return blocking() + later()

    launch_dbos()
    with SetWorkflowID("running"):
        handle = DBOS.start_workflow(long_one)
    assert inside.wait(10)
    DBOS.delete_workflow("running")
    release.set()
    with pytest.raises(DBOSNonExistentWorkflowError):  # the workflow is gone, not finished
        handle.get_result()
    time.sleep(0.3)
    assert after == []  # the run stopped at its next step
    assert _rows(db_url, "running") == dict.fromkeys(TABLES, 0)  # and wrote nothing back


def test_client_deletes_and_async_deletes(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def quick(x: int) -> int:
        return x

    launch_dbos()
    for i in range(3):
        with SetWorkflowID(f"q{i}"):
            quick(i)
    with DBOSClient(db_url) as client:
        client.delete_workflow("q0")
        asyncio.run(client.delete_workflows_async(["q1"]))
        assert client.get_workflow_status("q0") is None
        assert client.get_workflow_status("q1") is None
    asyncio.run(DBOS.delete_workflow_async("q2"))
    assert DBOS.get_workflow_status("q2") is None


# -- bulk cancel and resume ------------------------------------------------------------------------


def test_bulk_cancel_and_resume_return_what_dbos_returns(launch_dbos: Launch, db_url: str) -> None:
    queue = Queue("held", concurrency=1)
    gate = threading.Event()

    @DBOS.workflow()
    def waits(x: int) -> int:
        gate.wait(10)
        return x

    launch_dbos()
    ids = [f"bulk{i}" for i in range(3)]
    for wid in ids:
        with SetWorkflowID(wid):
            queue.enqueue(waits, int(wid[-1]))
    assert DBOS.cancel_workflows(ids) is None  # type: ignore[func-returns-value]
    for wid in ids:
        _wait_status(wid, "CANCELLED")
    gate.set()
    handles = DBOS.resume_workflows(ids)
    assert [type(h) for h in handles] == [WorkflowHandle] * 3
    assert [h.get_result() for h in handles] == [0, 1, 2]

    with DBOSClient(db_url) as client:
        with SetWorkflowID("bulk-client"):
            queue.enqueue(waits, 7)
        _wait_status("bulk-client", "SUCCESS")
        with SetWorkflowID("bulk-client2"):
            DBOS.start_workflow(waits, 8)
        assert client.cancel_workflows(["bulk-client", "missing"]) is None  # type: ignore[func-returns-value]
        resumed = client.resume_workflows(["bulk-client2"])
        assert [h.get_workflow_id() for h in resumed] == ["bulk-client2"]
        assert resumed[0].get_result() == 8
        # The per-workflow outcome stays available to tools (the CLI, the dashboard).
        [change] = client.cancel_each(["bulk-client"])
        assert not change.changed and change.reason == "already SUCCESS"
        # As in DBOS, an unknown ID in a bulk resume raises, and none of them is resumed.
        name = waits.__qualname__
        client.enqueue({"workflow_name": name, "queue_name": "unserved", "workflow_id": "held"})
        DBOS.cancel_workflow("held")
        both = ["held", "missing"]
        with pytest.raises(DBOSNonExistentWorkflowError):
            DBOS.resume_workflows(both)
        with pytest.raises(DBOSNonExistentWorkflowError):
            client.resume_workflows(both)
        with pytest.raises(DBOSNonExistentWorkflowError):
            asyncio.run(DBOS.resume_workflows_async(both))
        with pytest.raises(DBOSNonExistentWorkflowError):
            asyncio.run(client.resume_workflows_async(both))
        status = DBOS.get_workflow_status("held")
        assert status is not None and status.status == "CANCELLED"


# -- list filters ----------------------------------------------------------------------------------


def test_list_workflows_filters_of_dbos_2(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def child() -> str:
        return "c"

    @DBOS.workflow()
    def parent() -> str:
        with SetWorkflowID(f"{DBOS.workflow_id}.kid"):
            return child()

    @DBOS.workflow()
    def plain(x: int) -> int:
        return x

    launch_dbos()
    for wid in ("order_1", "order_2", "orderX3"):
        with SetWorkflowID(wid):
            plain(1)
    with SetWorkflowID("fam"):
        parent()
    with SetWorkflowID("order_1-fork"):
        DBOS.fork_workflow("order_1", 1).get_result()

    def ids(**filters: Any) -> list[str]:
        return sorted(w.workflow_id for w in DBOS.list_workflows(**filters))

    # "_" in a prefix is a character, not LIKE's wildcard ("orderX3" does not match "order_").
    assert ids(workflow_id_prefix="order_") == ["order_1", "order_1-fork", "order_2"]
    assert ids(workflow_id_prefix=["fam", "orderX"]) == ["fam", "fam.kid", "orderX3"]
    assert ids(forked_from="order_1") == ["order_1-fork"]
    assert ids(was_forked_from=True) == ["order_1"]
    assert ids(parent_workflow_id="fam") == ["fam.kid"]
    assert ids(has_parent=True) == ["fam.kid"]
    assert "fam.kid" not in ids(has_parent=False)
    assert len(ids(executor_id="local")) == 6 and ids(executor_id=["nobody"]) == []
    assert ids(user="alice") == []  # no workflow records an authenticated user here
    # DBOS 3.4's is_fork (the forks themselves), and the keywords of what no workflow records here
    # (an application name, a shard): accepted, as a DBOS app passes them, matching nothing.
    assert ids(is_fork=True) == ["order_1-fork"] and "order_1-fork" not in ids(is_fork=False)
    for key in ("application_name", "shard_key", "parent_shard_key"):
        assert ids(**{key: "x"}) == [] and len(ids(**{key: None})) == 6
    with DBOSClient(db_url) as client:
        assert [w.workflow_id for w in client.list_workflows(is_fork=True)] == ["order_1-fork"]
        assert client.list_queued_workflows(application_name="x") == []
    both = ids(name=[plain.__qualname__, child.__qualname__])
    assert both == sorted(ids(name=plain.__qualname__) + ["fam.kid"])
    assert ids(name=[]) == []
    with DBOSClient(db_url) as client:
        found = client.list_workflows(workflow_id_prefix="order_", forked_from="order_1")
        assert [w.workflow_id for w in found] == ["order_1-fork"]
        assert asyncio.run(client.list_workflows_async(parent_workflow_id="fam"))[0].output == "c"
    assert [
        w.workflow_id for w in asyncio.run(DBOS.list_workflows_async(forked_from="order_1"))
    ] == ["order_1-fork"]
    with pytest.raises(DBOSException, match="invalid executor_id"):
        DBOS.list_workflows(executor_id=[1])  # type: ignore[list-item]


def test_list_queued_workflows_takes_dbos_2_keywords(launch_dbos: Launch, db_url: str) -> None:
    queue = Queue("parked-q")
    gate = threading.Event()

    @DBOS.workflow()
    def held(x: int) -> int:
        gate.wait(10)
        return x

    launch_dbos()
    with SetWorkflowID("lq-1"):
        queue.enqueue(held, 1)
    _wait_status("lq-1", "PENDING")
    found = DBOS.list_queued_workflows(
        workflow_id_prefix="lq-", load_output=True, executor_id="local"
    )
    assert [w.workflow_id for w in found] == ["lq-1"]
    gate.set()
    _wait_status("lq-1", "SUCCESS")
    assert DBOS.list_queued_workflows(workflow_id_prefix="lq-") == []
    # queues_only with a status keeps the queue's workflows of that status (DBOS's rule).
    done = DBOS.list_workflows(queues_only=True, status="SUCCESS", workflow_id_prefix="lq-")
    assert [(w.workflow_id, w.output) for w in done] == [("lq-1", 1)]
    with DBOSClient(db_url) as client:
        assert [w.output for w in client.list_queued_workflows(status="SUCCESS")] == [1]
        assert asyncio.run(DBOS.list_queued_workflows_async(status=["SUCCESS"]))[0].output == 1


# -- fork ------------------------------------------------------------------------------------------


def test_fork_takes_any_start_step_and_a_timeout(launch_dbos: Launch) -> None:
    runs: list[int] = []

    @DBOS.step()
    def s(i: int) -> int:
        runs.append(i)
        return i

    @DBOS.workflow()
    def three() -> int:
        return s(1) + s(2) + s(3)

    launch_dbos()
    with SetWorkflowID("orig"):
        assert three() == 6
    runs.clear()
    assert DBOS.fork_workflow("orig", 0).get_result() == 6  # below 1 means 1: all re-run
    assert runs == [1, 2, 3]
    runs.clear()
    assert DBOS.fork_workflow("orig", 99).get_result() == 6  # beyond the last: every step kept
    assert runs == []
    handle = DBOS.fork_workflow("orig", 3, timeout_seconds=30)
    assert handle.get_result() == 6 and runs == [3]
    assert handle.get_status().workflow_timeout_ms == 30_000
    with pytest.raises(DBOSException, match="timeout"):
        DBOS.fork_workflow("orig", 1, timeout_seconds=0)
    with pytest.raises(DBOSException, match="start_step"):
        DBOS.fork_workflow("orig", "2")  # type: ignore[arg-type]
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.fork_workflow("nope", 1)


def test_both_forks_honour_set_workflow_id_and_async_forks_return_async_handles(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.workflow()
    def echo(x: int) -> int:
        return x

    launch_dbos()
    with SetWorkflowID("src"):
        echo(4)
    with SetWorkflowID("fork-dbos"):
        assert DBOS.fork_workflow("src", 1).get_workflow_id() == "fork-dbos"
    with DBOSClient(db_url) as client:
        with SetWorkflowID("fork-client"):
            assert client.fork_workflow("src", 1).get_workflow_id() == "fork-client"
        assert DBOS.retrieve_workflow("fork-client").get_result() == 4

        async def forks() -> tuple[Any, Any]:
            with SetWorkflowID("fork-async-dbos"):
                a = await DBOS.fork_workflow_async("src", 1)
            with SetWorkflowID("fork-async-client"):
                b = await client.fork_workflow_async("src", 1)
            assert isinstance(a, WorkflowHandleAsync) and isinstance(b, WorkflowHandleAsync)
            return (await a.get_result(), a.get_workflow_id()), (
                await b.get_result(),
                b.get_workflow_id(),
            )

        assert asyncio.run(forks()) == ((4, "fork-async-dbos"), (4, "fork-async-client"))


# -- recovery_attempts -----------------------------------------------------------------------------


def test_recovery_attempts_count_the_first_run_as_dbos_does(launch_dbos: Launch) -> None:
    queue = Queue("counted")

    @DBOS.workflow()
    def once() -> int:
        return 1

    launch_dbos()
    with SetWorkflowID("direct"):
        once()
    with SetWorkflowID("queued"):
        queue.enqueue(once).get_result()
    for wid in ("direct", "queued"):
        status = DBOS.get_workflow_status(wid)
        assert status is not None and status.recovery_attempts == 1, wid


# -- steps -----------------------------------------------------------------------------------------


def test_list_workflow_steps_reads_as_dbos_step_info(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.step()
    def first() -> str:
        return "one"

    @DBOS.step()
    def second() -> str:
        raise ValueError("two")

    @DBOS.workflow()
    def pair() -> None:
        first()
        try:
            second()
        except ValueError:
            pass

    launch_dbos()
    with SetWorkflowID("pair"):
        pair()
    steps = DBOS.list_workflow_steps("pair")
    assert steps[0]["function_id"] == 1 and steps[0]["output"] == "one"
    assert isinstance(steps[1]["error"], ValueError) and steps[1]["output"] is None
    assert steps[0]["started_at_epoch_ms"] == steps[0].started_at is not None
    assert set(steps[0]) == {
        "function_id",
        "function_name",
        "output",
        "error",
        "child_workflow_id",
        "started_at_epoch_ms",
        "completed_at_epoch_ms",
    }
    assert steps[0].output == "one"  # attribute access keeps working
    assert dict(steps[0])["function_name"] == steps[0].function_name
    paged = DBOS.list_workflow_steps("pair", offset=1, limit=5, load_output=False)
    assert [(s["function_id"], s["error"]) for s in paged] == [(2, None)]
    with DBOSClient(db_url) as client:
        assert [s["output"] for s in client.list_workflow_steps("pair")] == ["one", None]
        asynced = asyncio.run(client.list_workflow_steps_async("pair"))
        assert asynced[0]["output"] == "one"
    assert asyncio.run(DBOS.list_workflow_steps_async("pair", limit=1))[0]["output"] == "one"


# -- async twins -----------------------------------------------------------------------------------


def test_dbos_async_management_twins(launch_dbos: Launch) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def gated(x: int) -> int:
        gate.wait(10)
        return x

    launch_dbos()

    async def scenario() -> None:
        with SetWorkflowID("am"):
            await DBOS.start_workflow_async(gated, 3)
        status = await DBOS.get_workflow_status_async("am")
        assert status is not None and status.status == "PENDING"
        await DBOS.cancel_workflow_async("am")
        await asyncio.to_thread(_wait_status, "am", "CANCELLED")
        gate.set()
        resumed = await DBOS.resume_workflow_async("am")
        assert isinstance(resumed, WorkflowHandleAsync)
        assert await resumed.get_result() == 3
        assert await DBOS.get_result_async("am") == 3
        restarted = await DBOS.restart_workflow_async("am")
        assert await restarted.get_result() == 3
        await DBOS.cancel_workflows_async(["am"])
        [again] = await DBOS.resume_workflows_async(["am"])
        assert isinstance(again, WorkflowHandleAsync) and await again.get_result() == 3
        await DBOS.delete_workflows_async(["am"])
        assert await DBOS.get_workflow_status_async("am") is None

    asyncio.run(scenario())
    assert DBOS.get_result(DBOS.list_workflows(forked_from="am")[0].workflow_id) == 3


def test_client_async_twins(launch_dbos: Launch, db_url: str) -> None:
    Queue("client-async")  # declared, as the app declares it

    @DBOS.workflow()
    def replier(x: int) -> int:
        DBOS.set_event("seen", x)
        return x + int(DBOS.recv("go", timeout_seconds=10))

    launch_dbos()

    async def scenario(client: DBOSClient) -> None:
        handle = await client.enqueue_async(
            {"workflow_name": replier.__qualname__, "queue_name": "client-async"}, 5
        )
        assert isinstance(handle, WorkflowHandleAsync)
        assert await client.get_event_async(handle.get_workflow_id(), "seen", 10) == 5
        await client.send_async(handle.get_workflow_id(), 1, "go")
        assert await handle.get_result() == 6
        again = await client.retrieve_workflow_async(handle.get_workflow_id())
        assert await again.get_result() == 6
        status = await client.get_workflow_status_async(handle.get_workflow_id())
        assert status is not None and status.status == "SUCCESS"
        listed = await client.list_queued_workflows_async(
            queue_name="client-async", status="SUCCESS"
        )
        assert [w.workflow_id for w in listed] == [handle.get_workflow_id()]
        restarted = await client.restart_workflow_async(handle.get_workflow_id())
        await client.cancel_workflow_async(restarted.get_workflow_id())
        resumed = await client.resume_workflow_async(restarted.get_workflow_id())
        await client.send_async(resumed.get_workflow_id(), 2, "go")
        assert await resumed.get_result() == 7
        [bulk] = await client.resume_workflows_async([handle.get_workflow_id()])
        assert await bulk.get_result() == 6  # a finished workflow is left as it is
        await client.cancel_workflows_async([restarted.get_workflow_id()])
        await client.delete_workflow_async(restarted.get_workflow_id())
        with pytest.raises(DBOSNonExistentWorkflowError):
            await client.retrieve_workflow_async(restarted.get_workflow_id())

    with DBOSClient(db_url) as client:
        asyncio.run(scenario(client))


# -- client constructor and reset ------------------------------------------------------------------


def test_client_constructor_takes_dbos_2_keywords(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def noop() -> None:
        return None

    launch_dbos()
    with SetWorkflowID("seen-by-all"):
        noop()
    for client in (
        DBOSClient(db_url),
        DBOSClient(database_url=db_url),
        DBOSClient(system_database_url=db_url),
        DBOSClient(application_database_url=db_url),
        DBOSClient(system_database_url=db_url, application_database_url="postgresql://x/unused"),
    ):
        with client:
            assert client.get_workflow_status("seen-by-all") is not None


def test_reset_system_database_before_launch(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def noop() -> int:
        return 1

    launch_dbos()
    with SetWorkflowID("old"):
        noop()
    with pytest.raises(DBOSException, match="after DBOS is launched"):
        DBOS.reset_system_database()
    DBOS.destroy()
    DBOS(config={"name": "test-app", "database_url": db_url})
    DBOS.reset_system_database()
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT to_regclass('dbos.workflow_status')").fetchone()
    assert row == (None,)  # the schema is gone
    DBOS.destroy()
    launch_dbos()
    assert DBOS.list_workflows() == []  # the next launch starts empty
    with SetWorkflowID("new"):
        noop()
    DBOS.destroy()
    DBOS.reset_system_database(system_database_url=db_url, truncate=True)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM dbos.schema_version").fetchone()[0] > 0  # type: ignore[index]


def test_a_workflow_deleted_while_another_process_runs_it_stops_and_never_returns(
    fleet: Any, db_url: str
) -> None:
    fleet.start("a", lease=60)
    [wid] = fleet.enqueue(1, ops=200, seconds=0.05)

    def ledger() -> int:
        return int(
            fleet.query("SELECT count(*) FROM fleet_ledger WHERE workflow_id = %s", (wid,))[0][0]
        )

    fleet.wait_until(lambda: ledger() >= 3, 20, "the job to run some operations")
    with DBOSClient(db_url) as client:
        client.delete_workflows([wid])
    time.sleep(0.5)  # an operation in flight when the rows went is refused, not recorded
    stopped_at = ledger()
    time.sleep(1.5)
    assert ledger() == stopped_at < 200  # the run stopped
    assert _rows(db_url, wid) == dict.fromkeys(TABLES, 0)  # and wrote nothing back

    # Killed and replaced, the executor recovers nothing of it: a deleted workflow stays gone.
    fleet.signal("a", signal.SIGKILL)
    fleet.procs["a"].wait(10)
    fleet.start("b", lease=60)
    [other] = fleet.enqueue(1, ops=2, seconds=0)
    fleet.wait_until(lambda: fleet.statuses([other]) == {other: "SUCCESS"}, 30, "a new job")
    assert ledger() == stopped_at
    assert _rows(db_url, wid) == dict.fromkeys(TABLES, 0)


def test_a_deleted_workflow_started_again_under_its_id_fences_out_the_old_run(
    launch_dbos: Launch, db_url: str
) -> None:
    """A workflow deleted while its run is inside a step, then started again under the same ID
    (here: enqueued by a client, as another process would): the new row is another incarnation,
    and the old run's checkpoints must not pass its fence (owner epochs are never reused)."""
    entered, gate = threading.Event(), threading.Event()

    @DBOS.step()
    def first() -> str:
        entered.set()
        gate.wait(10)
        return "old run's step"

    @DBOS.workflow()
    def reused() -> str:
        first()
        return "old run's result"

    launch_dbos()
    with SetWorkflowID("reused"):
        DBOS.start_workflow(reused)
    assert entered.wait(10)
    client = DBOSClient(db_url)
    try:
        client.delete_workflow("reused")
        name = reused.__qualname__
        client.enqueue({"workflow_name": name, "queue_name": "unserved", "workflow_id": "reused"})
        gate.set()
        time.sleep(1.0)  # the old run's step ends and tries to record, then to finish
        status = client.get_workflow_status("reused")
    finally:
        client.destroy()
    assert status is not None and status.status == "ENQUEUED" and status.output is None
    assert _rows(db_url, "reused")["operation_outputs"] == 0
