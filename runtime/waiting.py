"""What a PENDING or ENQUEUED workflow waits for, read from its record in the database alone.

A workflow that waits durably holds no thread: its executor parks it in memory, and only that
process knows. But the operations that wait record enough to tell from anywhere (the CLI, the
dashboard, ``DBOSClient``), so an operator sees what a workflow waits for without asking its
process. The rule, with m the highest recorded step number (step numbers start at 1):

- ENQUEUED or DELAYED: waiting in its queue.
- PENDING, step m is a ``DBOS.sleep`` holding an end time T (epoch ms). Three operations record
  one: ``DBOS.sleep`` (its wake-up time), and ``recv``/``get_event`` at step n, which take n + 1
  for their timeout and record T there when they first wait; they record step n itself only when
  they end (then the slot n + 1 stays empty if they never waited). So:

  * step m - 1 is recorded: a ``DBOS.recv``/``DBOS.getEvent`` there has ended (m is its
    timeout), and nothing recorded says the workflow waits; anything else there means m is a
    plain sleep until T;
  * step m - 1 is not recorded and m >= 2: a recv or get_event at m - 1 waits until T, unless
    step m - 2 is a ``DBOS.recv``/``DBOS.getEvent``, whose unused timeout slot m - 1 is (then m
    is a plain sleep);
  * m = 1: a plain sleep.

  A T in the past means the wait is over and the workflow is due to go on (or goes on, in code
  that has recorded no step since).
- PENDING, step m started a child workflow (``child_workflow_id`` set, and not the
  ``DBOS.getResult`` step that records a child's outcome once it is known) and that child has no
  final outcome (it is PENDING, ENQUEUED, CANCELLED or out of recovery attempts): the workflow
  most likely waits for it, though it may be running code that recorded nothing since. The
  description says what the record shows: the last step started that child, which is in that
  status.
- Anything else (no step yet, or a step that ended and nothing since): the workflow is running
  code, and nothing is derived.

One limit: a workflow that runs operations concurrently (``asyncio.gather`` in an async workflow)
can record a later step while an earlier one still runs, and the rule cannot see that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from runtime import serialization
from runtime.errors import DBOSException
from runtime.records import LastStep, WaitSnapshot
from runtime.status import FINAL_STATUSES, WorkflowStatusString

__all__ = ["WaitKind", "WaitTarget", "Waiting", "derive"]

# The step names the waiting operations record. They are defined by runtime.messaging and
# runtime.engine.results, which this module does not import: a client that only lists workflows
# must not load the engine. A test checks that the names agree.
SLEEP_OP = "DBOS.sleep"
RECV_OP = "DBOS.recv"
GET_EVENT_OP = "DBOS.getEvent"
GET_RESULT_OP = "DBOS.getResult"
_TIMED_WAITS = (RECV_OP, GET_EVENT_OP)

WaitKind = Literal["sleep", "message-or-event", "child", "queue"]


@dataclass(frozen=True)
class WaitTarget:
    """What a waiting ``recv`` or ``get_event`` waits for, recorded (as JSON) on its timeout's
    row when it first waits: the topic of a ``recv`` (None: messages sent with no topic), or the
    workflow and key of a ``get_event``."""

    op: Literal["recv", "get_event"]
    topic: str | None = None
    workflow_id: str | None = None
    key: str | None = None

    def to_text(self) -> str:
        """The JSON the timeout row holds."""
        if self.op == "recv":
            return serialization.serialize({"op": "recv", "topic": self.topic})
        fields = {"op": "get_event", "workflow_id": self.workflow_id, "key": self.key}
        return serialization.serialize(fields)

    @staticmethod
    def from_text(text: str | None) -> WaitTarget | None:
        """The target a row holds; None for none, or for text this version cannot read (an
        explanation must not fail on a row written by another version)."""
        try:
            value = serialization.deserialize(text)
        except DBOSException:
            return None
        if not isinstance(value, dict):
            return None
        strings = {k: v for k, v in value.items() if isinstance(v, str)}
        if value.get("op") == "recv":
            return WaitTarget("recv", topic=strings.get("topic"))
        if value.get("op") == "get_event" and "workflow_id" in strings and "key" in strings:
            return WaitTarget("get_event", workflow_id=strings["workflow_id"], key=strings["key"])
        return None

    def describe(self) -> str:
        """``in recv on topic 'orders'`` or ``for event 'status' of workflow W``."""
        if self.op == "recv":
            if self.topic is None:
                return "in recv for a message sent with no topic"
            return f"in recv on topic {self.topic!r}"
        return f"for event {self.key!r} of workflow {self.workflow_id}"


@dataclass(frozen=True)
class Waiting:
    """What a workflow waits for, as its record shows.

    ``until_ms`` is the end of a sleep or of a recv/get_event timeout (epoch ms); ``detail`` the
    child workflow's ID (kind ``child``) or the queue's name (kind ``queue``); ``child_status``
    the child's status when the record was read (None: no workflow has that ID). For a
    ``message-or-event`` wait, ``target`` says which (None on records written before it was
    recorded) and ``since_ms`` when the wait began (epoch ms)."""

    kind: WaitKind
    until_ms: int | None = None
    detail: str | None = None
    child_status: str | None = None
    target: WaitTarget | None = None
    since_ms: int | None = None

    def describe(self, now_ms: int, *, local: bool = False) -> str:
        """One line for people, e.g. ``sleeping until 2026-11-29 23:10:00Z (in 4m 12s)``; times
        in UTC, or in this machine's time zone with its offset when ``local``."""
        if self.kind == "queue":
            return f"enqueued on queue {self.detail}"
        if self.kind == "child":
            status = self.child_status or "not found"
            return f"last step started child workflow {self.detail}, which is {status}"
        until = self.until_ms if self.until_ms is not None else now_ms
        at, left = format_time(until, local=local), until - now_ms
        if self.kind == "sleep":
            if left > 0:
                return f"sleeping until {at} (in {format_span(left)})"
            return (
                f"sleep ended at {at} ({format_span(-left)} ago): due to go on, or running code "
                "that has recorded no step since"
            )
        if self.target is not None:
            since = ""
            if self.since_ms is not None:
                since = f" since {format_time(self.since_ms, local=local)}"
            if left > 0:
                return (
                    f"waiting {self.target.describe()}{since} "
                    f"(times out at {at}, in {format_span(left)})"
                )
            return (
                f"waiting {self.target.describe()}{since}: timed out at {at} "
                f"({format_span(-left)} ago), due to go on"
            )
        if left > 0:
            return f"waiting for a message or an event until {at} (in {format_span(left)})"
        return (
            f"wait for a message or an event timed out at {at} ({format_span(-left)} ago): "
            "due to go on"
        )

    def brief(self, now_ms: int) -> str:
        """A few words for a table cell, e.g. ``sleep, 4m 12s left`` or ``child PENDING``."""
        if self.kind == "queue":
            return "in queue"
        if self.kind == "child":
            return f"child {self.child_status or 'not found'}"
        what = "sleep" if self.kind == "sleep" else "message/event"
        if self.target is not None:
            what = "recv" if self.target.op == "recv" else "event"
        left = (self.until_ms or now_ms) - now_ms
        return f"{what}, {format_span(left)} left" if left > 0 else f"{what}, due"


def format_time(epoch_ms: int, *, local: bool = False) -> str:
    """``2026-11-29 23:10:00Z`` (UTC), or local time with its offset."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, timezone.utc)
    if local:
        moment = moment.astimezone()
    text = moment.isoformat(sep=" ", timespec="seconds")
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def format_span(ms: int) -> str:
    """A duration in its two largest units: ``12s``, ``4m 12s``, ``2h 5m``, ``3d 4h``."""
    seconds = max(0, ms) // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def derive(snapshot: WaitSnapshot) -> Waiting | None:
    """What the workflow waits for by the rule of this module's docstring; None when its record
    says it waits for nothing (or it is not PENDING or ENQUEUED)."""
    if snapshot.status in (
        WorkflowStatusString.ENQUEUED.value,
        WorkflowStatusString.DELAYED.value,
    ):
        return Waiting("queue", detail=snapshot.queue_name)
    if snapshot.status != WorkflowStatusString.PENDING.value or not snapshot.last_steps:
        return None
    top = snapshot.last_steps[0]
    below = snapshot.last_steps[1] if len(snapshot.last_steps) > 1 else None
    if top.child_workflow_id is not None and top.function_name != GET_RESULT_OP:
        if top.child_status in FINAL_STATUSES:
            return None  # its outcome is there: the parent goes on (or has gone on)
        return Waiting("child", detail=top.child_workflow_id, child_status=top.child_status)
    until = _end_time(top)
    if until is None:
        return None
    m = top.function_id
    if below is not None and below.function_id == m - 1:
        # A recorded recv/get_event right below: m is the timeout of a wait that has ended.
        return None if below.function_name in _TIMED_WAITS else Waiting("sleep", until)
    unused_timeout_slot = (
        below is not None and below.function_id == m - 2 and below.function_name in _TIMED_WAITS
    )
    if m >= 2 and not unused_timeout_slot:
        target = WaitTarget.from_text(top.wait_target)
        return Waiting("message-or-event", until, target=target, since_ms=top.started_at_ms)
    return Waiting("sleep", until)


def _end_time(step: LastStep) -> int | None:
    """The end time a ``DBOS.sleep`` step holds; None for any other step, or one whose output is
    not an end time (a user's step could be named so: it is not a wait, and must not break a
    listing)."""
    if step.function_name != SLEEP_OP or step.output is None:
        return None
    try:
        value = serialization.deserialize(step.output)
    except DBOSException:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
