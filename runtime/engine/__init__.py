"""The execution engine: durable workflows, steps and transactions, one concern per module.

| module | concern |
|---|---|
| ``core`` | ``Engine``: the parts of one launched runtime, built and wired |
| ``drive`` | one control loop for sync and async: operations as generators of effects |
| ``protocol`` | the durable-operation protocol: number, replay, check, record, fence, interrupts |
| ``runs`` | this process's runs in memory: reservations, contexts, threads, queue slots |
| ``starting`` | recording a start and deciding what runs it |
| ``claiming`` | the one claim path for recorded PENDING workflows (and dequeued ones) |
| ``running`` | running a workflow body and settling its outcome |
| ``steps`` | steps and their retries |
| ``transactions`` | application-database transactions (the only module with psycopg errors) |
| ``results`` | waiting for a workflow's outcome, ``handle.get_result()`` |
| ``patching`` | ``DBOS.patch`` and ``deprecate_patch``: markers that only some histories hold |

Cost model (the hot path): starting a workflow is one statement, each step or transaction one
checkpoint write (which also reports cancellation and fencing), finishing one statement. A fresh
run never reads before a step; a resumed run reads its recorded outcomes once.
"""

from runtime.engine.claiming import DEFAULT_MAX_RECOVERY_ATTEMPTS
from runtime.engine.core import Engine
from runtime.engine.starting import EnqueueRequest
from runtime.engine.steps import StepOptions, StepPolicy, step_policy

__all__ = [
    "DEFAULT_MAX_RECOVERY_ATTEMPTS",
    "Engine",
    "EnqueueRequest",
    "StepOptions",
    "StepPolicy",
    "step_policy",
]
