"""Durable workflows for Python on Postgres.

Mark functions ``@DBOS.workflow``, ``@DBOS.step`` or ``@DBOS.transaction``; their inputs and
outcomes are checkpointed in Postgres, so an interrupted workflow resumes from its last
completed step.
"""

from runtime.client import DBOSClient, EnqueueOptions
from runtime.config import DBOSConfig
from runtime.context import SetWorkflowID, SetWorkflowTimeout
from runtime.dbos import DBOS
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
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowFunctionNotFoundError,
    MaxRecoveryAttemptsExceededError,
)
from runtime.handles import WorkflowHandle, WorkflowHandleAsync
from runtime.queues import Queue, SetEnqueueOptions
from runtime.status import StepInfo, WorkflowStatus, WorkflowStatusString

__all__ = [
    "DBOS",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfigError",
    "DBOSConflictingWorkflowError",
    "DBOSDatabaseError",
    "DBOSException",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSQueueDeduplicatedError",
    "DBOSSchemaMissingError",
    "DBOSSerializationError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowFunctionNotFoundError",
    "EnqueueOptions",
    "MaxRecoveryAttemptsExceededError",
    "Queue",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowStatus",
    "WorkflowStatusString",
]
