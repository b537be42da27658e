"""Steps: an operation replayed from its record, or executed (with retries) and recorded in one
checkpoint write. Written once for sync and async steps (``runtime.engine.drive``).

Retries follow DBOS's schedule: ``max_attempts`` attempts in all, the first retry after
``interval_seconds``, each later one ``backoff_rate`` times longer; the waits are interruptible
(a cancellation or shutdown stops the step between attempts). After the last attempt the step
fails with ``DBOSMaxStepRetriesExceeded``, which is recorded as its outcome. A ``should_retry``
predicate (DBOS's) sees each failure first: False ends the step with that exception at once.

An async step with ``timeout_seconds`` is cancelled when an attempt runs longer (each attempt has
its own limit; the waits between attempts do not count) and fails with ``DBOSStepTimeoutError``
(retried like any failure). A step never parks (durable calls inside it are plain calls), so its
time limit and a parked wait never meet.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from runtime import attempts, context, serialization
from runtime.context import StepStatus, WorkflowContext, now_ms
from runtime.engine.drive import (
    Blocking,
    Call,
    Effect,
    Operation,
    carry,
    run_async,
    run_sync,
    uncarry,
)
from runtime.engine.protocol import Operations, Pause, replay_outcome
from runtime.errors import DBOSException, DBOSMaxStepRetriesExceeded, DBOSStepTimeoutError

logger = logging.getLogger("dbos")


ShouldRetry = Callable[[BaseException], bool | Awaitable[bool]]


class StepOptions(TypedDict, total=False):
    """Options of a step run with ``DBOS.run_step`` (DBOS's keys; every key optional):
    ``name`` (default: the function's qualified name), ``retries_allowed`` (False),
    ``interval_seconds`` (1.0: the wait before the first retry), ``max_attempts`` (3),
    ``backoff_rate`` (2.0: each later wait is this many times longer), ``should_retry`` (None: a
    predicate given the exception, returning False to fail at once; an async one only for an
    async step), ``timeout_seconds`` (None: an async step's time limit per attempt, in seconds;
    past it the step is cancelled and fails with ``DBOSStepTimeoutError``)."""

    name: str | None
    retries_allowed: bool
    interval_seconds: float
    max_attempts: int
    backoff_rate: float
    should_retry: ShouldRetry | None
    timeout_seconds: float | None


@dataclass(frozen=True)
class StepPolicy:
    """How a step retries and how long an attempt may run (DBOS's parameters of ``@DBOS.step``)."""

    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    should_retry: ShouldRetry | None = None
    timeout_seconds: float | None = None


def _check_retries(name: str, options: StepOptions) -> None:
    """Refuse retry options of the wrong type or range (``DBOSException`` naming the option)."""
    retries = options.get("retries_allowed", False)
    if not isinstance(retries, bool):
        raise DBOSException(f"step {name!r}: retries_allowed must be True or False")
    attempts = options.get("max_attempts", 3)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise DBOSException(f"step {name!r}: max_attempts must be an integer >= 1")
    # DBOS checks neither; a negative value would make a negative wait (a rate below 1 shortens
    # the waits, which a ported app may mean).
    for key, low in (("interval_seconds", 0.0), ("backoff_rate", 0.0)):
        value = options.get(key, low)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value < math.inf
        ):
            raise DBOSException(f"step {name!r}: {key} must be a finite number >= {low:g}")


def step_policy(name: str, func: Callable[..., Any], options: StepOptions) -> StepPolicy:
    """Check a step's options against its function and make its policy; a ``DBOSException``
    names what is wrong (before anything runs or is recorded)."""
    unknown = set(options) - set(StepOptions.__annotations__)
    if unknown:
        raise DBOSException(f"step {name!r}: unknown step options {sorted(unknown)}")
    is_async = inspect.iscoroutinefunction(func)
    should_retry = options.get("should_retry")
    if should_retry is not None and not callable(should_retry):
        raise DBOSException(f"step {name!r}: should_retry must be a callable")
    if should_retry is not None and inspect.iscoroutinefunction(should_retry) and not is_async:
        raise DBOSException(
            f"step {name!r} is sync but should_retry is async: use an async step with it"
        )
    timeout = options.get("timeout_seconds")
    if timeout is not None:
        if not is_async:
            raise DBOSException(
                f"step {name!r} is sync but timeout_seconds is set: step timeouts are only "
                "supported for async steps"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise DBOSException(f"step {name!r}: timeout_seconds must be a number of seconds")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise DBOSException(
                f"step {name!r} has timeout_seconds={timeout}: it must be positive and finite"
            )
    _check_retries(name, options)
    return StepPolicy(
        retries_allowed=bool(options.get("retries_allowed", False)),
        interval_seconds=float(options.get("interval_seconds", 1.0)),
        max_attempts=int(options.get("max_attempts", 3)),
        backoff_rate=float(options.get("backoff_rate", 2.0)),
        should_retry=should_retry,
        timeout_seconds=None if timeout is None else float(timeout),
    )


class _TimedCall(Call):
    """An async step's attempt under its time limit: past it the attempt's task is cancelled
    (and its cleanup awaited) and ``DBOSStepTimeoutError`` raised. Synchronous steps have no
    limit (a thread cannot be stopped), as in DBOS."""

    __slots__ = ("name", "timeout")

    def __init__(self, call: Call, name: str, timeout: float) -> None:
        super().__init__(call.func, call.args, call.kwargs)
        self.name, self.timeout = name, timeout

    async def run_async(self) -> Any:
        task = asyncio.ensure_future(self.func(*self.args, **self.kwargs))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        finally:
            if not task.done():  # the limit passed, or the workflow's own task was cancelled
                task.cancel()
                await asyncio.wait({task})
        if task in done:
            return task.result()
        cause = None if task.cancelled() else task.exception()
        if cause is not None and not isinstance(cause, Exception):
            raise cause
        raise DBOSStepTimeoutError(self.name, self.timeout) from cause


class _ThreadedCall(Call):
    """A synchronous step driven on an event loop (``run_step_async`` with a plain function):
    run on a worker thread, as DBOS does, so the loop is not blocked."""

    __slots__ = ()

    async def run_async(self) -> Any:
        return await asyncio.to_thread(self.func, *self.args, **self.kwargs)


class _Verdict(Effect):
    """Ask ``should_retry`` about a failure (awaited when it returns an awaitable)."""

    __slots__ = ("predicate", "error")

    def __init__(self, predicate: ShouldRetry, error: BaseException) -> None:
        self.predicate, self.error = predicate, error

    def run(self) -> Any:
        return bool(self.predicate(self.error))

    async def run_async(self) -> Any:
        verdict = self.predicate(self.error)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)


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
        options: StepPolicy,
    ) -> Any:
        """Run a step in this thread; outside a workflow (or inside a step), a plain call."""
        return run_sync(self.step(name, func, args, kwargs, options))

    async def run_async(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StepPolicy,
    ) -> Any:
        """Run an async step: its attempts awaited on this loop, its checkpoint on a thread."""
        return await run_async(self.step(name, func, args, kwargs, options))

    def run_step(
        self,
        options: StepOptions | None,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """``DBOS.run_step``: ``func`` as a step named ``options["name"]`` (else its qualified
        name); a coroutine function is run to its end on an event loop of its own."""
        name, policy = self._named_policy(options, func)
        if not inspect.iscoroutinefunction(func):
            return self.run(name, func, args, kwargs, policy)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_async(name, func, args, kwargs, policy))
        raise DBOSException(
            "DBOS.run_step of a coroutine function cannot block a running event loop: "
            "use `await DBOS.run_step_async(...)`"
        )

    async def run_step_async(
        self,
        options: StepOptions | None,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """``DBOS.run_step_async``: a coroutine function awaited on this loop, a plain one run
        on a worker thread."""
        name, policy = self._named_policy(options, func)
        return await self.run_async(name, func, args, kwargs, policy)

    @staticmethod
    def _named_policy(
        options: StepOptions | None, func: Callable[..., Any]
    ) -> tuple[str, StepPolicy]:
        if options is not None and not isinstance(options, dict):
            raise DBOSException("run_step takes its options as a dict (StepOptions) or None")
        if not callable(func):
            raise DBOSException(f"run_step needs a function to run, not {func!r}")
        opts: StepOptions = options or {}
        name = opts.get("name") or getattr(func, "__qualname__", None) or repr(func)
        if not isinstance(name, str):
            raise DBOSException(f"a step's name must be a string, not {name!r}")
        return name, step_policy(name, func, opts)

    def step(
        self,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StepPolicy,
    ) -> Operation[Any]:
        """The step as an operation (see the module docstring)."""
        is_async = inspect.iscoroutinefunction(func)
        call = Call(func, args, kwargs) if is_async else _ThreadedCall(func, args, kwargs)
        ctx = context.active_workflow()
        if ctx is None:
            return (yield call)
        function_id, rec = self.ops.begin(ctx, name)
        if rec is not None:
            return replay_outcome(rec)
        started = now_ms()
        retry_limit = max(1, options.max_attempts) if options.retries_allowed else None
        step = StepStatus(function_id, name, retry_limit=retry_limit)
        token = context.current_step.set(step)
        if options.timeout_seconds is not None:
            call = _TimedCall(call, name, options.timeout_seconds)
        running = self.ops.running_steps
        running.enter(ctx.workflow_id, function_id, name, started)
        failures: list[dict[str, Any]] = []
        try:
            value, error = yield from self._attempts(ctx, step, call, options, failures)
        finally:
            running.leave(ctx.workflow_id, function_id)
            context.current_step.reset(token)
        outcome = _Outcome(value, error, attempts.encode(failures))
        return (yield from self._finish(ctx, function_id, name, started, outcome))

    def _attempts(
        self,
        ctx: WorkflowContext,
        step: StepStatus,
        call: Call,
        options: StepPolicy,
        failures: list[dict[str, Any]],
    ) -> Operation[tuple[Any, Exception | None]]:
        """Run the attempts; each failed one that is retried is appended to ``failures``."""
        most = max(1, options.max_attempts) if options.retries_allowed else 1
        delay = options.interval_seconds
        for attempt in range(1, most + 1):
            step.attempt = attempt
            yield from self.ops.confirm(ctx)
            began = now_ms() if options.retries_allowed else 0  # only a retried attempt keeps it
            try:
                return (yield call), None
            except Exception as raised:
                exc = uncarry(raised)
                if not options.retries_allowed:
                    return None, exc
                if options.should_retry is not None and not (
                    yield _Verdict(options.should_retry, exc)
                ):
                    return None, exc
                # Every attempt that ran and failed is kept, the last one too when it ends
                # the retries (its error becomes the step's); one that is not retried (a
                # should_retry refusal, above) is the step's own error, not an attempt.
                failures.append(attempts.failure(attempt, began, now_ms(), exc))
                if attempt == most:
                    return None, DBOSMaxStepRetriesExceeded(step.name, most, repr(exc))
                logger.warning(
                    "step %s of workflow %s failed (attempt %d of %d): %r; retrying in %.2fs",
                    step.name,
                    ctx.workflow_id,
                    attempt,
                    most,
                    exc,
                    delay,
                )
                yield Pause(self.ops, ctx, delay)
                delay *= options.backoff_rate
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish(
        self, ctx: WorkflowContext, function_id: int, name: str, started: int, outcome: _Outcome
    ) -> Operation[Any]:
        """Record a step's outcome (one checkpoint write): return its value or raise its error.
        Encoding the outcome is part of the blocking work (off the event loop for an async step:
        a large result takes a while)."""
        failed = yield Blocking(lambda: self._record(ctx, function_id, name, started, outcome))
        if failed is not None:
            raise carry(failed)
        return outcome.value

    def _record(
        self, ctx: WorkflowContext, function_id: int, name: str, started: int, outcome: _Outcome
    ) -> Exception | None:
        """Encode and record the outcome (with the failed attempts, if it retried); returns the
        error to raise, if the step failed (or its result cannot be stored)."""
        error = outcome.error
        if error is None:
            try:
                output = serialization.serialize(outcome.value, f"result of step {name}")
            except DBOSException as exc:
                error = exc
            else:
                self.ops.record(
                    ctx,
                    function_id,
                    name,
                    output=output,
                    started_at_ms=started,
                    attempts=outcome.attempts,
                )
                return None
        self.ops.not_while_stopping(error)
        encoded = serialization.serialize_exception(error)
        self.ops.record(
            ctx, function_id, name, error=encoded, started_at_ms=started, attempts=outcome.attempts
        )
        return error


@dataclass(frozen=True)
class _Outcome:
    """What a step's attempts came to: its value or error, and its failed attempts as stored
    (``runtime.attempts``; None when it did not retry)."""

    value: Any
    error: Exception | None
    attempts: str | None
