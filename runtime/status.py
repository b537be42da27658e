"""Workflow statuses and the records the runtime returns about workflows and steps."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
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
    # The configured instance (DBOSConfiguredInstance.config_name) an instance method ran on.
    config_name: str | None = None
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
    # The partition of a partitioned queue it was enqueued on (``SetEnqueueOptions``).
    queue_partition_key: str | None = None
    # Epoch ms before which a delayed enqueue is not dequeued; None when not delayed.
    delay_until_epoch_ms: int | None = None
    # Whether some workflow was forked from this one (its ``forked_from`` names this ID).
    was_forked_from: bool = False
    # DBOS's name: epoch ms at which a queue last handed it to a process (``started_at`` of a
    # workflow that came from a queue, resumed ones included); None for one never enqueued.
    dequeued_at: int | None = None
    # DBOS's custom key/values (``SetWorkflowAttributes``, ``update_workflow_attributes``): a
    # JSON object decoded, None when the workflow has none.
    attributes: dict[str, Any] | None = None
    # The managed schedule whose tick, backfill or trigger enqueued it (DBOS's field), else None.
    schedule_name: str | None = None


# DBOS's StepInfo is a TypedDict with these keys; ours is also read by attribute (the CLI and the
# dashboard do), with the two times under shorter names.
_STEP_KEYS = {
    "function_id": "function_id",
    "function_name": "function_name",
    "output": "output",
    "error": "error",
    "child_workflow_id": "child_workflow_id",
    "started_at_epoch_ms": "started_at",
    "completed_at_epoch_ms": "completed_at",
}


@dataclass(eq=False)  # Mapping's equality: equal to a dict with the same keys and values
class StepInfo(Mapping[str, Any]):
    """One recorded step of a workflow. Read it as DBOS's ``StepInfo`` dict (``s["output"]``,
    keys ``function_id``, ``function_name``, ``output``, ``error``, ``child_workflow_id``,
    ``started_at_epoch_ms``, ``completed_at_epoch_ms``: epoch milliseconds) or by attribute
    (``s.output``; the times as ``started_at``/``completed_at`` too)."""

    function_id: int
    function_name: str
    output: Any = None
    error: BaseException | None = None
    child_workflow_id: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    #: True for a step running now (no outcome yet; not one of DBOS's keys): see
    #: ``runtime.running_steps`` for when it becomes visible.
    running: bool = False
    #: A retried step's failed attempts, in order (not one of DBOS's keys): dicts with
    #: ``attempt`` (1-based), ``started_at``/``completed_at`` (epoch ms) and ``error``
    #: (``"Type: message"``, at most 2,000 characters); empty when it did not retry.
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def started_at_epoch_ms(self) -> int | None:
        """When the step started (epoch ms), DBOS's name for ``started_at``."""
        return self.started_at

    @property
    def completed_at_epoch_ms(self) -> int | None:
        """When the step completed (epoch ms), DBOS's name for ``completed_at``."""
        return self.completed_at

    def __getitem__(self, key: str) -> Any:
        if key not in _STEP_KEYS:
            raise KeyError(key)
        return getattr(self, _STEP_KEYS[key])

    def __iter__(self) -> Iterator[str]:
        return iter(_STEP_KEYS)

    def __len__(self) -> int:
        return len(_STEP_KEYS)
