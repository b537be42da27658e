"""Pre-deploy replay check: would the new code replay the workflows already recorded?

``check_replay`` takes the workflows this process has registered (import the new code first: its
decorators register them; nothing is launched) and, for each recorded workflow selected (the
PENDING, ENQUEUED and DELAYED ones by default, which the new code would run), calls the workflow
function with its recorded inputs in replay-check mode (``runtime.engine.checking``): every
durable operation returns the outcome recorded at its step number, no step, transaction or child
runs, nothing waits, and nothing is written (the check's connections are read-only: the server
refuses any write). Each workflow gets a verdict:

- ``ok``: the new code replays the whole recorded history (then stops: what follows is new work),
  or ends as the record says;
- ``diverges``: at a step number the new code calls another operation than the one recorded
  there, or it returns before reaching a recorded step;
- ``missing function``: no workflow of that name is registered, or its class or configured
  instance is not;
- ``bad signature``: the recorded inputs do not bind to the function's parameters;
- ``error``: the workflow's own code raised during the replay (an exception the original run
  did not end with), tried to write outside a durable operation, or did not finish in time;
- ``nondeterministic``: two replays of the same history took different paths.

Calls of clocks and random sources (``time.time``, ``random``, ``uuid.uuid4``, ``datetime.now``
...) made by the workflow's own code outside any step are reported as warnings with their place:
a recovery would see other values than the original run.

The workflow function's own code (not its steps) does run: as on every recovery, it must have no
side effects of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import threading
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from runtime import config as config_mod
from runtime import context, management, serialization
from runtime.composition import Runtime
from runtime.context import WorkflowContext
from runtime.engine.checking import CheckMode, ReplayDiverged, ReplayEnd
from runtime.engine.running import join_class_arg
from runtime.errors import DBOSException, DBOSWorkflowFunctionNotFoundError
from runtime.facade.base import FacadeBase, checking_runtime
from runtime.messaging import GET_EVENT_OP, RECV_OP, SLEEP_OP
from runtime.nondeterminism import CallWatch, user_frame
from runtime.records import ClaimedWorkflow, RecordedStep
from runtime.registry import WorkflowInfo, get_workflow
from runtime.status import WorkflowStatus, WorkflowStatusString

__all__ = [
    "BAD_SIGNATURE",
    "DEFAULT_STATUSES",
    "DIVERGES",
    "ERROR",
    "MISSING_FUNCTION",
    "NONDETERMINISTIC",
    "NOT_FOUND",
    "OK",
    "ReplayCheckReport",
    "ReplayCheckResult",
    "check_replay",
    "launches_refused",
    "refuse_launch",
    "replays_left_running",
]

OK = "ok"
DIVERGES = "diverges"
MISSING_FUNCTION = "missing function"
BAD_SIGNATURE = "bad signature"
ERROR = "error"
NONDETERMINISTIC = "nondeterministic"
NOT_FOUND = "not found"
_THREAD_PREFIX = "dbos-replay-check-"

#: What the new code would run: the workflows a deploy hands to it.
DEFAULT_STATUSES = (
    WorkflowStatusString.PENDING.value,
    WorkflowStatusString.ENQUEUED.value,
    WorkflowStatusString.DELAYED.value,
)


@dataclass(frozen=True)
class ReplayCheckResult:
    """The verdict on one recorded workflow.

    ``verdict`` is one of ``ok``, ``diverges``, ``missing function``, ``bad signature``,
    ``error``, ``nondeterministic``; ``reason`` says why in a sentence. ``step`` is the step
    number where it went wrong (or where new work would start, for ``ok``), with the operation
    recorded there (``recorded_name``) and the one the new code calls there (``new_name``);
    ``where`` the place in the new code (``file:line in function``) when known.
    ``replayed_steps`` of the ``recorded_steps`` matched; ``warnings`` list clock and random
    calls of the workflow's own code."""

    workflow_id: str
    name: str
    status: str
    verdict: str
    reason: str
    step: int | None = None
    recorded_name: str | None = None
    new_name: str | None = None
    where: str | None = None
    replayed_steps: int = 0
    recorded_steps: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the new code replays this workflow."""
        return self.verdict == OK


@dataclass(frozen=True)
class ReplayCheckReport:
    """The verdicts of one check, in the order the workflows were selected."""

    results: list[ReplayCheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every workflow checked replays (True when none was selected)."""
        return all(r.ok for r in self.results)

    def counts(self) -> dict[str, int]:
        """How many workflows got each verdict."""
        return dict(Counter(r.verdict for r in self.results))

    def summary(self) -> str:
        """One line: how many were checked, and how many of each verdict."""
        if not self.results:
            return "no workflow to check"
        parts = ", ".join(f"{n} {v}" for v, n in sorted(self.counts().items()))
        return f"{len(self.results)} workflows checked: {parts}"


def refuse_launch(app: str) -> None:
    """From now on in this process, ``DBOS.launch()`` raises ``DBOSException``: for a program
    that imports new code only to check it (`dbos workflow check-replay`), so that an app that
    launches when imported, from a thread or a timer it starts, is refused before it recovers
    (runs the steps of, writes to) any workflow. ``launches_refused()`` counts the attempts."""
    FacadeBase.launch_refusal = (
        f"{app} launches DBOS when imported; the replay check imports the new code without "
        'launching it: call DBOS.launch() under `if __name__ == "__main__":` (or in main())'
    )


def launches_refused() -> int:
    """How many ``DBOS.launch()`` calls ``refuse_launch`` has refused in this process."""
    return FacadeBase.refused_launches


def check_replay(
    database_url: str | None = None,
    *,
    system_schema: str | None = None,
    workflow_ids: list[str] | None = None,
    status: str | Iterable[str] | None = None,
    name: str | list[str] | None = None,
    app_version: str | list[str] | None = None,
    queue_name: str | list[str] | None = None,
    start_time: management.TimeArg = None,
    end_time: management.TimeArg = None,
    limit: int | None = None,
    sort_desc: bool = False,
    replays: int = 2,
    timeout_seconds: float = 10.0,
) -> ReplayCheckReport:
    """Check the recorded workflows against the workflows registered in this process.

    ``database_url`` holds the system tables (default: the configuration of ``DBOS(config)``,
    else of the current folder), ``system_schema`` their schema. The workflows: those with
    ``workflow_ids`` (any status), else those matching the filters of ``DBOS.list_workflows``
    (``status``: default PENDING, ENQUEUED and DELAYED; times: datetime, ISO 8601 or epoch ms).
    Each is replayed ``replays`` times (two or more tell a non-deterministic path), each replay
    given ``timeout_seconds``. Writes nothing. Raises ``DBOSException`` for bad arguments or an
    unreachable database (with a schema not at this runtime's version)."""
    if replays < 1 or timeout_seconds <= 0:
        raise DBOSException("check_replay needs replays >= 1 and timeout_seconds > 0")
    if status is None and not workflow_ids:
        status = list(DEFAULT_STATUSES)
    rt = Runtime(_settings(database_url, system_schema), read_only=True)
    try:
        found = management.list_workflows(
            rt.sysdb,
            workflow_ids=workflow_ids,
            status=status,
            name=name,
            app_version=app_version,
            queue_name=queue_name,
            start_time=start_time,
            end_time=end_time,
            limit=limit,
            sort_desc=sort_desc,
            load_input=False,
            load_output=True,
        )
        ids = [wf.workflow_id for wf in found]
        rows = {c.workflow_id: c for c in rt.sysdb.load_workflows_to_run(ids)} if ids else {}
        steps = rt.sysdb.load_recorded_steps_batch(ids) if ids else {}
        results = [*_not_found(workflow_ids, found)] + [
            _check_one(
                rt,
                wf,
                rows.get(wf.workflow_id),
                steps.get(wf.workflow_id, {}),
                replays,
                timeout_seconds,
            )
            for wf in found
        ]
    finally:
        if rt.app_pool is not rt.sysdb.pool:
            rt.app_pool.close()
        rt.sysdb.close()
    return ReplayCheckReport(results)


def _not_found(
    workflow_ids: list[str] | None, found: list[WorkflowStatus]
) -> Iterable[ReplayCheckResult]:
    """A verdict for each workflow asked for by ID that has no record: a deploy gate naming a
    workflow must not pass because the name was mistyped."""
    have = {wf.workflow_id for wf in found}
    for workflow_id in dict.fromkeys(workflow_ids or ()):
        if workflow_id not in have:
            yield ReplayCheckResult(workflow_id, "", "", NOT_FOUND, "no workflow has this ID")


def replays_left_running() -> bool:
    """Whether a replay is still running: one that timed out, or whose code swallowed its stop
    and is parked. Its thread is a daemon, but an ``asyncio.to_thread`` call it made is not, so
    a command line program that wants to exit now must not wait for the interpreter's exit."""
    return any(t.name.startswith(_THREAD_PREFIX) and t.is_alive() for t in threading.enumerate())


def _settings(database_url: str | None, schema: str | None) -> config_mod.Settings:
    settings = config_mod.current(FacadeBase._instance)
    changes: dict[str, Any] = {}
    if database_url is not None:
        changes.update(database_url=database_url, system_database_url=database_url)
    if schema is not None:
        changes["system_schema"] = schema
    return dataclasses.replace(settings, **changes)


# -- one workflow --------------------------------------------------------------------------------


@dataclass
class _Replay:
    """How one replay went."""

    mode: CheckMode
    last_function_id: int = 0
    finished: bool = False
    returned: bool = False
    raised: BaseException | None = None
    warnings: list[str] = field(default_factory=list)

    def path(self) -> tuple[Any, ...]:
        """What two replays of a deterministic workflow agree on."""
        stop = self.mode.stop
        raised = self.raised
        return (
            tuple(self.mode.trace),
            None if stop is None else (type(stop).__name__, stop.function_id, stop.name),
            self.returned,
            None if raised is None else (type(raised).__name__, str(raised)),
        )


def _check_one(
    rt: Runtime,
    wf: WorkflowStatus,
    claimed: ClaimedWorkflow | None,
    recorded: dict[int, RecordedStep],
    replays: int,
    timeout_s: float,
) -> ReplayCheckResult:
    base = ReplayCheckResult(
        wf.workflow_id, wf.name, wf.status, OK, "", recorded_steps=len(recorded)
    )
    info = get_workflow(wf.name)
    if info is None or claimed is None:
        return dataclasses.replace(
            base,
            verdict=MISSING_FUNCTION,
            reason=f"no workflow named {wf.name!r} is registered by the new code",
        )
    try:
        args, kwargs = serialization.deserialize_args(claimed.inputs)
    except Exception as exc:
        return dataclasses.replace(
            base, verdict=ERROR, reason=f"its recorded inputs cannot be decoded: {exc}"
        )
    try:
        args = join_class_arg(info, claimed.class_name, claimed.config_name, args)
    except DBOSWorkflowFunctionNotFoundError as exc:
        return dataclasses.replace(base, verdict=MISSING_FUNCTION, reason=str(exc))
    bad = _unbindable(info, args, kwargs)
    if bad is not None:
        return dataclasses.replace(base, verdict=BAD_SIGNATURE, reason=bad)
    runs: list[_Replay] = []
    while len(runs) < replays and (not runs or runs[-1].finished):  # one timeout is enough
        runs.append(_replay(rt, claimed, info, args, kwargs, recorded, timeout_s))
    first = runs[0]
    base = dataclasses.replace(
        base,
        replayed_steps=len(first.mode.trace),
        warnings=tuple(dict.fromkeys(w for r in runs for w in r.warnings)),
    )
    for other in runs[1:]:
        if other.finished and other.path() != first.path():
            return dataclasses.replace(base, verdict=NONDETERMINISTIC, **_fork(first, other))
    return dataclasses.replace(base, **_verdict(wf, recorded, first, timeout_s))


def _unbindable(info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why the recorded inputs do not bind to the new function's parameters, if they do not."""
    try:
        signature = inspect.signature(info.func)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return f"the recorded inputs do not fit {info.name}{signature}: {exc}"
    return None


def _replay(
    rt: Runtime,
    claimed: ClaimedWorkflow,
    info: WorkflowInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    recorded: dict[int, RecordedStep],
    timeout_s: float,
) -> _Replay:
    """Call the workflow function once in check mode, on a thread of its own with a context of
    its own (an async one on an event loop of its own), within ``timeout_s``."""
    mode = CheckMode()
    ctx = WorkflowContext(
        claimed.workflow_id, info.name, claimed.owner_epoch, None, dict(recorded), check=mode
    )
    replay = _Replay(mode)
    watch = CallWatch()

    def body() -> None:
        checking_runtime.set(rt)
        context.current_workflow.set(ctx)
        context.current_step.set(None)
        try:
            with watch:
                if info.is_async:
                    asyncio.run(_with_its_tasks(info.func(*args, **kwargs)))
                else:
                    info.func(*args, **kwargs)
            replay.returned = True
        except BaseException as exc:  # the verdict reads it
            replay.raised = exc
        replay.last_function_id = ctx.last_function_id
        mode.settled.set()

    thread = threading.Thread(
        target=contextvars.Context().run,
        args=(body,),
        name=f"{_THREAD_PREFIX}{claimed.workflow_id}",
        daemon=True,
    )
    thread.start()
    # Settled: the function ended, or a task of it swallowed its stop and is parked for good.
    replay.finished = mode.settled.wait(timeout_s)
    replay.last_function_id = replay.last_function_id or ctx.last_function_id
    replay.warnings = watch.found()
    return replay


# How long the other tasks of an async workflow get, once the workflow function has ended, to
# reach their next operation (a replayed one returns at once; a branch may await other things).
_DRAIN_S = 2.0


async def _with_its_tasks(coro: Coroutine[Any, Any, Any]) -> Any:
    """Await the workflow function, then let the tasks it left running (the branches of an
    ``asyncio.gather`` whose first branch met the end of the history) compare their operations
    too: a run records concurrent operations out of order, and each must be reached."""
    try:
        return await coro
    finally:
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me]
        if others:
            await asyncio.wait(others, timeout=_DRAIN_S)


def _verdict(
    wf: WorkflowStatus, recorded: dict[int, RecordedStep], replay: _Replay, timeout_s: float
) -> dict[str, Any]:
    """The verdict fields of a finished (or timed out) replay."""
    stop = replay.mode.stop
    if not replay.finished:
        return {
            "verdict": ERROR,
            "reason": f"the replay did not finish within {timeout_s:g}s: the workflow's own code "
            "blocks, waits or loops outside the recorded history (a wait outside any durable "
            "operation, or a retry or backoff around an operation the check stops at)",
        }
    if isinstance(stop, ReplayDiverged):
        return {
            "verdict": DIVERGES,
            "reason": str(stop),
            "step": stop.function_id,
            "recorded_name": stop.recorded_name,
            "new_name": stop.name,
            "where": _where(stop.__traceback__),
        }
    skipped = _unreplayed(recorded, replay)
    if skipped is not None and isinstance(stop, ReplayEnd):
        return skipped
    if isinstance(stop, ReplayEnd):
        return {
            "verdict": OK,
            "reason": f"replays {_matched(replay)}; {stop}",
            "step": stop.function_id,
            "new_name": stop.name or None,
        }
    if stop is not None:  # a write
        return {
            "verdict": ERROR,
            "reason": str(stop),
            "step": stop.function_id,
            "where": _where(stop.__traceback__),
        }
    raised = replay.raised
    if raised is not None and not _recorded_error(wf, recorded, replay, raised):
        return {
            "verdict": ERROR,
            "reason": f"the workflow raised {type(raised).__name__}: {raised} (after step "
            f"{replay.last_function_id}), which the recorded run did not",
            "step": replay.last_function_id or None,
            "where": _where(raised.__traceback__),
        }
    if skipped is not None:
        return skipped
    return {"verdict": OK, "reason": f"replays {_matched(replay)} to the workflow's end"}


def _unreplayed(recorded: dict[int, RecordedStep], replay: _Replay) -> dict[str, Any] | None:
    """The divergence of a replay that left a recorded operation unreached, if it did.

    Every recorded operation must be replayed: one the new code never reaches is not new work
    but a recovery that fails (``DBOSUnexpectedStepError`` when the code calls something else
    at that number). A ``recv`` or ``get_event`` takes two numbers, the second for its timeout
    row (``DBOS.sleep``, recorded once it waits, before its own outcome): that row belongs to
    the wait, replayed or still waiting."""
    reached = {n for n, _ in replay.mode.trace}
    waits = [*replay.mode.trace, *((e.function_id, e.name) for e in replay.mode.ends)]
    for n, name in waits:  # a wait's timeout row belongs to it, replayed or still waiting
        after = recorded.get(n + 1)
        if name in (RECV_OP, GET_EVENT_OP) and after and after.function_name == SLEEP_OP:
            reached.add(n + 1)
    left = sorted(n for n in recorded if n not in reached)
    if not left:
        return None
    n = left[0]
    name = recorded[n].function_name
    stop = replay.mode.stop
    if isinstance(stop, ReplayEnd) and stop.function_id < n:
        why = f"the new code stops replaying at step {stop.function_id} ({stop.name!r}, not "
        why += f"recorded) and never reaches recorded step {n} ({name!r})"
    elif n > replay.last_function_id:
        why = f"the new code ends before recorded step {n} ({name!r})"
    else:
        why = f"the new code never calls recorded step {n} ({name!r})"
    return {"verdict": DIVERGES, "reason": why, "step": n, "recorded_name": name}


def _matched(replay: _Replay) -> str:
    n = len(replay.mode.trace)
    return (
        "no recorded step"
        if n == 0
        else f"its {n} recorded steps"
        if n > 1
        else "its 1 recorded step"
    )


def _recorded_error(
    wf: WorkflowStatus,
    recorded: dict[int, RecordedStep],
    replay: _Replay,
    raised: BaseException,
) -> bool:
    """Whether ``raised`` is an error of the record (same class name and message): the one the
    recorded run ended with, or one a replayed step raised again (the recorded run met it too,
    and a recovery would end the same way)."""
    errors = [wf.error] if wf.status == WorkflowStatusString.ERROR.value else []
    for function_id, _ in replay.mode.trace:
        text = recorded[function_id].error
        if text is not None:
            errors.append(serialization.deserialize_exception(text))
    return any(e is not None and _kind(e) == _kind(raised) for e in errors)


def _kind(error: BaseException) -> tuple[str, str]:
    """An error's class name (its recorded one when the class is not loaded here) and text."""
    return str(getattr(error, "original_type", None) or type(error).__name__), str(error)


def _fork(first: _Replay, other: _Replay) -> dict[str, Any]:
    """Where two replays of the same history parted."""
    a, b = first.mode.trace, other.mode.trace
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    step = a[i][0] if i < len(a) else (b[i][0] if i < len(b) else None)
    hint = (
        f"; calls of the workflow's own code: {'; '.join(first.warnings)}" if first.warnings else ""
    )
    return {
        "reason": f"two replays of the same history took different paths (after "
        f"{i} matching steps): the workflow's own code is not deterministic{hint}",
        "step": step,
    }


def _where(tb: TracebackType | None) -> str | None:
    """The innermost place of the traceback in the application's code."""
    place = None
    while tb is not None:
        if user_frame(tb.tb_frame):
            code = tb.tb_frame.f_code
            place = f"{Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}"
        tb = tb.tb_next
    return place
