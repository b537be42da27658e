"""Patching (``DBOS.patch``, ``DBOS.deprecate_patch``): changing a workflow's code while
workflows that started on the old code are still in flight.

A patch is a marker in the workflow's history: an operation named ``DBOS.patch-<name>`` (DBOS's
name) with no outcome. Through the one protocol (``Operations``):

- ``patch``: at the next step number a previous run recorded something else, so this workflow
  started on the old code: False, and the number is NOT taken, so the old branch's operation
  finds its own record there. The marker is recorded there: True (a replay takes it again).
  Nothing is recorded there (a fresh step): record the marker, True.
- ``deprecate_patch``: the marker is recorded there: take it; else take nothing. Always True, so
  the new branch runs, and workflows that never recorded the marker stop recording it.

Both only look at the recorded history (``Operations.peek``) before deciding, so a replay that
runs no steps (a pre-deploy check) takes the same branches as the real run.
"""

from __future__ import annotations

from typing import Any

from runtime import context
from runtime.engine.drive import Operation, run_async, run_sync
from runtime.engine.protocol import Operations
from runtime.errors import DBOSException

# DBOS's prefix of a patch marker's operation name.
PATCH_PREFIX = "DBOS.patch-"


def marker_name(patch_name: object) -> str:
    """The operation name of a patch's marker; ``DBOSException`` for a name that is not a
    non-empty string."""
    if not isinstance(patch_name, str) or not patch_name:
        raise DBOSException(f"invalid patch name {patch_name!r}: expected a non-empty string")
    return PATCH_PREFIX + patch_name


def _workflow(call: str) -> Any:
    ctx = context.active_workflow()
    if ctx is None:
        raise DBOSException(f"DBOS.{call} must be called from a workflow")
    return ctx


class Patching:
    """``patch`` and ``deprecate_patch`` of the workflows of one launched runtime."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def patching(self, patch_name: str, call: str = "patch") -> Operation[bool]:
        """``patch`` as an operation: whether the workflow takes the patched branch."""
        marker = marker_name(patch_name)
        ctx = _workflow(call)
        recorded = self.ops.peek(ctx)
        if recorded is not None and recorded.function_name != marker:
            return False  # started on the old code: its next operation is the old branch's
        function_id, rec = self.ops.begin(ctx, marker)
        if rec is None:
            yield self.ops.recording(ctx, function_id, marker, started_at_ms=context.now_ms())
        return True

    def deprecating(self, patch_name: str, call: str = "deprecate_patch") -> Operation[bool]:
        """``deprecate_patch`` as an operation: takes the marker where the history has it."""
        marker = marker_name(patch_name)
        ctx = _workflow(call)
        recorded = self.ops.peek(ctx)
        if recorded is not None and recorded.function_name == marker:
            self.ops.begin(ctx, marker)
        return True
        yield  # pragma: no cover - never reached: makes this a generator, like every operation

    def patch(self, patch_name: str) -> bool:
        """See ``patching``."""
        return run_sync(self.patching(patch_name))

    async def patch_async(self, patch_name: str) -> bool:
        """``patch`` on the event loop: the step number is looked at and taken on the loop, so
        concurrent tasks of the workflow cannot take it in between."""
        return await run_async(self.patching(patch_name, "patch_async"))

    def deprecate_patch(self, patch_name: str) -> bool:
        """See ``deprecating``."""
        return run_sync(self.deprecating(patch_name))

    async def deprecate_patch_async(self, patch_name: str) -> bool:
        """``deprecate_patch`` on the event loop."""
        return await run_async(self.deprecating(patch_name, "deprecate_patch_async"))
