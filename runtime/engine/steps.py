"""Steps: an operation replayed from its record, or executed (with retries) and recorded in one
checkpoint write. Written once for sync and async steps (``runtime.engine.drive``).

Retries follow DBOS's schedule: ``max_attempts`` attempts in all, the first retry after
``interval_seconds``, each later one ``backoff_rate`` times longer; the waits are interruptible
(a cancellation or shutdown stops the step between attempts). After the last attempt the step
fails with ``DBOSMaxStepRetriesExceeded``, which is recorded as its outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime import context, serialization
from runtime.context import StepContext, WorkflowContext, now_ms
from runtime.engine.drive import Blocking, Call, Operation, carry, run_async, run_sync, uncarry
from runtime.engine.protocol import Operations, Pause, replay_outcome
from runtime.errors import DBOSException, DBOSMaxStepRetriesExceeded

logger = logging.getLogger("dbos")


@dataclass(frozen=True)
class StepOptions:
    """How a step retries (DBOS's parameters of ``@DBOS.step``)."""

    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0


class Steps:
    """Runs steps for one launched runtime."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def run(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StepOptions,
    ) -> Any:
        """Run a step in this thread; outside a workflow (or inside a step), a plain call."""
        return run_sync(self.step(name, func, args, kwargs, options))

    async def run_async(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StepOptions,
    ) -> Any:
        """Run an async step: its attempts awaited on this loop, its checkpoint on a thread."""
        return await run_async(self.step(name, func, args, kwargs, options))

    def step(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StepOptions,
    ) -> Operation[Any]:
        """The step as an operation (see the module docstring)."""
        ctx = context.active_workflow()
        if ctx is None:
            return (yield Call(func, args, kwargs))
        function_id, rec = self.ops.begin(ctx, name)
        if rec is not None:
            return replay_outcome(rec)
        started = now_ms()
        step = StepContext(function_id, name)
        token = context.current_step.set(step)
        try:
            value, error = yield from self._attempts(ctx, step, Call(func, args, kwargs), options)
        finally:
            context.current_step.reset(token)
        return (yield from self._finish(ctx, function_id, name, started, value, error))

    def _attempts(
        self, ctx: WorkflowContext, step: StepContext, call: Call, options: StepOptions
    ) -> Operation[tuple[Any, Exception | None]]:
        attempts = max(1, options.max_attempts) if options.retries_allowed else 1
        delay = options.interval_seconds
        for attempt in range(1, attempts + 1):
            step.attempt = attempt
            yield from self.ops.confirm(ctx)
            try:
                return (yield call), None
            except Exception as raised:
                exc = uncarry(raised)
                if not options.retries_allowed:
                    return None, exc
                if attempt == attempts:
                    return None, DBOSMaxStepRetriesExceeded(step.name, attempts, repr(exc))
                logger.warning(
                    "step %s of workflow %s failed (attempt %d of %d): %r; retrying in %.2fs",
                    step.name,
                    ctx.workflow_id,
                    attempt,
                    attempts,
                    exc,
                    delay,
                )
                yield Pause(self.ops, ctx, delay)
                delay *= options.backoff_rate
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish(
        self,
        ctx: WorkflowContext,
        function_id: int,
        name: str,
        started: int,
        value: Any,
        error: Exception | None,
    ) -> Operation[Any]:
        """Record a step's outcome (one checkpoint write): return its value or raise its error.
        Encoding the outcome is part of the blocking work (off the event loop for an async step:
        a large result takes a while)."""
        failed = yield Blocking(lambda: self._record(ctx, function_id, name, started, value, error))
        if failed is not None:
            raise carry(failed)
        return value

    def _record(
        self,
        ctx: WorkflowContext,
        function_id: int,
        name: str,
        started: int,
        value: Any,
        error: Exception | None,
    ) -> Exception | None:
        """Encode and record the outcome; returns the error to raise, if the step failed (or its
        result cannot be stored)."""
        if error is None:
            try:
                output = serialization.serialize(value, f"result of step {name}")
            except DBOSException as exc:
                error = exc
            else:
                self.ops.record(ctx, function_id, name, output=output, started_at_ms=started)
                return None
        self.ops.not_while_stopping(error)
        encoded = serialization.serialize_exception(error)
        self.ops.record(ctx, function_id, name, error=encoded, started_at_ms=started)
        return error
