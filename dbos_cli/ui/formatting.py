"""How the dashboard shows values: times (local, with their zone, and relative), durations,
outcomes, step rows, links to workflows, and which actions apply to a workflow.

Every function returns plain text: the templates escape it (nothing here is marked safe)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from runtime.status import StepInfo, WorkflowStatus

# Outcomes longer than this are collapsed (expandable, and downloadable in full).
SHORT_OUTCOME = 120
SLEEP_STEP = "DBOS.sleep"
DOT_IDS = (".", "..")
LIVE = ("PENDING", "ENQUEUED", "DELAYED")
# Characters of one value (input, output, event, error, step outcome) a page embeds: the rest is
# behind a download link, so a 200 kB value does not make an 800 kB page.
EMBED_CHARS = 4096


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


def local_time(epoch_ms: int | None) -> str:
    """Local time for display, with its zone: ``2026-11-30 05:41:07 UTC+01:00``."""
    if epoch_ms is None:
        return ""
    moment = datetime.fromtimestamp(epoch_ms / 1000).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + (moment.tzname() or moment.strftime("%z"))


def iso_time(epoch_ms: int | None) -> str:
    """The ISO 8601 form with offset (for <time datetime=...>)."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000).astimezone().isoformat(timespec="seconds")


def relative(epoch_ms: int | None, now: int | None = None) -> str:
    """``3 min ago`` / ``in 2 h``: how far ``epoch_ms`` is from now, in its largest unit."""
    if epoch_ms is None:
        return ""
    delta = ((now if now is not None else now_ms()) - epoch_ms) / 1000
    seconds = abs(delta)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size or unit == "s":
            amount = f"{int(seconds // size)} {unit}"
            break
    return f"{amount} ago" if delta >= 0 else f"in {amount}"


def duration(ms: int | None) -> str:
    """A duration for people: ``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h 3 min``."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def workflow_duration(wf: WorkflowStatus) -> int | None:
    """From creation to completion (or to now while it runs), in ms."""
    if wf.created_at is None:
        return None
    end = wf.completed_at
    if end is None:
        end = now_ms() if wf.status in LIVE else wf.updated_at
    return None if end is None else max(end - wf.created_at, 0)


def pretty(value: Any) -> str:
    """A value as indented JSON text (escaped by the template, never marked safe)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=True)


def error_text(error: BaseException | None) -> str:
    """``Type: message`` of a recorded error."""
    if error is None:
        return ""
    kind = getattr(error, "original_type", None) or type(error).__name__
    return f"{kind}: {error}"


def traceback_text(error: BaseException | None) -> str | None:
    """The stack trace recorded with an error, when the runtime stored one."""
    found = getattr(error, "dbos_traceback", None)
    return found if isinstance(found, str) and found else None


def segment(value: object) -> str:
    """``value`` as one percent-encoded URL path segment: ``/``, ``?``, ``#``, ``%``, spaces and
    non-ASCII are all encoded, so an ID never becomes several segments or a query."""
    return quote(str(value), safe="")


def workflow_url(workflow_id: str, *rest: str, **query: object) -> str:
    """The dashboard URL of a workflow (or of one of its sub-pages), with ``query`` as its query
    parameters (None values left out). An ID of only dots is the one a path cannot carry (browsers
    resolve ``.`` and ``..`` segments, even encoded): it goes in the query of ``/workflow/...``
    instead, merged with ``query``: build every such URL here, never by appending ``?...``."""
    params = [(k, str(v)) for k, v in query.items() if v is not None]
    if workflow_id in DOT_IDS:
        path = "/".join(["/workflow", *rest])
        params = [("id", workflow_id), *params]
    else:
        path = "/".join(["/workflows", segment(workflow_id), *rest])
    return path + ("?" + urlencode(params, quote_via=quote) if params else "")


def allowed_actions(can_cancel: bool, can_resume: bool) -> list[str]:
    """The actions that would change this workflow: cancel and resume when the runtime's own dry
    run says they would (so the page never disagrees with what the button does), restart and
    fork always (they start a new workflow)."""
    found = (["cancel"] if can_cancel else []) + (["resume"] if can_resume else [])
    return [*found, "restart", "fork"]


def step_rows(steps: list[StepInfo], wf: WorkflowStatus, children: dict[str, Any]) -> list[Any]:
    """Each step's row: its timeline bar (offset and width in percent of the run), duration,
    outcome text (``short`` when collapsed), and a sleep's wake-up time."""
    starts = [s.started_at for s in steps if s.started_at is not None]
    ends = [s.completed_at for s in steps if s.completed_at is not None]
    origin = min([*starts, *([wf.created_at] if wf.created_at else [])], default=0)
    finish = max([*ends, *([wf.completed_at] if wf.completed_at else [])], default=origin)
    span = max(finish - origin, 1)
    rows = []
    for s in steps:
        child = children.get(s.child_workflow_id) if s.child_workflow_id else None
        sleep_until = s.output if s.function_name == SLEEP_STEP and s.error is None else None
        if not isinstance(sleep_until, int | float):
            sleep_until = None
        took = _step_duration(s, child)
        # A step running now (the runtime lists it with ``running``, no outcome yet): so far.
        running = bool(getattr(s, "running", False))
        if running and s.started_at is not None:
            took = max(now_ms() - s.started_at, 0)
        if sleep_until is not None and s.started_at is not None:
            took = max(int(sleep_until) - s.started_at, 0)  # its bar spans the sleep
        left = min(((s.started_at or origin) - origin) / span * 100, 99.0)
        outcome = error_text(s.error) if s.error is not None else pretty(s.output)
        rows.append(
            {
                "step": s,
                "child": child,
                "duration": duration(took),
                "left": round(left, 2),
                "width": round(min(max(0.8, (took or 0) / span * 100), 100.0 - left), 2),
                "failed": s.error is not None,
                "outcome": outcome,
                "long": len(outcome) > SHORT_OUTCOME,
                "short": outcome[:SHORT_OUTCOME],
                "sleep_until": sleep_until,
                "running": running,
                "traceback": traceback_text(s.error),
            }
        )
    return rows


def _step_duration(step: StepInfo, child: WorkflowStatus | None) -> int | None:
    """A step's own time; for a child workflow, the child's run (its start step is instant)."""
    if child is not None:
        return workflow_duration(child)
    if step.completed_at is not None and step.started_at is not None:
        return step.completed_at - step.started_at
    return None
