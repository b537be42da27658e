"""DBOS 2.x queue API: register/retrieve/list/delete/listen, enqueue by queue name and by options,
async twins, partitioned queues, ``app_version`` and ``delay_seconds`` enqueue options, and the
bugs fixed with them (each test here failed before its fix)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    queries,
)
from tests.apps.queue_app import LEDGER_DDL
from tests.test_queues import run_intervals_by
from tests.test_queues_processes import Workers

Launch = Callable[..., None]


def intervals(url: str, queue_name: str) -> dict[str, list[tuple[int, int]]]:
    """The run intervals of a queue's successful workflows, per partition key."""
    return run_intervals_by(url, queue_name, "queue_partition_key")


def overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


def count_rows(url: str, *, queue_name: str | None = None, name: str | None = None) -> int:
    """Workflows recorded on a queue, or under a workflow name."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status "
            "WHERE (%(q)s::text IS NULL OR queue_name = %(q)s) "
            "AND (%(n)s::text IS NULL OR name = %(n)s)",
            {"q": queue_name, "n": name},
        )
        found = row.fetchone()
    return int(found[0]) if found else 0


# -- the bugs -------------------------------------------------------------------------------------


def test_deduplicated_enqueue_in_a_workflow_is_recorded_and_replayed(
    launch_dbos: Launch, crash: Callable[[], None], db_url: str
) -> None:
    """(5) The refusal is the step's outcome: after a crash, the replay raises it again instead of
    enqueuing a copy now that the deduplication ID is free."""
    queue = Queue("dedup-replay")
    in_pause = threading.Event()
    release = threading.Event()

    @DBOS.workflow()
    def child() -> str:
        return "child ran"

    @DBOS.step()
    def pause() -> None:
        in_pause.set()
        release.wait(10)

    @DBOS.workflow()
    def parent() -> str:
        try:
            with SetEnqueueOptions(deduplication_id="only-one"):
                queue.enqueue(child)
            outcome = "enqueued"
        except DBOSQueueDeduplicatedError:
            outcome = "deduplicated"
        pause()
        return outcome

    launch_dbos()
    with DBOSClient(db_url) as client:  # holds the ID, never dequeued (no executor has v-none)
        holder = client.enqueue(
            {
                "workflow_name": child.__qualname__,
                "queue_name": "dedup-replay",
                "deduplication_id": "only-one",
                "app_version": "v-none",
            }
        )
    with SetWorkflowID("dedup-parent"):
        DBOS.start_workflow(parent)
    assert in_pause.wait(10)
    DBOS.cancel_workflow(holder.workflow_id)  # the ID is free from now on
    crash()
    in_pause.clear()
    launch_dbos()  # recovery replays the parent
    assert in_pause.wait(10)
    release.set()
    assert DBOS.retrieve_workflow("dedup-parent").get_result() == "deduplicated"
    steps = DBOS.list_workflow_steps("dedup-parent")
    assert isinstance(steps[0].error, DBOSQueueDeduplicatedError)
    assert count_rows(db_url, queue_name="dedup-replay") == 1  # the holder only


def test_client_enqueue_refuses_a_negative_priority(launch_dbos: Launch, db_url: str) -> None:
    """(10) Refused before anything is recorded, as DBOS does."""
    launch_dbos()
    with DBOSClient(db_url) as client:
        for bad in (-1, 2**31, True):
            with pytest.raises(DBOSException, match="priority"):
                client.enqueue(
                    {
                        "workflow_name": "w",
                        "queue_name": "q",
                        "workflow_id": "bad-priority",
                        "priority": bad,  # type: ignore[typeddict-item]
                    }
                )
        assert client.get_workflow_status("bad-priority") is None
        with pytest.raises(DBOSException, match="delay_seconds"):
            client.enqueue({"workflow_name": "w", "queue_name": "q", "delay_seconds": -1})


def test_declaring_a_queue_twice_raises() -> None:
    """(11) As DBOS: whatever the parameters, the name is taken; the first stays declared."""
    first = Queue("declared-once", concurrency=3)
    with pytest.raises(DBOSException, match="already been declared"):
        Queue("declared-once", concurrency=3)
    with pytest.raises(DBOSException, match="already been declared"):
        DBOS.register_queue("declared-once", concurrency=1)
    assert DBOS.retrieve_queue("declared-once") is first
    assert first.concurrency == 3


def test_enqueue_options_around_start_workflow_raise(launch_dbos: Launch, db_url: str) -> None:
    """(12) As DBOS: the options need a queue, so a start without one refuses them."""

    @DBOS.workflow()
    def plain() -> int:
        return 1

    async def start_async() -> None:
        with SetEnqueueOptions(delay_seconds=5):
            await DBOS.start_workflow_async(plain)

    launch_dbos()
    with SetEnqueueOptions(priority=1), pytest.raises(DBOSException, match="priority"):
        DBOS.start_workflow(plain)
    with SetEnqueueOptions(deduplication_id="d"), pytest.raises(DBOSException, match="dedup"):
        DBOS.start_workflow(plain)
    with pytest.raises(DBOSException, match="delay_seconds"):
        asyncio.run(start_async())
    assert count_rows(db_url, name=plain.__qualname__) == 0
    assert DBOS.start_workflow(plain).get_result() == 1  # outside the block: fine


# -- declaring, finding, listening ----------------------------------------------------------------


def test_register_retrieve_list_delete_and_enqueue_by_name(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def triple(x: int) -> int:
        return 3 * x

    @DBOS.workflow()
    async def triple_async(x: int) -> int:
        return 3 * x

    queue = DBOS.register_queue("by-name", concurrency=2, worker_concurrency=1)
    assert isinstance(queue, Queue) and queue.worker_concurrency == 1
    assert DBOS.retrieve_queue("by-name") is queue
    assert DBOS.retrieve_queue("never-declared") is None
    assert "by-name" in [q.name for q in DBOS.list_queues()]
    assert "_dbos_internal_queue" not in [q.name for q in DBOS.list_queues()]
    launch_dbos()
    assert DBOS.enqueue_workflow("by-name", triple, 2).get_result() == 6

    async def on_loop() -> list[Any]:
        q2 = await DBOS.register_queue_async("by-name-async")
        assert await DBOS.retrieve_queue_async("by-name-async") is q2
        a = await DBOS.enqueue_workflow_async("by-name", triple_async, 3)
        b = await q2.enqueue_async(triple_async, 4)
        results = [await a.get_result(), await b.get_result()]
        found = [q.name for q in await DBOS.list_queues_async()]
        await DBOS.delete_queue_async("by-name-async")  # after b ran: it stops being served
        return [*results, "by-name-async" in found]

    assert asyncio.run(on_loop()) == [9, 12, True]
    DBOS.delete_queue("by-name")
    assert DBOS.retrieve_queue("by-name") is None
    DBOS.register_queue("by-name")  # the name is free again
    with pytest.raises(DBOSException):
        DBOS.delete_queue("_dbos_internal_queue")


def test_listen_queues_dequeues_only_from_those(launch_dbos: Launch) -> None:
    heard = Queue("heard")
    Queue("unheard")

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    DBOS.listen_queues([heard])
    with pytest.raises(DBOSException, match="more than once"):
        DBOS.listen_queues(["unheard"])
    launch_dbos()
    with pytest.raises(DBOSException, match="after DBOS is launched"):
        DBOS.listen_queues(["unheard"])
    ignored = DBOS.enqueue_workflow("unheard", job)
    assert heard.enqueue(job).get_result() == "ran"
    time.sleep(1.5)
    assert ignored.get_status().status == "ENQUEUED"
    DBOS.destroy()  # the next launch listens to every queue again
    launch_dbos()
    assert ignored.get_result() == "ran"


# -- partitions, versions, delays -----------------------------------------------------------------


def test_partitioned_queue_limits_each_partition(launch_dbos: Launch, db_url: str) -> None:
    queue = Queue("partitioned", concurrency=1, partition_queue=True)
    plain = Queue("not-partitioned")

    @DBOS.step()
    def work() -> None:
        time.sleep(0.3)

    @DBOS.workflow()
    def job(key: str) -> str:
        work()
        return key

    launch_dbos()
    with pytest.raises(DBOSException, match="without a partition key"):
        queue.enqueue(job, "none")
    with SetEnqueueOptions(queue_partition_key="a"):
        with pytest.raises(DBOSException, match="partition-enabled"):
            plain.enqueue(job, "a")
    with SetEnqueueOptions(queue_partition_key="a", deduplication_id="x"):
        with pytest.raises(DBOSException, match="Deduplication"):
            queue.enqueue(job, "a")
    assert count_rows(db_url, name=job.__qualname__) == 0
    handles = []
    for key in ("a", "b", "a", "b"):
        with SetEnqueueOptions(queue_partition_key=key):
            handles.append(queue.enqueue(job, key))
    with DBOSClient(db_url) as client:
        by_client = client.enqueue(
            {
                "workflow_name": job.__qualname__,
                "queue_name": "partitioned",
                "queue_partition_key": "b",
            },
            "b",
        )
        assert [h.get_result() for h in handles] == ["a", "b", "a", "b"]
        assert by_client.get_result() == "b"
    runs = intervals(db_url, "partitioned")
    assert len(runs["a"]) == 2 and len(runs["b"]) == 3
    assert not overlap(runs["a"][:1], runs["a"][1:])  # concurrency 1 within a partition
    assert not any(overlap([r], [s]) for i, r in enumerate(runs["b"]) for s in runs["b"][i + 1 :])
    assert overlap(runs["a"], runs["b"])  # but the partitions ran side by side


def test_app_version_option_picks_the_executors(launch_dbos: Launch) -> None:
    queue = Queue("version-picked")

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    launch_dbos()
    with SetEnqueueOptions(app_version="v-elsewhere"):
        elsewhere = queue.enqueue(job)
    with SetEnqueueOptions(app_version="test-version"):
        here = queue.enqueue(job)
    assert here.get_result() == "ran"
    time.sleep(1.5)
    status = elsewhere.get_status()
    assert status.status == "ENQUEUED" and status.app_version == "v-elsewhere"


def test_delayed_enqueue_waits_then_runs(launch_dbos: Launch, db_url: str) -> None:
    queue = Queue("delayed")
    started: dict[str, float] = {}

    @DBOS.workflow()
    def job(name: str) -> str:
        started[name] = time.time()
        return name

    launch_dbos()
    t0 = time.time()
    with SetEnqueueOptions(delay_seconds=2):
        delayed = queue.enqueue(job, "delayed")
    with DBOSClient(db_url) as client:
        by_client = client.enqueue(
            {"workflow_name": job.__qualname__, "queue_name": "delayed", "delay_seconds": 2},
            "by-client",
        )
        assert by_client.get_status().status == "DELAYED"
        assert client.list_workflows(status="DELAYED", queue_name="delayed")
        assert queue.enqueue(job, "now").get_result() == "now"
        assert delayed.get_status().status == "DELAYED"
        assert delayed.get_result() == "delayed"
        assert by_client.get_result() == "by-client"
    assert started["delayed"] - t0 >= 2 and started["by-client"] - t0 >= 2
    assert started["now"] - t0 < 2
    with SetEnqueueOptions(delay_seconds=60):
        later = queue.enqueue(job, "later")
    assert [w.workflow_id for w in DBOS.list_queued_workflows(queue_name="delayed")] == [
        later.workflow_id
    ]
    DBOS.cancel_workflow(later.workflow_id)  # a DELAYED workflow can be cancelled
    assert later.get_status().status == "CANCELLED"


def test_enqueue_with_options_in_a_workflow_is_a_recorded_child(launch_dbos: Launch) -> None:
    Queue("with-options")

    @DBOS.workflow()
    def child(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def parent() -> int:
        handle = DBOS.enqueue_workflow_with_options(
            {"workflow_name": child.__qualname__, "queue_name": "with-options", "priority": 0},
            41,
        )
        return int(handle.get_result())

    async def on_loop() -> Any:
        handle = await DBOS.enqueue_workflow_with_options_async(
            {"workflow_name": child.__qualname__, "queue_name": "with-options", "workflow_id": "x"},
            1,
        )
        return await handle.get_result()

    launch_dbos()
    with SetWorkflowID("options-parent"):
        assert parent() == 42
    steps = DBOS.list_workflow_steps("options-parent")
    assert steps[0].child_workflow_id == "options-parent-1"
    assert asyncio.run(on_loop()) == 2
    with pytest.raises(DBOSException, match="priority"):
        DBOS.enqueue_workflow_with_options(
            {"workflow_name": "w", "queue_name": "q", "priority": -1}
        )


def test_partition_dispatch_uses_its_index(launch_dbos: Launch, db_url: str) -> None:
    launch_dbos()
    params = {
        "queue_name": "q",
        "partition": "p",
        "application_version": "v",
        "names": ["w"],
        "limit": 5,
        "concurrency": 3,
        "executor_id": "e",
        "process_id": "p",
        "since_ms": 0,
        "queue_names": ["q"],
    }
    with psycopg.connect(db_url) as conn:
        conn.execute("SET enable_seqscan = off")
        plans = {
            name: "\n".join(
                r[0] for r in conn.execute("EXPLAIN " + getattr(queries, name), params).fetchall()
            )
            for name in (
                "DEQUEUE_PARTITION",
                "COUNT_PARTITION_RUNNING",
                "COUNT_PARTITION_STARTS",
                "READY_PARTITIONS",
                "PROMOTE_DELAYED",
            )
        }
        conn.rollback()
    assert "workflow_status_partition_dispatch_idx" in plans["DEQUEUE_PARTITION"]
    # The claim counts the partition's free slots itself, by the same index as the count.
    assert "workflow_status_partition_running_idx" in plans["DEQUEUE_PARTITION"]
    assert "workflow_status_partition_dispatch_idx" in plans["READY_PARTITIONS"]
    assert "workflow_status_partition_running_idx" in plans["COUNT_PARTITION_RUNNING"]
    assert "workflow_status_partition_started_at_idx" in plans["COUNT_PARTITION_STARTS"]
    # Either partial index over DELAYED rows only (the planner's pick on an empty table).
    assert "using workflow_status_delayed" in plans["PROMOTE_DELAYED"]
    assert not any("Seq Scan" in plan for plan in plans.values()), plans


@pytest.fixture
def worker_pool(db_url: str) -> Iterator[Workers]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    pool = Workers(db_url)
    try:
        yield pool
    finally:
        pool.stop_all()


def test_partition_limits_hold_across_processes(worker_pool: Workers) -> None:
    """Two `dbos start` processes serve a queue with concurrency 1 per partition: within a
    partition nothing overlaps, across any process; different partitions run side by side."""
    for vmid in ("p1", "p2"):
        worker_pool.start(vmid)
    worker_pool.wait_ready()
    with DBOSClient(worker_pool.db_url) as client:
        handles = [
            client.enqueue(
                {"workflow_name": "job", "queue_name": "by_partition", "queue_partition_key": key},
                0.1,
            )
            for key in ("a", "b", "c") * 4
        ]
        for handle in handles:
            handle.get_result()
    runs = intervals(worker_pool.db_url, "by_partition")
    assert sorted(runs) == ["a", "b", "c"] and all(len(r) == 4 for r in runs.values())
    for key, spans in runs.items():
        assert not any(overlap([r], [s]) for i, r in enumerate(spans) for s in spans[i + 1 :]), key
    assert overlap(runs["a"], runs["b"] + runs["c"])
    with psycopg.connect(worker_pool.db_url) as conn:
        executors = conn.execute(
            "SELECT count(DISTINCT executor_id) FROM dbos.workflow_status "
            "WHERE queue_name = 'by_partition'"
        ).fetchone()
    assert executors == (2,)  # both processes took part
