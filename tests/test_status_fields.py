"""DBOS's WorkflowStatus fields ``queue_partition_key``, ``delay_until_epoch_ms``,
``was_forked_from`` and ``dequeued_at``: recorded values, read the same way by
``get_workflow_status``, a handle's ``get_status`` and ``list_workflows``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from runtime import DBOS, Queue, SetEnqueueOptions, WorkflowStatus

Launch = Callable[..., None]


def _both(workflow_id: str) -> list[WorkflowStatus]:
    """The workflow's status as one read and as one row of a listing."""
    one = DBOS.get_workflow_status(workflow_id)
    assert one is not None
    listed = DBOS.list_workflows(workflow_ids=[workflow_id], load_input=False)
    assert len(listed) == 1
    return [one, listed[0]]


def _finish(handle: Any, timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while handle.get_status().status not in ("SUCCESS", "ERROR"):
        assert time.monotonic() < end, f"workflow {handle.workflow_id} did not finish"
        time.sleep(0.02)
    return handle.get_result()


def test_partition_key_delay_and_dequeue_time_are_read_back(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def echo(x: int) -> int:
        return x

    partitioned = Queue("fields-partitioned", partition_queue=True)
    plain = Queue("fields-plain")
    launch_dbos()

    direct = DBOS.start_workflow(echo, 1)
    assert _finish(direct) == 1
    for status in _both(direct.workflow_id):
        assert status.queue_partition_key is None and status.delay_until_epoch_ms is None
        assert status.dequeued_at is None  # never came from a queue
        assert status.started_at is not None

    with SetEnqueueOptions(queue_partition_key="tenant-7"):
        keyed = partitioned.enqueue(echo, 2)
    assert _finish(keyed) == 2
    for status in _both(keyed.workflow_id):
        assert status.queue_partition_key == "tenant-7"
        assert status.dequeued_at is not None and status.dequeued_at == status.started_at
        assert status.created_at is not None and status.dequeued_at >= status.created_at

    before = int(time.time() * 1000)
    with SetEnqueueOptions(delay_seconds=600):
        delayed = plain.enqueue(echo, 3)
    after = int(time.time() * 1000)
    for status in [delayed.get_status(), *_both(delayed.workflow_id)]:
        assert status.status == "DELAYED"
        assert status.delay_until_epoch_ms is not None
        assert before + 600_000 - 1000 <= status.delay_until_epoch_ms <= after + 600_000 + 1000
        assert status.dequeued_at is None  # not dequeued yet
        assert status.queue_partition_key is None


def test_was_forked_from_turns_true_on_the_original_only(launch_dbos: Launch) -> None:
    @DBOS.step()
    def one() -> int:
        return 1

    @DBOS.workflow()
    def forkable() -> int:
        return one() + 1

    launch_dbos()
    original = DBOS.start_workflow(forkable)
    untouched = DBOS.start_workflow(forkable)
    assert _finish(original) == 2 and _finish(untouched) == 2
    assert [s.was_forked_from for s in _both(original.workflow_id)] == [False, False]

    fork = DBOS.fork_workflow(original.workflow_id, 1)
    assert _finish(fork) == 2
    assert [s.was_forked_from for s in _both(original.workflow_id)] == [True, True]
    assert original.get_status().was_forked_from is True
    for status in _both(fork.workflow_id):
        assert status.forked_from == original.workflow_id and status.was_forked_from is False
    assert [s.was_forked_from for s in _both(untouched.workflow_id)] == [False, False]
    listed = {w.workflow_id: w.was_forked_from for w in DBOS.list_workflows()}
    assert listed == {
        original.workflow_id: True,
        untouched.workflow_id: False,
        fork.workflow_id: False,
    }
