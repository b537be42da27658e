"""Handles to workflows, returned by ``start_workflow`` and ``retrieve_workflow`` (in an app or
through ``DBOSClient``), and the wait for a workflow's outcome read from the database."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, Protocol, TypeVar

from runtime import serialization
from runtime.errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSNonExistentWorkflowError,
    MaxRecoveryAttemptsExceededError,
)
from runtime.records import StatusResult
from runtime.status import WorkflowStatus, WorkflowStatusString
from runtime.system_db import SystemDatabase

R = TypeVar("R")

# Returned by ``outcome_of`` for a workflow that has not finished.
PENDING_OUTCOME = object()


class HandleBackend(Protocol):
    """What a handle needs from whoever made it."""

    def handle_result(self, workflow_id: str) -> Any:
        """Wait for and return the outcome (raising the workflow's error)."""

    def handle_status(self, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's current record."""


class AsyncHandleBackend(HandleBackend, Protocol):
    """What an awaitable handle needs from whoever made it."""

    async def handle_result_async(self, workflow_id: str) -> Any:
        """Await and return the outcome (raising the workflow's error)."""


class WorkflowHandle(Generic[R]):
    """A reference to one workflow: its ID, its status, and (waiting) its result."""

    def __init__(self, backend: HandleBackend, workflow_id: str) -> None:
        self._backend = backend
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    def get_result(self) -> R:
        """Wait for the workflow to finish and return its result, or raise its error (as the same
        exception class when it can be imported). Inside a workflow, the outcome is recorded."""
        result: R = self._backend.handle_result(self.workflow_id)
        return result

    def get_status(self) -> WorkflowStatus:
        """The workflow's current record."""
        status = self._backend.handle_status(self.workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError(self.workflow_id)
        return status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.workflow_id!r})"


class WorkflowHandleAsync(Generic[R]):
    """The awaitable handle returned by ``start_workflow_async`` and
    ``retrieve_workflow_async``."""

    def __init__(self, backend: AsyncHandleBackend, workflow_id: str) -> None:
        self._backend = backend
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    async def get_result(self) -> R:
        """Await the workflow's result (or its error) without blocking the event loop."""
        result: R = await self._backend.handle_result_async(self.workflow_id)
        return result

    async def get_status(self) -> WorkflowStatus:
        """The workflow's current record."""
        status: WorkflowStatus | None = await asyncio.to_thread(
            self._backend.handle_status, self.workflow_id
        )
        if status is None:
            raise DBOSNonExistentWorkflowError(self.workflow_id)
        return status

    def __repr__(self) -> str:
        return f"WorkflowHandleAsync({self.workflow_id!r})"


def outcome_of(workflow_id: str, result: StatusResult) -> Any:
    """The result of a finished workflow (raising its error); ``PENDING_OUTCOME`` while
    unfinished."""
    # The status read from the database is a plain str: equal to the str-valued enum members.
    status = result.status
    if status == WorkflowStatusString.SUCCESS:
        return serialization.deserialize(result.output)
    if status == WorkflowStatusString.ERROR:
        raise serialization.deserialize_exception(result.error or "{}")
    if status == WorkflowStatusString.CANCELLED:
        raise DBOSAwaitedWorkflowCancelledError(workflow_id)
    if status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
        raise MaxRecoveryAttemptsExceededError(
            f"workflow {workflow_id!r} exceeded its maximum recovery attempts"
        )
    return PENDING_OUTCOME


def poll_result(sysdb: SystemDatabase, workflow_id: str, max_interval_s: float = 0.5) -> Any:
    """Wait for a workflow that runs elsewhere by reading its record, backing off to
    ``max_interval_s`` between reads."""
    delay = 0.01
    while True:
        result = sysdb.get_status_result(workflow_id)
        if result is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        value = outcome_of(workflow_id, result)
        if value is not PENDING_OUTCOME:
            return value
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval_s)
