"""Replay-check mode: a workflow re-run against its recorded history that runs nothing new.

A ``WorkflowContext`` whose ``check`` is a ``CheckMode`` is a check of new code against what an
earlier run recorded (``runtime.replay_check``). In that mode ``Operations.begin`` hands every
durable operation to ``CheckMode.begin``, which lets it through only when an outcome is recorded
at its step number under its name (the operation then replays that outcome, as recovery does), and
otherwise stops the workflow function by raising a ``ReplayStop``:

- ``ReplayEnd``: no outcome is recorded at this step number (or the code waits for a workflow
  that has not finished): the recorded history is used up and the new code replayed all of it (a
  clean replay; what follows would be new work);
- ``ReplayDiverged``: an outcome is recorded here under another name (the new code is not
  compatible with the record);
- ``ReplayWrite``: something tried to write to the system tables (a checkpoint) although no
  operation may run for real in a check.

The stops are ``BaseException``s so that the workflow's own ``except Exception`` does not catch
them. A stop ends only the task (or thread) that met it: the other tasks of an async workflow
(``asyncio.gather``) go on and compare their own operations, since a run records concurrent
operations out of order and the check must reach every recorded one. A task that swallows its
stop and calls another operation (a bare ``except:`` retry loop, a ``finally``) no longer counts:
a sync one is parked for good on an idle daemon thread (``settled`` is set so the checker stops
waiting), an async one gets its stop again (parked too if it keeps at it). The checker reads the
stops from ``CheckMode`` (``stop``, ``ends``), not from what the function raised, and counts a
recorded operation no replay reached as a divergence (never as new work)

Recorded outcomes stay readable without being consumed: ``ctx.recorded`` holds every recorded
step by number, and ``ctx.last_function_id + 1`` is the number the next operation will take, so a
peek (``DBOS.patch``) reads ``ctx.recorded.get(ctx.last_function_id + 1)`` in a check exactly as
in a recovery, and consumes it through ``Operations.begin``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from runtime.records import RecordedStep


class ReplayStop(BaseException):
    """Ends a checked workflow function (see the module docstring). ``function_id`` is the step
    number where it stopped, ``name`` the operation the new code called there."""

    def __init__(self, function_id: int, name: str, message: str) -> None:
        super().__init__(message)
        self.function_id = function_id
        self.name = name


class ReplayEnd(ReplayStop):
    """The new code reached a step number with nothing recorded: the history replayed cleanly."""


class ReplayDiverged(ReplayStop):
    """The new code called another operation than the one recorded at this step number."""

    def __init__(self, function_id: int, recorded_name: str, name: str) -> None:
        super().__init__(
            function_id,
            name,
            f"step {function_id}: recorded {recorded_name!r} but the new code calls {name!r}",
        )
        self.recorded_name = recorded_name


class ReplayWrite(ReplayStop):
    """Something tried to write to the system tables during a check."""


# How often a task of an async workflow may call an operation again after its stop before it is
# taken for a retry loop that never yields (and parked).
_MAX_REENTRIES = 50


def _flow() -> tuple[int, int | None]:
    """Who calls: the thread, and the asyncio task when there is one (a gathered branch)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a sync workflow
        task = None
    return threading.get_ident(), None if task is None else id(task)


@dataclass
class CheckMode:
    """The state of one checked replay: the recorded operations the new code matched, in order
    (``trace``: step number and name); ``stop``, the first divergence or refused write (else the
    first end of history); ``ends``, every place a task reached the end of the history; and
    ``settled``, set once the verdict can no longer change (the function returned, raised, or
    a task swallowed its stop and went on)."""

    trace: list[tuple[int, str]] = field(default_factory=list)
    stop: ReplayStop | None = None
    ends: list[ReplayEnd] = field(default_factory=list)
    settled: threading.Event = field(default_factory=threading.Event)
    _stopped: dict[tuple[int, int | None], ReplayStop] = field(default_factory=dict)
    _reentries: dict[tuple[int, int | None], int] = field(default_factory=dict)

    def begin(self, function_id: int, name: str, rec: RecordedStep | None) -> None:
        """Let the operation ``name`` at ``function_id`` replay ``rec``, or stop the workflow."""
        flow = _flow()
        earlier = self._stopped.get(flow)
        if earlier is not None:
            # This task swallowed its stop and goes on (a retry loop, a `finally`): what a real
            # run does past the stop is unknown, so nothing it does now counts. A task of an
            # async workflow gets its stop again (a retry loop that awaits lets the other
            # branches go on); a sync workflow, or a task that keeps retrying, is parked for
            # good: the verdict is settled.
            self._reentries[flow] = self._reentries.get(flow, 0) + 1
            if flow[1] is not None and self._reentries[flow] <= _MAX_REENTRIES:
                raise earlier
            self.settled.set()
            threading.Event().wait()
        if rec is None:
            end = ReplayEnd(function_id, name, f"new work starts at step {function_id} ({name!r})")
            self.ends.append(end)
            raise self._raise(flow, end)
        if rec.function_name != name:
            raise self._raise(flow, ReplayDiverged(function_id, rec.function_name, name))
        self.trace.append((function_id, name))

    def _raise(self, flow: tuple[int, int | None], stop: ReplayStop) -> ReplayStop:
        """Note ``stop`` as this task's, and as the check's if it is the first or the more
        serious one (a divergence or a write outranks an end of history)."""
        self._stopped[flow] = stop
        if self.stop is None or (
            isinstance(self.stop, ReplayEnd) and not isinstance(stop, ReplayEnd)
        ):
            self.stop = stop
        return stop

    def refuse_write(self, function_id: int) -> ReplayStop:
        """The stop for a write attempted during the check (nothing is written)."""
        return self._raise(
            _flow(),
            ReplayWrite(
                function_id,
                "",
                f"the workflow tried to write to the system tables after step {function_id} "
                "outside a recorded operation",
            ),
        )

    def end_waiting(self, function_id: int, workflow_id: str) -> ReplayStop:
        """The stop for a wait on a workflow that has not finished (a child called directly):
        the original run waits there too, so the history ends here, cleanly."""
        end = ReplayEnd(
            function_id, "", f"then waits for workflow {workflow_id!r}, which has not finished"
        )
        self.ends.append(end)
        return self._raise(_flow(), end)
