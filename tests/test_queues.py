"""Queues and scheduled workflows in one process (across processes: test_queues_processes.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

import psycopg
import pytest
from psycopg import sql

from runtime import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSException,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from runtime import dispatcher as dispatcher_mod

Launch = Callable[..., None]


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The largest number of intervals [start, end) open at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def run_intervals(url: str, queue_name: str) -> list[tuple[int, int]]:
    """The (start, end) epoch ms of a queue's successful runs."""
    return [i for found in run_intervals_by(url, queue_name).values() for i in found]


def run_intervals_by(
    url: str, queue_name: str, column: str | None = None, *, status: str | None = "SUCCESS"
) -> dict[str, list[tuple[int, int]]]:
    """The (start, end) epoch ms of a queue's runs (of ``status``; None: any), grouped by the
    text of ``column`` (a workflow_status column, e.g. its partition key or executor; None: one
    group, "")."""
    query = sql.SQL(
        "SELECT {}, started_at_epoch_ms, completed_at_epoch_ms FROM dbos.workflow_status "
        "WHERE queue_name = %s AND (%s::text IS NULL OR status = %s)"
    ).format(sql.Identifier(column) if column else sql.Literal(""))
    with psycopg.connect(url) as conn:
        rows = conn.execute(query, (queue_name, status, status)).fetchall()
    found: dict[str, list[tuple[int, int]]] = {}
    for key, start, end in rows:
        found.setdefault(str(key), []).append((int(start), int(end)))
    return found


def test_max_overlap_helper() -> None:
    assert max_overlap([(0, 10), (5, 15), (10, 20)]) == 2
    assert max_overlap([(0, 10), (1, 2), (1, 3)]) == 3


def test_concurrency_limit_is_never_exceeded(launch_dbos: Launch, db_url: str) -> None:
    queue = Queue("limited-2", concurrency=2)

    @DBOS.step()
    def work() -> None:
        time.sleep(0.05)

    @DBOS.workflow()
    def job(i: int) -> int:
        work()
        return i

    launch_dbos()
    handles = [queue.enqueue(job, i) for i in range(12)]
    assert [h.get_result() for h in handles] == list(range(12))
    intervals = run_intervals(db_url, "limited-2")
    assert len(intervals) == 12
    assert max_overlap(intervals) == 2


def test_worker_concurrency_one_runs_one_at_a_time(launch_dbos: Launch, db_url: str) -> None:
    queue = Queue("one-per-worker", worker_concurrency=1)

    @DBOS.step()
    def work() -> None:
        time.sleep(0.03)

    @DBOS.workflow()
    def job() -> None:
        work()

    launch_dbos()
    for h in [queue.enqueue(job) for _ in range(6)]:
        h.get_result()
    assert max_overlap(run_intervals(db_url, "one-per-worker")) == 1


def test_rate_limiter(launch_dbos: Launch, db_url: str) -> None:
    queue = Queue("rate", limiter={"limit": 3, "period": 1.0})

    @DBOS.workflow()
    def job() -> None:
        return None

    launch_dbos()
    started = time.monotonic()
    for h in [queue.enqueue(job) for _ in range(7)]:
        h.get_result()
    # 3 now, 3 after a second, 1 after two seconds.
    assert time.monotonic() - started >= 1.9
    starts = sorted(s for s, _ in run_intervals(db_url, "rate"))
    for i, first in enumerate(starts):
        in_window = [s for s in starts[i:] if s < first + 1000]
        assert len(in_window) <= 3


def test_priorities_order_starts(launch_dbos: Launch) -> None:
    queue = Queue("prio", concurrency=1, priority_enabled=True)
    order: list[str] = []
    gate = threading.Event()

    @DBOS.step()
    def record(name: str) -> None:
        order.append(name)
        if name == "blocker":
            gate.wait(10)

    @DBOS.workflow()
    def job(name: str) -> None:
        record(name)

    launch_dbos()
    first = queue.enqueue(job, "blocker")
    time.sleep(0.3)  # the blocker holds the only slot
    handles = []
    for name, priority in [("p5", 5), ("p1", 1), ("p3", 3), ("p0", 0)]:
        with SetEnqueueOptions(priority=priority):
            handles.append(queue.enqueue(job, name))
    gate.set()
    first.get_result()
    for h in handles:
        h.get_result()
    assert order == ["blocker", "p0", "p1", "p3", "p5"]


def test_priority_needs_priority_enabled(launch_dbos: Launch) -> None:
    queue = Queue("no-prio")

    @DBOS.workflow()
    def job() -> None:
        return None

    launch_dbos()
    with pytest.raises(DBOSException, match="priority_enabled"), SetEnqueueOptions(priority=3):
        queue.enqueue(job)


def test_deduplication(launch_dbos: Launch) -> None:
    queue = Queue("dedup", concurrency=1)
    gate = threading.Event()

    @DBOS.step()
    def wait() -> None:
        gate.wait(10)

    @DBOS.workflow()
    def job(x: int) -> int:
        wait()
        return x

    launch_dbos()
    with SetEnqueueOptions(deduplication_id="order-7"):
        first = queue.enqueue(job, 1)
        with pytest.raises(DBOSQueueDeduplicatedError, match="order-7"):
            queue.enqueue(job, 2)
    gate.set()
    assert first.get_result() == 1
    with SetEnqueueOptions(deduplication_id="order-7"):  # free again once the first finished
        assert queue.enqueue(job, 3).get_result() == 3


def test_cancelled_enqueued_workflow_never_runs_and_resume_bypasses_queue(
    launch_dbos: Launch,
) -> None:
    queue = Queue("busy", concurrency=1)
    gate = threading.Event()
    ran: list[str] = []

    @DBOS.step()
    def work(name: str) -> None:
        ran.append(name)
        if name == "blocker":
            gate.wait(10)

    @DBOS.workflow()
    def job(name: str) -> str:
        work(name)
        return name

    launch_dbos()
    blocker = queue.enqueue(job, "blocker")
    time.sleep(0.3)
    with SetWorkflowID("cancel-me"):
        cancelled = queue.enqueue(job, "cancelled")
    with SetWorkflowID("jump"):
        jumper = queue.enqueue(job, "jumper")
    DBOS.cancel_workflow("cancel-me")
    assert cancelled.get_status().status == "CANCELLED"
    DBOS.resume_workflow("jump")  # starts now although the queue's only slot is taken
    assert jumper.get_result() == "jumper"
    assert ran == ["blocker", "jumper"]
    gate.set()
    blocker.get_result()
    time.sleep(0.3)
    assert "cancelled" not in ran
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        cancelled.get_result()


def test_idle_queue_starts_enqueued_work_on_notify_not_poll(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_mod, "POLL_INTERVAL_S", 60.0)
    Queue("idle")

    @DBOS.workflow()
    def job(x: int) -> int:
        return x + 1

    launch_dbos()
    time.sleep(0.5)  # the dispatcher has polled once and sleeps for 60 s
    with DBOSClient(db_url) as client:  # another connection: only the NOTIFY can wake dispatch
        started = time.monotonic()
        handle = client.enqueue({"workflow_name": job.__qualname__, "queue_name": "idle"}, 41)
        assert handle.get_result() == 42
    assert time.monotonic() - started < 10


def test_client_enqueue_respects_application_version(launch_dbos: Launch, db_url: str) -> None:
    Queue("versioned")

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    launch_dbos()
    with DBOSClient(db_url) as client:
        other = client.enqueue(
            {"workflow_name": job.__qualname__, "queue_name": "versioned", "app_version": "v-other"}
        )
        mine = client.enqueue(
            {
                "workflow_name": job.__qualname__,
                "queue_name": "versioned",
                "app_version": "test-version",
            }
        )
        assert mine.get_result() == "ran"
        time.sleep(1.5)
        assert other.get_status().status == "ENQUEUED"


def test_enqueue_in_a_workflow_is_a_recorded_child(launch_dbos: Launch) -> None:
    queue = Queue("children")

    @DBOS.workflow()
    def child(x: int) -> int:
        return x * 3

    @DBOS.workflow()
    def parent() -> int:
        return int(queue.enqueue(child, 5).get_result())

    launch_dbos()
    with SetWorkflowID("enqueuing-parent"):
        assert parent() == 15
    steps = DBOS.list_workflow_steps("enqueuing-parent")
    assert steps[0].child_workflow_id == "enqueuing-parent-1"
    status = DBOS.get_workflow_status("enqueuing-parent-1")
    assert status is not None and status.queue_name == "children"


def test_enqueued_timeout_starts_at_dequeue(launch_dbos: Launch) -> None:
    queue = Queue("timed-queue", concurrency=1)
    gate = threading.Event()

    @DBOS.step()
    def nap(block: bool) -> None:
        if block:
            gate.wait(10)
        else:
            time.sleep(0.05)

    @DBOS.workflow()
    def job(block: bool) -> None:
        while True:
            nap(block)

    launch_dbos()
    blocker = queue.enqueue(job, True)
    time.sleep(0.2)
    with SetWorkflowTimeout(0.5):
        timed = queue.enqueue(job, False)
    time.sleep(1.0)  # longer than the timeout, but it has not started yet
    assert timed.get_status().status == "ENQUEUED"
    DBOS.cancel_workflow(blocker.workflow_id)
    gate.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        timed.get_result()


def test_scheduled_workflow_runs_every_tick(launch_dbos: Launch) -> None:
    ticks: list[tuple[datetime, datetime]] = []

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    def every_second(scheduled: datetime, actual: datetime) -> None:
        ticks.append((scheduled, actual))

    launch_dbos()
    time.sleep(3.2)
    DBOS.destroy()
    from runtime import scheduler

    scheduler._schedules.clear()  # keep this schedule out of later tests
    assert 2 <= len(ticks) <= 4
    for scheduled, actual in ticks:
        assert scheduled.microsecond == 0
        assert 0 <= (actual - scheduled).total_seconds() < 1


def test_invalid_cron_is_refused() -> None:
    with pytest.raises(DBOSException, match="invalid cron"):
        DBOS.scheduled("every minute")
