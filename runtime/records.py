"""The typed records of the storage boundary: what ``SystemDatabase`` and ``ExecutorTable`` take
and return (frozen dataclasses; public ``WorkflowStatus``/``StepInfo`` records are in
``runtime.status``). Each is decoded from its statement's row in one place, in the module that runs
the statement."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NewWorkflow:
    """What is recorded when a workflow starts (before it runs)."""

    workflow_id: str
    status: str  # PENDING (runs now), ENQUEUED or DELAYED
    name: str
    class_name: str | None
    inputs: str
    executor_id: str | None
    application_version: str | None
    queue_name: str | None = None
    priority: int = 0
    deduplication_id: str | None = None
    max_recovery_attempts: int | None = None
    timeout_ms: int | None = None
    deadline_ms: int | None = None
    parent_workflow_id: str | None = None
    forked_from: str | None = None
    owner_process: str | None = None  # the process that runs it (a PENDING start)
    config_name: str | None = None  # an instance method's configured instance (with class_name)
    queue_partition_key: str | None = None  # its partition of a partitioned queue
    delay_until_epoch_ms: int | None = None  # a DELAYED workflow: not dequeued before this
    attributes: str | None = None  # its attributes as a JSON object's text (None: it has none)
    # A debounced workflow (``runtime.debouncer``): the cap on its delay, and the flag that its
    # deduplication ID is a debounce key.
    debounce_deadline_epoch_ms: int | None = None
    is_debounced: bool = False
    schedule_name: str | None = None  # the managed schedule that enqueued it (a tick)


@dataclass(frozen=True)
class InsertResult:
    """Outcome of ``insert_workflow``: either we created it, or what already holds the ID."""

    created: bool
    status: str
    name: str
    owner_epoch: int
    deadline_ms: int | None
    output: str | None
    error: str | None
    executor_id: str | None
    owner_process: str | None = None


@dataclass(frozen=True)
class RecordResult:
    """Outcome of a checkpoint write: the workflow's status and epoch as the write saw them, and
    whether the outcome was recorded."""

    status: str | None
    owner_epoch: int | None
    recorded: bool


@dataclass(frozen=True)
class SendResult(RecordResult):
    """Outcome of a workflow's send: the checkpoint write, and whether the destination exists
    (nothing is delivered or recorded when it does not)."""

    destination_exists: bool


@dataclass(frozen=True)
class RecvResult(RecordResult):
    """Outcome of a recv: the checkpoint write, and the message it consumed (None when there was
    none, or the runner was fenced)."""

    message: str | None


@dataclass(frozen=True)
class OutsideSend:
    """Outcome of a send from outside any workflow."""

    destination_exists: bool
    delivered: bool  # False for a repeated idempotency key


@dataclass(frozen=True)
class StatusResult:
    """A workflow's status and, once finished, its serialized output or error."""

    status: str
    output: str | None
    error: str | None


@dataclass(frozen=True)
class Ownership:
    """A workflow's status and the owner epoch of the runner that holds it."""

    status: str
    owner_epoch: int


@dataclass(frozen=True)
class RecordedStep:
    """A previous run's outcome of one operation, used on replay."""

    function_name: str
    output: str | None
    error: str | None
    child_workflow_id: str | None


@dataclass(frozen=True)
class ClaimedWorkflow:
    """A workflow this runner now owns, with what it needs to re-run it."""

    workflow_id: str
    status: str
    owner_epoch: int
    name: str
    class_name: str | None
    inputs: str
    deadline_ms: int | None
    recovery_attempts: int
    application_version: str | None
    queue_name: str | None = None
    config_name: str | None = None  # an instance method's configured instance (with class_name)


@dataclass(frozen=True)
class PeerProcess:
    """Another live executor process seen by a heartbeat."""

    process_id: str
    executor_id: str
    hostname: str
    pid: int
    process_identity: str | None


@dataclass(frozen=True)
class DequeuedWorkflow:
    """A workflow a dispatcher claimed from its queue."""

    claimed: ClaimedWorkflow
    has_steps: bool  # a resumed or forked workflow already has recorded steps to replay


@dataclass(frozen=True)
class DequeueResult:
    """What one dequeue claimed, in start order, and, when the queue's rate limit held some back,
    the epoch millisecond at which the next start becomes possible."""

    workflows: list[DequeuedWorkflow]
    next_start_at_ms: int | None


@dataclass(frozen=True)
class ExecutorRecord:
    """One process's row in the executors table, with the PENDING workflows it owns."""

    process_id: str
    executor_id: str
    hostname: str
    pid: int
    application_version: str
    lease_ms: int
    started_at: int
    last_heartbeat_at: int
    stopped_at: int | None
    alive: bool  # not stopped, and heartbeated within its lease
    pending_workflows: int
    found_gone: bool  # marked stopped by a process that found it dead
    process_identity: str | None


@dataclass(frozen=True)
class VersionWork:
    """What an application version still has to do, and who can do it."""

    application_version: str
    pending: int
    enqueued: int
    live_processes: int


@dataclass(frozen=True)
class QueueInfo:
    """A queue: its limits (as its executors declared them) and its live work."""

    name: str
    concurrency: int | None
    worker_concurrency: int | None
    limit: int | None
    period_s: float | None
    priority_enabled: bool
    application_version: str | None
    declared_at: int | None  # when an executor last recorded its limits (None: never)
    enqueued: int
    running: int


@dataclass(frozen=True)
class WakeSignals:
    """What the database says about parked workflows' wake-ups (``parked_wake_signals``)."""

    #: Awaited workflows that have a final outcome.
    finished: list[str] = field(default_factory=list)
    #: Parked workflows no longer PENDING in this process (cancelled, taken over, gone).
    changed: list[str] = field(default_factory=list)
    #: ``listener.message_key`` of the awaited messages that are waiting to be received.
    messages: list[str] = field(default_factory=list)
    #: ``listener.event_key`` of the awaited events that are set.
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LastStep:
    """One of a workflow's highest recorded steps (``wait_snapshots``)."""

    function_id: int
    function_name: str
    # Serialized; read only for a DBOS.sleep step (an end time): other outputs can be large.
    output: str | None
    child_workflow_id: str | None
    child_status: str | None  # that child's status (None: no child, or no workflow with its ID)
    # What a recv/get_event timeout row waits for (JSON; None on other rows and older ones).
    wait_target: str | None = None
    started_at_ms: int | None = None


@dataclass(frozen=True)
class WaitSnapshot:
    """What the database shows of a PENDING or ENQUEUED workflow's wait (``runtime.waiting``
    derives it): its status, queue and two highest recorded steps, highest first."""

    workflow_id: str
    status: str
    queue_name: str | None
    last_steps: list[LastStep]


# The foreign keys a message's row holds to its destination: a send checks that the destination
# exists in the same statement that inserts, but garbage collection (or delete_workflows) may
# delete it in between; then the insert fails on the key. That is the destination not existing,
# which each send reports as DBOS does (DBOSNonExistentWorkflowError), not a database error.
DESTINATION_KEYS = (
    "notifications_destination_uuid_fkey",
    "idempotent_sends_destination_uuid_fkey",
)


class DestinationDeleted(Exception):
    """A message's destination was deleted while it was being sent (see ``DESTINATION_KEYS``)."""
