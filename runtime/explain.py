"""Why a workflow is where it is: one sentence, the facts behind it, and the commands that would
move it, read from the database alone (``DBOSClient.explain_workflow``, `dbos workflow why`, the
dashboard's workflow page).

What a running workflow waits for (a sleep, a message, an event, a child) is
``runtime.waiting``'s rule, the one the listings use; this module adds what the record and the
executors table say around it, checked in this order:

- finished (SUCCESS, ERROR), CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED: say so, and when (and,
  when cancelled while its run is still in a step, which step holds its queue slot);
- its application version is one no live process runs: nothing will pick it up (ENQUEUED,
  DELAYED or PENDING alike) until a process of that version starts, or it is moved to one;
- DELAYED: until its delay ends;
- ENQUEUED on the internal queue (resumed, restarted or forked): about to be picked up;
- ENQUEUED while its earlier run is still in a step (resumed then): it goes on after that step;
- ENQUEUED on a queue: held by the rate limit (its turn by position), or behind others / all
  slots in use / every live process at its worker limit. The queue is counted with the
  dispatcher's own SQL predicates (``runtime.queries``: slots held, what the dequeue claims
  first), so the answer cannot drift from what the dispatcher does;
- PENDING owned by a process that is gone (lease expired, stopped or found dead): a live
  process of its version is due to take it over;
- PENDING owned by a live process: the wait its record shows, else the step it runs (as its
  process published it), else running code.

Executors are read live (every live process, not the newest N), so an old process stays seen.

A child it waits on is explained too (``cause``), down to ``MAX_DEPTH`` levels, never twice.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

from runtime.explain_db import ExplainDatabase, QueuePlace, SlotHolder, WorkflowFacts
from runtime.management import ExecutorInfo, executors
from runtime.queues import INTERNAL_QUEUE
from runtime.running_steps import running_steps
from runtime.system_db import SystemDatabase
from runtime.waiting import Waiting, derive, format_span, format_time

__all__ = ["MAX_DEPTH", "WorkflowExplanation", "explain"]

MAX_DEPTH = 8  # levels of children explained below a workflow


@dataclass(frozen=True)
class WorkflowExplanation:
    """Why a workflow is where it is.

    ``reason`` is a stable code (``SUCCEEDED``, ``FAILED``, ``CANCELLED``,
    ``MAX_RECOVERY_ATTEMPTS_EXCEEDED``, ``VERSION_NOT_RUNNING``, ``DELAYED``, ``RESUMED``,
    ``RATE_LIMITED``, ``QUEUED``, ``OWNER_GONE``, ``SLEEPING``, ``WAITING_FOR_MESSAGE``,
    ``WAITING_FOR_EVENT``, ``WAITING_FOR_MESSAGE_OR_EVENT``, ``WAIT_OVER``, ``WAITING_FOR_CHILD``,
    ``RUNNING``); ``summary`` one sentence for people (times in UTC); ``facts`` the (label,
    value) pairs behind it, in order; ``commands`` `dbos` command lines that would move it (none
    when nothing needs doing); ``cause`` the explanation of the child it waits on, if any."""

    workflow_id: str
    status: str
    reason: str
    summary: str
    facts: tuple[tuple[str, str], ...] = ()
    commands: tuple[str, ...] = ()
    cause: WorkflowExplanation | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields above, ``facts`` as a list of ``{"label", "value"}``
        objects and ``cause`` nested (or null)."""
        return {
            "workflow_id": self.workflow_id,
            "status": self.status,
            "reason": self.reason,
            "summary": self.summary,
            "facts": [{"label": label, "value": value} for label, value in self.facts],
            "commands": list(self.commands),
            "cause": None if self.cause is None else self.cause.to_json(),
        }


@dataclass
class _Context:
    """What one explanation (and its children's) shares: the database and the executors."""

    db: ExplainDatabase
    sysdb: SystemDatabase
    executors: list[ExecutorInfo]
    seen: set[str]

    def live_versions(self) -> list[str]:
        return sorted({e.application_version for e in self.executors if e.state == "ALIVE"})

    def owner(self, process_id: str | None) -> ExecutorInfo | None:
        """The live process ``process_id`` (None: not alive, or no such process)."""
        found = (e for e in self.executors if e.process_id == process_id and e.state == "ALIVE")
        return next(found, None)

    def running_step(self, workflow_id: str) -> str | None:
        """'step N NAME (since T)' for the step of ``workflow_id`` a live process published as
        running now, if any."""
        steps = running_steps(self.sysdb, workflow_id)
        if not steps:
            return None
        s = steps[-1]
        return f"step {s.function_id} {s.function_name!r} (since {_at(s.started_at)})"


def explain(sysdb: SystemDatabase, workflow_id: str) -> WorkflowExplanation | None:
    """The explanation of ``workflow_id``; None when no workflow has that ID."""
    ctx = _Context(ExplainDatabase(sysdb), sysdb, executors(sysdb, None), set())
    return _explain(ctx, workflow_id, 0)


def _explain(ctx: _Context, workflow_id: str, depth: int) -> WorkflowExplanation | None:
    facts = ctx.db.workflow(workflow_id)
    if facts is None:
        return None
    ctx.seen.add(workflow_id)
    done = _finished(ctx, workflow_id, facts)
    if done is not None:
        return done
    unserved = _version_not_running(ctx, workflow_id, facts)
    if unserved is not None:
        return unserved
    if facts.status in ("ENQUEUED", "DELAYED"):
        return _queued(ctx, workflow_id, facts)
    return _pending(ctx, workflow_id, facts, depth)


def _at(ms: int | None) -> str:
    return "unknown" if ms is None else format_time(ms)


def _base_facts(f: WorkflowFacts) -> list[tuple[str, str]]:
    found = [("status", f.status), ("workflow", f.name)]
    found.append(
        (
            "application version",
            f.application_version or "none (unversioned: any process of the application runs it)",
        )
    )
    if f.queue_name is not None:
        queue = "internal (resume/restart/fork)" if f.queue_name == INTERNAL_QUEUE else f.queue_name
        found.append(("queue", queue))
    if f.partition_key is not None:
        found.append(("partition key", f.partition_key))
    if f.forked_from is not None:
        found.append(("forked from", f.forked_from))
    found.append(("created", _at(f.created_at)))
    return found


def _explanation(
    workflow_id: str,
    f: WorkflowFacts,
    reason: str,
    summary: str,
    extra: list[tuple[str, str]] | None = None,
    commands: list[str] | None = None,
    cause: WorkflowExplanation | None = None,
) -> WorkflowExplanation:
    facts = tuple(_base_facts(f) + (extra or []))
    return WorkflowExplanation(
        workflow_id, f.status, reason, summary, facts, tuple(commands or []), cause
    )


def _finished(ctx: _Context, workflow_id: str, f: WorkflowFacts) -> WorkflowExplanation | None:
    ended = _at(f.completed_at or f.updated_at)
    attempts = ("recovery attempts", str(f.recovery_attempts))
    restart = [_command("restart", workflow_id)]
    if f.status == "SUCCESS":
        return _explanation(workflow_id, f, "SUCCEEDED", f"finished successfully at {ended}")
    if f.status == "ERROR":
        return _explanation(
            workflow_id, f, "FAILED", f"finished with an error at {ended}", [], restart
        )
    resume = [_command("resume", workflow_id)]
    if f.status == "CANCELLED":
        at = _at(f.updated_at)
        summary = f"cancelled at {at}: nothing runs it until it is resumed"
        extra = [("cancelled", at)]
        still = _old_run(ctx, workflow_id, f)
        if still is not None:
            summary += f"; its earlier run is still running {still}, and frees its slot then"
            extra.append(("earlier run still running", still))
        return _explanation(workflow_id, f, "CANCELLED", summary, extra, resume)
    if f.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
        limit = "unknown" if f.max_recovery_attempts is None else str(f.max_recovery_attempts)
        summary = (
            f"stopped after {f.recovery_attempts} attempts to run it (the limit is {limit}): "
            "recovery no longer starts it; resume it once the cause is fixed"
        )
        extra = [attempts, ("max recovery attempts", limit), ("given up", _at(f.updated_at))]
        return _explanation(
            workflow_id, f, "MAX_RECOVERY_ATTEMPTS_EXCEEDED", summary, extra, resume
        )
    return None


def _old_run(ctx: _Context, workflow_id: str, f: WorkflowFacts) -> str | None:
    """'step N NAME (since T) in process P' when the run it left (cancelled, or resumed while in a
    step) is still in a step in its live process: the dispatcher counts that as a slot in use."""
    if ctx.owner(f.owner_process) is None:
        return None
    step = ctx.running_step(workflow_id)
    what = step or "its current step"
    return f"{what} in process {f.owner_process}"


def _version_not_running(
    ctx: _Context, workflow_id: str, f: WorkflowFacts
) -> WorkflowExplanation | None:
    """A workflow runs only in processes of its own application version."""
    live = ctx.live_versions()
    version = f.application_version
    if (version in live) if version is not None else bool(live):
        return None
    if version is None:  # unversioned: any process may run it, and none is alive
        summary = "no live process is running: an unversioned workflow runs in any process"
        extra = [("live versions", "none"), ("to do", "start a process of the application")]
        return _explanation(workflow_id, f, "VERSION_NOT_RUNNING", summary, extra)
    if f.status == "PENDING":
        owner = ctx.owner(f.owner_process)
        if owner is not None and owner.state == "ALIVE":
            return None  # a live process runs it (its own version), whatever the table says
    shown = ", ".join(live) or "none"
    what = {"PENDING": "PENDING", "DELAYED": "DELAYED"}.get(f.status, "ENQUEUED")
    if f.queue_name == INTERNAL_QUEUE:
        what = "resumed (or restarted, or forked)"
    summary = (
        f"{what} on application version {version}, which no live process runs "
        f"(live versions: {shown}): it waits until a process of that version starts, or until "
        "it is moved to a live version"
    )
    extra = [("live versions", shown)]
    extra.append(("to do", f"start a process of application version {version or '(any)'}"))
    moves = [_command("resume", workflow_id, "--app-version", t) for t in live[:3]]
    if live:  # with no live process there is no version to move it to
        step = str((f.last_step_id or 0) + 1)
        moves.append(_command("fork", workflow_id, "--step", step, "--app-version", live[0]))
    commands = moves + ["dbos version list"]
    if f.queue_name not in (None, INTERNAL_QUEUE) and f.status != "PENDING" and moves:
        # Waiting in its queue: a resume or fork would run it at once, outside the queue's
        # limits, so it is advice with that said, not a command offered to move it.
        extra.append(
            (
                "outside its queue",
                f"{moves[0]} runs it now on {live[0]}, bypassing queue {f.queue_name}'s limits "
                "(a resume leaves the queue, as in DBOS)",
            )
        )
        commands = ["dbos version list"]
    return _explanation(workflow_id, f, "VERSION_NOT_RUNNING", summary, extra, commands)


def _command(action: str, workflow_id: str, *options: str) -> str:
    """A `dbos workflow ACTION OPTIONS... ID` line that a shell runs as shown and that acts on
    exactly that workflow: every word quoted where it needs it (an ID may hold spaces, quotes or
    ``;``), the options first and ``--`` before an ID that starts with ``-`` (so it is not read
    as an option), and an ID with control characters in ANSI-C quoting (``$'a\\nb'``), which
    shows them as escapes and still runs."""
    words = [shlex.quote(w) for w in ("dbos", "workflow", action, *options)]
    if workflow_id.startswith("-"):
        words.append("--")
    words.append(_shell_word(workflow_id))
    return " ".join(words)


def _shell_word(text: str) -> str:
    """``text`` as one shell word: ``shlex.quote``, or ``$'...'`` when it holds a character a
    terminal would act on (newline, tab, ESC, DEL, C1, bidi controls)."""
    if all(ch.isprintable() for ch in text):
        return shlex.quote(text)
    out = []
    for ch in text:
        if ch in ("\\", "'"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "$'" + "".join(out) + "'"


def _queued(ctx: _Context, workflow_id: str, f: WorkflowFacts) -> WorkflowExplanation:
    version = f.application_version or "(any)"
    if f.status == "DELAYED":
        at = _at(f.delay_until_ms)
        left = (f.delay_until_ms or f.now_ms) - f.now_ms
        if left > 0:
            summary = (
                f"delayed until {at} (in {format_span(left)}); then enqueued on {f.queue_name}"
            )
        else:  # past: a live process that listens to its queue moves it on at its next poll
            summary = (
                f"its delay ended at {at} ({format_span(-left)} ago): it moves onto queue "
                f"{f.queue_name} when a live process that listens to that queue polls it"
            )
        return _explanation(workflow_id, f, "DELAYED", summary, [("delayed until", at)])
    still = _old_run(ctx, workflow_id, f) if f.owner_process is not None else None
    if still is not None:
        summary = (
            f"resumed while its earlier run is still running {still}: it goes on when that "
            "step ends and the old run lets go of it"
        )
        extra = [("earlier run still running", still)]
        return _explanation(workflow_id, f, "RESUMED", summary, extra)
    if f.queue_name == INTERNAL_QUEUE:
        serving = [
            e.process_id
            for e in ctx.executors
            if e.state == "ALIVE" and f.application_version in (None, e.application_version)
        ]
        who = "any live process" if f.application_version is None else "a process of "
        if f.application_version is not None:
            who += f"application version {version}"
        summary = f"resumed (or restarted, or forked), waiting for {who} to pick it up"
        extra = [("live processes that can run it", ", ".join(serving))]
        return _explanation(workflow_id, f, "RESUMED", summary, extra)
    place = ctx.db.queue_place(workflow_id, f)
    extra = _queue_facts(place, f)
    rate = _rate_turn(place, f.now_ms)
    if rate is not None:
        behind = _behind(place.ahead)
        summary = (
            f"held by the rate limit of queue {f.queue_name} ({_starts(place)}, "
            f"{place.starts_in_window} in the last window), {behind}: its turn comes no "
            f"earlier than {_at(rate)}"
        )
        extra.append(("its turn comes no earlier than", _at(rate)))
        return _explanation(workflow_id, f, "RATE_LIMITED", summary, extra)
    summary = f"enqueued on queue {f.queue_name} {_behind(place.ahead)}"
    if place.concurrency is not None and place.running >= place.concurrency:
        held = "; ".join(_holder(h) for h in place.holders)
        summary += f"; all {place.concurrency} of its slots are in use: {held}"
    else:
        summary += f"; {place.running} running"
        if place.concurrency is not None:
            summary += f" of at most {place.concurrency}"
    summary += _queue_blockers(place, f)
    return _explanation(workflow_id, f, "QUEUED", summary, extra)


def _queue_blockers(place: QueuePlace, f: WorkflowFacts) -> str:
    """The rest of a QUEUED sentence: worker limits, the queue's declaration, and (when nothing
    recorded holds it back) what dispatch needs that the database does not record."""
    wc, per = place.worker_concurrency, place.running_per_process
    if wc is not None and per and all(n >= wc for n in per):
        n = len(per)
        return (
            f"; each of the {n} live {'process' if n == 1 else 'processes'} runs its limit "
            f"of {wc} from this queue"
        )
    if not place.declared:
        return "; no process has declared this queue"
    if not place.declarer_version_live:
        return "; no live process serves this queue"
    full = place.concurrency is not None and place.running >= place.concurrency
    if full or place.ahead > 0:
        return ""
    # Which queues a process listens to and which workflows it registers live in its code only.
    return (
        "; nothing recorded holds it back: it starts when a live process that listens to queue "
        f"{f.queue_name} and registers workflow {f.name} claims it"
    )


def _behind(ahead: int) -> str:
    return f"behind {ahead} {'other' if ahead == 1 else 'others'}"


def _starts(place: QueuePlace) -> str:
    word = "start" if place.limit == 1 else "starts"
    return f"{place.limit} {word} per {place.period_s:g} s"


def _rate_turn(place: QueuePlace, now_ms: int) -> int | None:
    """When the rate limiter lets this workflow start at the earliest, given the ``ahead`` others
    that start before it; None when a start within the current window is left for it."""
    if place.limit is None or place.period_s is None:
        return None
    needed = place.ahead + 1 - (place.limit - place.starts_in_window)
    if needed <= 0:
        return None
    base = place.oldest_start_in_window or now_ms
    return base + int(place.period_s * 1000) * math.ceil(needed / place.limit)


def _holder(h: SlotHolder) -> str:
    """One slot holder: 'ID' or 'ID (cancelled, its step 'slow' still running in process P
    since T)', and whether its version still has a live process."""
    notes = []
    if h.status != "PENDING":
        what = "cancelled" if h.status == "CANCELLED" else "resumed"
        step = f"its step {h.step_name!r}" if h.step_name else "its step"
        since = f" since {_at(h.step_started_at)}" if h.step_started_at else ""
        notes.append(f"{what}, {step} still running in process {h.owner_process}{since}")
    if not h.version_live:
        notes.append(f"application version {h.application_version}, which no live process runs")
    return h.workflow_id + (f" ({'; '.join(notes)})" if notes else "")


def _queue_facts(place: QueuePlace, f: WorkflowFacts) -> list[tuple[str, str]]:
    found = [("ahead of it", str(place.ahead)), ("slots in use", str(place.running))]
    if place.holders:
        more = place.running - len(place.holders)
        shown = ", ".join(_holder(h) for h in place.holders)
        found.append(("held by", shown + (f" (and {more} more)" if more > 0 else "")))

    def limit(value: int | None) -> str:
        return "none" if value is None else str(value)

    found.append(("concurrency", limit(place.concurrency)))
    found.append(("worker concurrency", limit(place.worker_concurrency)))
    if place.worker_concurrency is not None:
        found.append(("running here per live process", str(place.running_per_process)))
    if place.limit is not None and place.period_s is not None:
        found.append(("rate limit", _starts(place)))
        found.append(("starts in the last window", str(place.starts_in_window)))
    if not place.declared:
        found.append(("declared", "no process has recorded this queue's limits"))
    else:
        v = place.declared_version or "unversioned"
        live = "a live process" if place.declarer_version_live else "no live process"
        found.append(("declared by", f"application version {v} ({live} of that version)"))
    found.append(
        (
            "dispatch also needs",
            f"a live process that listens to queue {f.queue_name} and registers workflow {f.name} "
            "(not recorded in the database)",
        )
    )
    return found


def _pending(ctx: _Context, workflow_id: str, f: WorkflowFacts, depth: int) -> WorkflowExplanation:
    owner = ctx.owner(f.owner_process)
    extra = [("started", _at(f.started_at))]
    extra.append(("recovery attempts", str(f.recovery_attempts)))
    if f.last_step_id is not None:
        step = f"{f.last_step_id} ({f.last_step_name}) at {_at(f.last_step_at)}"
        extra.append(("last recorded step", step))
    extra += _owner_facts(f, owner)
    if owner is None:
        runner = (
            "a live process"
            if f.application_version is None
            else (f"a live process of application version {f.application_version}")
        )
        summary = (
            f"owned by process {f.owner_process or '(none)'}, {_gone(f)}: {runner} "
            "is about to take it over"
        )
        return _explanation(workflow_id, f, "OWNER_GONE", summary, extra)
    waiting = _waiting(ctx, workflow_id)
    if waiting is None:
        running = ctx.running_step(workflow_id)
        if running is not None:
            summary = f"running {running} in live process {owner.process_id}"
        else:
            # After a takeover (a claim sets updated_at, not started_at) the recorded times
            # predate this run: the latest of them.
            claimed = f.updated_at if f.recovery_attempts > 1 else 0
            since = max(f.last_step_at or 0, f.started_at or 0, claimed) or None
            summary = f"running code in live process {owner.process_id} since {_at(since)}"
        return _explanation(workflow_id, f, "RUNNING", summary, extra)
    reason, summary = _wait_reason(waiting, f.now_ms)
    cause = None
    if waiting.kind == "child" and waiting.detail is not None:
        extra.append(("child", waiting.detail))
        if waiting.detail not in ctx.seen and depth < MAX_DEPTH:
            cause = _explain(ctx, waiting.detail, depth + 1)
        elif depth >= MAX_DEPTH:
            summary += f" (… deeper children not shown: the limit is {MAX_DEPTH} levels)"
            extra.append(("deeper children", "not shown"))
    return _explanation(workflow_id, f, reason, summary, extra, None, cause)


def _gone(f: WorkflowFacts) -> str:
    """How the owner went: found dead (then, not a lease end maybe still ahead), stopped, or
    silent past its lease."""
    if f.owner_process is None:
        return "no process owns it"
    if f.owner_found_gone or (f.owner_lease_end or 0) > f.now_ms:
        # Found dead by its pid on its host, before its lease would have run out.
        return f"which was found dead at {_at(f.owner_stopped_at or f.now_ms)}"
    if f.owner_stopped_at is not None:
        return f"which stopped at {_at(f.owner_stopped_at)}"
    if f.owner_lease_end is None:
        return "which no longer has an executor row"
    return f"whose lease expired at {_at(f.owner_lease_end)}"


def _owner_state(f: WorkflowFacts, owner: ExecutorInfo | None) -> str:
    if owner is not None:
        return owner.state
    if f.owner_stopped_at is not None and not f.owner_found_gone:
        return "STOPPED"
    return "DEAD" if f.owner_lease_end is not None else "unknown"


def _owner_facts(f: WorkflowFacts, owner: ExecutorInfo | None) -> list[tuple[str, str]]:
    if f.owner_process is None:
        return [("owner", "no process")]
    where = f"{f.owner_host}, pid {f.owner_pid}" if f.owner_host else "no executor row"
    state = _owner_state(f, owner)
    found = [("owner process", f"{f.owner_process} ({where}; {state})")]
    if f.executor_id is not None:
        found.append(("executor ID", f.executor_id))
    if f.owner_lease_end is not None and (state == "ALIVE" or f.owner_lease_end <= f.now_ms):
        found.append(
            (
                "owner lease ends" if state == "ALIVE" else "owner lease ended",
                _at(f.owner_lease_end),
            )
        )
    return found


def _waiting(ctx: _Context, workflow_id: str) -> Waiting | None:
    snapshots = ctx.sysdb.wait_snapshots([workflow_id])
    return derive(snapshots[0]) if snapshots else None


def _wait_reason(waiting: Waiting, now: int) -> tuple[str, str]:
    summary = waiting.describe(now)
    if waiting.kind == "child":
        return "WAITING_FOR_CHILD", summary
    if waiting.until_ms is not None and waiting.until_ms <= now:
        return "WAIT_OVER", summary
    if waiting.kind == "sleep":
        return "SLEEPING", summary
    if waiting.target is None:
        return "WAITING_FOR_MESSAGE_OR_EVENT", summary
    if waiting.target.op == "recv":
        return "WAITING_FOR_MESSAGE", summary
    return "WAITING_FOR_EVENT", summary
