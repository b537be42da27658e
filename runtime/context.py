"""Per-thread (per-task) state: the running workflow, the current step, and the options that the
``with`` blocks (SetWorkflowID, SetWorkflowTimeout) hand to the next workflow started.

Held in ``contextvars`` so that threads and asyncio tasks each see their own.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.errors import DBOSException
from runtime.records import RecordedStep
from runtime.serialization import check_text, nesting_checked

if TYPE_CHECKING:
    from runtime.engine.checking import CheckMode


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return int(time.time() * 1000)


@dataclass
class WorkflowContext:
    """The state of one running workflow in this process."""

    workflow_id: str
    name: str
    owner_epoch: int
    deadline_ms: int | None = None
    # Outcomes a previous run recorded, by step number; empty on a fresh run (and not queried).
    recorded: dict[int, RecordedStep] = field(default_factory=dict)
    last_function_id: int = 0
    # Set by a NOTIFY from any process, or by a local cancel; read before each step at no cost.
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    # The queue it was dequeued from: it holds a slot of that queue in this process while it runs.
    queue_name: str | None = None
    # When this runner last knew it owned the workflow (a claim or a checkpoint write succeeded),
    # on the monotonic clock: after a long gap (a pause, a long sleep) it checks before a step.
    confirmed_at: float = field(default_factory=time.monotonic)
    # Parking (``runtime.engine.parking``): the task or thread that runs the body; whether an
    # operation was started from elsewhere (then this run never parks); the parked run once a
    # wait has parked; and whether this run goes on after a park (its queue slot is still held).
    home: object | None = None
    concurrent: bool = False
    parked: Any = None
    resumed_from_park: bool = False
    # A background task on a caller's event loop: cancelled from outside DBOS (that loop is
    # ending), the run goes on on the pool instead of stopping.
    hand_off_on_cancel: bool = False
    # A replay check of new code against this record (``runtime.engine.checking``): operations
    # replay recorded outcomes only, and nothing is written.
    check: CheckMode | None = None

    def next_function_id(self) -> int:
        """Allocate the number of the next durable operation (1, 2, ...)."""
        self.last_function_id += 1
        return self.last_function_id


@dataclass
class StepStatus:
    """The step (or transaction) being executed right now: ``DBOS.step_status``.

    DBOS's fields: ``step_id`` (its number in the workflow, from 1), ``current_attempt`` (the
    attempt under way, from 0, for a step with retries; None without) and ``max_attempts`` (for
    a step with retries; None without). Also ``function_id`` (= ``step_id``), ``name`` and
    ``attempt`` (the attempt under way, from 1, with or without retries)."""

    function_id: int
    name: str
    attempt: int = 1
    #: The attempts allowed when the step retries; None when it does not.
    retry_limit: int | None = None

    @property
    def step_id(self) -> int:
        """The step's number in its workflow (1, 2, ...)."""
        return self.function_id

    @property
    def current_attempt(self) -> int | None:
        """The attempt under way, counted from 0, for a step with retries (else None)."""
        return None if self.retry_limit is None else self.attempt - 1

    @property
    def max_attempts(self) -> int | None:
        """The attempts a step with retries makes at most (else None)."""
        return self.retry_limit


# The engine's name for it (transactions set one too).
StepContext = StepStatus


@dataclass
class _OneShot:
    """A value handed to the next workflow started in a ``with`` block, then used up."""

    value: Any
    used: bool = False


current_workflow: ContextVar[WorkflowContext | None] = ContextVar("dbos_workflow", default=None)
current_step: ContextVar[StepContext | None] = ContextVar("dbos_step", default=None)
sql_session: ContextVar[Any] = ContextVar("dbos_sql_session", default=None)
_next_workflow_id: ContextVar[_OneShot | None] = ContextVar("dbos_next_id", default=None)
_next_timeout: ContextVar[_OneShot | None] = ContextVar("dbos_next_timeout", default=None)
# (the workflow context the block was entered in, or None outside one; the attributes' JSON text)
_attributes: ContextVar[tuple[WorkflowContext | None, str | None] | None] = ContextVar(
    "dbos_attributes", default=None
)


def active_workflow() -> WorkflowContext | None:
    """The workflow whose durable operations are recorded here: the running workflow, or None
    outside a workflow and inside a step (where ``DBOS.*`` calls are plain calls, DBOS's rule)."""
    ctx = current_workflow.get()
    if ctx is None or current_step.get() is not None:
        return None
    return ctx


def take_assigned_workflow_id() -> str | None:
    """The ID set by an enclosing ``SetWorkflowID`` block, consumed by the first workflow."""
    shot = _next_workflow_id.get()
    if shot is None or shot.used:
        return None
    shot.used = True
    return str(shot.value)


def take_assigned_timeout() -> float | None:
    """The timeout (seconds) set by an enclosing ``SetWorkflowTimeout`` block, consumed once."""
    return take_timeout_block()[1]


def take_timeout_block() -> tuple[bool, float | None]:
    """Whether an enclosing ``SetWorkflowTimeout`` block applies to the next workflow started,
    and its timeout in seconds (None for ``SetWorkflowTimeout(None)``), consumed once. Any such
    block replaces the deadline a child would inherit from its parent (DBOS's rule), so
    ``SetWorkflowTimeout(None)`` starts a child with no deadline at all."""
    shot = _next_timeout.get()
    if shot is None or shot.used:
        return False, None
    shot.used = True
    return True, float(shot.value) if shot.value is not None else None


def validate_workflow_id(workflow_id: object, what: str = "workflow ID") -> str:
    """``workflow_id`` if it is a usable workflow ID: a string that is not empty or only
    whitespace (such an ID would be recorded, and then be impossible to tell apart, pass on the
    command line or recover). Raises ``DBOSException`` naming ``what`` otherwise."""
    if not isinstance(workflow_id, str) or not workflow_id.strip():
        raise DBOSException(
            f"invalid {what} {workflow_id!r}: workflow IDs must be non-empty strings "
            "and cannot be only whitespace"
        )
    return workflow_id


@contextmanager
def _one_shot(var: ContextVar[_OneShot | None], value: Any) -> Iterator[None]:
    token = var.set(_OneShot(value))
    try:
        yield
    finally:
        var.reset(token)


class SetWorkflowID:
    """``with SetWorkflowID("id"):`` gives the next workflow started in the block that ID.

    The ID is an idempotency key: starting again with the same ID runs nothing new and returns the
    first run's result.
    """

    def __init__(self, workflow_id: str) -> None:
        """Raises ``DBOSException`` for an ID that is not a string, empty or only whitespace."""
        self.workflow_id = validate_workflow_id(workflow_id)
        self._cm: Any = None

    def __enter__(self) -> SetWorkflowID:
        self._cm = _one_shot(_next_workflow_id, self.workflow_id)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


class SetWorkflowTimeout:
    """``with SetWorkflowTimeout(seconds):`` gives the next workflow a deadline; past it the
    workflow (and its children, which inherit the deadline) is cancelled. Inside a workflow the
    block replaces the parent's deadline for the child it starts: ``None`` starts that child with
    no deadline."""

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and seconds <= 0:
            raise ValueError("SetWorkflowTimeout needs a positive number of seconds")
        self.seconds = seconds
        self._cm: Any = None

    def __enter__(self) -> SetWorkflowTimeout:
        self._cm = _one_shot(_next_timeout, self.seconds)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


# Attribute text has no size limit of its own (the row's does), unlike an identifier.
_NO_SIZE_LIMIT = 1 << 62


def _check_json(value: object, where: str) -> None:
    """Refuse what a JSON object stored as jsonb cannot hold as given: keys that are not strings
    (``json`` would turn 1 into "1"), NaN and infinities, NUL characters, unpaired surrogates,
    and any other type."""
    if isinstance(value, str):
        # NUL and unpaired surrogates: text Postgres JSON cannot hold (no size limit here).
        check_text(value, f"invalid workflow attributes: {where}", max_bytes=_NO_SIZE_LIMIT)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise DBOSException(
                f"invalid workflow attributes: {value!r} in {where}: attributes must be "
                "JSON-serializable"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DBOSException(
                    f"invalid workflow attributes: key {key!r} in {where} is not a string "
                    "(attributes must be JSON-serializable, with string keys)"
                )
            _check_json(key, where)
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif value is not None and not isinstance(value, bool | int):
        raise DBOSException(
            f"invalid workflow attributes: a {type(value).__name__} in {where}: attributes "
            "must be JSON-serializable"
        )


def attributes_json(attributes: object) -> str | None:
    """The JSON text stored for workflow ``attributes`` (a dict of JSON values with string keys,
    or None for none). Anything else raises ``DBOSException`` before anything is recorded."""
    if attributes is None:
        return None
    if not isinstance(attributes, dict):
        raise DBOSException(
            f"invalid workflow attributes {attributes!r}: attributes must be a dict"
        )
    with nesting_checked("workflow attributes"):
        _check_json(attributes, "attributes")
        return json.dumps(attributes, ensure_ascii=False, allow_nan=False)


def current_attributes() -> str | None:
    """The JSON text of the attributes an enclosing ``SetWorkflowAttributes`` gives a workflow
    started here. A block entered outside a workflow does not reach the workflows that the
    workflows it starts start in turn (attributes are not inherited, DBOS's rule)."""
    found = _attributes.get()
    if found is None or found[0] is not current_workflow.get():
        return None
    return found[1]


class SetWorkflowAttributes:
    """``with SetWorkflowAttributes({"customer": "acme"}):`` records these custom key/values
    with every workflow started or enqueued in the block (not with their child workflows).
    ``list_workflows(attributes=...)`` finds them; ``DBOS.update_workflow_attributes`` replaces
    them. ``None`` starts workflows without attributes. Raises ``DBOSException`` for anything
    but a dict of JSON values with string keys."""

    def __init__(self, attributes: dict[str, Any] | None) -> None:
        self.attributes = attributes
        self._json = attributes_json(attributes)
        self._token: Any = None

    def __enter__(self) -> SetWorkflowAttributes:
        self._token = _attributes.set((current_workflow.get(), self._json))
        return self

    def __exit__(self, *exc: object) -> None:
        _attributes.reset(self._token)
