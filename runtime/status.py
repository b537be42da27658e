"""Workflow statuses and the records the runtime returns about workflows and steps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class WorkflowStatusString(str, enum.Enum):
    """The statuses a workflow can have; equal to the schema's CHECK values (a test says so)."""

    PENDING = "PENDING"
    ENQUEUED = "ENQUEUED"
    # Enqueued with a delay (``SetEnqueueOptions(delay_seconds=...)``): not dequeued before it ends.
    DELAYED = "DELAYED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"

    def __str__(self) -> str:
        return self.value


FINAL_STATUSES = frozenset({WorkflowStatusString.SUCCESS.value, WorkflowStatusString.ERROR.value})


@dataclass
class WorkflowStatus:
    """The recorded state of one workflow. Times are epoch milliseconds; ``input`` holds
    ``{"args": [...], "kwargs": {...}}`` decoded, ``error`` the re-created exception."""

    workflow_id: str
    status: str
    name: str
    class_name: str | None = None
    input: dict[str, Any] | None = None
    output: Any = None
    error: BaseException | None = None
    executor_id: str | None = None
    app_version: str | None = None
    queue_name: str | None = None
    recovery_attempts: int = 0
    created_at: int | None = None
    updated_at: int | None = None
    parent_workflow_id: str | None = None
    forked_from: str | None = None
    priority: int = 0
    deduplication_id: str | None = None
    workflow_timeout_ms: int | None = None
    workflow_deadline_epoch_ms: int | None = None
    started_at: int | None = None
    completed_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepInfo:
    """One recorded step of a workflow."""

    function_id: int
    function_name: str
    output: Any = None
    error: BaseException | None = None
    child_workflow_id: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
