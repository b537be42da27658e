"""The one error hierarchy of the runtime.

Every error the runtime raises on purpose derives from ``DBOSException`` (except cancellation, see
below), so callers can catch ours without catching everything::

    Exception
    └── DBOSException
        ├── DBOSConfigError                  bad settings or config file (file, key, expectation)
        ├── DBOSDatabaseError                database unreachable, bad URL, or a driver failure
        │   ├── DBOSConnectionError          connection failed or lost (retried in workflows)
        │   └── DBOSSchemaMissingError       the system tables are not there: run `dbos migrate`
        ├── DBOSSerializationError           a value cannot be stored as JSON (names the argument)
        ├── DBOSNonExistentWorkflowError     no workflow with that ID
        ├── DBOSConflictingWorkflowError     the ID is taken by a different workflow function
        ├── DBOSUnexpectedStepError          replay reached a different step than recorded
        ├── DBOSMaxStepRetriesExceeded       a step with retries ran out of attempts
        ├── DBOSStepTimeoutError             an async step ran past its timeout_seconds
        ├── DBOSQueueDeduplicatedError       an enqueue hit a live deduplication ID
        ├── MaxRecoveryAttemptsExceededError a workflow was recovered too often
        ├── DBOSAwaitedWorkflowCancelledError the workflow whose result was awaited was cancelled
        ├── DBOSWorkflowFunctionNotFoundError a recorded workflow name is not registered here
        ├── DBOSStreamTimeoutError           no stream value arrived in time (or ever will)
        └── DBOSStreamNondeterminismError    two reads of streams at once in one workflow
    BaseException
    ├── DBOSWorkflowCancelledError           raised inside a cancelled workflow: stops it at a step
    └── DBOSWorkflowFencedError              another executor took the workflow over: stop silently

The two ``BaseException`` subclasses stop a workflow's thread; user code that writes
``except Exception:`` around a step must not be able to swallow them.
"""

from __future__ import annotations


class DBOSException(Exception):
    """Root of the runtime's errors; ``str(err)`` is a one-line message meant for people."""


class DBOSConfigError(DBOSException):
    """Invalid configuration: the message names the source (file or variable), the key and what was
    expected."""


class DBOSDatabaseError(DBOSException):
    """The database could not be reached or refused an operation. The message never holds a
    password. ``transient`` is True when the failure is not caused by the data sent (a timeout,
    a rollback, a server short of resources): a workflow waits those out instead of failing."""

    transient: bool = False


class DBOSConnectionError(DBOSDatabaseError):
    """The database could not be reached, or the connection was lost mid-statement. Inside a
    workflow, checkpoint writes retry these until the database is back."""


class DBOSSchemaMissingError(DBOSDatabaseError):
    """The system schema is missing or older than this runtime; `dbos migrate` creates it."""


class DBOSSerializationError(DBOSException):
    """A value could not be encoded as JSON; raised before anything is recorded."""


class DBOSNonExistentWorkflowError(DBOSException):
    """No workflow with the given ID exists."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} does not exist")
        self.workflow_id = workflow_id


class DBOSConflictingWorkflowError(DBOSException):
    """A workflow ID was reused with a different workflow function."""

    def __init__(self, workflow_id: str, message: str) -> None:
        super().__init__(f"conflicting workflow ID {workflow_id!r}: {message}")
        self.workflow_id = workflow_id


class DBOSUnexpectedStepError(DBOSException):
    """On replay, the workflow called a different operation than the one recorded at this step
    number: the workflow function is not deterministic (or its code changed)."""

    def __init__(self, workflow_id: str, step_id: int, expected: str, actual: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} step {step_id}: recorded {expected!r} but replay called "
            f"{actual!r}; the workflow is not deterministic"
        )
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.expected = expected
        self.actual = actual


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step with retries raised on every allowed attempt."""

    def __init__(self, step_name: str, max_attempts: int, last_error: str = "") -> None:
        detail = f": {last_error}" if last_error else ""
        super().__init__(f"step {step_name!r} failed after {max_attempts} attempts{detail}")
        self.step_name = step_name
        self.max_attempts = max_attempts


class DBOSStepTimeoutError(DBOSException):
    """An async step with ``timeout_seconds`` ran longer than that: it was cancelled. Recorded as
    the step's outcome (retried first when the step allows retries: each attempt has its own
    limit)."""

    def __init__(self, step_name: str, timeout_seconds: float) -> None:
        super().__init__(
            f"step {step_name!r} was cancelled after exceeding its timeout of "
            f"{timeout_seconds} seconds"
        )
        self.step_name = step_name
        self.timeout_seconds = timeout_seconds


class DBOSQueueDeduplicatedError(DBOSException):
    """An enqueue used a deduplication ID that a queued or running workflow already holds."""


class MaxRecoveryAttemptsExceededError(DBOSException):
    """A workflow was recovered more times than its ``max_recovery_attempts``."""


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """The workflow whose result was awaited was cancelled."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} was cancelled")
        self.workflow_id = workflow_id


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    """A recorded workflow names a function that this process has not registered."""


class DBOSStreamTimeoutError(DBOSException):
    """No value arrived on a stream within ``timeout_seconds`` (then ``timeout_seconds`` is set),
    or the stream ended before the offset asked for (then it is None: none ever will)."""

    def __init__(self, workflow_id: str, key: str, timeout_seconds: float | None = None) -> None:
        within = f" within {timeout_seconds} seconds" if timeout_seconds is not None else ""
        super().__init__(f"no value arrived on stream {key!r} of workflow {workflow_id!r}{within}")
        self.workflow_id = workflow_id
        self.key = key
        self.timeout_seconds = timeout_seconds


class DBOSStreamNondeterminismError(DBOSException):
    """A workflow started reading a stream while another of its reads was under way (tasks of an
    async workflow reading at once): which read records which value would depend on scheduling,
    so a replay could differ. Read streams one at a time in workflow code, or from a step."""

    def __init__(self, workflow_id: str, key: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} cannot read stream {key!r} deterministically: another "
            "stream read of the same workflow is under way; read streams one at a time in "
            "workflow code, or from a step"
        )
        self.workflow_id = workflow_id
        self.key = key


class DBOSWorkflowCancelledError(BaseException):
    """Raised inside a workflow whose status became CANCELLED; stops it at the next step.

    Derives from ``BaseException`` so that ``except Exception`` in user code cannot swallow it.
    """

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} was cancelled")
        self.workflow_id = workflow_id


class DBOSWorkflowFencedError(BaseException):
    """Raised inside a workflow that another runner took over (its owner epoch moved on): this
    runner must stop without recording anything further."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} is now owned by another runner")
        self.workflow_id = workflow_id
