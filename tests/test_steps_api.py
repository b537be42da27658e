"""DBOS's step and call API: run_step, wait_first, send_bulk, get_all_events, step_status, step
options (should_retry, timeout_seconds), starting a step as a workflow, and fixed bugs around
async children, cancelled waits, idempotent sends, SetWorkflowTimeout(None) and set_event in a
step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from runtime import DBOS, SetWorkflowID, SetWorkflowTimeout

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
