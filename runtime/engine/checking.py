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
them; one the code swallows anyway (a bare ``except:``) is raised again at its next operation,
and the checker reads it from ``CheckMode.stop`` rather than from what the function raised.

Recorded outcomes stay readable without being consumed: ``ctx.recorded`` holds every recorded
step by number, and ``ctx.last_function_id + 1`` is the number the next operation will take, so a
peek (``DBOS.patch``) reads ``ctx.recorded.get(ctx.last_function_id + 1)`` in a check exactly as
in a recovery, and consumes it through ``Operations.begin``.
"""

from __future__ import annotations

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


@dataclass
class CheckMode:
    """The state of one checked replay: the recorded operations the new code matched, in order
    (``trace``: step number and name), and the stop, once raised."""

    trace: list[tuple[int, str]] = field(default_factory=list)
    stop: ReplayStop | None = None

    def begin(self, function_id: int, name: str, rec: RecordedStep | None) -> None:
        """Let the operation ``name`` at ``function_id`` replay ``rec``, or stop the workflow."""
        if self.stop is not None:  # the code swallowed the stop and went on: stop it again
            raise self.stop
        if rec is None:
            self.stop = ReplayEnd(
                function_id,
                name,
                f"new work starts at step {function_id} ({name!r})",
            )
            raise self.stop
        if rec.function_name != name:
            self.stop = ReplayDiverged(function_id, rec.function_name, name)
            raise self.stop
        self.trace.append((function_id, name))

    def refuse_write(self, function_id: int) -> ReplayStop:
        """The stop for a write attempted during the check (nothing is written)."""
        if self.stop is None:
            self.stop = ReplayWrite(
                function_id,
                "",
                f"the workflow tried to write to the system tables after step {function_id} "
                "outside a recorded operation",
            )
        return self.stop

    def end_waiting(self, function_id: int, workflow_id: str) -> ReplayStop:
        """The stop for a wait on a workflow that has not finished (a child called directly):
        the original run waits there too, so the history ends here, cleanly."""
        if self.stop is None:
            self.stop = ReplayEnd(
                function_id,
                "",
                f"then waits for workflow {workflow_id!r}, which has not finished",
            )
        return self.stop
