"""Durable workflows for Python on Postgres.

Mark functions ``@DBOS.workflow``, ``@DBOS.step`` or ``@DBOS.transaction``; their inputs and
outcomes are checkpointed in Postgres, so an interrupted workflow resumes from its last
completed step.

The names below load on first use (PEP 562), so that importing one submodule (the CLI reading
the configuration, say) does not import the whole runtime and its driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.app_versions import VersionInfo
    from runtime.client import DBOSClient, EnqueueOptions
    from runtime.config import DBOSConfig
    from runtime.context import SetWorkflowAttributes, SetWorkflowID, SetWorkflowTimeout, StepStatus
    from runtime.dbos import DBOS
    from runtime.debouncer import Debouncer, DebouncerClient, DebouncerOptions
    from runtime.engine.steps import StepOptions
    from runtime.errors import (
        DBOSAwaitedWorkflowCancelledError,
        DBOSConfigError,
        DBOSConflictingWorkflowError,
        DBOSDatabaseError,
        DBOSException,
        DBOSMaxStepRetriesExceeded,
        DBOSNonExistentWorkflowError,
        DBOSQueueDeduplicatedError,
        DBOSSchemaMissingError,
        DBOSSerializationError,
        DBOSStepTimeoutError,
        DBOSStreamNondeterminismError,
        DBOSStreamTimeoutError,
        DBOSUnexpectedStepError,
        DBOSWorkflowCancelledError,
        DBOSWorkflowFencedError,
        DBOSWorkflowFunctionNotFoundError,
        MaxRecoveryAttemptsExceededError,
    )
    from runtime.explain import WorkflowExplanation
    from runtime.facade.decorators import DBOSConfiguredInstance
    from runtime.fencing import FencingToken
    from runtime.handles import WorkflowHandle, WorkflowHandleAsync
    from runtime.messaging import SendMessage
    from runtime.queues import Queue, SetEnqueueOptions
    from runtime.replay_check import ReplayCheckReport, ReplayCheckResult, check_replay
    from runtime.retention import GarbageCollection
    from runtime.schedules import ClientScheduleInput, ScheduleInput, WorkflowSchedule
    from runtime.status import StepInfo, WorkflowStatus, WorkflowStatusString

_HOMES = {
    "ClientScheduleInput": "runtime.schedules",
    "DBOS": "runtime.dbos",
    "DBOSAwaitedWorkflowCancelledError": "runtime.errors",
    "DBOSClient": "runtime.client",
    "DBOSConfig": "runtime.config",
    "DBOSConfigError": "runtime.errors",
    "DBOSConfiguredInstance": "runtime.facade.decorators",
    "DBOSConflictingWorkflowError": "runtime.errors",
    "DBOSDatabaseError": "runtime.errors",
    "DBOSException": "runtime.errors",
    "DBOSMaxStepRetriesExceeded": "runtime.errors",
    "DBOSNonExistentWorkflowError": "runtime.errors",
    "DBOSQueueDeduplicatedError": "runtime.errors",
    "DBOSSchemaMissingError": "runtime.errors",
    "DBOSSerializationError": "runtime.errors",
    "DBOSStepTimeoutError": "runtime.errors",
    "DBOSStreamNondeterminismError": "runtime.errors",
    "DBOSStreamTimeoutError": "runtime.errors",
    "DBOSUnexpectedStepError": "runtime.errors",
    "DBOSWorkflowCancelledError": "runtime.errors",
    "DBOSWorkflowFencedError": "runtime.errors",
    "DBOSWorkflowFunctionNotFoundError": "runtime.errors",
    "Debouncer": "runtime.debouncer",
    "DebouncerClient": "runtime.debouncer",
    "DebouncerOptions": "runtime.debouncer",
    "FencingToken": "runtime.fencing",
    "EnqueueOptions": "runtime.client",
    "GarbageCollection": "runtime.retention",
    "MaxRecoveryAttemptsExceededError": "runtime.errors",
    "Queue": "runtime.queues",
    "ReplayCheckReport": "runtime.replay_check",
    "ReplayCheckResult": "runtime.replay_check",
    "SetEnqueueOptions": "runtime.queues",
    "ScheduleInput": "runtime.schedules",
    "SendMessage": "runtime.messaging",
    "SetWorkflowAttributes": "runtime.context",
    "SetWorkflowID": "runtime.context",
    "SetWorkflowTimeout": "runtime.context",
    "StepInfo": "runtime.status",
    "StepOptions": "runtime.engine.steps",
    "StepStatus": "runtime.context",
    "VersionInfo": "runtime.app_versions",
    "WorkflowHandle": "runtime.handles",
    "WorkflowHandleAsync": "runtime.handles",
    "WorkflowExplanation": "runtime.explain",
    "WorkflowSchedule": "runtime.schedules",
    "WorkflowStatus": "runtime.status",
    "WorkflowStatusString": "runtime.status",
    "check_replay": "runtime.replay_check",
}

__all__ = [
    "ClientScheduleInput",
    "DBOS",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfigError",
    "DBOSConfiguredInstance",
    "DBOSConflictingWorkflowError",
    "DBOSDatabaseError",
    "DBOSException",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSQueueDeduplicatedError",
    "DBOSSchemaMissingError",
    "DBOSSerializationError",
    "DBOSStepTimeoutError",
    "DBOSStreamNondeterminismError",
    "DBOSStreamTimeoutError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowFencedError",
    "DBOSWorkflowFunctionNotFoundError",
    "Debouncer",
    "DebouncerClient",
    "DebouncerOptions",
    "EnqueueOptions",
    "FencingToken",
    "GarbageCollection",
    "MaxRecoveryAttemptsExceededError",
    "Queue",
    "ReplayCheckReport",
    "ReplayCheckResult",
    "ScheduleInput",
    "SendMessage",
    "SetEnqueueOptions",
    "SetWorkflowAttributes",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepOptions",
    "StepStatus",
    "VersionInfo",
    "WorkflowExplanation",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowSchedule",
    "WorkflowStatus",
    "WorkflowStatusString",
    "check_replay",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
